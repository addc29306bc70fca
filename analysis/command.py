"""The ``fxemu report`` command (registered in :mod:`fxemu.cli`; imports stay light)."""

from __future__ import annotations

import click

__all__ = ["report_cmd"]


class _Failed(click.ClickException):
    """The report could not be written (exit status 1)."""

    exit_code = 1


def _epochs(text: str | None, what: str) -> list[int] | None:
    if text is None:
        return None
    try:
        out = [int(t) for t in text.split(",") if t.strip()]
    except ValueError:
        raise click.BadParameter(f"must be comma-separated integers like 1,5,10; got {text!r}",
                                 param_hint=what) from None
    if not out:
        raise click.BadParameter(f"must name at least one epoch; got {text!r}",
                                 param_hint=what)
    return out


@click.command("report")
@click.argument("runs", metavar="RUNS...", nargs=-1, required=True,
                type=click.Path(file_okay=False))
@click.option("--out", required=True, type=click.Path(file_okay=False),
              help="Output directory (index.html, figures/, tables/).")
@click.option("--baseline", default=None,
              help="Reference policy for tests, distances and SQNR "
                   "[default: fw32bw32 if present, else the first].")
@click.option("--epochs", default=None,
              help="Comparison-table epochs, e.g. 1,5,10 [default: 1,5,10 where reached "
                   "and the last].")
@click.option("--weight-epochs", default=None,
              help="Snapshot epochs of the weight histograms, e.g. 0,5,10 "
                   "[default: first, middle, last].")
def report_cmd(runs: tuple[str, ...], out: str, baseline: str | None, epochs: str | None,
               weight_epochs: str | None) -> None:
    """Write figures, tables and index.html for RUNS (run directories or folders of runs)."""
    eps = _epochs(epochs, "--epochs")
    weps = _epochs(weight_epochs, "--weight-epochs")
    from .report import write_report

    try:
        index = write_report(list(runs), out, baseline=baseline, epochs=eps,
                             weight_epochs=weps)
    except (ValueError, TypeError, FileNotFoundError, OSError) as e:
        raise _Failed(str(e)) from None
    click.echo(f"report: {index}")
