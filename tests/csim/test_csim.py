"""The ``csim`` backend: the HLS kernel compiled with g++ trains bit-identically to the emulator."""

from __future__ import annotations

import shutil
import subprocess
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest
from fxemu.hw import csim as hwcsim
from fxemu.hw import layout
from fxemu.hw.codegen import policy_header
from fxemu.hw.tools.golden import write_golden

import fxemu as fx
from fxemu.arith import Mac
from fxemu.backends import get_backend
from fxemu.data import load
from fxemu.nn import Params, init_params, train_step
from fxemu.nn.model import forward
from fxemu.policy import PRESETS, Policy
from fxemu.train import train

pytestmark = pytest.mark.csim

#: A fixed-point and a float policy (half data, float32 accumulators, half master weights).
POLICIES = ["fixed16", "fw16bw16"]


def _codes(p: Params, policy: Policy) -> dict[str, np.ndarray]:
    return {k: fx.to_bits(getattr(p, k), policy.update.master) for k in Params.NAMES}


def _steps(policy: Policy, cs, steps: int, seed: int) -> None:
    """``steps`` SGD steps in csim and emulated on MNIST batches of 1..4 samples; the master
    weights' codes must agree after every step."""
    em = get_backend("emulated", policy, seed)
    data = load("embedded", n_train=4 * steps, n_test=1)
    p0 = init_params(seed)
    pe = Params(**{k: em.master(v) for k, v in p0.arrays().items()})
    pc = Params(**{k: cs.master(v) for k, v in p0.arrays().items()})
    start = _codes(pe, policy)
    at = 0
    for step in range(steps):
        b = (4, 3, 1)[step % 3]
        x, y = data.x_train[at:at + b], data.y_train[at:at + b]
        at += b
        pe, le, ce = train_step(em, pe, x, y, 0.05, step)
        pc, lc, cc = train_step(cs, pc, x, y, 0.05, step)
        want, got = _codes(pe, policy), _codes(pc, policy)
        for k in Params.NAMES:
            np.testing.assert_array_equal(got[k], want[k], err_msg=f"step {step}: {k}")
        assert (lc, cc) == (le, ce), f"step {step}: loss/correct"
    moved = sum(int((start[k] != want[k]).sum()) for k in Params.NAMES)
    assert moved > 100, f"only {moved} weights changed in {steps} steps"


@pytest.mark.parametrize("name", POLICIES)
def test_csim_and_emulated_weights_bit_identical_every_step(csim, name: str) -> None:
    _steps(PRESETS[name], csim(name), steps=21, seed=1)


def _extremes(p: Params, policy: Policy, case: str) -> Params:
    m = policy.update.master
    tiny = m.smallest_subnormal if isinstance(m, fx.Float) else m.step
    if case == "edges":  # signed zeros, the smallest subnormal, ±max: saturation, overflow
        p.conv_b[:3] = [-0.0, m.max, -m.max]
        p.dense_b[0] = tiny
        p.dense_w[0, :5] = [-0.0, tiny, -tiny, 6.1e-5, -m.max]
        p.dense_w[1, :3] = m.max
    elif case == "inf":  # an infinite bias: inf and NaN logits, NaN gradients
        p.dense_b[3] = np.inf
    else:  # a NaN and a -inf weight
        p.conv_w[2, 0, 1, 1] = np.nan
        p.dense_w[4, 7] = -np.inf
    return Params(**{k: fx.quantize(v, m, nan="hls") for k, v in p.arrays().items()})


@pytest.mark.parametrize(("name", "case"), [("fixed16", "edges"), ("fw16bw16", "edges"),
                                            ("fw16bw16", "inf"), ("fw16bw16", "nan")])
def test_csim_special_values_bit_identical(csim, name: str, case: str) -> None:
    """±0, subnormals, ±max, inf and NaN weights: the datapath's IEEE corner cases (and fixed
    saturation) agree with the emulator code for code."""
    pol = PRESETS[name]
    cs, em = csim(name), get_backend("emulated", pol, 0)
    p = _extremes(Params(**{k: em.master(v) for k, v in init_params(5).arrays().items()}), pol,
                  case)
    data = load("embedded", n_train=8, n_test=1)
    pe, pc = p.copy(), p.copy()
    for step in range(2):
        x, y = data.x_train[4 * step:4 * step + 4], data.y_train[4 * step:4 * step + 4]
        with np.errstate(all="ignore"):  # NaN logits in softmax_xent
            pe, _, _ = train_step(em, pe, x, y, 0.05, step)
            pc, _, _ = train_step(cs, pc, x, y, 0.05, step)
        want, got = _codes(pe, pol), _codes(pc, pol)
        for k in Params.NAMES:
            np.testing.assert_array_equal(got[k], want[k], err_msg=f"step {step}: {k}")


#: Every reduction order and Mac part the datapath has: pairwise (with exact products added
#: pairwise in float), chunk:N, exact, a rounded product (mul) and a rounded result (out).
_FX = "ap_fixed<32,16,AP_RND_CONV,AP_SAT,0>"
ORDER_POLICIES = {
    "fixed_orders": replace(PRESETS["fixed16"], name="fixed_orders", forward=replace(
        PRESETS["fixed16"].forward, conv=Mac(_FX, order="pairwise"),
        dense=Mac(_FX, mul="ap_fixed<24,10,AP_RND,AP_SAT,0>", order="chunk:100")),
        backward=replace(PRESETS["fixed16"].backward,
                         dense_dw=Mac("ap_fixed<28,14,AP_TRN,AP_WRAP,0>", order="pairwise"),
                         dense_dx=Mac(_FX, out="ap_fixed<20,8,AP_RND_CONV,AP_SAT,0>",
                                      order="chunk:3"),
                         conv_dw=Mac(_FX, order="exact"))),
    "float_orders": replace(PRESETS["fw16bw16"], name="float_orders", forward=replace(
        PRESETS["fw16bw16"].forward, conv=Mac("float32", order="pairwise"),
        dense=Mac("float32", mul="float32", order="chunk:100")),
        backward=replace(PRESETS["fw16bw16"].backward,
                         dense_dw=Mac("float32", order="pairwise"),
                         dense_dx=Mac("float32", out="bfloat16", order="chunk:3"),
                         conv_dw=Mac("float32", order="exact"))),
}


@pytest.mark.slow
@pytest.mark.parametrize("name", sorted(ORDER_POLICIES))
def test_csim_every_reduction_order_bit_identical(csim, name: str) -> None:
    policy = ORDER_POLICIES[name]
    _steps(policy, csim(policy), steps=6, seed=2)


def test_fxemu_train_csim_reaches_the_emulated_weights(csim, tmp_path: Path) -> None:
    """Through the trainer: run directory, evaluation in chunks of BATCH_MAX, snapshots."""
    csim("fixed16")  # built (or cached) once
    cfg = {"policy": "fixed16", "n_train": 24, "n_test": layout.BATCH_MAX + 4, "epochs": 1,
           "batch_size": 8, "lr": 0.05, "seed": 3}
    res = {b: train({**cfg, "backend": b}, tmp_path / b, progress=False)
           for b in ("csim", "emulated")}
    keep = ("train_loss", "train_acc", "test_loss", "test_acc")
    assert [{k: m[k] for k in keep} for m in res["csim"]["metrics"]] == \
        [{k: m[k] for k in keep} for m in res["emulated"]["metrics"]]
    for f in ("epoch_000.npz", "epoch_001.npz"):
        a, b = np.load(tmp_path / "csim" / "weights" / f), np.load(tmp_path / "emulated" /
                                                                   "weights" / f)
        for k in Params.NAMES:
            np.testing.assert_array_equal(a[k], b[k], err_msg=f"{f}: {k}")


def test_forward_in_chunks_matches_emulated(csim) -> None:
    pol = PRESETS["fw16bw16"]
    cs, em = csim("fw16bw16"), get_backend("emulated", pol, 0)
    p = Params(**{k: em.master(v) for k, v in init_params(4).arrays().items()})
    x = load("embedded", n_train=layout.BATCH_MAX + 3, n_test=1).x_train
    z_em, _ = forward(em, p, x)
    z_cs, _ = forward(cs, p, x)
    act = pol.forward.activation
    np.testing.assert_array_equal(fx.to_bits(z_cs, act), fx.to_bits(z_em, act))


@pytest.mark.parametrize("name", POLICIES)
def test_testbench_on_golden_vectors(csim, name: str, tmp_path: Path) -> None:
    pol = PRESETS[name]
    csim(name)
    exe = hwcsim.build_testbench(pol)  # links the kernel object the library was built from
    gold = write_golden(pol, tmp_path / "golden.bin", n=3, steps=2)
    ok = subprocess.run([str(exe), str(gold)], capture_output=True, text=True, check=False)
    assert ok.returncode == 0, ok.stdout + ok.stderr
    assert "PASS: 2 steps of batch 3" in ok.stdout
    words = np.fromfile(gold, "<u8")
    words[-1] ^= np.uint64(1)  # the last weight of the last step, off by one code
    words.tofile(tmp_path / "bad.bin")
    bad = subprocess.run([str(exe), str(tmp_path / "bad.bin")], capture_output=True, text=True,
                         check=False)
    assert bad.returncode == 1, bad.stdout
    assert "step 1 params[20409]" in bad.stdout and "1 of 20410 codes differ" in bad.stdout
    words[:-7].tofile(tmp_path / "short.bin")
    short = subprocess.run([str(exe), str(tmp_path / "short.bin")], capture_output=True,
                           text=True, check=False)
    assert short.returncode == 2 and "truncated" in short.stderr


def test_build_cache_hit_rebuild_reload_and_compiler_errors(csim, tmp_path: Path) -> None:
    pol = PRESETS["fixed16"]
    lib = csim("fixed16").library
    stamp = lib.stat().st_mtime_ns
    assert hwcsim.build(pol) == lib and lib.stat().st_mtime_ns == stamp  # a cache hit
    assert csim("fw16bw16").library.parent != lib.parent  # the policy is in the key
    # an edited source builds a new library (unoptimised here, to keep the test short),
    # which loads beside the old one and computes the same
    src = tmp_path / "src"
    shutil.copytree(hwcsim.KERNEL_DIR, src)
    with open(src / "train_step.cpp", "a") as fh:
        fh.write("\n// an edit\n")
    fast = ("-std=c++14", "-O0", "-fPIC", "-w")
    lib2 = hwcsim.build(pol, sources=src, cache=tmp_path / "cache", flags=fast)
    assert lib2 != lib and lib2.is_file()
    k1, k2 = hwcsim.CsimKernel(lib), hwcsim.CsimKernel(lib2)
    outs = []
    for k in (k1, k2):
        bufs = {b: np.zeros(layout.buffer_words(b, 2), np.uint64) for b in layout.BUFFERS}
        rng = np.random.default_rng(0)
        bufs["x"][:] = fx.to_bits(rng.integers(0, 256, bufs["x"].size) / 255.0,
                                  pol.forward.input)
        bufs["params"][:] = fx.to_bits(fx.quantize(rng.normal(0, 0.1, layout.PARAM_WORDS),
                                                   pol.update.master), pol.update.master)
        k.run(layout.OP_FORWARD, 2, 0.01, *(bufs[b] for b in layout.BUFFERS))
        outs.append(bufs["logits"].copy())
    np.testing.assert_array_equal(outs[0], outs[1])
    assert outs[0].any()
    with pytest.raises(ValueError, match=r"csim kernel: n must be in 1\.\.256"):
        k1.run(0, 0, 0.01, *(bufs[b] for b in layout.BUFFERS))
    # a compile error reports the compiler's message
    text = (src / "train_step.cpp").read_text()
    (src / "train_step.cpp").write_text('#include "fxemu_no_such_header.h"\n' + text)
    with pytest.raises(hwcsim.BuildError, match=r"fxemu_no_such_header\.h: No such file"):
        hwcsim.build(pol, sources=src, cache=tmp_path / "cache", flags=fast)


def test_cache_key_covers_compiler_headers_and_flags() -> None:
    from fxemu.hw.toolchain import Toolchain

    tc = Toolchain("g++", "g++ 12", (), "h0")
    hdr = policy_header(PRESETS["fixed16"])
    base = hwcsim._key(tc, hdr, hwcsim.CXX_FLAGS, hwcsim.KERNEL_DIR)
    assert base == hwcsim._key(tc, hdr, hwcsim.CXX_FLAGS, hwcsim.KERNEL_DIR)
    others = [hwcsim._key(replace(tc, version="g++ 13"), hdr, hwcsim.CXX_FLAGS, hwcsim.KERNEL_DIR),
              hwcsim._key(replace(tc, headers_digest="h1"), hdr, hwcsim.CXX_FLAGS,
                          hwcsim.KERNEL_DIR),
              hwcsim._key(tc, hdr, ("-O1",), hwcsim.KERNEL_DIR),
              hwcsim._key(tc, policy_header(PRESETS["fw16bw16"]), hwcsim.CXX_FLAGS,
                          hwcsim.KERNEL_DIR)]
    assert base not in others and len(set(others)) == len(others)


def _policy(**changes) -> Policy:
    d = PRESETS["fw16bw16"].to_dict()
    for path, v in changes.items():
        stage, role = path.split("__")
        d[stage][role] = v
    return Policy.from_dict(d)


@pytest.mark.parametrize(("policy", "match"), [
    (PRESETS["fixed16_sr"], r"update.master: stochastic rounding has no C\+\+ type mode"),
    (_policy(update__sr_bits=4), "update.sr_bits: stochastic rounding is not in the datapath"),
    (_policy(forward__input="ap_fixed<16,8>"), "must be all fixed point or all floats"),
    (_policy(backward__grad="float<5,10,subnormals=false>"), "FTZ"),
    (_policy(update__master="float<5,10,rounding=rtz>"), "rounds to nearest even only"),
    (_policy(forward__dense={"acc": "bfloat16"}), "must hold its operand format float16"),
    (Policy.from_dict({**PRESETS["fixed16"].to_dict(), "forward": {
        **PRESETS["fixed16"].to_dict()["forward"], "input": "ac_fixed<16,8,true>"}}),
     "must be all ap_fixed or all ac_fixed"),
])
def test_policies_the_datapath_cannot_run_are_refused_before_compiling(
        policy: Policy, match: str) -> None:
    with pytest.raises(ValueError, match=match):
        get_backend("csim", policy)


def test_host_side_limits(csim) -> None:
    cs = csim("fixed16")
    p = Params(**{k: cs.master(v) for k, v in init_params(0).arrays().items()})
    x = np.zeros((2, 1, 28, 28))
    with pytest.raises(ValueError, match=r"lr: the accelerator multiplies exactly by a learning"):
        train_step(cs, p, x, np.zeros(2, int), 1000.0, 0)
    with pytest.raises(ValueError, match=r"batch: the accelerator takes 1\.\.256 samples"):
        train_step(cs, p, np.zeros((257, 1, 28, 28)), np.zeros(257, int), 0.01, 0)
    with pytest.raises(NotImplementedError, match="runs the whole network step"):
        cs.conv2d(x, p.conv_w, p.conv_b, None, cs.policy)
