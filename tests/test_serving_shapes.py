"""`gan-digits` draws whatever the model was trained on: its image shape, channels, data name and classes come from
the model, and models exported before the model recorded them are MNIST's 28x28 grey digits 0..9.

The models here are small ONNX graphs built in the test (no training, no TensorFlow): latents -> a linear map ->
tanh -> [batch, height, width, channels]. A conditional one adds a per-class offset that saturates the class's own
colour channel (class 0 red, 1 green, 2 blue), so a picture shows which class each image was drawn as.
"""

import json
from pathlib import Path

import numpy as np
import onnx
import pytest
from click.testing import CliRunner
from onnx import TensorProto, helper, numpy_helper
from PIL import Image

from serving.cli import main
from serving.model import Generator, ModelError

LATENT_DIM = 4
RGB = (12, 20, 3)  # wider than high, to catch a height and width swapped
COLOURS = ["red", "green", "blue"]


def build_model(
    path: Path,
    shape: tuple[int, int, int] = RGB,
    metadata: dict[str, object] | None = None,
    conditional: bool = False,
    num_labels: int = 3,
) -> Path:
    """A generator ONNX model with `metadata` (strings, or values written as JSON)."""
    height, width, channels = shape
    pixels = height * width * channels
    rng = np.random.default_rng(0)
    initializers = [
        numpy_helper.from_array(0.3 * rng.standard_normal((LATENT_DIM, pixels)).astype(np.float32), "weights"),
        numpy_helper.from_array(np.array([-1, *shape], np.int64), "shape"),
    ]
    inputs = [helper.make_tensor_value_info("z", TensorProto.FLOAT, ["batch", LATENT_DIM])]
    nodes = [helper.make_node("MatMul", ["z", "weights"], ["mixed"])]
    if conditional:
        offsets = np.full((num_labels, height, width, channels), -3.0, np.float32)
        for label in range(num_labels):
            offsets[label, ..., label % channels] = 3.0  # class r saturates channel r: red, green, blue
        initializers.append(numpy_helper.from_array(offsets.reshape(num_labels, pixels), "offsets"))
        inputs.append(helper.make_tensor_value_info("label", TensorProto.INT64, ["batch"]))
        nodes = [
            helper.make_node("MatMul", ["z", "weights"], ["noise"]),
            helper.make_node("Gather", ["offsets", "label"], ["offset"]),
            helper.make_node("Add", ["noise", "offset"], ["mixed"]),
        ]
    nodes += [
        helper.make_node("Tanh", ["mixed"], ["flat"]),
        helper.make_node("Reshape", ["flat", "shape"], ["image"]),
    ]
    output = helper.make_tensor_value_info("image", TensorProto.FLOAT, ["batch", *shape])
    graph = helper.make_graph(nodes, "generator", inputs, [output], initializers)
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    texts = {key: value if isinstance(value, str) else json.dumps(value) for key, value in (metadata or {}).items()}
    helper.set_model_props(model, {"latent_dim": str(LATENT_DIM), **texts})
    onnx.checker.check_model(model)
    onnx.save(model, path)
    return path


def shapes_metadata(shape=RGB, classes: list[str] | None = COLOURS, data="colours", trained=-1) -> dict[str, object]:
    """What the job writes into a model of any data (class_names absent for unlabelled data)."""
    metadata = {"image_shape": list(shape), "data": data, "digit": str(trained)}
    return metadata | ({"class_names": classes} if classes is not None else {})


@pytest.fixture
def rgb(tmp_path) -> Path:
    """A conditional model of 12x20 RGB images with three named classes."""
    return build_model(tmp_path / "rgb.onnx", metadata=shapes_metadata(), conditional=True)


@pytest.fixture
def unlabelled(tmp_path) -> Path:
    """An unconditional model of 16x16 grey images of unlabelled data."""
    return build_model(tmp_path / "faces.onnx", (16, 16, 1), shapes_metadata((16, 16, 1), None, "faces"))


def gan_digits(*args):
    return CliRunner().invoke(main, [str(a) for a in args])


def assert_one_line_error(result, *fragments: str) -> None:
    assert result.exit_code == 2, result.output
    assert len(result.output.strip().splitlines()) == 1 and result.output.startswith("Error: "), result.output
    assert "Traceback" not in result.output
    for fragment in fragments:
        assert fragment in result.output


def dominant_channels(picture: np.ndarray) -> np.ndarray:
    """For RGB images (..., H, W, 3): which channel is brightest on average in each."""
    return picture.reshape(*picture.shape[:-3], -1, 3).mean(axis=-2).argmax(axis=-1)


# The model tells its shape, classes and data.


def test_generator_reads_shape_classes_and_data_from_the_model(rgb, unlabelled):
    model = Generator(rgb)
    assert model.image_shape == (12, 20, 3)
    assert model.class_names == COLOURS and model.num_classes == 3 and model.data_name == "colours"
    assert model.conditional and model.trained_class == -1
    faces = Generator(unlabelled)
    assert faces.image_shape == (16, 16, 1) and faces.class_names == [] and faces.num_classes == 0
    assert faces.data_name == "faces"


def test_a_model_exported_before_shapes_were_recorded_is_of_mnist_digits(tmp_path):
    old = Generator(build_model(tmp_path / "old.onnx", (28, 28, 1), {"digit": "-1", "step": "300"}))
    assert old.image_shape == (28, 28, 1)
    assert old.class_names == [str(d) for d in range(10)] and old.data_name == "mnist" and old.of_digits


def test_choose_class_turns_a_name_or_an_index_into_the_label(rgb):
    model = Generator(rgb)
    assert model.choose_class(name="green") == 1
    assert model.choose_class(digit=2) == 2
    assert model.choose_class() is None
    with pytest.raises(ModelError, match="has no class 'purple'; its classes: 0 red, 1 green, 2 blue"):
        model.choose_class(name="purple")
    with pytest.raises(ModelError, match="out of range"):
        model.choose_class(digit=3)


# Grids, PNG folders and .npy files of any shape; RGB stays RGB.


def test_a_conditional_rgb_grid_has_one_row_per_class(rgb, tmp_path):
    result = gan_digits("generate", "--model", rgb, "-n", 6, "--scale", 1, "--out", tmp_path / "grid.png")
    assert result.exit_code == 0, result.output
    assert "wrote 6 images" in result.output
    picture = Image.open(tmp_path / "grid.png")
    assert picture.mode == "RGB"
    assert picture.size == (2 * (20 + 2) + 2, 3 * (12 + 2) + 2)  # 2 columns of 20 px, 3 rows of 12 px, 2 px borders
    pixels = np.asarray(picture)
    tiles = np.stack([pixels[2 + r * 14 : 14 + r * 14, 2 + c * 22 : 22 + c * 22] for r in range(3) for c in range(2)])
    assert dominant_channels(tiles).tolist() == [0, 0, 1, 1, 2, 2]  # row 0 red, row 1 green, row 2 blue


def test_a_conditional_grid_without_a_count_gives_every_class_a_row_of_four(rgb, tmp_path):
    result = gan_digits("generate", "--model", rgb, "--scale", 1, "--out", tmp_path / "grid.png")
    assert result.exit_code == 0, result.output
    assert "wrote 12 images" in result.output
    pixels = np.asarray(Image.open(tmp_path / "grid.png"))
    assert pixels.shape == (3 * (12 + 2) + 2, 4 * (20 + 2) + 2, 3)  # 3 rows (one per class) of 4 columns
    tiles = np.stack([pixels[2 + r * 14 : 14 + r * 14, 2 + c * 22 : 22 + c * 22] for r in range(3) for c in range(4)])
    assert dominant_channels(tiles).tolist() == [0] * 4 + [1] * 4 + [2] * 4


def test_a_conditional_grid_of_a_count_that_is_no_multiple_of_the_classes_still_has_every_class(rgb, tmp_path):
    result = gan_digits("generate", "--model", rgb, "-n", 4, "--scale", 1, "--out", tmp_path / "grid.png")
    assert result.exit_code == 0, result.output
    pixels = np.asarray(Image.open(tmp_path / "grid.png"))
    assert pixels.shape == (4 * (12 + 2) + 2, 1 * (20 + 2) + 2, 3)  # one column: a row per class, then one more
    tiles = np.stack([pixels[2 + r * 14 : 14 + r * 14, 2:22] for r in range(4)])
    assert dominant_channels(tiles).tolist() == [0, 1, 2, 0]


def test_the_png_format_writes_one_rgb_file_per_image(rgb, tmp_path):
    result = gan_digits("generate", "--model", rgb, "-n", 4, "--format", "png", "--scale", 2, "--out", tmp_path / "p")
    assert result.exit_code == 0, result.output
    files = sorted((tmp_path / "p").iterdir())
    assert len(files) == 4
    assert {(Image.open(f).mode, Image.open(f).size) for f in files} == {("RGB", (40, 24))}


def test_npy_keeps_the_colour_channels(rgb, tmp_path):
    result = gan_digits("generate", "--model", rgb, "-n", 5, "--format", "npy", "--out", tmp_path / "i.npy")
    assert result.exit_code == 0, result.output
    images = np.load(tmp_path / "i.npy")
    assert images.shape == (5, 12, 20, 3) and images.dtype == np.uint8


def test_class_chooses_by_name(rgb, tmp_path):
    result = gan_digits(
        "generate", "--model", rgb, "-n", 5, "--class", "green", "--format", "npy", "--out", tmp_path / "g.npy"
    )
    assert result.exit_code == 0, result.output
    assert dominant_channels(np.load(tmp_path / "g.npy")).tolist() == [1] * 5


def test_a_grey_model_of_any_size_draws_grey_pictures_and_arrays(unlabelled, tmp_path):
    assert (
        gan_digits("generate", "--model", unlabelled, "-n", 4, "--scale", 1, "--out", tmp_path / "g.png").exit_code == 0
    )
    picture = Image.open(tmp_path / "g.png")
    assert picture.mode == "L" and picture.size == (2 * 18 + 2, 2 * 18 + 2)
    assert (
        gan_digits("generate", "--model", unlabelled, "-n", 3, "--format", "npy", "--out", tmp_path / "g.npy").exit_code
        == 0
    )
    assert np.load(tmp_path / "g.npy").shape == (3, 16, 16)


def test_interpolate_walks_within_a_class_chosen_by_name(rgb, tmp_path):
    args = ("interpolate", "--model", rgb, "--from", 1, "--to", 2, "--steps", 4, "--scale", 1)
    refused = gan_digits(*args, "--out", tmp_path / "w.png")
    assert_one_line_error(refused, "conditional model", "--digit or --class")
    assert gan_digits(*args, "--class", "blue", "--out", tmp_path / "w.png").exit_code == 0
    strip = Image.open(tmp_path / "w.png")
    assert strip.mode == "RGB" and strip.size == (4 * 22 + 2, 12 + 4)
    frames = np.stack([np.asarray(strip)[2:14, 2 + i * 22 : 22 + i * 22] for i in range(4)])
    assert dominant_channels(frames).tolist() == [2] * 4


# Classes the model cannot draw: one line, exit code 2, nothing written.


@pytest.mark.parametrize(
    ("choice", "fragments"),
    [
        (["--class", "purple"], ["has no class 'purple'", "0 red, 1 green, 2 blue"]),
        (["--digit", "5"], ["--digit 5 is out of range", "3 classes, 0..2"]),
        (["--digit", "-1"], ["--digit -1 is out of range"]),
        (["--digit", "1", "--class", "green"], ["--digit and --class", "one of them"]),
    ],
)
def test_a_class_the_model_does_not_have_is_refused(rgb, tmp_path, choice, fragments):
    result = gan_digits("generate", "--model", rgb, *choice, "--out", tmp_path / "out" / "g.png")
    assert_one_line_error(result, *fragments)
    assert not (tmp_path / "out").exists()


def test_a_long_list_of_classes_is_shortened_in_messages(tmp_path):
    names = [f"kind{i}" for i in range(1000)]
    model = build_model(
        tmp_path / "many.onnx", metadata=shapes_metadata(classes=names), conditional=True, num_labels=1000
    )
    result = gan_digits("generate", "--model", model, "--class", "kind1000", "--out", tmp_path / "g.png")
    assert_one_line_error(result, "0 kind0, 1 kind1", "…, 999 kind999 (1000 in all)")
    assert len(result.output) < 400


@pytest.mark.parametrize("choice", [["--digit", "0"], ["--class", "0"]])
def test_an_unlabelled_model_has_no_classes_to_choose(unlabelled, tmp_path, choice):
    result = gan_digits("generate", "--model", unlabelled, *choice, "--out", tmp_path / "g.png")
    assert_one_line_error(result, "unlabelled data (faces)", "no classes to choose")


def test_a_model_trained_on_one_class_draws_that_class_only(tmp_path):
    model = build_model(tmp_path / "green.onnx", metadata=shapes_metadata(trained=1))
    assert gan_digits("generate", "--model", model, "--class", "green", "--out", tmp_path / "g.png").exit_code == 0
    result = gan_digits("generate", "--model", model, "--class", "red", "--out", tmp_path / "r.png")
    assert_one_line_error(result, "trained on class 1 (green) only, not class 0 (red)")


def test_a_model_trained_on_all_classes_without_labels_cannot_choose_one(tmp_path):
    model = build_model(tmp_path / "all.onnx", metadata=shapes_metadata())
    result = gan_digits("generate", "--model", model, "--class", "red", "--out", tmp_path / "g.png")
    assert_one_line_error(result, "trained on all classes without labels", "cannot generate a chosen class")


# info


def test_info_tells_the_data_the_image_shape_and_the_classes(rgb, unlabelled):
    text = gan_digits("info", "--model", rgb).output
    assert "data:     colours" in text
    assert "images:   12 x 20 x 3 (height x width x channels, RGB)" in text
    assert "classes:  3: 0 red, 1 green, 2 blue; conditional" in text
    record = json.loads(gan_digits("info", "--model", rgb, "--json").output)
    assert record["data"] == "colours" and record["image_shape"] == [12, 20, 3]
    assert record["class_names"] == COLOURS and record["conditional"] is True
    text = gan_digits("info", "--model", unlabelled).output
    assert "classes:  none (unlabelled data)" in text and "16 x 16 x 1 (height x width x channels, grey)" in text
    assert json.loads(gan_digits("info", "--model", unlabelled, "--json").output)["class_names"] == []


def test_info_shortens_many_classes_in_text_and_lists_them_all_in_json(tmp_path):
    names = [f"kind{i}" for i in range(500)]
    model = build_model(tmp_path / "many.onnx", metadata=shapes_metadata(classes=names))
    text = gan_digits("info", "--model", model).output
    classes = next(line for line in text.splitlines() if line.startswith("classes:"))
    assert classes.startswith("classes:  500: 0 kind0, 1 kind1,") and "…, 499 kind499 (500 in all)" in classes
    assert json.loads(gan_digits("info", "--model", model, "--json").output)["class_names"] == names


# Malformed metadata: refused in one line, never a traceback.


@pytest.mark.parametrize(
    ("metadata", "message"),
    [
        ({"class_names": "cat, dog"}, "class_names is 'cat, dog', expected a JSON list of strings"),
        ({"class_names": ["cat", 1]}, "expected a JSON list of strings"),
        ({"class_names": {"0": "cat"}}, "expected a JSON list of strings"),
        ({"class_names": [f"c{i}" for i in range(1001)]}, "lists 1001 classes, expected 1 to 1000"),
        ({"class_names": []}, "lists 0 classes"),
        ({"class_names": ["cat", "dog", "cat"]}, "repeats 'cat'"),
        ({"class_names": ["cat", "dog\nbird"]}, "names a class 'dog\\nbird', expected names of printable characters"),
        ({"class_names": ["cat", ""]}, "names a class ''"),
        ({"image_shape": [12, 20]}, "image_shape is '[12, 20]', expected a JSON list [height, width, channels]"),
        ({"image_shape": [12, 0, 3]}, "3 positive integers"),
        ({"image_shape": [12.0, 20, 3]}, "3 positive integers"),
        ({"image_shape": [True, 20, 3]}, "3 positive integers"),
        ({"image_shape": "12x20x3"}, "3 positive integers"),
        ({"image_shape": [20, 12, 3]}, "says image_shape [20, 12, 3], the output 'image' draws [12, 20, 3]"),
        ({"digit": "3"}, "says digit '3', expected -1 (all) or 0..2"),
        ({"class_names": '["a",\n'}, "class_names is '[\"a\",\\n'"),
    ],
)
def test_malformed_metadata_is_refused_in_one_line(tmp_path, metadata, message):
    model = build_model(tmp_path / "bad.onnx", metadata=shapes_metadata() | metadata)
    for command in ("info", "generate"):
        result = gan_digits(
            command, "--model", model, *(["--out", tmp_path / "g.png"] if command == "generate" else [])
        )
        assert_one_line_error(result, message)


def test_a_conditional_model_of_unlabelled_data_is_refused(tmp_path):
    model = build_model(tmp_path / "c.onnx", metadata=shapes_metadata(classes=None), conditional=True)
    assert_one_line_error(gan_digits("info", "--model", model), "conditional model", "names no class_names")


@pytest.mark.parametrize("shape", [(12, 20, 2), (12, 20, 4)])
def test_an_output_with_neither_one_nor_three_channels_is_not_a_generator(tmp_path, shape):
    model = build_model(tmp_path / "c.onnx", shape, {})
    assert_one_line_error(gan_digits("info", "--model", model), "is not a generator model", "channels 1 or 3")
