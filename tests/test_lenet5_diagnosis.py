"""The LeNet-5 fixed16 diagnosis (fxemu.analysis.lenet5_diagnosis): its measures on a float64
run (equal to the reference by construction) and the finding it documents — ap_fixed<16,8>
gradients underflow in LeNet-5's backward pass, gradients in ap_fixed<16,0> do not."""

from __future__ import annotations

import numpy as np
import pytest

pytest.importorskip("pandas")
pytest.importorskip("torch")

from fxemu.analysis.lenet5_diagnosis import diagnose, summarize
from fxemu.analysis.studies import lenet5_fix_policy

_KW = {"data": "embedded", "n_train": 200, "batch_size": 100}


def test_float64_run_is_its_own_reference() -> None:
    df = diagnose("float64", steps=2, **_KW)
    assert list(df["layer"]) == ["conv1", "conv2", "fc1", "fc2", "fc3"] * 2
    assert list(df["step"]) == [0] * 5 + [1] * 5
    np.testing.assert_allclose(df["dw_cos"], 1.0, atol=1e-12)
    np.testing.assert_allclose(df["dz_cos"], 1.0, atol=1e-12)
    np.testing.assert_array_equal(df["dz_zero"], df["dz_ref_zero"])
    assert (df["dz_lost"] == 0).all()
    assert (df["act_sat"] == 0).all()
    # a float64 weight stays put only where its gradient is 0 (a unit dead for the batch)
    assert (df["unchanged"] <= df["dw_zero"] + 0.01).all()
    assert df["loss"].iloc[0] > df["loss"].iloc[-1] > 0


@pytest.mark.slow  # two emulated LeNet-5 steps: 146 s cold on the loaded 2-core machine
def test_fixed16_gradients_underflow_and_the_shifted_format_keeps_them() -> None:
    fx = summarize(diagnose("fixed16", steps=1, **_KW))
    fix = summarize(diagnose(lenet5_fix_policy().to_dict(), steps=1, **_KW))
    # ap_fixed<16,8>: most of the gradient reaching conv1 and conv2 is below half its LSB
    assert (fx.loc[["conv1", "conv2"], "dz_zero"] > 0.9).all()
    assert (fx.loc[["conv1", "conv2"], "dz_ref_small"] > 0.9).all()
    # ap_fixed<16,0>: the same gradients survive and point where float64's do
    assert (fx.loc[["conv1", "conv2"], "dz_lost"] > 0.8).all()
    assert (fix["dz_lost"] < 0.1).all()
    assert (fix["dz_cos"] > 0.9).all() and (fix["dw_cos"] > 0.85).all()
    assert (fx.loc[["conv1", "conv2"], "dw_cos"] < fix.loc[["conv1", "conv2"], "dw_cos"]).all()
    # no saturation anywhere: activations and gradients below 128, accumulator partial sums
    # below 2^15
    assert (fx["act_sat"] == 0).all() and (fx["acc_bound"] < 2.0**15).all()
    assert (fx["g_sat"] == 0).all()
