"""Native (float32 / float64) layer operations of the generic network: conv2d, pools, linear,
forward and backward, for the ``native`` backend.

Every tensor is computed in ``dtype`` (float32 or float64) and returned in it. Products go
through BLAS (numpy ``matmul``, its own summation order — not bit-reproducible across BLAS
builds, as the native backend documents). A conv runs its batch in chunks of samples sized for
cache (:data:`CHUNK_BYTES`, a function of the shapes only): per chunk a Numba im2col, one BLAS
product and the layout moves (:mod:`fxemu.nn._kernels.layers_native`), the chunks spread over
Numba's thread count (``numba.set_num_threads``) on Python threads, each writing its own slab;
the pools' Numba threads own whole (sample, channel) planes. So no result depends on the
thread count (tested). Geometry (stride, zero padding as an int, a pair, a 4-tuple
or ``"same"``) is :func:`fxemu.arith.conv_geometry`; pools take ``stride=None`` as the window
size and pad as torch (max: padded cells never win; avg: padded cells count,
``count_include_pad=True``). Results agree with ``torch.nn.functional`` to rounding (tested:
float64 within 1e-10 relative, float32 to float32 tolerance).
"""

from __future__ import annotations

import threading

import numba
import numpy as np

from .._errors import msg
from .._kernels import pool as _kp
from ..arith import ConvGeometry, argmax_cells, conv_geometry, pool_geometry
from ._kernels import layers_native as _kl

__all__ = ["avgpool2d", "avgpool2d_backward", "conv2d", "conv2d_backward", "linear",
           "linear_backward", "maxpool2d", "maxpool2d_backward"]


def _dt(dtype: object) -> np.dtype:
    d = np.dtype(dtype)
    if d not in (np.float32, np.float64):
        raise ValueError(msg("dtype", "must be float32 or float64", str(d)))
    return d


def _c(a: object, d: np.dtype) -> np.ndarray:
    return np.ascontiguousarray(a, dtype=d)


def _conv_geo(x: np.ndarray, w: np.ndarray, stride: object, padding: object) -> ConvGeometry:
    if x.ndim != 4 or w.ndim != 4 or x.shape[1] != w.shape[1] or w.size == 0:
        raise ValueError(msg("conv2d", "needs x (N, C, H, W) and a nonempty w (F, C, Kh, Kw) "
                             "with equal C", f"{x.shape} and {w.shape}"))
    return conv_geometry(x.shape[2], x.shape[3], w.shape[2], w.shape[3], stride, padding)


_SCRATCH = threading.local()


def _scratch(size: int, dtype: np.dtype, slot: str) -> np.ndarray:
    """A flat per-thread scratch array of at least ``size`` elements for ``slot`` (grown,
    never shrunk: a fresh multi-megabyte array per call costs more in page faults than the
    kernel that fills it). Valid until the thread's next call for the slot."""
    cache = getattr(_SCRATCH, "arrays", None)
    if cache is None:
        cache = _SCRATCH.arrays = {}
    a = cache.get((slot, dtype))
    if a is None or a.size < size:
        a = cache[(slot, dtype)] = np.empty(size, dtype)
    return a


def _mat(rows: int, cols: int, dtype: np.dtype, slot: str) -> np.ndarray:
    """A C-contiguous (rows, cols) view of the slot's scratch."""
    return _scratch(rows * cols, dtype, slot)[:rows * cols].reshape(rows, cols)


#: bytes of one chunk's patch matrix (C·Kh·Kw × samples·Ho·Wo): about a core's L2 (larger
#: chunks spill to memory, smaller ones pay Python's per-chunk calls; measured on LeNet-5)
CHUNK_BYTES = 1 << 20


def _chunks(n: int, per_sample: int) -> list[tuple[int, int]]:
    """Sample ranges [s0, s1) of about :data:`CHUNK_BYTES` of patches each (a function of the
    shapes only, never of the thread count)."""
    step = max(1, CHUNK_BYTES // max(per_sample, 1))
    return [(s, min(n, s + step)) for s in range(0, n, step)]


_POOL: list = []


def _run_chunks(fn, chunks: list[tuple[int, int]]) -> None:
    """``fn(i, s0, s1)`` for every chunk i. With Numba's thread count T > 1 the chunks are
    split into T contiguous groups run on T threads (the calling one included); the kernels
    release the GIL, BLAS runs on each thread's own calls. Every chunk writes only its own
    slab, so the results do not depend on T."""
    t = min(numba.get_num_threads(), len(chunks))

    def group(ids) -> None:
        for i in ids:
            fn(i, *chunks[i])

    if t <= 1:
        group(range(len(chunks)))
        return
    if not _POOL:
        from concurrent.futures import ThreadPoolExecutor

        _POOL.append(ThreadPoolExecutor(max_workers=numba.config.NUMBA_NUM_THREADS,
                                        thread_name_prefix="fxemu-native"))
    bounds = np.linspace(0, len(chunks), t + 1).astype(int)
    futures = [_POOL[0].submit(group, range(bounds[k], bounds[k + 1])) for k in range(1, t)]
    group(range(bounds[0], bounds[1]))
    for f in futures:
        f.result()


def _geo_args(g: ConvGeometry) -> tuple[int, ...]:
    return (*g.kernel, *g.stride, g.ho, g.wo)


def _padded(x: np.ndarray, g: ConvGeometry) -> np.ndarray:
    """x with the conv's zero padding (x itself when there is none)."""
    t, b, left, r = g.padding
    if not (t or b or left or r):
        return x
    return np.pad(x, ((0, 0), (0, 0), (t, b), (left, r)))


def conv2d(x: object, w: object, b: object | None, stride: object = 1, padding: object = 0,
           dtype: object = np.float32, keep_cols: bool = False,
           ) -> np.ndarray | tuple[np.ndarray, list[np.ndarray]]:
    """Cross-correlation (N, C, H, W) × (F, C, Kh, Kw) (+ bias (F,) or None) → (N, F, Ho, Wo),
    as ``torch.nn.functional.conv2d``. The batch runs in chunks of samples (sized for cache,
    :data:`CHUNK_BYTES`): per chunk one BLAS product ``w (F, C·Kh·Kw) @ cols`` of the
    zero-padded patches of all its samples, then the bias added. With ``keep_cols`` the
    result is (y, cols): the chunks' patches (a list of (C·Kh·Kw, m·Ho·Wo) arrays), which
    :func:`conv2d_backward` takes instead of forming them again."""
    d = _dt(dtype)
    xa, wa = _c(x, d), _c(w, d)
    g = _conv_geo(xa, wa, stride, padding)
    n, f = xa.shape[0], wa.shape[0]
    k, p = wa[0].size, g.ho * g.wo
    w2 = wa.reshape(f, k)
    bias = b is not None
    bb = _c(b, d) if bias else np.zeros(f, d)
    out = np.empty((n, f, p), d)
    geo = _geo_args(g)
    xp = _padded(xa, g)
    chunks = _chunks(n, k * p * d.itemsize)
    kept = [np.empty((k, (s1 - s0) * p), d) for s0, s1 in chunks] if keep_cols else None

    def chunk(i: int, s0: int, s1: int) -> None:
        m = (s1 - s0) * p
        cols = kept[i] if keep_cols else _mat(k, m, d, "cols")
        _kl.im2col_chunk(xp, s0, *geo, cols)
        _kl.to_nchw(np.matmul(w2, cols, out=_mat(f, m, d, "prod")), bb, bias, s0, out)

    _run_chunks(chunk, chunks)
    y = out.reshape(n, f, g.ho, g.wo)
    return (y, kept) if keep_cols else y


def conv2d_backward(x: object, w: object, g: object, stride: object = 1, padding: object = 0,
                    dtype: object = np.float32, need_dx: bool = True,
                    cols: list[np.ndarray] | None = None,
                    ) -> tuple[np.ndarray | None, np.ndarray, np.ndarray]:
    """Gradients of :func:`conv2d` for the output gradient g (N, F, Ho, Wo): (dx or None when
    not ``need_dx``, dw (F, C, Kh, Kw), db (F,)). Per chunk of samples (as :func:`conv2d`):
    the chunk's dw is one BLAS product ``g (F, m·Ho·Wo) @ colsᵀ`` and its db the sum of g;
    dx scatters ``wᵀ @ g`` back through col2im. dw and db are the chunks' sums in chunk order
    (numpy's pairwise sum). ``cols``: the patches ``conv2d(..., keep_cols=True)`` returned
    for this x (then x's padded copy is not formed again)."""
    d = _dt(dtype)
    xa, wa, ga = _c(x, d), _c(w, d), _c(g, d)
    geo = _conv_geo(xa, wa, stride, padding)
    n, f = xa.shape[0], wa.shape[0]
    if ga.shape != (n, f, geo.ho, geo.wo):
        raise ValueError(msg("conv2d_backward", "g must have the conv output's shape",
                             f"{ga.shape} for {(n, f, geo.ho, geo.wo)}"))
    k, p = wa[0].size, geo.ho * geo.wo
    chunks = _chunks(n, k * p * d.itemsize)
    if cols is not None:
        want = [(k, (s1 - s0) * p) for s0, s1 in chunks]
        got = [getattr(c, "shape", None) if getattr(c, "dtype", None) == d else None
               for c in cols] if isinstance(cols, list | tuple) else None
        if got != want:
            raise ValueError(msg("conv2d_backward", "cols must be the patches conv2d("
                                 "keep_cols=True) kept for this x and w", got))
    w2 = wa.reshape(f, k)
    w2t = np.ascontiguousarray(w2.T)
    gm = ga.reshape(n, f, p)
    dws = np.empty((len(chunks), f, k), d)
    dbs = np.empty((len(chunks), f), d)
    xp = _padded(xa, geo) if cols is None else None
    t, bo, left, r = geo.padding
    padded = any(geo.padding)
    dxp = np.empty((n, xa.shape[1], xa.shape[2] + t + bo, xa.shape[3] + left + r), d) \
        if need_dx else None
    ga_ = _geo_args(geo)

    def chunk(i: int, s0: int, s1: int) -> None:
        m = (s1 - s0) * p
        gt = _mat(f, m, d, "grad")
        _kl.from_nchw(gm, s0, gt, dbs[i])
        if cols is None:
            patches = _mat(k, m, d, "cols")
            _kl.im2col_chunk(xp, s0, *ga_, patches)
        else:
            patches = cols[i]
        np.matmul(gt, patches.T, out=dws[i])
        if need_dx:
            _kl.col2im_chunk(np.matmul(w2t, gt, out=_mat(k, m, d, "dcols")), s0, *ga_, dxp)

    _run_chunks(chunk, chunks)
    dx = dxp
    if need_dx and padded:  # the padding's gradient dropped
        dx = np.ascontiguousarray(dxp[:, :, t:t + xa.shape[2], left:left + xa.shape[3]])
    return dx, dws.sum(axis=0).reshape(wa.shape), dbs.sum(axis=0)


def relu_backward(ctx: object, dh: object, dtype: object = np.float32) -> np.ndarray:
    """ReLU's input gradient in ``dtype``: ``dh`` where the ReLU's input ``ctx`` was > 0, else
    +0 (one parallel pass, no mask array; NaN inputs give +0). Shapes must match."""
    d = _dt(dtype)
    x, g = _c(ctx, d), _c(dh, d)
    if g.shape != x.shape:
        raise ValueError(msg("relu_backward", "dh must have the input's shape",
                             f"{g.shape} for {x.shape}"))
    out = np.empty(x.shape, d)
    _kl.relu_backward(x.reshape(-1), g.reshape(-1), out.reshape(-1))
    return out


def maxpool2d(x: object, size: object = 2, stride: object = None, padding: object = 0,
              dtype: object = np.float32) -> tuple[np.ndarray, np.ndarray]:
    """Max pooling as :func:`fxemu.arith.maxpool2d` (same argmax: the first maximum in
    row-major window order, a NaN wins) in ``dtype``: (pooled, argmax)."""
    d = _dt(dtype)
    xa = _c(x, d)
    g = pool_geometry(xa.shape, size, stride, padding, "maxpool2d")
    out = np.empty((*xa.shape[:2], *g.out), d)
    arg = np.empty(out.shape, np.int64)
    _kp.maxpool_forward(xa, *g.kernel, *g.stride, g.padding[0], g.padding[2], out, arg)
    return out, arg


def maxpool2d_backward(g: object, argmax: np.ndarray, input_shape: tuple[int, ...],
                       size: object = 2, stride: object = None, padding: object = 0,
                       dtype: object = np.float32) -> np.ndarray:
    """Route g to each window's argmax; overlapping windows add in row-major window order."""
    d = _dt(dtype)
    ga = _c(g, d)
    shape = tuple(int(v) for v in input_shape)
    geo = pool_geometry(shape, size, stride, padding, "maxpool2d_backward")
    arg = np.ascontiguousarray(argmax, dtype=np.int64)
    if ga.shape != (*shape[:2], *geo.out) or arg.shape != ga.shape:
        raise ValueError(msg("maxpool2d_backward", "g and argmax must have the pooled shape",
                             f"{ga.shape}, {arg.shape} for input {shape}"))
    kh, kw = geo.kernel
    if any(geo.padding):
        argmax_cells(arg, geo)  # every index names an input cell of its window
    elif arg.size and (arg.min() < 0 or arg.max() >= kh * kw):  # unpadded: the range is it
        argmax_cells(arg, geo)  # raises, naming the range
    dx = np.empty(shape, d)
    _kp.maxpool_route(ga, arg, kw, *geo.stride, geo.padding[0], geo.padding[2],
                      geo.overlapping(), dx)
    return dx


def avgpool2d(x: object, size: object = 2, stride: object = None, padding: object = 0,
              dtype: object = np.float32) -> np.ndarray:
    """Average pooling (window sum in row-major order, divided by kh·kw; padded cells count as
    zeros, torch's ``count_include_pad=True``)."""
    d = _dt(dtype)
    xa = _c(x, d)
    g = pool_geometry(xa.shape, size, stride, padding, "avgpool2d")
    out = np.empty((*xa.shape[:2], *g.out), d)
    kh, kw = g.kernel
    _kl.avgpool_forward(xa, kh, kw, *g.stride, g.padding[0], g.padding[2], d.type(kh * kw), out)
    return out


def avgpool2d_backward(g: object, input_shape: tuple[int, ...], size: object = 2,
                       stride: object = None, padding: object = 0,
                       dtype: object = np.float32) -> np.ndarray:
    """Input gradient of :func:`avgpool2d`: g / (kh·kw) added to every input cell of its
    window (row-major window order)."""
    d = _dt(dtype)
    ga = _c(g, d)
    shape = tuple(int(v) for v in input_shape)
    geo = pool_geometry(shape, size, stride, padding, "avgpool2d_backward")
    if ga.shape != (*shape[:2], *geo.out):
        raise ValueError(msg("avgpool2d_backward", "g must have the pooled shape",
                             f"{ga.shape} for input {shape}"))
    dx = np.empty(shape, d)
    kh, kw = geo.kernel
    _kl.avgpool_backward(ga, kh, kw, *geo.stride, geo.padding[0], geo.padding[2],
                         d.type(kh * kw), dx)
    return dx


def linear(x: object, w: object, b: object | None, dtype: object = np.float32) -> np.ndarray:
    """Dense layer ``x (N, I) @ w (O, I)ᵀ + b (O,)`` (BLAS), as ``torch.nn.functional.linear``."""
    d = _dt(dtype)
    xa, wa = _c(x, d), _c(w, d)
    if xa.ndim != 2 or wa.ndim != 2 or xa.shape[1] != wa.shape[1]:
        raise ValueError(msg("linear", "needs x (N, I) and w (O, I)", f"{xa.shape}, {wa.shape}"))
    y = xa @ wa.T
    if b is not None:
        y += _c(b, d)
    return y


def linear_backward(x: object, w: object, g: object, dtype: object = np.float32,
                    need_dx: bool = True) -> tuple[np.ndarray | None, np.ndarray, np.ndarray]:
    """Gradients of :func:`linear` for g (N, O): (dx = g @ w or None, dw = gᵀ @ x,
    db = Σ_n g)."""
    d = _dt(dtype)
    xa, wa, ga = _c(x, d), _c(w, d), _c(g, d)
    if xa.ndim != 2 or wa.ndim != 2 or xa.shape[1] != wa.shape[1]:
        raise ValueError(msg("linear_backward", "needs x (N, I) and w (O, I)",
                             f"{xa.shape}, {wa.shape}"))
    if ga.shape != (xa.shape[0], wa.shape[0]):
        raise ValueError(msg("linear_backward", "g must be (N, O)", f"{ga.shape}"))
    return (ga @ wa if need_dx else None), ga.T @ xa, ga.sum(axis=0)
