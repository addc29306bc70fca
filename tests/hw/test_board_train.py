"""``backend="board"``: the software path never imports pynq; without pynq a clear error; with
pynq (``tox -e board``) ``fxemu train --backend board`` on the stand-in device trains through
the real PYNQ driver to the same weights, bit for bit, as ``csim``."""

from __future__ import annotations

import subprocess
import sys
import textwrap

import numpy as np
import pytest

import fxemu
from fxemu.backends import get_backend
from fxemu.policy import load_policy

_SMALL = {"data": "embedded", "n_train": 32, "n_test": 16, "epochs": 1, "batch_size": 16,
          "seed": 3}


def test_software_path_never_imports_pynq(tmp_path):
    code = textwrap.dedent("""
        import sys
        import fxemu, fxemu.train, fxemu.cli, fxemu.backends.emulated, fxemu.backends.board
        import fxemu.hw.hwh, fxemu.hw.layout
        from fxemu.cli import main
        try:
            main(["train", "--backend", "native", "--n-train", "16", "--n-test", "16",
                  "--epochs", "1", "--batch-size", "8", "--quiet"])
        except SystemExit as e:
            assert e.code in (0, None), e.code
        assert "pynq" not in sys.modules, "pynq was imported"
    """)
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                       timeout=300, cwd=tmp_path)  # the installed fxemu, not the checkout
    assert r.returncode == 0, r.stderr


def test_without_pynq_names_the_extra(monkeypatch):
    monkeypatch.setitem(sys.modules, "pynq", None)  # import pynq -> ImportError
    with pytest.raises(fxemu.BackendUnavailable, match=r"needs the PYNQ library \(pynq\).*"
                       r"pip install 'fxemu\[board\]'"):
        get_backend("board", load_policy("fixed16"), options={"board_device": "standin"})


@pytest.mark.parametrize(("options", "match"), [
    ({"board_device": "fpga"}, r"board_device: must be one of board, standin; got 'fpga'"),
    ({"board_device": "board"}, r"board_overlay: is needed for backend 'board'"),
    ({"board_device": "standin", "board_timeout": "soon"}, "board_timeout: must be a number"),
    ({"board_device": "standin", "board_timeout": 0}, r"board_timeout: must be > 0"),
])
def test_bad_options(monkeypatch, options, match):
    for var in ("FXEMU_BOARD_OVERLAY", "FXEMU_BOARD_DEVICE", "FXEMU_BOARD_TIMEOUT"):
        monkeypatch.delenv(var, raising=False)
    with pytest.raises(ValueError, match=match):
        get_backend("board", load_policy("fixed16"), options=options)


def _weights(run_dir, epoch=1):
    with np.load(run_dir / "weights" / f"epoch_{epoch:03d}.npz") as z:
        return {k: z[k].view(np.uint64).copy() for k in z.files}


@pytest.mark.board
@pytest.mark.parametrize("policy", ["fixed16", "fw16bw16"])
def test_cli_board_standin_matches_csim(tmp_path, monkeypatch, policy):
    """`fxemu train --backend board` with FXEMU_BOARD_DEVICE=standin: the PYNQ driver's
    register writes, pynq.allocate buffers, flush/invalidate and polling, the kernel's C
    simulation behind them; weights and metrics identical to backend csim."""
    pytest.importorskip("pynq")
    from fxemu.cli import main
    from fxemu.train import TrainConfig, train

    ref = train(TrainConfig(policy=policy, backend="csim", **_SMALL), tmp_path / "csim",
                progress=False)
    monkeypatch.setenv("FXEMU_BOARD_DEVICE", "standin")
    with pytest.raises(SystemExit) as e:
        main(["train", "--backend", "board", "--policy", policy, "--n-train", "32",
              "--n-test", "16", "--epochs", "1", "--batch-size", "16", "--seed", "3",
              "--quiet", "--out", str(tmp_path / "board")])
    assert e.value.code in (0, None)
    got, want = _weights(tmp_path / "board"), _weights(tmp_path / "csim")
    assert got.keys() == want.keys()
    for k in want:
        np.testing.assert_array_equal(got[k], want[k], err_msg=k)
    assert any((w != _weights(tmp_path / "csim", 0)[k]).any() for k, w in want.items())
    # the config's extra dict selects the stand-in too (no environment variable)
    monkeypatch.delenv("FXEMU_BOARD_DEVICE")
    res = train(TrainConfig(policy=policy, backend="board",
                            extra={"board_device": "standin"}, **_SMALL), progress=False)
    for k in want:
        np.testing.assert_array_equal(res["params"][k].view(np.uint64), want[k])
    m0, m1 = ref["metrics"][0], res["metrics"][0]
    assert [m0[k] for k in ("train_loss", "test_loss", "test_acc")] == \
        [m1[k] for k in ("train_loss", "test_loss", "test_acc")]


@pytest.mark.board
def test_overlay_built_for_another_policy_is_refused(tmp_path):
    pytest.importorskip("pynq")
    from fxemu.hw.hwh import write_overlay

    bit = write_overlay(tmp_path, policy=load_policy("fixed16").to_dict())
    with pytest.raises(ValueError, match=r"was built for policy 'fixed16'.*got 'fw16bw16'"):
        get_backend("board", load_policy("fw16bw16"),
                    options={"board_device": "standin", "board_overlay": str(bit)})


@pytest.mark.board
def test_overlay_without_kernel_is_refused(tmp_path):
    pytest.importorskip("pynq")
    bit = tmp_path / "other.bit"
    bit.write_bytes(b"")
    from fxemu.hw.hwh import hwh_text

    (tmp_path / "other.hwh").write_text(hwh_text().replace("fxemu:hls:fxemu_train_step:1.0",
                                                           "acme:hls:other:1.0"))
    with pytest.raises(ValueError, match=r"must hold one fxemu:hls:fxemu_train_step:1.0 IP"):
        get_backend("board", load_policy("fixed16"),
                    options={"board_device": "standin", "board_overlay": str(bit)})
