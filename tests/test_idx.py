import gzip

import numpy as np
import pytest
from conftest import write_idx

from mlplab import idx


def _dataset(folder, n_train=60, n_test=20, gz=True, seed=0):
    rng = np.random.default_rng(seed)
    suffix = ".gz" if gz else ""
    write_idx(folder / f"train-images-idx3-ubyte{suffix}", rng.integers(0, 256, (n_train, 28, 28)), gz=gz)
    write_idx(folder / f"train-labels-idx1-ubyte{suffix}", rng.integers(0, 10, n_train), gz=gz)
    write_idx(folder / f"t10k-images-idx3-ubyte{suffix}", rng.integers(0, 256, (n_test, 28, 28)), gz=gz)
    write_idx(folder / f"t10k-labels-idx1-ubyte{suffix}", rng.integers(0, 10, n_test), gz=gz)
    return folder


@pytest.mark.parametrize("gz", [True, False])
def test_reads_a_good_dataset(tmp_path, gz):
    _dataset(tmp_path, gz=gz)
    ds = idx.read_idx_dataset(tmp_path)
    assert ds.train_images.shape == (60, 784) and ds.train_images.dtype == np.uint8
    assert ds.test_labels.shape == (20,) and ds.test_labels.dtype == np.int64
    assert idx.identify(tmp_path) is None  # not one of the published datasets


def test_bad_magic(tmp_path):
    write_idx(tmp_path / "f", np.zeros((2, 3)), magic_type=0x0D)  # float type code
    with pytest.raises(ValueError, match="bad magic number"):
        idx.read_idx(tmp_path / "f")


def test_wrong_dimensions(tmp_path):
    write_idx(tmp_path / "f", np.zeros((2, 3)))
    with pytest.raises(ValueError, match="2 dimensions, expected 3"):
        idx.read_idx(tmp_path / "f", ndim=3)


def test_truncated_file(tmp_path):
    path = write_idx(tmp_path / "f", np.zeros((4, 28, 28)))
    path.write_bytes(path.read_bytes()[:-100])
    with pytest.raises(ValueError, match="truncated or damaged"):
        idx.read_idx(path)


def test_damaged_gzip(tmp_path):
    path = write_idx(tmp_path / "f.gz", np.zeros((4, 28, 28)), gz=True)
    path.write_bytes(path.read_bytes()[:30])
    with pytest.raises(ValueError, match="cannot read|truncated"):
        idx.read_idx(path)


def test_label_count_mismatch(tmp_path):
    _dataset(tmp_path)
    write_idx(tmp_path / "t10k-labels-idx1-ubyte.gz", np.zeros(19), gz=True)
    with pytest.raises(ValueError, match="20 test images but 19 labels"):
        idx.read_idx_dataset(tmp_path)


def test_checksum_of_a_known_dataset_is_checked(tmp_path):
    _dataset(tmp_path)
    with pytest.raises(ValueError, match="differs from the published"):
        idx.read_idx_dataset(tmp_path, expect="fashion-mnist")
    with pytest.raises(ValueError, match="unknown dataset"):
        idx.read_idx_dataset(tmp_path, expect="cifar")


def test_md5_identifies_a_known_dataset(tmp_path, monkeypatch):
    _dataset(tmp_path)
    digests = {p.name: idx.md5(p) for p in tmp_path.iterdir()}
    monkeypatch.setitem(idx.KNOWN_MD5, "tiny", digests)
    assert idx.identify(tmp_path) == "tiny"
    assert idx.read_idx_dataset(tmp_path, expect="tiny").name == "tiny"


def test_missing_folder_and_file(tmp_path):
    with pytest.raises(FileNotFoundError, match="no such folder"):
        idx.read_idx_dataset(tmp_path / "nope")
    _dataset(tmp_path)
    (tmp_path / "t10k-images-idx3-ubyte.gz").unlink()
    with pytest.raises(FileNotFoundError, match="t10k-images-idx3-ubyte"):
        idx.read_idx_dataset(tmp_path)


def test_gzip_helper_roundtrip(tmp_path):
    path = write_idx(tmp_path / "x.gz", np.arange(10), gz=True)
    with gzip.open(path) as f:
        assert f.read(4) == b"\x00\x00\x08\x01"
    np.testing.assert_array_equal(idx.read_idx(path), np.arange(10))
