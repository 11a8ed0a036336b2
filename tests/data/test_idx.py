"""The IDX reader on the real MNIST test files (../shared/data/mnist) and on corrupted copies."""

from __future__ import annotations

import gzip
import hashlib

import numpy as np
import pytest

from scloop.data.idx import IDXError, read_idx
from scloop.data.mnist import find_mnist, load_mnist


def _raw(shared_data, name: str) -> bytes:
    return gzip.decompress((shared_data / "mnist" / f"{name}.gz").read_bytes())


def test_real_test_set(shared_data):
    x, y = load_mnist(shared_data, "test")
    assert x.shape == (10000, 1, 28, 28) and x.dtype == np.float32
    assert y.shape == (10000,) and y.dtype == np.int64
    assert 0.0 == x.min() and x.max() == 1.0
    # the file's first labels, and class counts of the MNIST test set
    assert y[:10].tolist() == [7, 2, 1, 0, 4, 1, 4, 9, 5, 9]
    assert np.bincount(y).tolist() == [980, 1135, 1032, 1010, 982, 892, 958, 1028, 974, 1009]
    # content checksum from SOURCE.md
    raw = _raw(shared_data, "t10k-images-idx3-ubyte")
    assert hashlib.md5(raw).hexdigest() == "2646ac647ad5339dbf082846283269ea"
    assert np.array_equal(np.rint(x[:, 0] * 255).astype(np.uint8), np.frombuffer(raw, np.uint8, offset=16).reshape(-1, 28, 28))


def test_train_labels_only_is_not_a_train_split(shared_data):
    # the shared folder has the train labels but not the train images
    assert set(find_mnist(shared_data)) == {"test"}
    lab = read_idx(shared_data / "mnist" / "train-labels-idx1-ubyte.gz", magic=2049, shape=(60000,))
    assert lab.shape == (60000,) and lab.max() == 9
    with pytest.raises(IDXError, match="train-images-idx3-ubyte"):
        load_mnist(shared_data, "train")


def test_raw_and_gzip_agree(shared_data, tmp_path):
    raw = _raw(shared_data, "t10k-labels-idx1-ubyte")
    (tmp_path / "labels").write_bytes(raw)
    a = read_idx(tmp_path / "labels", magic=2049)
    b = read_idx(shared_data / "mnist" / "t10k-labels-idx1-ubyte.gz", magic=2049)
    assert np.array_equal(a, b)


@pytest.mark.parametrize(
    "mutate, match",
    [
        (lambda b: b[: len(b) // 2], "truncated"),
        (lambda b: b + b"\x00" * 7, "trailing bytes"),
        (lambda b: b[:10], "header truncated|truncated"),
        (lambda b: b"\x01\x02" + b[2:], "bad IDX magic"),
        (lambda b: b[:3] + b"\x01" + b[4:], "magic number 2049, expected 2051|shape"),
        (lambda b: b[:4] + (5000).to_bytes(4, "big") + b[8:], "payload|shape"),
        (lambda b: b"", "too short"),
    ],
)
def test_corrupted_images_file(shared_data, tmp_path, mutate, match):
    raw = _raw(shared_data, "t10k-images-idx3-ubyte")
    bad = tmp_path / "t10k-images-idx3-ubyte"
    bad.write_bytes(mutate(raw))
    with pytest.raises(IDXError, match=match) as info:
        read_idx(bad, magic=2051, shape=(None, 28, 28))
    assert str(bad) in str(info.value)


def test_corrupted_gzip_stream(shared_data, tmp_path):
    blob = (shared_data / "mnist" / "t10k-images-idx3-ubyte.gz").read_bytes()
    bad = tmp_path / "t10k-images-idx3-ubyte.gz"
    bad.write_bytes(blob[: len(blob) // 3])
    with pytest.raises(IDXError, match="gzip"):
        read_idx(bad)


def test_labels_file_where_images_expected(shared_data, tmp_path):
    (tmp_path / "mnist").mkdir()
    src = shared_data / "mnist"
    # images file replaced by a labels file: the magic number gives it away
    (tmp_path / "mnist" / "t10k-images-idx3-ubyte.gz").write_bytes((src / "t10k-labels-idx1-ubyte.gz").read_bytes())
    (tmp_path / "mnist" / "t10k-labels-idx1-ubyte.gz").write_bytes((src / "t10k-labels-idx1-ubyte.gz").read_bytes())
    with pytest.raises(IDXError, match="expected 2051"):
        load_mnist(tmp_path, "test")


def test_image_label_count_mismatch(shared_data, tmp_path):
    (tmp_path / "mnist").mkdir()
    src = shared_data / "mnist"
    (tmp_path / "mnist" / "t10k-images-idx3-ubyte.gz").write_bytes((src / "t10k-images-idx3-ubyte.gz").read_bytes())
    # 60,000 training labels next to 10,000 test images
    (tmp_path / "mnist" / "t10k-labels-idx1-ubyte.gz").write_bytes((src / "train-labels-idx1-ubyte.gz").read_bytes())
    with pytest.raises(IDXError, match="10000 images but .* 60000 labels"):
        load_mnist(tmp_path, "test")


def test_missing_file_names_the_folder(tmp_path):
    with pytest.raises(IDXError, match=str(tmp_path)):
        load_mnist(tmp_path, "test")
