"""The IDX file format of MNIST and its look-alikes (Fashion-MNIST, KMNIST), read from a folder you give.

    >>> from mlplab.idx import read_idx_dataset
    >>> ds = read_idx_dataset("~/data/fashion")          # the four files, plain or .gz
    >>> ds = read_idx_dataset("~/data/fashion", expect="fashion-mnist")   # also checks the published MD5s

A file is one big-endian header (two zero bytes, a type code, the number of dimensions, then each dimension as a
uint32) followed by the values. mlplab reads unsigned-byte files: images (N, rows, cols) and labels (N,).
"""

from __future__ import annotations

import gzip
import hashlib
import os
import struct
import sys
import urllib.request
from pathlib import Path

import numpy as np

from mlplab.data import Dataset

FILES = {
    "train_images": "train-images-idx3-ubyte",
    "train_labels": "train-labels-idx1-ubyte",
    "test_images": "t10k-images-idx3-ubyte",
    "test_labels": "t10k-labels-idx1-ubyte",
}

# Published MD5 digests of the gzipped files, keyed by dataset and file name.
KNOWN_MD5 = {
    "mnist": {
        "train-images-idx3-ubyte.gz": "f68b3c2dcbeaaa9fbdd348bbdeb94873",
        "train-labels-idx1-ubyte.gz": "d53e105ee54ea40749a09fcbcd1e9432",
        "t10k-images-idx3-ubyte.gz": "9fb629c4189551a2d022fa330f9573f3",
        "t10k-labels-idx1-ubyte.gz": "ec29112dd5afa0611ce80d1b7f02629c",
    },
    "fashion-mnist": {
        "train-images-idx3-ubyte.gz": "8d4fb7e6c68d591d4c3dfef9ec88bf0d",
        "train-labels-idx1-ubyte.gz": "25c81989df183df01b3e8a0aad5dffbe",
        "t10k-images-idx3-ubyte.gz": "bef4ecab320f06d8554ea6380940ec79",
        "t10k-labels-idx1-ubyte.gz": "bb300cfdad3c16e7a12a480ee83cd310",
    },
    "kmnist": {
        "train-images-idx3-ubyte.gz": "bdb82020997e1d708af4cf47b453dcf7",
        "train-labels-idx1-ubyte.gz": "e144d726b3acfaa3e44228e80efcd344",
        "t10k-images-idx3-ubyte.gz": "5c965bf0a639b31b8f53240b1b52f4d7",
        "t10k-labels-idx1-ubyte.gz": "7320c461ea6c1c855c0b718fb2a4b134",
    },
}

# Public mirrors, for `download_idx` only (never used by the tests).
MIRRORS = {
    "mnist": "https://ossci-datasets.s3.amazonaws.com/mnist/",
    "fashion-mnist": "http://fashion-mnist.s3-website.eu-central-1.amazonaws.com/",
    "kmnist": "http://codh.rois.ac.jp/kmnist/dataset/kmnist/",
}

UBYTE = 0x08


def md5(path: str | os.PathLike) -> str:
    h = hashlib.md5(usedforsecurity=False)
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def read_idx(path: str | os.PathLike, ndim: int | None = None) -> np.ndarray:
    """Read one unsigned-byte IDX file (plain or .gz); check its magic number, dimensions and length."""
    path = Path(path)
    opener = gzip.open if path.suffix == ".gz" else open
    try:
        with opener(path, "rb") as f:
            raw = bytearray(f.read())  # writable, so the arrays built on it are too
    except (OSError, EOFError) as e:
        raise ValueError(f"{path}: cannot read ({e})") from None
    if len(raw) < 4:
        raise ValueError(f"{path}: too short to be an IDX file ({len(raw)} bytes)")
    zero, dtype, dims = struct.unpack(">HBB", raw[:4])
    if zero != 0 or dtype != UBYTE:
        raise ValueError(
            f"{path}: bad magic number 0x{raw[:4].hex()}, expected 0x000008NN (an unsigned-byte IDX file)"
        )
    if ndim is not None and dims != ndim:
        raise ValueError(f"{path}: has {dims} dimensions, expected {ndim}")
    header = 4 + 4 * dims
    if len(raw) < header:
        raise ValueError(f"{path}: truncated header")
    shape = struct.unpack(f">{dims}I", raw[4:header])
    expected = int(np.prod(shape, dtype=np.int64)) if dims else 0
    if len(raw) - header != expected:
        raise ValueError(
            f"{path}: holds {len(raw) - header} values after the header, the header says {shape} = {expected}"
            " (truncated or damaged file)"
        )
    return np.frombuffer(raw, dtype=np.uint8, offset=header).reshape(shape)


def _find(directory: Path, stem: str) -> Path:
    for name in (stem + ".gz", stem):
        if (directory / name).is_file():
            return directory / name
    raise FileNotFoundError(f"{directory}: no {stem}[.gz] (an IDX dataset folder holds {', '.join(FILES.values())}); "
                            f"{how_to_get(directory)}")


def how_to_get(directory: Path) -> str:
    """How to fetch a known dataset's four files into `directory` (for the errors above)."""
    call = f"mlplab.idx.download_idx(NAME, {str(directory)!r})"
    return (f"to fetch a known dataset there, run python -c \"import mlplab.idx; {call}\" with NAME one of "
            f"{', '.join(repr(k) for k in KNOWN_MD5)} (needs the network)")


def identify(directory: str | os.PathLike) -> str | None:
    """The known dataset whose published MD5s all match the .gz files in `directory`, or None."""
    directory = Path(directory)
    digests = {p.name: md5(p) for p in (directory / f"{s}.gz" for s in FILES.values()) if p.is_file()}
    for name, known in KNOWN_MD5.items():
        if len(digests) == 4 and all(digests.get(k) == v for k, v in known.items()):
            return name
    return None


def read_idx_dataset(directory: str | os.PathLike, expect: str | None = None) -> Dataset:
    """Read the four IDX files of an MNIST-format dataset from `directory`.

    With `expect` (one of KNOWN_MD5), every file must be the gzipped original with its published MD5.
    Images come back flattened to (N, rows*cols) uint8, labels as int64.
    """
    directory = Path(directory).expanduser()
    if not directory.is_dir():
        raise FileNotFoundError(f"{directory}: no such folder (expected a folder with the four IDX files); "
                                f"{how_to_get(directory)}")
    if expect is not None:
        if expect not in KNOWN_MD5:
            raise ValueError(f"unknown dataset {expect!r}; known: {', '.join(KNOWN_MD5)}")
        for fname, digest in KNOWN_MD5[expect].items():
            path = directory / fname
            if not path.is_file():
                raise FileNotFoundError(f"{path}: missing ({expect} is checked against its published .gz files)")
            got = md5(path)
            if got != digest:
                raise ValueError(f"{path}: MD5 {got} differs from the published {digest} for {expect}: damaged file?")
    parts = {}
    for key, stem in FILES.items():
        parts[key] = read_idx(_find(directory, stem), ndim=3 if key.endswith("images") else 1)
    for split in ("train", "test"):
        x, y = parts[f"{split}_images"], parts[f"{split}_labels"]
        if len(x) != len(y):
            raise ValueError(f"{directory}: {len(x)} {split} images but {len(y)} labels")
    return Dataset(
        name=expect or identify(directory) or directory.name,
        train_images=np.ascontiguousarray(parts["train_images"].reshape(len(parts["train_images"]), -1)),
        train_labels=parts["train_labels"].astype(np.int64),
        test_images=np.ascontiguousarray(parts["test_images"].reshape(len(parts["test_images"]), -1)),
        test_labels=parts["test_labels"].astype(np.int64),
    )


def download_idx(name: str, directory: str | os.PathLike, progress: bool = True) -> Path:
    """Download a known IDX dataset into `directory`, checking each file's published MD5. Needs the network."""
    if name not in KNOWN_MD5:
        raise ValueError(f"unknown dataset {name!r}; known: {', '.join(KNOWN_MD5)}")
    from tqdm import tqdm

    directory = Path(directory).expanduser()
    directory.mkdir(parents=True, exist_ok=True)
    for fname, digest in KNOWN_MD5[name].items():
        target = directory / fname
        if target.is_file() and md5(target) == digest:
            continue
        tmp = target.with_suffix(".part")
        with urllib.request.urlopen(MIRRORS[name] + fname, timeout=60) as r, open(tmp, "wb") as f:
            total = int(r.headers.get("Content-Length") or 0) or None
            with tqdm(total=total, unit="B", unit_scale=True, desc=fname, disable=not progress, file=sys.stderr) as bar:
                for chunk in iter(lambda: r.read(1 << 16), b""):
                    f.write(chunk)
                    bar.update(len(chunk))
        got = md5(tmp)
        if got != digest:
            tmp.unlink()
            raise ValueError(f"{fname}: downloaded MD5 {got} differs from the published {digest}")
        os.replace(tmp, target)
    return directory
