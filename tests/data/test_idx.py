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


# ---------------------------------------------------------------------- synthetic files (no shared data)


def _idx(dtype_code: int, dims: tuple[int, ...], payload: bytes) -> bytes:
    return bytes([0, 0, dtype_code, len(dims)]) + b"".join(d.to_bytes(4, "big") for d in dims) + payload


def _mnist_dir(tmp_path, labels: np.ndarray, *, gz: bool = False) -> tuple:
    """A ``mnist/`` folder with 10,000 blank test images and the given labels."""
    folder = tmp_path / "mnist"
    folder.mkdir(exist_ok=True)
    images = _idx(0x08, (10000, 28, 28), bytes(10000 * 28 * 28))
    labs = _idx(0x08, (len(labels),), labels.astype(np.uint8).tobytes())
    pi, pl = folder / "t10k-images-idx3-ubyte", folder / "t10k-labels-idx1-ubyte"
    if gz:
        pi, pl = pi.with_suffix(".gz"), pl.with_suffix(".gz")
        images, labs = gzip.compress(images, 1), gzip.compress(labs, 1)
    pi.write_bytes(images)
    pl.write_bytes(labs)
    return pi, pl


def test_synthetic_test_split_reads(tmp_path):
    y = np.arange(10000) % 10
    _mnist_dir(tmp_path, y)
    x, got = load_mnist(tmp_path, "test")
    assert x.shape == (10000, 1, 28, 28) and np.array_equal(got, y)


@pytest.mark.parametrize("gz", [False, True])
@pytest.mark.parametrize("value, index", [(10, 1234), (255, 0), (42, 9999)])
def test_label_out_of_range_names_file_value_and_index(tmp_path, gz, value, index):
    from scloop.data.mnist import MNISTLabelError

    y = np.arange(10000) % 10
    y[index] = value
    y[index + 1:][:2] = 11  # later bad labels are counted, the first is named
    _, pl = _mnist_dir(tmp_path, y, gz=gz)
    n_bad = 1 + len(y[index + 1:][:2])
    with pytest.raises(MNISTLabelError) as info:
        load_mnist(tmp_path, "test")
    assert isinstance(info.value, IDXError) and isinstance(info.value, ValueError)
    msg = str(info.value)
    assert msg.startswith(f"{pl}: label {value} at index {index} is not a digit; allowed: 0..9"), msg
    assert f"({n_bad} of 10000 labels out of range)" in msg


def test_mnist_task_reports_a_bad_label_as_a_config_error(tmp_path):
    """The image task turns IDX errors into ConfigError (what `scloop run` reports, exit 2)."""
    from scloop.core.registry import TASKS, ConfigError
    from scloop.plugins import load_plugins

    load_plugins()
    y = np.arange(10000) % 10
    y[7] = 12
    _, pl = _mnist_dir(tmp_path, y)
    with pytest.raises(ConfigError, match=f"task.data_dir: {pl}: label 12 at index 7 is not a digit"):
        TASKS.create("mnist", data_dir=str(tmp_path))


LABELS_OK = _idx(0x08, (5,), bytes([1, 2, 3, 4, 5]))


@pytest.mark.parametrize("blob, match", [
    (b"", "0 bytes, too short for an IDX header"),
    (b"\x00\x00\x08", "3 bytes, too short"),
    (LABELS_OK[:6], "header truncated \\(6 bytes, need 8\\)"),
    (LABELS_OK[:-2], "payload is 3 bytes, the header says 5 \\(truncated\\)"),
    (LABELS_OK + b"\x00", "payload is 6 bytes, the header says 5 \\(trailing bytes\\)"),
    (b"\x08\x01\x00\x00" + LABELS_OK[4:], "bad IDX magic number 0x08010000"),  # byte-swapped
    (b"%PDF-1.4\n" + bytes(20), "bad IDX magic number 0x25504446"),
    (_idx(0x07, (5,), bytes(5)), "bad IDX magic number 0x00000701"),  # unknown dtype code
    (_idx(0x08, (), b""), "bad IDX magic number 0x00000800"),  # no dimensions
    (_idx(0x0C, (5,), bytes(20)), "magic number 3073, expected 2049"),  # int32 labels
    (_idx(0x08, (5, 1), bytes(5)), "magic number 2050, expected 2049"),
    (_idx(0x08, (2**31,), b""), "payload is 0 bytes, the header says 2147483648 \\(truncated\\)"),
    (gzip.compress(LABELS_OK)[:-9], "corrupt or truncated gzip stream"),
    (b"\x1f\x8b" + bytes(30), "corrupt or truncated gzip stream"),
])
def test_bad_labels_file(tmp_path, blob, match):
    bad = tmp_path / "labels-idx1-ubyte"
    bad.write_bytes(blob)
    with pytest.raises(IDXError, match=match) as info:
        read_idx(bad, magic=2049, shape=(None,))
    assert str(info.value).startswith(f"{bad}: "), str(info.value)


def test_size_overflow_is_not_a_short_array(tmp_path):
    """Sizes 2^31 x 2^31 x 2^31 multiply to 2^93; wrapped in int64 that is 0, which made an empty
    payload look complete (then a bare reshape error without the file name)."""
    bad = tmp_path / "images-idx3-ubyte"
    bad.write_bytes(_idx(0x08, (2**31, 2**31, 2**31), b""))
    with pytest.raises(IDXError, match="truncated") as info:
        read_idx(bad)
    assert str(bad) in str(info.value)


def test_shape_mismatch_and_unreadable(tmp_path, monkeypatch):
    bad = tmp_path / "images-idx3-ubyte"
    bad.write_bytes(_idx(0x08, (2, 27, 28), bytes(2 * 27 * 28)))
    with pytest.raises(IDXError, match=f"{bad}: shape 2x27x28, expected \\*x28x28"):
        read_idx(bad, magic=2051, shape=(None, 28, 28))
    with pytest.raises(IDXError, match="no such file"):
        read_idx(tmp_path / "missing")

    def denied(self):
        raise PermissionError(13, "Permission denied", str(self))

    monkeypatch.setattr(type(bad), "read_bytes", denied)
    with pytest.raises(IDXError, match=f"{bad}: cannot read .*Permission denied"):
        read_idx(bad)


# ---------------------------------------------------------------------- missing shared data: skip, or fail under CI

_MISSING_DATA_TESTS = '''
import pytest
from conftest import SHARED_DATA


def test_fixture(shared_data):
    pass


def test_require(require_data):
    require_data(SHARED_DATA / "mocap" / "index.csv", "mocap data")


def test_plain_skip_naming_a_shared_file():
    pytest.skip(f"{SHARED_DATA / 'mocap' / 'x.bvh'} not found")


def test_optional_package():
    pytest.importorskip("no_such_package_here")


@pytest.mark.skipif(True, reason="no browser")
def test_skipif():
    pass
'''


@pytest.mark.parametrize("ci, outcome", [(None, "5 skipped"), ("false", "5 skipped"),
                                         ("true", "2 failed, 2 skipped, 1 error")])
def test_missing_shared_data_fails_only_under_ci(tmp_path, ci, outcome):
    """A copy of tests/conftest.py in a folder with no ``../shared`` beside it: the data tests
    skip locally and fail under CI; skips for an optional package or a skipif mark stay skips."""
    import os
    import re
    import shutil
    import subprocess
    import sys
    from pathlib import Path

    root = tmp_path / "repo" / "tests"
    root.mkdir(parents=True)
    shutil.copy(Path(__file__).resolve().parents[1] / "conftest.py", root / "conftest.py")
    (root / "test_missing.py").write_text(_MISSING_DATA_TESTS)
    env = {k: v for k, v in os.environ.items() if k != "CI"}
    if ci is not None:
        env["CI"] = ci
    r = subprocess.run([sys.executable, "-m", "pytest", "-q", "-rfEs", "-p", "no:cacheprovider", "--rootdir",
                        str(root), str(root)], cwd=root, env=env, capture_output=True, text=True, timeout=300)
    last = r.stdout.strip().splitlines()[-1]
    assert outcome in last, r.stdout[-3000:]
    assert not re.search(r"\d+ passed", last), r.stdout[-3000:]
    if ci == "true":
        assert r.returncode == 1
        assert "shared data must be present under CI" in r.stdout
        assert "a failure under CI" in r.stdout  # the plain skip
        assert "no_such_package_here" in r.stdout and "no browser" in r.stdout  # still skips
    else:
        assert r.returncode == 0, r.stdout[-3000:]
