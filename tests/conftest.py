"""Shared fixtures. The MNIST cache goes to a per-session folder so the tests never touch the user's cache."""

import atexit
import os
import shutil
import tempfile

import numpy as np
import pytest

_CACHE = tempfile.mkdtemp(prefix="mlplab-test-cache-")
atexit.register(shutil.rmtree, _CACHE, ignore_errors=True)  # 50 MB of MNIST arrays: not left behind
os.environ["MLPLAB_CACHE"] = _CACHE  # inherited by the command-line subprocesses too


@pytest.fixture(scope="session")
def mnist():
    from mlplab.data import load_mnist

    return load_mnist()


@pytest.fixture(scope="session")
def splits(mnist):
    from mlplab.data import make_splits

    return make_splits(mnist)


@pytest.fixture(scope="session")
def small_splits(mnist):
    """2,000 training, 500 validation and 500 test images of the real MNIST: for fast behavioural tests."""
    from mlplab.data import Splits

    return Splits(
        name="mnist-small",
        train_x=mnist.train_images[:2000],
        train_y=mnist.train_labels[:2000],
        val_x=mnist.train_images[-500:],
        val_y=mnist.train_labels[-500:],
        test_x=mnist.test_images[:500],
        test_y=mnist.test_labels[:500],
    )


def write_idx(path, array: np.ndarray, magic_type: int = 0x08, gz: bool = False):
    """Write an IDX file: the test suite's own tiny datasets (never downloaded)."""
    import gzip
    import struct

    header = struct.pack(">HBB", 0, magic_type, array.ndim) + struct.pack(f">{array.ndim}I", *array.shape)
    payload = header + np.ascontiguousarray(array, dtype=np.uint8).tobytes()
    if gz:
        with gzip.open(path, "wb") as f:
            f.write(payload)
    else:
        with open(path, "wb") as f:
            f.write(payload)
    return path
