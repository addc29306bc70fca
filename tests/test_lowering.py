"""Lowering (formats and Macs into typed kernel parameters) and the hostile inputs it guards:
unbounded ``chunk:N``, NaN into Macs without NaN, masked arrays, empty conv kernels, and a
policy load that must not import Numba."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import numba
import numpy as np
import pytest

import fxemu as fx
import fxemu.arith
import fxemu.formats
from fxemu import lowering
from fxemu._kernels.params import FixedParams, FloatParams, FormatVec

FIX = fx.Fixed(16, 8, rounding="rnd_conv", overflow="sat")

# ---------------------------------------------------------------------------------------------
# Mac: a pure description next to the formats, chunk:N bounded


def test_mac_lives_with_the_formats() -> None:
    assert fx.Mac is fxemu.formats.Mac is fxemu.arith.Mac
    m = fx.Mac("float16", mul="bfloat16", order=" chunk:7 ")
    assert (m.order, m.chunk, m.out_format) == ("chunk:7", 7, fx.parse("float16"))


@pytest.mark.parametrize("order", ["chunk:18446744073709551619", f"chunk:{2**63}",
                                   f"chunk:{2**63 - 1}", f"chunk:{2**31}", "chunk:0",
                                   "chunk:" + "9" * 5000])
def test_chunk_size_is_bounded_when_the_mac_is_made(order: str) -> None:
    with pytest.raises(ValueError, match=r"^Mac order: chunk size N must be in 1\.\.2147483647; "
                                         r"got 'chunk:[0-9]{1,40}(\.\.\.)?'$"):
        fx.Mac("ap_fixed<32,16>", order=order)


def test_largest_chunk_size_is_accepted_and_runs() -> None:
    m = fx.Mac("float16", order=f"chunk:{2**31 - 1}")
    assert m.chunk == 2**31 - 1
    seq = fx.Mac("float16")
    a = np.array([1.0, 2.0**-11, 2.0**-11])
    assert fx.dot(a, np.ones(3), m) == fx.dot(a, np.ones(3), seq)


# ---------------------------------------------------------------------------------------------
# NaN into Macs whose formats have no NaN


def _nan_cases(x_bad: np.ndarray) -> list:
    img = np.ones((1, 1, 4, 4))
    img_bad = img.copy()
    img_bad[0, 0, 1, 1] = x_bad
    w = np.ones((2, 1, 3, 3))
    g = np.ones((1, 2, 2, 2))
    g_bad = g.copy()
    g_bad[0, 1, 1, 0] = x_bad
    return [
        ("a", lambda m, **k: fx.dot([x_bad, 1.0], [1.0, 1.0], m, **k)),
        ("B", lambda m, **k: fx.matmul(np.ones((2, 2)), [[1.0, x_bad], [1.0, 1.0]], m, **k)),
        ("x", lambda m, **k: fx.conv2d(img_bad, w, m, **k)),
        ("g", lambda m, **k: fx.conv2d_grad_weight(img, g_bad, (3, 3), m, **k)),
        ("g", lambda m, **k: fx.conv2d_grad_input(g_bad, w, (4, 4), m, **k)),
    ]


@pytest.mark.parametrize("case", range(5))
@pytest.mark.parametrize("mac", [fx.Mac(FIX), fx.Mac("float16", out=FIX),
                                 fx.Mac("float32", mul=fx.Float(4, 3, special="none")),
                                 fx.Mac(fx.Float(5, 2, special="none"), order="pairwise")],
                         ids=str)
def test_nan_into_a_mac_without_nan_raises_naming_the_operand(case: int, mac: fx.Mac) -> None:
    name, fn = _nan_cases(np.nan)[case]
    with pytest.raises(ValueError, match=rf"^{name}: contains NaN but the Mac \(acc=.*\) has "
                                         r"no NaN; got 'nan' \(pass nan='hls'"):
        fn(mac)
    fn(mac, nan="hls")  # the vendor behaviour, as before


@pytest.mark.parametrize("fn", [
    lambda m, **k: fx.dot([np.inf, 1.0], [0.0, 1.0], m, **k),
    lambda m, **k: fx.matmul([[np.inf, -np.inf]], [[1.0], [1.0]], m, **k),
    lambda m, **k: fx.conv2d_grad_input(np.ones((1, 1, 2, 2)), np.full((1, 1, 3, 3), np.inf),
                                        (4, 4), m, **k),  # the padding's zeros times inf
])
def test_nan_made_inside_a_mac_without_nan_raises(fn) -> None:
    with pytest.raises(ValueError, match=r"a product or sum is NaN \(inf·0 or inf - inf\) but "
                                         r"the Mac \(acc=ap_fixed<16,8"):
        fn(fx.Mac(FIX))
    fn(fx.Mac(FIX), nan="hls")


def test_nan_hls_keeps_the_vendor_reading() -> None:
    for acc in (FIX, fx.Fixed(8, 4), fx.Fixed(12, 2, overflow="sat_zero")):
        got = fx.dot([np.nan], [1.0], fx.Mac(acc), nan="hls")
        assert got == fx.quantize(np.nan, acc, nan="hls")


def test_formats_with_nan_and_infinite_results_are_unchanged() -> None:
    assert np.isnan(fx.dot([np.nan, 1.0], [1.0, 1.0], fx.Mac("float16")))
    assert np.isnan(fx.dot([np.inf], [0.0], fx.Mac("bfloat16", out="float8_e4m3fn")))
    assert fx.dot([np.inf, 1.0], [2.0, 1.0], fx.Mac(FIX)) == FIX.max  # inf but no NaN: saturates
    with pytest.raises(ValueError, match=r"^nan: must be 'raise' or 'hls'"):
        fx.dot([1.0], [1.0], fx.Mac(FIX), nan="ignore")


# ---------------------------------------------------------------------------------------------
# masked arrays and empty conv kernels

_MASKED = np.ma.masked_array([1.0, 2.0, 3.0], mask=[False, True, False])


@pytest.mark.parametrize("call", [
    lambda: fx.quantize(_MASKED, "float16"),
    lambda: fx.to_bits(_MASKED, FIX),
    lambda: fx.from_bits(np.ma.masked_array([1, 2], mask=[True, False]), "float16"),
    lambda: fx.add(_MASKED, 1.0, "float16"),
    lambda: fx.fma(1.0, 2.0, _MASKED, FIX),
    lambda: fx.dot(_MASKED, np.ones(3), fx.Mac("float16")),
    lambda: fx.matmul(np.ones((2, 3)), _MASKED.reshape(3, 1), fx.Mac("float16")),
    lambda: fx.maxpool2d(np.ma.masked_array(np.ones((1, 1, 2, 2)))),
])
def test_masked_arrays_are_refused(call) -> None:
    with pytest.raises(TypeError, match="masked arrays are not supported"):
        call()


@pytest.mark.parametrize("shape", [(1, 1, 0, 0), (1, 1, 0, 2), (0, 1, 2, 2)])
def test_empty_conv_kernels_are_refused(shape: tuple) -> None:
    x = np.ones((1, 1, 4, 4))
    mac = fx.Mac("float16")
    with pytest.raises(ValueError, match=r"^w: the conv kernel .* must have no zero dimension"):
        fx.conv2d(x, np.ones(shape), mac)
    with pytest.raises(ValueError, match=r"^w: the conv kernel .* must have no zero dimension"):
        fx.conv2d_grad_input(np.ones((1, shape[0], 3, 3)), np.ones(shape), (4, 4), mac)


@pytest.mark.parametrize("size", [(0, 0), (0, 3), (3, 0)])
def test_empty_kernel_size_of_the_weight_gradient_is_refused(size: tuple) -> None:
    x = np.ones((1, 1, 4, 4))
    g = np.ones((1, 2, 4 - size[0] + 1, 4 - size[1] + 1))
    with pytest.raises(ValueError, match=r"^kernel_size: the conv kernel must have no zero"):
        fx.conv2d_grad_weight(x, g, size, fx.Mac("float16"))


# ---------------------------------------------------------------------------------------------
# lowering: one typed, cached parameter object per kind


def test_one_cached_typed_parameter_object_per_kind() -> None:
    fixed = [FIX, fx.Fixed(8, 3, False, "trn", "wrap"), fx.Fixed(64, 1, lib="ac")]
    floats = [fx.parse(n) for n in ("float16", "bfloat16", "float8_e4m3fnuz", "float32")]
    for f in fixed + floats:
        assert lowering.lower(f) is lowering.lower(f)
        assert lowering.format_vec(f, 62) is lowering.format_vec(f, 62)
    assert all(isinstance(lowering.lower(f), FixedParams) for f in fixed)
    assert all(isinstance(lowering.lower(f), FloatParams) for f in floats)
    # Numba sees one type per kind, so a kernel compiles once per kind, whatever the format
    assert len({numba.typeof(lowering.lower(f)) for f in fixed}) == 1
    assert len({numba.typeof(lowering.lower(f)) for f in floats}) == 1
    vecs = {numba.typeof(lowering.format_vec(f, 62)) for f in fixed + floats}
    assert len(vecs) == 1 and isinstance(vecs.pop(), numba.types.NamedUniTuple)
    assert FormatVec._fields[0] == "kind"
    m = fx.Mac(FIX, mul="ap_fixed<12,4>", out="float16", order="chunk:5")
    lm = lowering.lower_mac(m, 62)
    assert lm is lowering.lower_mac(m, 62)
    assert (lm.use_mul, lm.chunk, lm.lacks_nan) == (True, 5, True)
    assert lm.acc == lowering.format_vec(FIX, 62)


def test_sr_key_validates_and_keys_only_stochastic_formats() -> None:
    assert lowering.sr_key(FIX, 5, None) == (62, np.uint64(0))
    sr = fx.Fixed(8, 4, rounding="stochastic")
    assert lowering.sr_key(sr, 5, 3)[0] == 3 and lowering.sr_key(sr, 5, 3)[1] != 0
    with pytest.raises(ValueError, match=r"^sr_bits: must be in 1\.\.62"):
        lowering.sr_key(sr, 5, 63)
    with pytest.raises(TypeError, match=r"^seed: must be an int or None"):
        lowering.sr_key(sr, "5", None)


def test_conversion_kernels_load_from_the_disk_cache_in_a_new_process(tmp_path: Path) -> None:
    """The kernels typed on the parameter objects are cached on disk: a second process
    compiles nothing."""
    code = ("import numpy as np, fxemu as fx\n"
            "from fxemu import lowering\n"
            "x = np.linspace(-3, 3, 1000)\n"
            "for f in ('ap_fixed<10,3,AP_RND,AP_SAT>', 'float16'):\n"
            "    fx.quantize(x, f)\n"
            "    k, _ = lowering.converter(fx.parse(f), False)\n"
            "    print(sum(k.serial.stats.cache_hits.values()),\n"
            "          sum(k.serial.stats.cache_misses.values()))\n")
    env = {**os.environ, "NUMBA_CACHE_DIR": str(tmp_path)}
    runs = [subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True,
                           timeout=600, check=True).stdout.split() for _ in range(2)]
    assert runs[0] == ["0", "1", "0", "1"]  # compiled, then stored
    assert runs[1] == ["1", "0", "1", "0"]  # loaded from the cache


# ---------------------------------------------------------------------------------------------
# loading a policy does not import Numba


def test_formats_and_policy_load_without_numba() -> None:
    """``import fxemu``, ``fxemu.formats`` and ``fxemu.policy`` (with a preset and a Mac)
    import no Numba."""
    code = ("import sys\n"
            "import fxemu, fxemu.formats, fxemu.policy\n"
            "assert fxemu.Mac is fxemu.formats.Mac\n"
            "p = fxemu.policy.load_policy('fixed16')\n"
            "m = fxemu.formats.Mac('float16', order='chunk:4')\n"
            "assert p.forward.conv.acc is not None and m.chunk == 4\n"
            "print('numba' in sys.modules, 'fxemu.arith' in sys.modules)\n")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         timeout=120, check=True).stdout.split()
    assert out == ["False", "False"]
