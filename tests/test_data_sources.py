"""Any image data: the shape, the labels and the class names come from the data, whatever its source."""

from pathlib import Path

import keras
import numpy as np
import pytest
from PIL import Image

from job.data.load import DataError, load_data, training_set
from tests.conftest import image_folder, mnist_png_folders, tinted_mnist_32, unlabelled_npz


def test_an_rgb_npz_keeps_its_shape_and_names_its_classes(tmp_path):
    data = load_data(tinted_mnist_32(tmp_path / "tinted.npz"))
    assert data.image_shape == (32, 32, 3) and data.x_test.shape[1:] == (32, 32, 3)
    assert data.class_names[3] == "tinted 3" and data.num_classes == 10
    assert data.name == "tinted"


def test_an_npz_without_labels_is_unlabelled_data(tmp_path):
    data = load_data(unlabelled_npz(tmp_path / "plain.npz"))
    assert not data.labelled and data.class_names == () and data.image_shape == (28, 28, 1)
    images, labels = training_set(data, -1)
    assert images.shape == (1000, 28, 28, 1) and labels is None


def test_class_folders_are_labelled_by_their_sorted_names(tmp_path):
    data = load_data(mnist_png_folders(tmp_path, per_class=5))
    assert data.class_names == ("one", "seven", "zero")
    assert data.image_shape == (28, 28, 1)  # grey PNGs stay one channel
    assert np.bincount(data.y_train).tolist() == [5, 5, 5]
    assert data.x_test is None


def test_a_flat_folder_is_unlabelled(tmp_path):
    data = load_data(image_folder(tmp_path, {"": [(12, 20, "RGB")] * 4}))
    assert not data.labelled and data.x_train.shape == (4, 12, 20, 3)


def test_image_size_and_channels_make_mixed_images_uniform(tmp_path):
    folder = image_folder(tmp_path, {"a": [(12, 12, "L"), (20, 16, "RGB")], "b": [(9, 30, "RGB")]})
    data = load_data(folder, image_size=(16, 24), channels=1)
    assert data.x_train.shape == (3, 16, 24, 1)


def test_channels_convert_an_npz_both_ways(tmp_path, small_mnist):
    assert load_data(small_mnist, channels=3).image_shape == (28, 28, 3)
    grey = load_data(tinted_mnist_32(tmp_path / "t.npz"), channels=1, image_size=(16, 16))
    assert grey.image_shape == (16, 16, 1) and grey.x_test.shape[1:] == (16, 16, 1)


def test_the_same_images_resized_are_other_data(small_mnist):
    assert load_data(small_mnist).fingerprint() != load_data(small_mnist, image_size=(32, 32)).fingerprint()


@pytest.mark.parametrize(
    ("spec", "message"),
    [
        ({"": [(12, 12, "L"), (12, 16, "L")]}, r"different sizes \(0.png 12x12, 1.png 12x16\): pass --image-size"),
        ({"": [(6, 12, "L")]}, "too small, at least 8x8"),
        ({}, "holds no images"),
    ],
)
def test_image_folders_that_cannot_be_made_uniform_are_one_line_errors(tmp_path, spec, message):
    folder = image_folder(tmp_path, spec)
    folder.mkdir(exist_ok=True)
    with pytest.raises(DataError, match=message):
        load_data(folder)


def test_an_unreadable_image_is_named(tmp_path):
    folder = image_folder(tmp_path, {"cats": [(12, 12, "L")], "dogs": [(12, 12, "L")]})
    (folder / "dogs" / "broken.jpg").write_bytes(b"\xff\xd8 not really a jpeg")
    with pytest.raises(DataError, match=r"cannot read image .*dogs/broken.jpg"):
        load_data(folder)


def test_images_beside_class_folders_are_refused(tmp_path):
    folder = image_folder(tmp_path, {"": [(12, 12, "L")], "cats": [(12, 12, "L")]})
    with pytest.raises(DataError, match="mixes image files and class folders"):
        load_data(folder)


def test_16_bit_grey_pngs_keep_their_greys(tmp_path, small_mnist):
    with np.load(small_mnist) as npz:
        digits = npz["x_train"][:6]
    folder = tmp_path / "deep"
    folder.mkdir()
    for index, digit in enumerate(digits):
        Image.fromarray(digit.astype(np.uint16) * 257).save(folder / f"{index}.png")  # 0..255 -> 0..65535
    assert Image.open(folder / "0.png").mode.startswith("I")  # read back as 16-bit
    assert np.array_equal(load_data(folder).x_train[..., 0], digits)


def test_a_keras_data_set_is_loaded_by_name_with_its_class_names(monkeypatch):
    images = np.zeros((20, 32, 32, 3), np.uint8)
    labels = (np.arange(20) % 10).reshape(-1, 1)  # CIFAR-10's labels come as (N, 1)
    monkeypatch.setattr(keras.datasets.cifar10, "load_data", lambda: ((images, labels), (images, labels)))
    data = load_data("cifar10")
    assert data.name == "cifar10" and data.image_shape == (32, 32, 3)
    assert data.class_names[:3] == ("airplane", "automobile", "bird") and data.y_train.shape == (20,)


def test_a_failed_download_is_one_line(monkeypatch, caplog):
    def offline():
        raise OSError("network unreachable")

    monkeypatch.setattr(keras.datasets.fashion_mnist, "load_data", offline)
    with (
        caplog.at_level("INFO"),
        pytest.raises(DataError, match="could not download fashion_mnist through Keras .*--data PATH"),
    ):
        load_data("fashion_mnist")
    assert caplog.records == []  # the error's line is the only one the user sees: nothing logged before it


def test_a_name_that_is_neither_a_path_nor_a_data_set_says_what_it_could_be(tmp_path):
    with pytest.raises(DataError, match="mnist, fashion_mnist, cifar10"):
        load_data(str(tmp_path / "mnsit"))


def test_class_names_in_an_npz_must_cover_its_labels(tmp_path, small_mnist):
    with np.load(small_mnist) as npz:
        arrays = dict(npz)
    np.savez(tmp_path / "named.npz", **arrays, class_names=np.array(["a", "b"]))
    with pytest.raises(DataError, match="names 2 classes but has label 9"):
        load_data(Path(tmp_path / "named.npz"))


def test_class_names_must_be_unique(tmp_path, small_mnist):
    with np.load(small_mnist) as npz:
        arrays = dict(npz)
    np.savez(tmp_path / "twice.npz", **arrays, class_names=np.array(["a"] * 10))
    with pytest.raises(DataError, match="unique and printable"):
        load_data(tmp_path / "twice.npz")
