"""MNIST-style data (a Keras-style .npz or a folder of IDX files) loads as (N, H, W, C) images; anything else is a
one-line DataError. Other shapes and sources: tests/test_data_sources.py."""

import gzip
from pathlib import Path

import numpy as np
import pytest

from job.data.load import DataError, load_data, training_images


def write_idx(path: Path, array: np.ndarray, compress: bool = False) -> None:
    header = bytes([0, 0, 8, array.ndim]) + b"".join(d.to_bytes(4, "big") for d in array.shape)
    data = header + array.astype(np.uint8).tobytes()
    path.write_bytes(gzip.compress(data) if compress else data)


@pytest.fixture
def arrays(small_mnist):
    with np.load(small_mnist) as npz:
        return {key: npz[key] for key in npz.files}


def test_npz_loads_with_kerass_keys(small_mnist):
    mnist = load_data(small_mnist)
    assert mnist.x_train.shape == (1000, 28, 28, 1) and mnist.x_train.dtype == np.uint8
    assert mnist.y_train.shape == (1000,)
    assert mnist.x_test.shape == (200, 28, 28, 1)
    assert mnist.class_names == tuple("0123456789") and mnist.name == "mnist_small"


@pytest.mark.parametrize("compress", [False, True])
@pytest.mark.parametrize("dotted", [False, True])
def test_idx_folder_loads_gzipped_or_not(tmp_path, arrays, compress, dotted):
    for key, stem in [
        ("x_train", "train-images-idx3-ubyte"),
        ("y_train", "train-labels-idx1-ubyte"),
        ("x_test", "t10k-images-idx3-ubyte"),
        ("y_test", "t10k-labels-idx1-ubyte"),
    ]:
        name = stem.replace("-idx", ".idx") if dotted else stem
        write_idx(tmp_path / (name + (".gz" if compress else "")), arrays[key], compress)
    mnist = load_data(tmp_path)
    np.testing.assert_array_equal(mnist.x_train, arrays["x_train"][..., np.newaxis])
    np.testing.assert_array_equal(mnist.y_test, arrays["y_test"])


def test_digit_filter_keeps_only_that_digit_scaled_to_minus_one_to_one(small_mnist):
    mnist = load_data(small_mnist)
    sevens = training_images(mnist, 7)
    assert sevens.shape == ((mnist.y_train == 7).sum(), 28, 28, 1)
    assert sevens.dtype == np.uint8  # resident as uint8; the step scales each batch to [-1, 1]
    assert sevens.min() == 0 and sevens.max() == 255
    assert len(training_images(mnist, -1)) == 1000


def test_a_digit_with_no_images_is_an_error(tmp_path, arrays):
    keep = arrays["y_train"] != 3
    np.savez(tmp_path / "no3.npz", x_train=arrays["x_train"][keep], y_train=arrays["y_train"][keep])
    with pytest.raises(DataError, match="no images of class 3"):
        training_images(load_data(tmp_path / "no3.npz"), 3)


def test_missing_file_is_an_error(tmp_path):
    with pytest.raises(DataError, match="not found"):
        load_data(tmp_path / "nope.npz")


def test_a_file_that_is_not_npz_is_an_error(tmp_path):
    (tmp_path / "junk.npz").write_text("hello")
    with pytest.raises(DataError, match="cannot read"):
        load_data(tmp_path / "junk.npz")


@pytest.mark.parametrize(
    ("change", "message"),
    [
        (lambda a: a.pop("y_train"), "both splits have labels"),
        (lambda a: a.update(x_train=a["x_train"][:, :27]), "x_test's images"),
        (lambda a: a.update(x_train=a["x_train"].astype(np.float32)), "must be uint8"),
        (lambda a: a.update(x_train=a["x_train"][..., np.newaxis].repeat(2, -1)), r"1 or 3\)"),
        (lambda a: a.update(y_train=a["y_train"][:10]), "integer labels"),
        (lambda a: a.update(y_train=a["y_train"].astype(int) - 1), "outside 0..999"),
    ],
)
def test_wrong_arrays_are_errors(tmp_path, arrays, change, message):
    change(arrays)
    np.savez(tmp_path / "bad.npz", **arrays)
    with pytest.raises(DataError, match=message):
        load_data(tmp_path / "bad.npz")


def test_idx_file_with_a_bad_magic_number_is_an_error(tmp_path, arrays):
    write_idx(tmp_path / "train-images-idx3-ubyte", arrays["x_train"])
    write_idx(tmp_path / "train-labels-idx1-ubyte", arrays["y_train"])
    raw = bytearray((tmp_path / "train-labels-idx1-ubyte").read_bytes())
    raw[2] = 0x0D  # float data, not unsigned bytes
    (tmp_path / "train-labels-idx1-ubyte").write_bytes(bytes(raw))
    with pytest.raises(DataError, match="magic number"):
        load_data(tmp_path)


def test_truncated_idx_file_is_an_error(tmp_path, arrays):
    write_idx(tmp_path / "train-images-idx3-ubyte", arrays["x_train"])
    write_idx(tmp_path / "train-labels-idx1-ubyte", arrays["y_train"][:-1])
    raw = (tmp_path / "train-images-idx3-ubyte").read_bytes()
    (tmp_path / "train-images-idx3-ubyte").write_bytes(raw[:-100])
    with pytest.raises(DataError, match="header promises"):
        load_data(tmp_path)


def test_folder_without_training_files_is_an_error(tmp_path):
    with pytest.raises(DataError, match="holds no images"):
        load_data(tmp_path)
