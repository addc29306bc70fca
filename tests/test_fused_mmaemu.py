"""``fused:hopper_fp8`` / ``fused:ada_fp8`` / ``fused:b200_fp8`` against mmaemu's chain model
(bit-exact NVIDIA FP8 tensor-core numerics, validated by its authors on RTX 4060 and H100
hardware; its ``b200_mma_sync`` preset is experimental there): every pair of
rows of random FP8 operand matrices, K from 1 to 256, uniform, subnormal-heavy and zero-heavy
codes, E4M3, E5M2 and mixed operands: 3 888 dot products per preset here;
``python benchmarks/bench_fused.py --mmaemu`` checks 37 632 per preset (every K from 1 to 256)."""

from __future__ import annotations

import dataclasses
import warnings

import numpy as np
import pytest

import fxemu as fx

torch = pytest.importorskip("torch", reason="mmaemu runs on PyTorch")
chain = pytest.importorskip("mmaemu.model.chain", reason="mmaemu is the FP8 tensor-core "
                            "reference (pip install mmaemu)")

FMT = {"e4m3": fx.parse("float8_e4m3fn"), "e5m2": fx.parse("float8_e5m2")}
EMIN = {"e4m3": -6, "e5m2": -14}
PAIRS = [("e4m3", "e4m3"), ("e5m2", "e5m2"), ("e4m3", "e5m2")]


def _codes(rng: np.random.Generator, name: str, shape: tuple, kind: str) -> np.ndarray:
    fmt = FMT[name]
    codes = rng.integers(0, 256, shape).astype(np.uint64)
    if kind == "subnormal":  # exponent field 0 for most elements
        sub = rng.random(shape) < 0.7
        codes = np.where(sub, codes & np.uint64(0x80 | ((1 << fmt.man_bits) - 1)), codes)
    v = fx.from_bits(codes, fmt)
    v = np.where(np.isfinite(v), v, 0.0)
    if kind == "zero":
        v = np.where(rng.random(shape) < 0.75, 0.0, v)
    return v


OURS = {"hopper": "hopper_fp8", "ada": "ada_fp8", "b200_mma_sync": "b200_fp8"}


def _order(preset: str, fa: str, fb: str) -> str:
    base = fx.FUSED_PRESETS[OURS[preset]]
    return str(dataclasses.replace(base, emin_a=EMIN[fa], emin_b=EMIN[fb]))


def _check(preset: str, ks: list[int], n: int, seed: int) -> int:
    rng = np.random.default_rng(seed)
    count = 0
    for fa, fb in PAIRS:
        mac = fx.Mac("float32", order=_order(preset, fa, fb))
        for k in ks:
            kind = ("uniform", "subnormal", "zero")[k % 3]
            a = _codes(rng, fa, (n, k), kind)
            b = _codes(rng, fb, (n, k), kind)
            ours = fx.matmul(a, b.T, mac)  # (n, n): every row of a with every row of b
            ta = torch.tensor(a)[:, None, :].expand(n, n, k)
            tb = torch.tensor(b)[None, :, :].expand(n, n, k)
            with warnings.catch_warnings():  # b200_mma_sync is "experimental" in mmaemu
                warnings.simplefilter("ignore")
                ref = chain.dot(ta, tb, preset=preset, fmt=(fa, fb)).numpy()
            bad = np.flatnonzero(ours.astype(np.float32).view(np.uint32) != ref.view(np.uint32))
            assert bad.size == 0, (preset, fa, fb, k, kind, ours.flat[bad[0]], ref.flat[bad[0]])
            assert np.array_equal(ours, ref.astype(np.float64))  # float32 values exactly
            count += n * n
    return count


@pytest.mark.parametrize("preset", ["hopper", "ada", "b200_mma_sync"])
def test_matches_mmaemu(preset: str) -> None:
    ks = [1, 2, 7, 15, 16, 17, 31, 32, 33, 64, 100, 129, 200, 256, 255, 48]
    assert _check(preset, ks, 9, 11) == 3 * len(ks) * 81
