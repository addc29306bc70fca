"""Mac order ``fused:…`` (multi-term fused adders): description, the papers' examples, hardware
vectors, the Fraction oracle, and the plumbing through dot/matmul/conv2d and policies."""

from __future__ import annotations

from math import ldexp
from pathlib import Path

import numba
import numpy as np
import pytest
from reference.fused_oracle import fused_chain as oracle_chain

import fxemu as fx
from fxemu import lowering
from fxemu._kernels.fused import fused_chain
from fxemu.formats import parse_fused
from fxemu.policy import PRESETS, load_policy

GOLDEN = Path(__file__).parent / "golden" / "tensor_core_toolbox.npz"
F32 = fx.Float(8, 23)


def chain(a: list[float], b: list[float], c: float, order: str, acc: str = "float32") -> float:
    """The fused Mac's chain from the accumulator value ``c`` (one output of the kernel)."""
    params = lowering.fused_params(fx.Mac(acc, order=order))
    return fused_chain(np.asarray(a, np.float64), np.asarray(b, np.float64), c, *params)


# ---------------------------------------------------------------------------------------------
# The description


@pytest.mark.parametrize("name", sorted(fx.FUSED_PRESETS))
def test_presets_round_trip(name: str) -> None:
    mac = fx.Mac("float32", order=f"fused:{name}")
    assert mac.order == f"fused:{name}"
    assert mac.fused == fx.FUSED_PRESETS[name]
    assert fx.Mac("float32", order=str(mac.fused)) == mac


def test_generic_text_round_trips() -> None:
    rng = np.random.default_rng(1)
    for _ in range(200):
        f = fx.Fused(int(rng.integers(1, 64)), int(rng.integers(1, 40)), int(rng.integers(1, 52)),
                     str(rng.choice(["rtz", "rne", "rdn"])), str(rng.choice(["rtz", "rne"])),
                     None if rng.random() < 0.5 else int(rng.integers(0, 8)),
                     None if rng.random() < 0.5 else int(rng.integers(-140, 0)),
                     None if rng.random() < 0.5 else -6, None if rng.random() < 0.5 else -14)
        text = str(f)
        assert parse_fused(text) == f
        assert fx.Mac("float32", order=f).order == text


def test_preset_overrides_keep_the_preset_name() -> None:
    mac = fx.Mac("float32", order=" fused:hopper_fp8, eb=-14 ,ea=-14")
    assert mac.order == "fused:hopper_fp8,ea=-14,eb=-14"
    assert mac.fused.terms == 32 and mac.fused.emin_a == -14
    assert fx.Mac("float32", order="fused:32,align=13,out=13,emin=-132,ea=-6,eb=-6").order \
        == "fused:hopper_fp8"


@pytest.mark.parametrize(("kw", "match"), [
    ({"order": "fused:"}, "fused order must be fused:K or fused:PRESET"),
    ({"order": "fused:nope"}, "unknown fused preset; got 'nope'"),
    ({"order": "fused:0"}, "Fused terms: must be an int in 1..4096"),
    ({"order": "fused:4,align=x"}, "fused option align must be an integer"),
    ({"order": "fused:4,foo=1"}, "fused option must be key=value"),
    ({"order": "fused:4,round=up"}, "Fused align_rounding: must be one of"),
    ({"order": "fused:4096,align=50"}, "must be <= 58"),
    ({"acc": "ap_fixed<16,8>", "order": "fused:4"}, "Mac acc: a fused order needs a float"),
    ({"mul": "float16", "order": "fused:4"}, "Mac mul: a fused order adds exact products"),
    ({"acc": "float<8,23,rounding=stochastic>", "order": "fused:4"}, "deterministic"),
])
def test_invalid_descriptions_name_the_field(kw: dict, match: str) -> None:
    kw = {"acc": "float32", **kw}
    with pytest.raises(ValueError, match=match.replace("(", r"\(").replace("+", r"\+")):
        fx.Mac(**kw)


def _toml(d: dict, prefix: str = "") -> str:
    """A policy dict as TOML text (strings, ints and nested tables only)."""
    plain = [f"{k} = {v!r}".replace("'", '"') for k, v in d.items() if not isinstance(v, dict)]
    text = (f"[{prefix}]\n" if prefix else "") + "".join(line + "\n" for line in plain)
    for k, v in d.items():
        if isinstance(v, dict):
            text += _toml(v, f"{prefix}.{k}" if prefix else k)
    return text


@pytest.mark.parametrize(("kw", "err", "match"), [
    ({"terms": 4.0}, TypeError, "Fused terms: must be an int in 1..4096; got 4.0"),
    ({"terms": True}, TypeError, "Fused terms"),
    ({"terms": 4, "late": 1}, TypeError, "Fused late: must be a bool"),
    ({"terms": 4, "out_rounding": None}, TypeError, "Fused out_rounding: must be one of"),
    ({"terms": 4, "min_exp": -2000}, ValueError, "Fused min_exp: must be an int in -1100..1100"),
])
def test_fused_record_checks_types_and_ranges(kw: dict, err: type, match: str) -> None:
    with pytest.raises(err, match=match.replace(".", r"\.")):
        fx.Fused(**kw)


def test_policy_toml_names_a_fused_order(tmp_path: Path) -> None:
    d = PRESETS["fw32bw32"].to_dict()
    d["forward"]["dense"]["order"] = "fused:hopper_fp8, ea=-14,eb=-14"
    d["backward"]["conv_dw"]["order"] = "fused:16,align=20"
    p = tmp_path / "p.toml"
    p.write_text(_toml(d))
    pol = load_policy(p)
    assert pol.forward.dense.order == "fused:hopper_fp8,ea=-14,eb=-14"
    assert pol.backward.conv_dw.fused == fx.Fused(16, 20)
    assert load_policy(pol.to_dict()) == pol
    d["forward"]["conv"]["order"] = "fused:nope"
    p.write_text(_toml(d))
    with pytest.raises(ValueError, match=r"policy\.forward\.conv: Mac order: unknown fused preset"):
        load_policy(p)


# ---------------------------------------------------------------------------------------------
# Fasi, Higham, Mikaitis, Pranesh, "Numerical behavior of NVIDIA tensor cores", PeerJ CS 7:e330
# (2021): the experiments of their tc_test_numerics programs (V100; T4/A100 binary16 inputs,
# binary32 accumulator), with the results the paper reports for the hardware.

ONE, BELOW1_16 = 1.0, 1.0 - ldexp(1, -11)
MINSUB16 = ldexp(1, -24)


def _v(*xs: float) -> list[float]:
    return [*xs, *([0.0] * (16 - len(xs)))]  # one 16x16x16 wmma row: 16 products


def _fasi_cases(preset: str) -> list[tuple[str, list, list, float, float]]:
    a100 = preset != "v100_fp16"
    sub = 0.5 if a100 else 1.0  # the A100 program scales the tiny products by 1/2
    cases = [
        ("binary16 subnormal input", _v(MINSUB16), _v(4.0), 0.0, ldexp(1, -22)),
        ("binary32 subnormal accumulator", _v(), _v(), ldexp(1, -149), ldexp(1, -149)),
        ("subnormal output", _v(ldexp(1, -14)), _v(ONE), -ldexp(1, -15), ldexp(1, -15)),
        ("products exact", _v(BELOW1_16), _v(BELOW1_16), 0.0,
         1 - ldexp(1, -10) + ldexp(1, -22)),
        ("products exact, 4 terms", _v(*[BELOW1_16] * 4), _v(*[BELOW1_16] * 4), 0.0,
         4 * (1 - ldexp(1, -10) + ldexp(1, -22))),
        ("accumulated in binary32", _v(*[sub] * 4), _v(*[MINSUB16] * 4), 1.0, 1.0),
        ("round down, positive", _v(*[ONE] * 4), _v(2.0, ldexp(1, -23) + ldexp(1, -24)), 0.0,
         2.0),
        ("round up, negative", _v(*[ONE] * 4), _v(-2.0, -ldexp(1, -23) - ldexp(1, -24)), 0.0,
         -2.0),
        # extra alignment bits: none on V100, one on A100
        ("alignment bits", _v(ONE), _v(ONE), -(1 - ldexp(1, -24)),
         ldexp(1, -24) if a100 else ldexp(1, -23)),
        ("normalisation in addition", _v(*[ONE] * 4), _v(*[MINSUB16] * 4), 1 - ldexp(1, -24),
         1 + ldexp(1, -23)),
        ("normalisation in subtraction", _v(ONE, ONE), _v(ONE, -MINSUB16), -1 + ldexp(1, -24),
         0.0 if a100 else ldexp(1, -23)),
        ("carry out, third bit", _v(*[ONE] * 4), _v(1.0, 1.5, 1.75, 1.875), 1.875, 8.0),
        ("normalisation rounds down", _v(*[ONE] * 4), _v(*[ONE] * 4),
         1 + ldexp(1, -22) + ldexp(1, -23), 5.0),
        ("normalisation rounds up (negative)", _v(*[ONE] * 4), _v(*[-ONE] * 4),
         -1 - ldexp(1, -22) - ldexp(1, -23), -5.0),
    ]
    for i in range(4):  # the sum starts from the largest element, wherever it is
        b = [MINSUB16] * 4
        a = [sub] * 4
        a[i], b[i] = ONE, ONE
        cases.append((f"largest element at {i}", _v(*a), _v(*b), MINSUB16, 1.0))
        b = [ONE] * 4
        b[i] = ldexp(1, -23)
        cases.append((f"carry out, small term at {i}", _v(*[ONE] * 4), _v(*b),
                      1 + ldexp(1, -22) + ldexp(1, -23), 4 + ldexp(1, -21)))
    return cases


@pytest.mark.parametrize("preset", ["v100_fp16", "a100_fp16"])
def test_fasi_et_al_experiments(preset: str) -> None:
    for what, a, b, c, want in _fasi_cases(preset):
        got = chain(a, b, c, f"fused:{preset}")
        assert np.float64(got).view(np.uint64) == np.float64(want).view(np.uint64), \
            (what, got, want)


@pytest.mark.parametrize("preset", ["v100_fp16", "a100_fp16"])
def test_fasi_et_al_non_monotonic_sum(preset: str) -> None:
    """Their experiment D5: a larger accumulator input gives a smaller result."""
    if preset == "v100_fp16":
        a, b = _v(*[ONE] * 4), _v(*[MINSUB16] * 4)
    else:
        a, b = _v(*[0.5] * 4), _v(*[MINSUB16] * 3, ldexp(1, -23) + ldexp(1, -24))
    low = chain(a, b, 1 - ldexp(1, -24), f"fused:{preset}")
    high = chain(a, b, 1.0, f"fused:{preset}")
    assert high < low


# ---------------------------------------------------------------------------------------------
# Hardware outputs (Khattak & Mikaitis's toolbox, tests/golden/README.md)

TOOLBOX = [("V100_fp16", "fused:v100_fp16"), ("A100_fp16", "fused:a100_fp16"),
           ("A100_bf16", "fused:a100_bf16"), ("A100_tf32", "fused:a100_tf32"),
           ("H100_fp16", "fused:h100_fp16"), ("H100_bf16", "fused:h100_bf16"),
           ("H100_tf32", "fused:h100_tf32"), ("H100_E4M3", "fused:hopper_fp8"),
           ("H100_E5M2", "fused:hopper_fp8,ea=-14,eb=-14"), ("Ada_E4M3", "fused:ada_fp8"),
           ("Ada_E5M2", "fused:ada_fp8,ea=-14,eb=-14"), ("Ada_fp16", "fused:a100_fp16"),
           ("Ada_bf16", "fused:a100_bf16"), ("H200_fp16", "fused:h100_fp16"),
           ("H200_bf16", "fused:h100_bf16"), ("H200_tf32", "fused:h100_tf32"),
           ("H200_E4M3", "fused:hopper_fp8"), ("H200_E5M2", "fused:hopper_fp8,ea=-14,eb=-14"),
           ("B200_fp16", "fused:h100_fp16"), ("B200_bf16", "fused:h100_bf16"),
           ("B200_tf32", "fused:b200_tf32"), ("B200_E4M3", "fused:b200_fp8"),
           ("B200_E5M2", "fused:b200_fp8,ea=-14,eb=-14"),
           # binary16 accumulators: c rounded to binary16 on the way in, as the CUDA program does
           ("V100_fp16acc16", "fused:v100_fp16_acc16"), ("A100_fp16acc16", "fused:a100_fp16_acc16"),
           ("H100_fp16acc16", "fused:h100_fp16_acc16"), ("Ada_fp16acc16", "fused:a100_fp16_acc16"),
           ("H200_fp16acc16", "fused:h100_fp16_acc16"), ("B200_fp16acc16", "fused:h100_fp16_acc16")]


@pytest.mark.parametrize(("name", "order"), TOOLBOX)
def test_hardware_vectors(name: str, order: str) -> None:
    with np.load(GOLDEN) as z:
        a, b, c, d = (z[f"{name}_{k}"].view(np.float32).astype(np.float64) for k in "abcd")
    acc = "float16" if "acc16" in name else "float32"
    got = np.array([chain(a[i], b[i], c[i], order, acc) for i in range(len(d))])
    bad = np.flatnonzero(got.astype(np.float32).view(np.uint32) != d.astype(np.float32)
                         .view(np.uint32))
    assert bad.size == 0, (name, bad[:5])


# ---------------------------------------------------------------------------------------------
# The generic semantics against the Fraction oracle

def _operands(rng: np.random.Generator, fmt: fx.Float, n: int) -> np.ndarray:
    codes = rng.integers(0, 1 << fmt.width, n).astype(np.uint64)
    v = fx.from_bits(codes, fmt)
    v = np.where(np.isfinite(v), v, 0.0)
    return np.where(rng.random(n) < 0.3, 0.0, v)  # zero-heavy


def test_generic_fused_matches_the_fraction_oracle() -> None:
    rng = np.random.default_rng(7)
    fmts = [fx.parse(n) for n in ("float8_e4m3fn", "float8_e5m2", "float16", "bfloat16")]
    accs = [fx.parse(n) for n in ("float32", "bfloat16", "float16")]
    modes = ["rtz", "rne", "rna", "rdn", "rup", "rto"]
    checked = 0
    for _ in range(120):
        fa, fb = fmts[rng.integers(4)], fmts[rng.integers(4)]
        acc = accs[rng.integers(3)]
        f = fx.Fused(int(rng.integers(1, 24)), int(rng.integers(1, 30)),
                     int(rng.integers(1, 30)), str(rng.choice(modes)), str(rng.choice(modes)),
                     None if rng.random() < 0.5 else int(rng.integers(0, 4)),
                     None if rng.random() < 0.5 else int(rng.integers(-40, 4)),
                     None if rng.random() < 0.3 else fa.emin,
                     None if rng.random() < 0.3 else fb.emin, bool(rng.random() < 0.25))
        mac = fx.Mac(acc, order=f)
        k = int(rng.integers(0, 70))
        a = np.stack([_operands(rng, fa, k) for _ in range(3)])
        b = np.stack([_operands(rng, fb, k) for _ in range(2)], axis=1)
        got = fx.matmul(a, b, mac)
        for i in range(3):
            for j in range(2):
                want = oracle_chain(a[i], b[:, j], mac)
                assert np.float64(got[i, j]).view(np.uint64) == \
                    np.float64(want).view(np.uint64), (str(f), acc, a[i], b[:, j])
                checked += 1
    assert checked == 720


def test_wide_adders_and_extreme_floors_match_the_oracle() -> None:
    """float32 operands spread over 2^±100, float64 and float32 accumulators, adders up to
    the int64 limit, floors up to ±1100 (results beyond every double become ±inf)."""
    rng = np.random.default_rng(99)
    f32, f64 = fx.parse("float32"), fx.parse("float64")
    modes = ["rtz", "rne", "rdn", "rup", "rna", "rto"]
    for _ in range(100):
        terms = int(rng.integers(1, 300))
        carry = None if rng.random() < 0.5 else int(rng.integers(0, 57 - terms.bit_length()))
        align = int(rng.integers(1, 59 - terms.bit_length() - (carry or 0)))
        f = fx.Fused(terms, align, int(rng.integers(1, 53)), str(rng.choice(modes)),
                     str(rng.choice(modes)), carry,
                     None if rng.random() < 0.5 else int(rng.integers(-1100, 1100)),
                     None if rng.random() < 0.5 else -126, None if rng.random() < 0.5 else -126,
                     bool(rng.random() < 0.3))
        mac = fx.Mac(f64 if rng.random() < 0.5 else f32, order=f)
        k = int(rng.integers(0, 400))
        a = fx.quantize(rng.standard_normal(k) * 2.0 ** rng.integers(-100, 100, size=k), f32)
        b = fx.quantize(rng.standard_normal(k) * 2.0 ** rng.integers(-100, 100, size=k), f32)
        a[rng.random(k) < 0.2] = 0.0
        got, want = fx.dot(a, b, mac), oracle_chain(a, b, mac)
        assert np.float64(got).view(np.uint64) == np.float64(want).view(np.uint64), (str(f), k)


# ---------------------------------------------------------------------------------------------
# Plumbing


def test_dot_matmul_conv2d_agree() -> None:
    rng = np.random.default_rng(3)
    e4 = fx.parse("float8_e4m3fn")
    mac = fx.Mac("float32", order="fused:hopper_fp8")
    x = _operands(rng, e4, 2 * 3 * 6 * 6).reshape(2, 3, 6, 6)
    w = _operands(rng, e4, 4 * 3 * 3 * 3).reshape(4, 3, 3, 3)
    y = fx.conv2d(x, w, mac)
    cols = fx.arith.im2col(x, 3, 3)
    ref = fx.matmul(cols, w.reshape(4, -1).T, mac).reshape(2, 4, 4, 4).transpose(0, 3, 1, 2)
    assert np.array_equal(y.view(np.uint64), np.ascontiguousarray(ref).view(np.uint64))
    d = fx.dot(cols[5], w.reshape(4, -1)[2], mac)
    assert np.float64(d).view(np.uint64) == np.float64(ref[0, 2, 1, 1]).view(np.uint64)


def test_thread_count_invariance() -> None:
    rng = np.random.default_rng(4)
    e5 = fx.parse("float8_e5m2")
    a = _operands(rng, e5, 300 * 200).reshape(300, 200)
    b = _operands(rng, e5, 200 * 120).reshape(200, 120)
    mac = fx.Mac("float32", order="fused:ada_fp8,ea=-14,eb=-14")
    n = numba.get_num_threads()
    try:
        numba.set_num_threads(1)
        one = fx.matmul(a, b, mac)
    finally:
        numba.set_num_threads(n)
    assert np.array_equal(one.view(np.uint64), fx.matmul(a, b, mac).view(np.uint64))


def test_out_format_and_nonfinite_operands() -> None:
    mac = fx.Mac("float32", out="bfloat16", order="fused:4")
    got = fx.matmul([[1.0, ldexp(1, -9), np.inf], [1.0, 2.0, 3.0], [np.nan, 1.0, 1.0]],
                    [[1.0], [1.0], [1.0]], mac)
    assert got[0, 0] == np.inf and got[1, 0] == 6.0 and np.isnan(got[2, 0])
    r = fx.dot([1.0, ldexp(1, -9)], [1.0, 1.0], mac)  # 1 + 2^-9 in float32, then bfloat16
    assert r == 1.0
    assert np.isnan(fx.dot([np.inf, 1.0], [0.0, 1.0], mac))


def test_stochastic_out_follows_the_seed() -> None:
    mac = fx.Mac("float32", out="float<5,2,rounding=stochastic>", order="fused:a100_fp16")
    a = fx.quantize(np.linspace(-3, 3, 64).reshape(8, 8), "float16")
    one, two = fx.matmul(a, a, mac, seed=5), fx.matmul(a, a, mac, seed=5)
    assert np.array_equal(one.view(np.uint64), two.view(np.uint64))
    exact = fx.matmul(a, a, fx.Mac("float32", order="fused:a100_fp16"))
    assert np.all(np.abs(one - exact) <= np.abs(exact) * 0.25)


def test_products_must_be_exact_in_double() -> None:
    mac = fx.Mac("float64", order="fused:4")
    x = 1 + ldexp(1, -40)
    with pytest.raises(ValueError, match=r"Mac order fused:4: needs products exact in float64"):
        fx.dot([x], [x], mac)


def test_zero_results_are_positive_and_empty_dot_is_zero() -> None:
    mac = fx.Mac("float32", order="fused:hopper_fp8")
    assert np.signbit(fx.dot([-1.0, 1.0, -0.0], [1.0, 1.0, 1.0], mac)) == np.False_
    assert np.signbit(fx.dot([-0.0], [1.0], mac)) == np.False_
    assert fx.matmul(np.zeros((2, 0)), np.zeros((0, 3)), mac).tolist() == [[0.0] * 3] * 2


def test_carry_bits_wrap_the_adder() -> None:
    # 4 products of 1 aligned with 2 fraction bits: the integer sum 16 needs 6 bits; a
    # 3 + 2 + 0 = 5-bit register wraps it to -16
    mac = fx.Mac("float32", order=fx.Fused(4, align_bits=2, carry_bits=0))
    assert fx.dot([1.0] * 4, [1.0] * 4, mac) == -4.0
    assert fx.dot([1.0] * 4, [1.0] * 4, fx.Mac("float32", order=fx.Fused(4, 2, carry_bits=1))) \
        == 4.0


def test_training_with_fused_macs() -> None:
    """A policy with fused Macs for every product trains on the emulated backend."""
    from fxemu.train import TrainConfig, train

    d = PRESETS["fw16bw16"].to_dict()
    for stage in ("forward", "backward"):
        for v in d[stage].values():
            if isinstance(v, dict):
                v["acc"], v["order"] = "float32", "fused:a100_fp16"
    cfg = TrainConfig(policy=d, backend="emulated", n_train=32, n_test=32, epochs=1,
                      batch_size=32, seed=1)
    res = train(cfg, progress=False)
    assert np.isfinite(res["metrics"][0]["train_loss"])


def test_benchmark_script_runs(capsys: pytest.CaptureFixture) -> None:
    """benchmarks/bench_fused.py --quick runs end to end (no timing claims); where mmaemu is
    installed its outputs agree with fxemu's."""
    import importlib.util

    path = Path(__file__).resolve().parent.parent / "benchmarks" / "bench_fused.py"
    spec = importlib.util.spec_from_file_location("bench_fused", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    assert module.main(["--quick"]) == 0
    out = capsys.readouterr().out
    assert "| fxemu fused:hopper_fp8 (e4m3) |" in out and "| fxemu sequential (fp16) |" in out
    assert "mmaemu row skipped" in out or "0 of 64 outputs differ" in out
