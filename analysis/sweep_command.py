"""``fxemu sweep`` and ``fxemu study``: click commands registered by :mod:`fxemu.cli`.

Import stays light (click only); the sweep machinery is imported when a command runs.
"""

from __future__ import annotations

from pathlib import Path

import click

from fxemu._errors import msg

__all__ = ["study_cmd", "sweep_cmd"]

_ERRORS = (ValueError, TypeError, OSError)  # OSError: FileNotFoundError, rundir.RunDirBusy, ...


def _ints(text: str | None, what: str) -> list[int] | None:
    if text is None:
        return None
    try:
        vals = [int(t) for t in text.replace(" ", "").split(",") if t]
    except ValueError:
        raise click.UsageError(msg(what, "must be comma-separated ints like 0,1,2", text)) from None
    if not vals:
        raise click.UsageError(msg(what, "must name at least one seed", text))
    return vals


def _summary(res) -> None:
    click.echo(f"sweep {res.out}: {len(res.runs)} runs, {len(res.done)} done now, "
               f"{len(res.skipped)} skipped, {len(res.failed)} failed")
    for name, why in res.failed.items():
        click.echo(f"  failed: {name}: {why.splitlines()[0] if why else ''}", err=True)


@click.command("sweep")
@click.argument("spec", required=False, type=click.Path(dir_okay=False))
@click.option("--out", required=True, type=click.Path(file_okay=False),
              help="Folder of the run directories (one per policy x seed [x grid point]).")
@click.option("--policy", "policies", multiple=True,
              help="Preset name or .toml/.json policy file; repeat for more (replaces the "
                   "spec's policies).")
@click.option("--seeds", default=None, help="Comma-separated seeds, e.g. 0,1,2 (replaces the "
                                            "spec's; default 0).")
@click.option("--model", "models", multiple=True,
              help="Model preset (founding, lenet5) or .toml/.json spec; repeat for a model "
                   "axis (replaces the spec's models; run names gain a <model>_ prefix).")
@click.option("--epochs", type=int, default=None)
@click.option("--n-train", type=int, default=None)
@click.option("--n-test", type=int, default=None)
@click.option("--batch-size", type=int, default=None)
@click.option("--lr", type=float, default=None)
@click.option("--data", default=None, help="As for fxemu train (default embedded).")
@click.option("--backend", default=None,
              type=click.Choice(["auto", "native", "emulated", "csim", "board"]))
@click.option("--checkpoint-every", type=int, default=None)
@click.option("--workers", type=int, default=None,
              help="Local worker processes (default: CPU count); 0 = in this process.")
@click.option("--threads", type=int, default=1, show_default=True,
              help="Numba threads per run (one process per core is faster for this network).")
@click.option("--scheduler", default=None,
              help="Dask distributed scheduler address (tcp://host:8786); runs become its "
                   "tasks, workers must share --out's file system.")
@click.option("--no-retry-failed", is_flag=True, help="Leave runs holding error.json alone.")
@click.option("--dry-run", is_flag=True, help="Validate and list the runs, train nothing.")
@click.option("--quiet", is_flag=True, help="No progress bar.")
@click.option("--cost", "cost_device", type=click.Choice(["xc7z020", "xczu7ev", "ecp5-85k"]),
              default=None, help="Also record each distinct policy's datapath cost from "
              "synthesis on this device (costs.json; needs the rtl extra).")
@click.option("--cost-mapping", type=click.Choice(["abc9", "abc9-area", "abc9-flow2"]),
              default="abc9", show_default=True, help="Yosys's LUT mapping script for --cost.")
def sweep_cmd(spec: str | None, out: str, policies: tuple[str, ...], seeds: str | None,
              models: tuple[str, ...], epochs: int | None, n_train: int | None, n_test: int | None,
              batch_size: int | None, lr: float | None, data: str | None, backend: str | None,
              checkpoint_every: int | None, workers: int | None, threads: int,
              scheduler: str | None, no_retry_failed: bool, dry_run: bool, quiet: bool,
              cost_device: str | None, cost_mapping: str) -> None:
    """Train a grid of policies x seeds (x a [grid] of other settings) from SPEC and/or flags.

    SPEC is a .toml/.json sweep spec (policies, seeds, [train], [grid]; see
    fxemu.analysis.sweep). Flags override it. Finished runs are skipped, interrupted ones
    resume from their checkpoint, failed ones (error.json) are retried; a failed run never
    stops the others. Exit status 1 when any run failed.
    """
    from fxemu._errors import BackendUnavailable

    from .sweep import build_runs, load_spec, run_status, run_sweep

    try:
        sp = load_spec(spec) if spec else {}
        if policies:
            sp["policies"] = list(policies)
        if (s := _ints(seeds, "--seeds")) is not None:
            sp["seeds"] = s
        if models:
            sp["models"] = list(models)
        flags = {"epochs": epochs, "n_train": n_train, "n_test": n_test,
                 "batch_size": batch_size, "lr": lr, "data": data, "backend": backend,
                 "checkpoint_every": checkpoint_every}
        given = {k: v for k, v in flags.items() if v is not None}
        if given:
            train = dict(sp.get("train") or {})
            train.update(given)
            sp["train"] = train
            grid = sp.get("grid")
            if isinstance(grid, dict):
                sp["grid"] = {k: v for k, v in grid.items() if k not in given}
        if not sp.get("policies"):
            raise click.UsageError("no policies: give a SPEC with policies or --policy")
        runs = build_runs(sp)
        if dry_run:
            for r in runs:
                varied = " ".join(f"{k}={v}" for k, v in r.varied.items())
                click.echo(f"{r.name}  {run_status(Path(out) / r.name, r.epochs)}  {varied}"
                           .rstrip())
            return
        res = run_sweep(runs, out, workers=workers, scheduler=scheduler, threads=threads,
                        retry_failed=not no_retry_failed, progress=not quiet,
                        cost=cost_device, cost_mapping=cost_mapping)
    except (*_ERRORS, BackendUnavailable) as e:
        raise click.ClickException(str(e)) from None
    _summary(res)
    if not res.ok:
        raise click.ClickException(f"{len(res.failed)} of {len(res.runs)} runs failed "
                                   "(error.json in each; run the sweep again to retry)")


@click.command("study")
@click.argument("name", type=click.Choice(["founding", "rounding", "lenet5", "mx", "cost"]))
@click.option("--out", required=True, type=click.Path(file_okay=False),
              help="Study folder: runs/ (run directories) and report/ (index.html).")
@click.option("--seeds", default=None, help="Comma-separated seeds [default: 0,1,2; cost: 0].")
@click.option("--workers", type=int, default=None, help="Local worker processes.")
@click.option("--device", "device_name", type=click.Choice(["xc7z020", "xczu7ev", "ecp5-85k"]),
              default="xc7z020", show_default=True,
              help="cost study: the synthesis target of the datapath costs.")
@click.option("--mapping", type=click.Choice(["abc9", "abc9-area", "abc9-flow2"]),
              default="abc9-area", show_default=True,
              help="cost study: Yosys's LUT mapping script (docs/studies/cost_monotonic.md).")
@click.option("--scheduler", default=None, help="Dask distributed scheduler address.")
@click.option("--no-report", is_flag=True, help="Only run the sweep.")
@click.option("--quiet", is_flag=True, help="No progress bar.")
def study_cmd(name: str, out: str, seeds: str | None, workers: int | None,
              device_name: str, mapping: str, scheduler: str | None, no_report: bool,
              quiet: bool) -> None:
    """Run a precision study (its sweep, then its report).

    founding: fw32bw32, fw16bw32, fw16bw16 on 2 000/500 digits, batch 100, 10 epochs.
    rounding: ap_fixed<16,16-F> data and updates, F = 8..14, round to nearest vs
    stochastic rounding of the update (42 runs with 3 seeds). lenet5: LeNet-5 on
    Fashion-MNIST (10 000/2 000) under fw32bw32, fw16bw16, fixed16, fixed16_sr and
    fixed16_sr_g0 (gradients in ap_fixed<16,0>), 5 epochs, lr 0.05.
    mx: fw32bw32, fw16bw16 vs MXFP8, MXFP6, MXFP4 (stochastic backward) block-scaled
    products, float32 accumulation (15 runs with 3 seeds). cost: ap_fixed<W,4> data,
    W = 8..16, ap_fixed<A,12> accumulators, A = 16, 24, 32, nearest or stochastic update,
    1 seed, 5 epochs; each PE synthesised (--device, --mapping; rtl extra); the report
    plots accuracy against LUTs and DSPs with the Pareto front. Re-running resumes.
    """
    from fxemu._errors import BackendUnavailable

    if not no_report:  # the report needs the 'analysis' extra: say so before any run trains
        from . import report  # noqa: F401
    from .studies import run_study

    try:
        res, index = run_study(name, out, seeds=_ints(seeds, "--seeds"), workers=workers,
                               scheduler=scheduler, progress=not quiet, report=not no_report,
                               device=device_name, mapping=mapping)
    except (*_ERRORS, BackendUnavailable) as e:
        raise click.ClickException(str(e)) from None
    _summary(res)
    if index is not None:
        click.echo(f"report: {index}")
    if not res.ok:
        raise click.ClickException(f"{len(res.failed)} of {len(res.runs)} runs failed")
