"""The PYNQ driver and the stand-in device, against a numpy model of the kernel's memory
behaviour (no C simulation needed): register writes, allocate, flush/invalidate, polling.

Runs where pynq is installed (``tox -e board``); skips cleanly elsewhere.
"""

from __future__ import annotations

import struct
from types import SimpleNamespace

import numpy as np
import pytest

pytest.importorskip("pynq")
pytestmark = pytest.mark.board

import pynq  # noqa: E402
from fxemu.hw import layout  # noqa: E402
from fxemu.hw.driver import HOST_READS, HOST_WRITES, KernelTimeout, TrainStepDriver  # noqa: E402
from fxemu.hw.hwh import write_overlay  # noqa: E402
from fxemu.hw.standin import DRAM_BASE, StandinBusError, StandinDevice  # noqa: E402


class ModelKernel:
    """A numpy stand-in for the kernel's memory behaviour, exact in uint64:
    forward: logits[i, c] = sum_k x[i, k] * (k % 7 + c) + params[c]; cache[i, :784] = x[i];
    backward: params[j] -= sum_i dlogits[i, j % 10] + cache[i, j % 784]  (j < PARAM_WORDS).
    Records every call's scalars."""

    def __init__(self) -> None:
        self.calls: list[tuple[int, int, float]] = []
        k = np.arange(layout.IMAGE_WORDS, dtype=np.uint64)
        self.w = (k[:, None] % np.uint64(7)) + np.arange(layout.CLASSES, dtype=np.uint64)

    def run(self, op, n, lr, x, params, logits, dlogits, cache):
        for a in (x, params, logits, dlogits, cache):
            assert a.dtype == np.uint64 and a.flags.c_contiguous
        self.calls.append((op, n, lr))
        cw = layout.CACHE_WORDS_PER_SAMPLE
        if op == layout.OP_FORWARD:
            xi = x[:n * 784].reshape(n, 784)
            logits[:n * 10] = (xi @ self.w + params[:10]).reshape(-1)
            cache.reshape(-1, cw)[:n, :784] = xi
        else:
            j = np.arange(layout.PARAM_WORDS)
            d = dlogits[:n * 10].reshape(n, 10)[:, j % 10].sum(axis=0)
            c = cache.reshape(-1, cw)[:n, :784][:, j % 784].sum(axis=0)
            params[:] = params - d - c

    @staticmethod
    def expect(x, params, dlogits):
        """(logits, params after backward) the model computes, from host-side copies."""
        m = ModelKernel()
        n = len(x) // 784
        lg = (x.reshape(n, 784) @ m.w + params[:10]).reshape(-1)
        j = np.arange(layout.PARAM_WORDS)
        new = params - dlogits.reshape(n, 10)[:, j % 10].sum(axis=0) \
            - x.reshape(n, 784)[:, j % 784].sum(axis=0)
        return lg, new


@pytest.fixture
def board(tmp_path):
    kernel = ModelKernel()
    dev = StandinDevice(kernel)
    ol = pynq.Overlay(str(write_overlay(tmp_path)), download=False, device=dev)
    ip = ol.fxemu_train_step_0
    bufs = {b: pynq.allocate((layout.buffer_words(b, 8),), np.uint64, target=dev)
            for b in layout.BUFFERS}
    return SimpleNamespace(kernel=kernel, dev=dev, ol=ol, ip=ip, bufs=bufs)


def _fill(bufs, n, seed=0):
    rng = np.random.default_rng(seed)
    x = rng.integers(0, 2**16, n * 784, dtype=np.uint64)
    p = rng.integers(2**40, 2**41, layout.PARAM_WORDS, dtype=np.uint64)
    d = rng.integers(0, 2**16, n * 10, dtype=np.uint64)
    bufs["x"][:n * 784] = x
    bufs["params"][:] = p
    bufs["dlogits"][:n * 10] = d
    return x, p, d


def test_overlay_binds_driver_and_register_map(board):
    assert isinstance(board.ip, TrainStepDriver)
    d = board.ol.ip_dict["fxemu_train_step_0"]
    assert d["type"] == layout.VLNV and d["phys_addr"] == 0x4000_0000
    regs = board.ip.register_map  # PYNQ's register map from the .hwh
    assert regs.CTRL.address == 0 and regs.x_1.address == layout.REGISTERS["x_lo"]
    assert regs.cache_2.address == layout.REGISTERS["cache_hi"]
    assert board.ip.ctrl() & layout.CTRL_AP_IDLE


def test_run_writes_registers_and_syncs(board):
    n = 3
    x, p, d = _fill(board.bufs, n)
    board.ip.run(layout.OP_FORWARD, n, 0.125, board.bufs)
    r = board.dev.registers()
    assert (r["op"], r["n"]) == (0, 3)
    assert r["lr_bits"] == struct.unpack("<Q", struct.pack("<d", 0.125))[0]
    for b in layout.BUFFERS:
        assert r[b] == board.bufs[b].physical_address and r[b] >= DRAM_BASE
    lg, new = ModelKernel.expect(x, p, d)
    np.testing.assert_array_equal(np.asarray(board.bufs["logits"][:n * 10]), lg)
    board.ip.run(layout.OP_BACKWARD_UPDATE, n, 0.125, board.bufs)
    np.testing.assert_array_equal(np.asarray(board.bufs["params"]), new)
    assert board.kernel.calls == [(0, 3, 0.125), (1, 3, 0.125)]
    assert board.dev.runs == [(0, 3), (1, 3)]
    assert not board.ip.ctrl() & layout.CTRL_AP_DONE  # cleared by the driver's read
    assert board.ip.ctrl() & layout.CTRL_AP_IDLE


def test_stale_caches_without_sync(board):
    """The stand-in is not coherent: a host write reaches the kernel's DRAM only by a flush
    (invalidating drops it again), and the host sees DRAM only after an invalidate."""
    x, _, _ = _fill(board.bufs, 2)
    board.ip.run(layout.OP_FORWARD, 2, 1.0, board.bufs)
    before = np.asarray(board.bufs["logits"][:20]).copy()
    board.bufs["x"][:2 * 784] = 0  # host writes, no flush: the kernel's DRAM still holds x
    board.bufs["x"][:2 * 784].invalidate()
    np.testing.assert_array_equal(np.asarray(board.bufs["x"][:2 * 784]), x)
    board.bufs["logits"][:20] = 7  # host scribbles on its copy; invalidate restores DRAM's
    board.bufs["logits"][:20].invalidate()
    np.testing.assert_array_equal(np.asarray(board.bufs["logits"][:20]), before)
    assert set(HOST_WRITES[0]) == {"x", "params"} and HOST_READS[1] == ("params",)


def test_polling_and_timeout(board):
    _fill(board.bufs, 1)
    board.dev.latency_reads = 50
    board.ip.run(layout.OP_FORWARD, 1, 1.0, board.bufs)
    board.dev.hang = True
    with pytest.raises(KernelTimeout, match=r"did not signal ap_done for op 0 .*CTRL=0x1 "
                       r"\(ap_start=1 ap_done=0 ap_idle=0 ap_ready=0\)"):
        board.ip.run(layout.OP_FORWARD, 1, 1.0, board.bufs, timeout=0.05)
    with pytest.raises(RuntimeError, match="busy"):
        board.ip.run(layout.OP_FORWARD, 1, 1.0, board.bufs)


@pytest.mark.parametrize(("op", "n", "lr", "match"), [
    (2, 1, 1.0, r"op: must be one of 0 \(OP_FORWARD\), 1 \(OP_BACKWARD_UPDATE\); got 2"),
    (True, 1, 1.0, "op: must be one of"),
    (0, 0, 1.0, r"n: must be an int in 1..256 \(BATCH_MAX\); got 0"),
    (0, 257, 1.0, "n: must be an int in 1..256"),
    (0, 1, 0.0, r"lr: must be a finite number in \[2\^-64, 256\)"),
    (0, 1, float("nan"), "lr: must be a finite number"),
    (0, 1, 256.0, "lr: must be a finite number"),
])
def test_bad_arguments_write_nothing(board, op, n, lr, match):
    with pytest.raises(ValueError, match=match):
        board.ip.run(op, n, lr, board.bufs)
    assert board.dev.registers()["n"] == 0 and board.dev.runs == []


def test_bad_buffers(board):
    with pytest.raises(ValueError, match=r"buffers: must hold x, params, logits, dlogits, cache"):
        board.ip.run(0, 1, 1.0, {k: v for k, v in board.bufs.items() if k != "cache"})
    with pytest.raises(ValueError, match=r"buffer x: must be .* at least 7056 words for n=9"):
        board.ip.run(0, 9, 1.0, board.bufs)
    with pytest.raises(TypeError, match=r"buffer x: must be allocated with pynq\.allocate"):
        board.ip.run(0, 1, 1.0, {**board.bufs, "x": np.zeros(784, np.uint64)})


def test_register_map_mismatch_is_refused(board):
    desc = dict(board.ol.ip_dict["fxemu_train_step_0"])
    desc["registers"] = {**desc["registers"], "x_1": {**desc["registers"]["x_1"],
                                                       "address_offset": 0x28}}
    with pytest.raises(ValueError, match=r"x_1 at 0x28, expected 0x2c"):
        TrainStepDriver(desc)


def test_bus_errors():
    dev = StandinDevice(ModelKernel())
    with pytest.raises(StandinBusError, match="no overlay is loaded"):
        dev.read_registers(0x4000_0000, 4)
    with pytest.raises(ValueError, match="latency_reads"):
        StandinDevice(ModelKernel(), latency_reads=-1)


def test_kernel_address_outside_buffers(board):
    _fill(board.bufs, 1)
    base = 0x4000_0000
    board.dev.write_registers(base + layout.REGISTERS["n"], (1).to_bytes(4, "little"))
    board.dev.write_registers(base + layout.REGISTERS["x_lo"], (0x100).to_bytes(4, "little"))
    board.dev.latency_reads = 0
    board.dev.write_registers(base, (1).to_bytes(4, "little"))  # ap_start
    with pytest.raises(StandinBusError, match="kernel access x: no allocated buffer"):
        board.dev.read_registers(base, 4)


def test_driver_without_sync_computes_on_stale_data(board, monkeypatch):
    """What the driver's cache maintenance buys: drop its flush of x and the kernel reads the
    DRAM's zeros; drop its invalidate of logits and the host never sees the kernel's result."""
    import fxemu.hw.driver as drv

    x, p, d = _fill(board.bufs, 2)
    lg, _ = ModelKernel.expect(x, p, d)
    monkeypatch.setitem(drv.HOST_WRITES, layout.OP_FORWARD, ("params",))
    board.ip.run(layout.OP_FORWARD, 2, 1.0, board.bufs)
    zeros, _ = ModelKernel.expect(np.zeros_like(x), p, d)
    np.testing.assert_array_equal(np.asarray(board.bufs["logits"][:20]), zeros)
    monkeypatch.setitem(drv.HOST_WRITES, layout.OP_FORWARD, ("x", "params"))
    monkeypatch.setitem(drv.HOST_READS, layout.OP_FORWARD, ())
    board.ip.run(layout.OP_FORWARD, 2, 1.0, board.bufs)
    np.testing.assert_array_equal(np.asarray(board.bufs["logits"][:20]), zeros)  # stale
    board.bufs["logits"][:20].invalidate()
    np.testing.assert_array_equal(np.asarray(board.bufs["logits"][:20]), lg)
