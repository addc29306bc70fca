"""The precision studies: one command each runs its sweep and writes its report.

``founding``
    The founding study: ``fw32bw32``, ``fw16bw32``, ``fw16bw16`` on the embedded digits,
    2 000 training / 500 test samples, batch 100, 10 epochs, lr 0.01, seeds 0, 1, 2.

``rounding``
    16-bit fixed point everywhere: input, weights, activations, gradients and master weights
    are ``ap_fixed<16, 16-F, AP_RND_CONV, AP_SAT>`` for F = 8 … 14 fraction bits; the weight
    update ``W ← R(W − lr·dW)`` rounds to nearest (ties to even, ``AP_RND_CONV``) or
    stochastically (``STOCHASTIC``, full-width random residue); seeds 0, 1, 2: 42 runs, plus
    the ``fw32bw32`` float32 baseline of the report's tests (3 runs, native, seconds). Same
    data and schedule as ``founding`` (2 000 / 500 digits, batch 100, 10 epochs, lr 0.01).

    Accumulators: every product of two F-fraction-bit operands lies on the 2^-2F grid, so
    every Mac accumulates in ``ap_fixed<16+2F, 16, AP_RND_CONV, AP_SAT>`` (2F fraction bits,
    16 integer bits, saturating at ±2^15): each addition is exact (the rounding mode never
    acts) and the only rounding is the one into the 16-bit activation or gradient. At most 44
    bits wide, these accumulators take the exact integer fast path of
    :func:`fxemu.matmul` (BLAS on integer-valued doubles, below 2^53). The 16 integer bits are
    ample: a conv sums 9 products of pixels (≤ 1) and weights, the dense layer 2 028 products
    of activations and weights, the weight gradients ≤ 100·676 products of a data value and a
    gradient (≪ 1); none comes near 2^15 (the ``ap_fixed<32,16>`` accumulator of the
    ``fixed16`` preset is the F = 8 case). The 16-bit data saturate at ±2^(15−F): ±128 for
    F = 8 down to ±2 for F = 14, where large logits and activations clip; the LSB 2^-F is
    3.9e-3 for F = 8 and 6.1e-5 for F = 14, and an update ``lr·dW`` smaller than half an LSB
    is lost under round-to-nearest but kept in expectation under stochastic rounding.

``lenet5``
    LeNet-5 (:data:`fxemu.nn.PRESETS` ``lenet5``) on Fashion-MNIST (Debian's files) under
    ``fw32bw32`` (native float32, the baseline), ``fw16bw16``, ``fixed16``, ``fixed16_sr``
    and ``fixed16_sr_g0`` (:func:`lenet5_fix_policy`: ``fixed16_sr`` with its gradients in
    ``ap_fixed<16,0>``, the fix docs/studies/lenet5_fixed16.md derives) (emulated); 10 000
    training / 2 000 test images, batch 100, 5 epochs, plain SGD lr 0.05, seeds 0, 1, 2 (15
    runs, about 50 000 training samples each: an emulated run takes ≈ 10 min on a free core).
    Its report compares the policies' accuracy and per-layer weight statistics over LeNet-5's
    ten parameter tensors, and adds ``lenet5_table.{md,csv}`` (final test accuracy per
    policy) and ``lenet5_accuracy.png`` (test accuracy per epoch).

``mx``
    Block-scaled (OCP MX) training against the float baselines: ``fw32bw32``, ``fw16bw16``,
    ``mxfp8`` (every product's operands converted to MXFP8 along the product's reduction
    axis: E4M3 forward, E5M2 backward), ``mxfp6`` (E2M3 forward, E3M2 backward) and
    ``mxfp4_sr`` (MXFP4 E2M1, backward operands rounded stochastically); the MX policies hold
    every tensor and the master weights in float32 and accumulate in float32, as the OCP MX
    training results do (:data:`fxemu.policy.PRESETS`). Same data and schedule as
    ``founding``, seeds 0, 1, 2 (15 runs). The report adds ``mx_table.{md,csv}`` (final test
    accuracy per policy, mean and 95% CI over seeds).

``cost``
    Accuracy against datapath cost: fixed-point data (input, weights, activations, gradients,
    master weights) ``ap_fixed<W, 4, AP_RND_CONV, AP_SAT>`` for W = 8, 10, 12, 14, 16 (range
    ±8, W − 4 fraction bits) and every Mac accumulating in ``ap_fixed<A, 12, AP_RND_CONV,
    AP_SAT>`` for A = 16, 24, 32 (range ±2048, A − 12 fraction bits: below the products'
    2(W − 4), every addition rounds to nearest even); the weight update rounds to nearest
    (``rn``) or stochastically (``sr``): 30 policies, seed 0, plus the ``fw32bw32`` float32
    baseline; 2 000 / 500 digits, batch 100, 5 epochs, lr 0.01. Each distinct policy's PE is
    synthesised once (``--device``, default ``xc7z020``: Yosys ``synth_xilinx``; LUT mapping
    ``--mapping``, default :data:`COST_MAPPING`), and the report's "Accuracy against
    datapath cost" section plots the Pareto front. The update's rounding does not change the
    Mac, so the ``rn`` and ``sr`` policies of one (W, A) share one synthesis (the cache).
    ``report/cost_monotonic.md`` checks that LUT, FF and DSP counts (:data:`MONOTONIC`)
    never fall as W or A grows, and lists CARRY counts that fall.

Outputs under ``out``: ``runs/`` (one run directory each, see :mod:`fxemu.analysis.sweep`)
and ``report/`` (:func:`fxemu.analysis.report.write_report`, its ``index.html``); the
rounding study adds ``report/rounding_accuracy.{png,pdf}`` and ``report/rounding_table.{md,csv}``
(final test accuracy by F and rounding, mean and 95% CI over seeds).
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from pathlib import Path

from fxemu._errors import msg
from fxemu.formats import Fixed, Mac
from fxemu.policy import PRESETS, Backward, Forward, Policy, Update

__all__ = ["ACC_WIDTHS", "COST_MAPPING", "DATA_WIDTHS", "FRACTION_BITS", "LENET5_POLICIES",
           "MONOTONIC", "MX_POLICIES", "STUDIES", "cost_monotonic", "cost_policy", "cost_spec",
           "founding_spec", "lenet5_fix_policy", "lenet5_spec", "mx_spec", "policy_summary",
           "rounding_policy", "rounding_spec", "rounding_summary", "run_study",
           "write_cost_monotonic"]

FRACTION_BITS = tuple(range(8, 15))
_ROUNDINGS = {"rnd_conv": "rnd_conv", "sr": "stochastic"}
_NAME = re.compile(r"^fixed16_F(\d+)_(" + "|".join(_ROUNDINGS) + ")$")
_SCHEDULE = {"n_train": 2000, "n_test": 500, "batch_size": 100, "epochs": 10, "lr": 0.01}


def founding_spec(seeds: Sequence[int] = (0, 1, 2)) -> dict:
    """The founding study's sweep spec."""
    return {"policies": ["fw32bw32", "fw16bw32", "fw16bw16"], "seeds": list(seeds),
            "train": dict(_SCHEDULE)}


def rounding_policy(frac_bits: int, rounding: str = "rnd_conv") -> Policy:
    """16-bit fixed data and master weights with ``frac_bits`` fraction bits; the update
    rounds by ``rounding`` (``"rnd_conv"`` or ``"sr"``). See the module docstring."""
    if isinstance(frac_bits, bool) or not isinstance(frac_bits, int) or not 1 <= frac_bits <= 18:
        raise ValueError(msg("frac_bits", "must be an int in 1..18 (16+2F <= 53)", frac_bits))
    if rounding not in _ROUNDINGS:
        raise ValueError(msg("rounding", "must be " + " or ".join(_ROUNDINGS), rounding))
    f = frac_bits
    data = Fixed(16, 16 - f, rounding="rnd_conv", overflow="sat")
    acc = Mac(Fixed(16 + 2 * f, 16, rounding="rnd_conv", overflow="sat"))
    master = Fixed(16, 16 - f, rounding=_ROUNDINGS[rounding], overflow="sat")
    return Policy(
        name=f"fixed16_F{f:02d}_{rounding}",
        forward=Forward(input=data, weight=data, activation=data, conv=acc, dense=acc),
        backward=Backward(weight=data, grad=data, dense_dw=acc, dense_dx=acc, conv_dw=acc),
        update=Update(master=master),
    )


def rounding_spec(seeds: Sequence[int] = (0, 1, 2),
                  frac_bits: Sequence[int] = FRACTION_BITS) -> dict:
    """The rounding study's sweep spec: ``fw32bw32`` and the policy tables built by
    :func:`rounding_policy`."""
    pols = [rounding_policy(f, r).to_dict() for f in frac_bits for r in _ROUNDINGS]
    return {"policies": ["fw32bw32", *pols], "seeds": list(seeds), "train": dict(_SCHEDULE)}


DATA_WIDTHS = (8, 10, 12, 14, 16)
ACC_WIDTHS = (16, 24, 32)
_COST_NAME = re.compile(r"^fx_d(\d+)_a(\d+)_(rn|sr)$")
_COST_SCHEDULE = {**_SCHEDULE, "epochs": 5}


def cost_policy(data_width: int, acc_width: int, rounding: str = "rn") -> Policy:
    """The cost study's policy (module docstring): data ``ap_fixed<W, 4>``, accumulators
    ``ap_fixed<A, 12>``, the update rounded to nearest (``"rn"``) or stochastically
    (``"sr"``)."""
    for what, v, lo, hi in (("data_width", data_width, 5, 32),
                            ("acc_width", acc_width, 13, 53)):
        if isinstance(v, bool) or not isinstance(v, int) or not lo <= v <= hi:
            raise ValueError(msg(what, f"must be an int in {lo}..{hi}", v))
    if rounding not in ("rn", "sr"):
        raise ValueError(msg("rounding", "must be rn or sr", rounding))
    data = Fixed(data_width, 4, rounding="rnd_conv", overflow="sat")
    acc = Mac(Fixed(acc_width, 12, rounding="rnd_conv", overflow="sat"))
    master = Fixed(data_width, 4, rounding="rnd_conv" if rounding == "rn" else "stochastic",
                   overflow="sat")
    return Policy(
        name=f"fx_d{data_width:02d}_a{acc_width:02d}_{rounding}",
        forward=Forward(input=data, weight=data, activation=data, conv=acc, dense=acc),
        backward=Backward(weight=data, grad=data, dense_dw=acc, dense_dx=acc, conv_dw=acc),
        update=Update(master=master),
    )


def cost_spec(seeds: Sequence[int] = (0,), data_widths: Sequence[int] = DATA_WIDTHS,
              acc_widths: Sequence[int] = ACC_WIDTHS) -> dict:
    """The cost study's sweep spec: ``fw32bw32`` and :func:`cost_policy` over the grid."""
    pols = [cost_policy(w, a, r).to_dict() for w in data_widths for a in acc_widths
            for r in ("rn", "sr")]
    return {"policies": ["fw32bw32", *pols], "seeds": list(seeds),
            "train": dict(_COST_SCHEDULE)}


#: the cost study's LUT mapping (:data:`fxemu.hw.tools.cost.MAPPINGS`): Yosys's
#: area-oriented abc9 script. With it the grid's LUT counts never fall as W or A grows; with
#: the default (delay-first) script they fall once (docs/studies/cost_monotonic.md)
COST_MAPPING = "abc9-area"

#: the cost measures the cost study checks for monotonicity: LUTs, flip-flops and DSPs
#: (CARRY4 counts are not monotonic: where the product's fraction bits equal the
#: accumulator's, no rounding adder is built; docs/studies/cost_monotonic.md)
MONOTONIC = ("lut", "ff", "dsp")


def cost_monotonic(runs_dir: str | Path):
    """The cost study's PE costs by data width W and accumulator width A (a DataFrame:
    ``data_width``, ``acc_width``, ``mapping``, ``lut``, ``ff``, ``dsp``, ``carry``), the
    violations of monotonicity of the :data:`MONOTONIC` measures (one falls as W or A grows,
    the other fixed) and the CARRY counts that fall (reported, not checked)."""
    import pandas as pd

    from .costs import load_costs

    c = load_costs([runs_dir])
    rows = []
    for r in c.itertuples():
        hit = _COST_NAME.match(str(r.policy))
        if hit is not None and r.error is None and hit[3] == "rn":
            rows.append({"data_width": int(hit[1]), "acc_width": int(hit[2]),
                         "mapping": str(r.mapping),
                         **{k: int(getattr(r, k)) for k in ("lut", "ff", "dsp", "carry")}})
    df = pd.DataFrame(rows, columns=["data_width", "acc_width", "mapping", "lut", "ff", "dsp",
                                     "carry"])
    df = df.sort_values(["data_width", "acc_width"]).reset_index(drop=True)
    bad, carry = [], []
    for key, along in (("acc_width", "data_width"), ("data_width", "acc_width")):
        for fixed, g in df.groupby(key):
            g = g.sort_values(along)
            for res in (*MONOTONIC, "carry"):
                v, x = list(g[res]), list(g[along])
                falls = [f"{res} falls from {v[i]} to {v[i + 1]} as {along} grows "
                         f"{x[i]} -> {x[i + 1]} at {key} {fixed}"
                         for i in range(len(v) - 1) if v[i + 1] < v[i]]
                (carry if res == "carry" else bad).extend(falls)
    return df, bad, carry


def write_cost_monotonic(runs_dir: str | Path, report_dir: str | Path) -> Path:
    """``report_dir/cost_monotonic.md``: the PE cost grid, the monotonicity check of the
    :data:`MONOTONIC` measures and the CARRY counts that fall."""
    df, bad, carry = cost_monotonic(runs_dir)
    report_dir = Path(report_dir)
    report_dir.mkdir(parents=True, exist_ok=True)
    lines = ["| data W | acc A | LUT | FF | DSP | CARRY |", "|---:|---:|---:|---:|---:|---:|"]
    lines += [f"| {r.data_width} | {r.acc_width} | {r.lut} | {r.ff} | {r.dsp} | {r.carry} |"
              for r in df.itertuples()]
    checked = ", ".join(MONOTONIC)
    verdict = (f"monotonic: no checked measure ({checked}) falls as W or A grows" if not bad
               else f"NOT monotonic ({checked}):\n" + "\n".join(f"- {b}" for b in bad))
    carries = ("" if not carry else "\n\nCARRY counts that fall (no rounding adder where the "
               "product's fraction bits equal the accumulator's; not checked, see "
               "docs/studies/cost_monotonic.md):\n" + "\n".join(f"- {b}" for b in carry))
    maps = ", ".join(sorted(set(df["mapping"]))) or "none"
    path = report_dir / "cost_monotonic.md"
    path.write_text("\n".join(lines) + f"\n\n{len(df)} PEs, LUT mapping {maps}; "
                    f"{verdict}{carries}\n")
    return path



#: The LeNet-5 study's policies: four presets and :func:`lenet5_fix_policy`.
LENET5_POLICIES = ("fw32bw32", "fw16bw16", "fixed16", "fixed16_sr", "fixed16_sr_g0")


def lenet5_fix_policy() -> Policy:
    """``fixed16_sr_g0``: ``fixed16_sr`` (stochastic rounding of the update) with every
    gradient in ``ap_fixed<16,0,AP_RND_CONV,AP_SAT>`` (LSB 2^-16, range ±0.5) instead of
    ``ap_fixed<16,8>`` (LSB 2^-8): the same 16 bits, shifted down to where LeNet-5's
    gradients lie (docs/studies/lenet5_fixed16.md). A static loss scale of 2^8 on
    ``fixed16_sr`` puts the gradients on the same grid."""
    d = PRESETS["fixed16_sr"].to_dict()
    d["name"] = "fixed16_sr_g0"
    d["backward"]["grad"] = str(Fixed(16, 0, rounding="rnd_conv", overflow="sat"))
    return Policy.from_dict(d)


def lenet5_spec(seeds: Sequence[int] = (0, 1, 2)) -> dict:
    """The LeNet-5 study's sweep spec (see the module docstring)."""
    return {"policies": ["fw32bw32", "fw16bw16", lenet5_fix_policy().to_dict(), "fixed16",
                         "fixed16_sr"],
            "seeds": list(seeds),
            "train": {"model": "lenet5", "data": "fashion", "n_train": 10000, "n_test": 2000,
                      "batch_size": 100, "epochs": 5, "lr": 0.05}}


def _lenet5_extras(runs_dir: Path, report_dir: Path) -> list[Path]:
    """``lenet5_table.{md,csv}`` (final test accuracy per policy) and
    ``lenet5_accuracy.png`` (test accuracy per epoch, mean over seeds) in ``report_dir``."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from fxemu import rundir

    s = policy_summary(runs_dir, LENET5_POLICIES)
    report_dir.mkdir(parents=True, exist_ok=True)
    s.to_csv(report_dir / "lenet5_table.csv", index=False)
    lines = ["| policy | seeds | final test acc [%] | final test loss |", "|---|---:|---:|---:|"]
    lines += [f"| {r.policy} | {r.n} | {_pct(r.mean, r.mean - r.ci95_low)} | "
              f"{r.final_test_loss:.4f} |" for r in s.itertuples()]
    note = ("\nFinal test accuracy, mean ± half-width of the 95% Student-t interval over "
            "seeds (– with one seed).\n")
    paths = [report_dir / "lenet5_table.md", report_dir / "lenet5_table.csv",
             report_dir / "lenet5_accuracy.png"]
    paths[0].write_text("\n".join(lines) + "\n" + note)
    curves: dict[str, list] = {}
    for d in sorted(Path(runs_dir).iterdir()):
        if (d / rundir.CONFIG).is_file() and (d / rundir.METRICS).exists():
            pol = str(rundir.read_config(d)["policy"]["name"])
            curves.setdefault(pol, []).append([m["test_acc"] for m in rundir.read_metrics(d)])
    fig, ax = plt.subplots(figsize=(5, 3.2), dpi=100)
    for pol in LENET5_POLICIES:
        runs = [c for c in curves.get(pol, []) if c]
        if runs:
            n = min(len(c) for c in runs)
            mean = [sum(c[i] for c in runs) / len(runs) for i in range(n)]
            ax.plot(range(1, n + 1), mean, marker="o",
                    label=f"{pol} ({len(runs)} seed{'s' * (len(runs) > 1)}, {n} epochs)")
    ax.set_xlabel("epoch")
    ax.set_ylabel("test accuracy")
    ax.set_ylim(0, 1)
    ax.set_title("LeNet-5, Fashion-MNIST (10 000 / 2 000), lr 0.05")
    ax.legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(paths[2])
    plt.close(fig)
    return paths


MX_POLICIES = ("fw32bw32", "fw16bw16", "mxfp8", "mxfp6", "mxfp4_sr")


def mx_spec(seeds: Sequence[int] = (0, 1, 2), train: dict | None = None) -> dict:
    """The MX study's sweep spec (``train`` overrides the schedule, for a quick look)."""
    return {"policies": list(MX_POLICIES), "seeds": list(seeds),
            "train": {**_SCHEDULE, **(train or {})}}


STUDIES = {"founding": founding_spec, "rounding": rounding_spec, "lenet5": lenet5_spec,
           "mx": mx_spec, "cost": cost_spec}
_DEFAULT_SEEDS = {"cost": (0,)}  # the others: 0, 1, 2


def _final(runs_dir: str | Path) -> list[dict]:
    """(policy, seed, final test accuracy and loss) of every complete run in ``runs_dir``
    (read through :mod:`fxemu.rundir`: a corrupt ``config.json`` or ``metrics.csv`` is an
    error naming the file)."""
    from fxemu import rundir

    rows = []
    for d in sorted(Path(runs_dir).iterdir()):
        if not (d / rundir.CONFIG).is_file() or not (d / rundir.METRICS).exists():
            continue
        cfg = rundir.read_config(d)
        m = rundir.read_metrics(d)
        if len(m) < int(cfg["epochs"]):
            continue
        rows.append({"policy": str(cfg["policy"]["name"]), "seed": cfg["seed"],
                     "test_acc": float(m[-1]["test_acc"]),
                     "test_loss": float(m[-1]["test_loss"])})
    return rows


def _mean_ci(a) -> tuple[int, float, float, float]:
    """n, mean, sample std and the half-width of the 95% Student-t interval."""
    import numpy as np
    from scipy import stats

    a = np.asarray(a, dtype=float)
    n, mean = len(a), float(a.mean())
    if n < 2:
        return n, mean, float("nan"), float("nan")
    std = float(a.std(ddof=1))
    return n, mean, std, float(stats.t.ppf(0.975, n - 1) * std / np.sqrt(n))


def rounding_summary(runs_dir: str | Path):
    """Final test accuracy of the rounding study's finished runs by fraction bits and
    rounding: a pandas DataFrame with ``frac_bits``, ``rounding``, ``n`` (seeds), ``mean``,
    ``std``, ``ci95_low``, ``ci95_high`` (Student t over seeds) and ``final_test_loss``."""
    import pandas as pd

    rows = []
    for r in _final(runs_dir):
        hit = _NAME.match(r["policy"])
        if hit is not None:
            rows.append({**r, "frac_bits": int(hit[1]), "rounding": hit[2]})
    if not rows:
        raise ValueError(msg(f"rounding study {runs_dir}", "holds no finished rounding runs"))
    df = pd.DataFrame(rows)
    out = []
    for (f, r), g in df.groupby(["frac_bits", "rounding"], sort=True):
        n, mean, std, half = _mean_ci(g["test_acc"])
        out.append({"frac_bits": f, "rounding": r, "n": n, "mean": mean, "std": std,
                    "ci95_low": mean - half, "ci95_high": mean + half,
                    "final_test_loss": float(g["test_loss"].mean())})
    return pd.DataFrame(out)


def policy_summary(runs_dir: str | Path, policies: Sequence[str] = MX_POLICIES):
    """Final test accuracy of the finished runs of ``policies`` in ``runs_dir``: a pandas
    DataFrame with ``policy`` (in the given order), ``n`` (seeds), ``mean``, ``std``,
    ``ci95_low``, ``ci95_high`` (Student t over seeds) and ``final_test_loss``."""
    import pandas as pd

    rows = [r for r in _final(runs_dir) if r["policy"] in policies]
    if not rows:
        raise ValueError(msg(f"study {runs_dir}", "holds no finished runs of",
                             ", ".join(policies)))
    df = pd.DataFrame(rows)
    out = []
    for pol in policies:
        g = df[df["policy"] == pol]
        if g.empty:
            continue
        n, mean, std, half = _mean_ci(g["test_acc"])
        out.append({"policy": pol, "n": n, "mean": mean, "std": std, "ci95_low": mean - half,
                    "ci95_high": mean + half, "final_test_loss": float(g["test_loss"].mean())})
    return pd.DataFrame(out)


def _mx_extras(runs_dir: Path, report_dir: Path) -> list[Path]:
    """``mx_table.{md,csv}`` in ``report_dir``: final test accuracy per policy."""

    s = policy_summary(runs_dir)
    report_dir.mkdir(parents=True, exist_ok=True)
    s.to_csv(report_dir / "mx_table.csv", index=False)

    def ops(name: str) -> str:
        p = PRESETS[name]
        fw, bw = p.forward.dense, p.backward.dense_dw
        if fw.block:
            return f"`{fw.a}` forward, `{bw.a}` backward, float32 accumulation"
        return f"`{p.forward.input}` forward, `{p.backward.grad}` backward data"

    lines = ["| policy | products | seeds | final test acc [%] | final test loss |",
             "|---|---|---:|---:|---:|"]
    for _, r in s.iterrows():
        lines.append(f"| {r['policy']} | {ops(r['policy'])} | {r['n']} | "
                     f"{_pct(r['mean'], r['mean'] - r['ci95_low'])} | "
                     f"{r['final_test_loss']:.4f} |")
    note = ("\nFinal test accuracy, mean ± half-width of the 95% Student-t interval over "
            "seeds.\n")
    paths = [report_dir / "mx_table.md", report_dir / "mx_table.csv"]
    paths[0].write_text("\n".join(lines) + "\n" + note)
    return paths


def _pct(mean: float, half: float) -> str:
    if half != half:  # NaN: a single seed
        return f"{100 * mean:.2f}"
    return f"{100 * mean:.2f} ± {100 * half:.2f}"


def _rounding_extras(runs_dir: Path, report_dir: Path) -> list[Path]:
    """``rounding_table.{md,csv}`` and ``rounding_accuracy.{png,pdf}`` in ``report_dir``."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    s = rounding_summary(runs_dir)
    base = [r["test_acc"] for r in _final(runs_dir) if r["policy"] == "fw32bw32"]
    report_dir.mkdir(parents=True, exist_ok=True)
    s.to_csv(report_dir / "rounding_table.csv", index=False)
    heads = {"rnd_conv": "round to nearest (RND_CONV)", "sr": "stochastic rounding"}
    cols = [c for c in heads if c in set(s["rounding"])]
    lines = ["| F | data and master format | LSB | range | "
             + " | ".join(f"{heads[c]}: test acc [%]" for c in cols) + " |",
             "|---:|---|---:|---:|" + "---:|" * len(cols)]
    for f, g in s.groupby("frac_bits"):
        g = g.set_index("rounding")
        cells = [_pct(g.loc[c, "mean"], g.loc[c, "mean"] - g.loc[c, "ci95_low"])
                 if c in g.index else "–" for c in cols]
        lines.append(f"| {f} | `ap_fixed<16,{16 - f},AP_RND_CONV,AP_SAT>` | 2^-{f} | "
                     f"±{2.0 ** (15 - f):g} | " + " | ".join(cells) + " |")
    note = ("\nFinal (epoch-10) test accuracy, mean ± half-width of the 95% Student-t interval "
            "over seeds.")
    if base:
        n, mean, _, half = _mean_ci(base)
        note += f" float32 baseline (fw32bw32, {n} seeds): {_pct(mean, half)} %."
    (report_dir / "rounding_table.md").write_text("\n".join(lines) + "\n" + note + "\n")

    seeds = [{**r, "frac_bits": int(h[1]), "rounding": h[2]} for r in _final(runs_dir)
             if (h := _NAME.match(r["policy"])) is not None]
    fig, ax = plt.subplots(figsize=(6.0, 3.8), dpi=100)
    for k, r in enumerate(cols):
        g = s[s["rounding"] == r]
        line, = ax.plot(g["frac_bits"], 100 * g["mean"], marker="o", label=heads[r] + " (mean)")
        pts = [(x["frac_bits"] + (k - 0.5) * 0.12, 100 * x["test_acc"]) for x in seeds
               if x["rounding"] == r]
        ax.scatter(*zip(*pts, strict=True), s=12, alpha=0.6, color=line.get_color(),
                   label="  each seed")
    if base:
        ax.axhline(100 * float(sum(base) / len(base)), color="0.4", ls="--", lw=1,
                   label="float32 (fw32bw32)")
    ax.set_xlabel("fraction bits F of ap_fixed<16, 16−F> (data, gradients, master weights)")
    ax.set_ylabel("final test accuracy [%]")
    ax.set_title("16-bit fixed point: rounding of the weight update", fontsize=9)
    ax.set_ylim(0, 100)
    ax.set_xticks(sorted(set(s["frac_bits"])))
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8)
    fig.tight_layout()
    paths = []
    for ext in ("png", "pdf"):
        p = report_dir / f"rounding_accuracy.{ext}"
        fig.savefig(p)
        paths.append(p)
    plt.close(fig)
    return paths


def run_study(name: str, out: str | Path, *, seeds: Sequence[int] | None = None,
              workers: int | None = None, scheduler: str | None = None,
              progress: bool = True, report: bool = True, train: dict | None = None,
              device: str = "xc7z020", mapping: str = COST_MAPPING):
    """Run (or resume) study ``name`` into ``out/runs`` and write ``out/report``.

    ``seeds``: default (0, 1, 2), (0,) for ``cost``; ``train``: TrainConfig fields replacing
    the study's schedule (a smaller variant, e.g. ``{"n_train": 64, "epochs": 2}``);
    ``device``, ``mapping``: the cost study's synthesis target and LUT mapping
    (:data:`fxemu.hw.tools.cost.MAPPINGS`). Returns ``(SweepResult, index.html path or
    None)``; the report covers the finished runs even when some failed.
    """
    from .sweep import run_sweep

    if name not in STUDIES:
        raise ValueError(msg("study", "unknown", name, "known: " + ", ".join(STUDIES)))
    out = Path(out)
    seeds = _DEFAULT_SEEDS.get(name, (0, 1, 2)) if seeds is None else seeds
    spec = STUDIES[name](seeds)
    spec["train"].update(train or {})
    res = run_sweep(spec, out / "runs", workers=workers, scheduler=scheduler,
                    progress=progress, cost=device if name == "cost" else None,
                    cost_mapping=mapping)
    index = None
    if report:
        from .report import write_report

        epochs = int(spec["train"]["epochs"])
        index = write_report([out / "runs"], out / "report", baseline="fw32bw32",
                             epochs=sorted({1, max(epochs // 2, 1), epochs}))
        if name == "rounding":
            _rounding_extras(out / "runs", out / "report")
        if name == "mx":
            _mx_extras(out / "runs", out / "report")
        if name == "lenet5":
            _lenet5_extras(out / "runs", out / "report")
        if name == "cost":
            write_cost_monotonic(out / "runs", out / "report")
    return res, index
