"""`gan-digits` generates digits from an exported MNIST model with onnxruntime alone (other data and shapes:
test_serving_shapes.py)."""

import json
from pathlib import Path

import numpy as np
import onnx
import pytest
from click.testing import CliRunner
from PIL import Image

from serving.cli import main, slerp
from tests.conftest import run_cli


@pytest.fixture
def model(trained_run) -> Path:
    return trained_run[0] / "generator.onnx"


def gan_digits(*args: str):
    return CliRunner().invoke(main, [str(a) for a in args])


def test_generate_writes_a_grid_png_by_default(model, tmp_path):
    result = gan_digits("generate", "--model", model, "--out", tmp_path / "grid.png")
    assert result.exit_code == 0, result.output
    picture = Image.open(tmp_path / "grid.png")
    assert picture.size == (2 * (4 * 30 + 2),) * 2  # 16 digits: 4x4 tiles of 28 px, 2 px borders, scale 2


def test_grid_columns_are_chosen_sensibly(model, tmp_path):
    gan_digits("generate", "--model", model, "-n", "10", "--scale", "1", "--out", tmp_path / "g.png")
    assert Image.open(tmp_path / "g.png").size == (4 * 30 + 2, 3 * 30 + 2)  # 10 digits: 4 columns, 3 rows


def test_the_same_seed_gives_the_same_digits(model, tmp_path):
    for name, seed in (("a", 1), ("b", 1), ("c", 2)):
        gan_digits("generate", "--model", model, "--seed", seed, "--format", "npy", "--out", tmp_path / f"{name}.npy")
    a, b, c = (np.load(tmp_path / f"{n}.npy") for n in "abc")
    np.testing.assert_array_equal(a, b)
    assert not np.array_equal(a, c)


def test_digits_do_not_depend_on_count_or_batch_size(model, tmp_path):
    gan_digits("generate", "--model", model, "-n", "16", "--format", "npy", "--out", tmp_path / "a.npy")
    gan_digits(
        "generate", "--model", model, "-n", "20", "--batch-size", "3", "--format", "npy", "--out", tmp_path / "b.npy"
    )
    np.testing.assert_array_equal(np.load(tmp_path / "a.npy"), np.load(tmp_path / "b.npy")[:16])


def test_npy_is_a_uint8_array_of_images(model, tmp_path):
    result = gan_digits("generate", "--model", model, "-n", "2500", "--format", "npy", "--out", tmp_path / "d.npy")
    assert result.exit_code == 0, result.output
    digits = np.load(tmp_path / "d.npy")
    assert digits.shape == (2500, 28, 28) and digits.dtype == np.uint8
    assert digits.max() > 200 and digits.min() < 50  # real pictures, not a constant
    assert [p.name for p in tmp_path.iterdir()] == ["d.npy"]  # no temporary file left behind


def test_png_format_writes_one_file_per_digit_into_a_folder(model, tmp_path):
    result = gan_digits(
        "generate", "--model", model, "-n", "5", "--format", "png", "--scale", "3", "--out", tmp_path / "digits"
    )
    assert result.exit_code == 0, result.output
    files = sorted((tmp_path / "digits").iterdir())
    assert [f.name for f in files] == [f"{i:06d}.png" for i in range(5)]
    assert Image.open(files[0]).size == (84, 84)


def test_info_prints_inputs_outputs_and_metadata(model):
    result = gan_digits("info", "--model", model)
    assert result.exit_code == 0
    assert "z [batch, 100] tensor(float)" in result.output
    assert "image [batch, 28, 28, 1] tensor(float)" in result.output
    assert "step: 300" in result.output and "latent_dim: 100" in result.output
    parsed = json.loads(gan_digits("info", "--model", model, "--json").output)
    assert parsed["metadata"]["digit"] == "-1" and parsed["inputs"][0]["name"] == "z"


def test_a_model_exported_before_shapes_were_recorded_is_of_mnist_digits(model):
    # The job's export records no image_shape, data or class_names yet: such models are MNIST's, as they always were.
    text = gan_digits("info", "--model", model).output
    assert "data:     mnist" in text
    assert "images:   28 x 28 x 1 (height x width x channels, grey)" in text
    assert "classes:  10: 0, 1, 2, 3, 4, 5, 6, 7, 8, 9; trained on all without labels" in text
    parsed = json.loads(gan_digits("info", "--model", model, "--json").output)
    assert parsed["class_names"] == [str(d) for d in range(10)] and parsed["image_shape"] == [28, 28, 1]


def interpolate(model, out, *extra):
    return gan_digits("interpolate", "--model", model, "--from", 4, "--to", 9, *extra, "--out", out)


def test_interpolate_writes_a_strip_or_an_animation(model, tmp_path):
    assert interpolate(model, tmp_path / "walk.png", "--steps", 6, "--scale", 1).exit_code == 0
    assert Image.open(tmp_path / "walk.png").size == (6 * 30 + 2, 32)
    assert interpolate(model, tmp_path / "walk.gif").exit_code == 0
    assert Image.open(tmp_path / "walk.gif").n_frames == 10


def test_interpolation_starts_and_ends_at_the_seeds_first_digits(model, tmp_path):
    interpolate(model, tmp_path / "walk.png", "--steps", 3, "--scale", 1)
    strip = np.asarray(Image.open(tmp_path / "walk.png"))
    for seed, column in ((4, 0), (9, 2)):
        npy = tmp_path / f"{seed}.npy"
        gan_digits("generate", "--model", model, "--seed", seed, "-n", 1, "--format", "npy", "--out", npy)
        left = 2 + column * 30
        np.testing.assert_array_equal(strip[2:30, left : left + 28], np.load(npy)[0])


def test_slerp_keeps_the_ends_and_the_norm_of_orthogonal_latents():
    a, b = np.array([1.0, 0.0], np.float32), np.array([0.0, 1.0], np.float32)
    np.testing.assert_allclose(slerp(a, b, 0.0), a, atol=1e-7)
    np.testing.assert_allclose(slerp(a, b, 1.0), b, atol=1e-7)
    assert np.linalg.norm(slerp(a, b, 0.5)) == pytest.approx(1.0)


def not_a_generator(path: Path) -> Path:
    node = onnx.helper.make_node("Identity", ["x"], ["y"])
    graph = onnx.helper.make_graph(
        [node],
        "identity",
        [onnx.helper.make_tensor_value_info("x", onnx.TensorProto.FLOAT, [1, 3])],
        [onnx.helper.make_tensor_value_info("y", onnx.TensorProto.FLOAT, [1, 3])],
    )
    onnx.save(onnx.helper.make_model(graph, opset_imports=[onnx.helper.make_opsetid("", 17)]), path)
    return path


@pytest.mark.parametrize(
    ("case", "message"),
    [
        ("missing model", "does not exist"),
        ("corrupt model", "cannot load"),
        ("not a generator", "is not a generator model"),
        ("digit on an all-digit model", "trained on all digits"),
        ("zero digits", "-n"),
        ("unwritable output", "cannot write"),
        ("grid not png", "must end in .png"),
    ],
)
def test_bad_input_is_one_line_exit_code_2_and_nothing_written(model, tmp_path, case, message):
    out = tmp_path / "out" / "grid.png"
    args = {
        "missing model": ["--model", tmp_path / "nope.onnx"],
        "corrupt model": ["--model", tmp_path / "corrupt.onnx"],
        "not a generator": ["--model", not_a_generator(tmp_path / "identity.onnx")],
        "digit on an all-digit model": ["--model", model, "--digit", "3"],
        "zero digits": ["--model", model, "-n", "0"],
        "unwritable output": ["--model", model],
        "grid not png": ["--model", model],
    }[case]
    (tmp_path / "corrupt.onnx").write_bytes(b"\x08\x07 definitely not protobuf" * 10)
    (tmp_path / "a-file").write_text("")
    if case == "unwritable output":
        out = tmp_path / "a-file" / "grid.png"  # its parent is a file
    if case == "grid not png":
        out = tmp_path / "out" / "grid.jpg"
    result = gan_digits("generate", *args, "--out", out)
    assert result.exit_code == 2, result.output
    assert message in result.output
    assert not out.exists() and not (tmp_path / "out").exists()


def test_serving_never_imports_tensorflow(model, tmp_path):
    # A process where importing tensorflow, keras or the job fails outright.
    code = (
        "import sys; [sys.modules.__setitem__(m, None) for m in ('tensorflow', 'keras', 'tf2onnx', 'job')]; "
        "from serving.cli import main; sys.exit(main())"
    )
    import subprocess
    import sys

    for args in (
        ["generate", "--model", str(model), "-n", "4", "--out", str(tmp_path / "g.png")],
        ["info", "--model", str(model)],
        ["interpolate", "--model", str(model), "--from", "0", "--to", "1", "--out", str(tmp_path / "w.gif")],
    ):
        result = subprocess.run([sys.executable, "-c", code, *args], capture_output=True, text=True, timeout=120)
        assert result.returncode == 0, result.stderr
    assert (tmp_path / "g.png").exists() and (tmp_path / "w.gif").exists()


def test_console_script_runs_in_a_fresh_process(model, tmp_path):
    result = run_cli("gan-digits", "generate", "--model", str(model), "-n", "4", "--out", str(tmp_path / "g.png"))
    assert result.returncode == 0, result.stderr
    assert "wrote 4 digits" in result.stderr


def test_large_counts_are_generated_batch_by_batch(model, tmp_path, monkeypatch):
    from serving.model import Generator

    seen = []
    original = Generator.images

    def recording(self, latents, labels=None):
        seen.append(len(latents))
        return original(self, latents, labels)

    monkeypatch.setattr(Generator, "images", recording)
    result = gan_digits(
        "generate",
        "--model",
        model,
        "-n",
        "5000",
        "--batch-size",
        "1024",
        "--format",
        "npy",
        "--out",
        tmp_path / "d.npy",
    )
    assert result.exit_code == 0
    assert seen == [1024, 1024, 1024, 1024, 904]
    assert np.load(tmp_path / "d.npy", mmap_mode="r").shape == (5000, 28, 28)


@pytest.mark.slow
def test_conditional_grid_shows_each_digit_on_its_own_row(conditional_run, tmp_path, monkeypatch):
    from serving.model import Generator

    asked = []
    original = Generator.images

    def recording(self, latents, labels=None):
        asked.extend(labels.tolist())
        return original(self, latents, labels)

    monkeypatch.setattr(Generator, "images", recording)
    model = conditional_run[0] / "generator.onnx"
    assert gan_digits("generate", "--model", model, "-n", 30, "--scale", 1, "--out", tmp_path / "g.png").exit_code == 0
    assert Image.open(tmp_path / "g.png").size == (3 * 30 + 2, 10 * 30 + 2)  # 10 rows of 3
    assert asked == [d for d in range(10) for _ in range(3)]
    asked.clear()
    assert gan_digits("generate", "--model", model, "-n", 5, "--digit", 7, "--out", tmp_path / "7.png").exit_code == 0
    assert asked == [7] * 5
    asked.clear()
    assert gan_digits("generate", "--model", model, "-n", 2, "--class", 3, "--out", tmp_path / "3.png").exit_code == 0
    assert asked == [3] * 2  # MNIST's class names are the digits


@pytest.mark.slow
def test_a_digit_a_conditional_mnist_model_does_not_have_is_refused(conditional_run, tmp_path):
    model = conditional_run[0] / "generator.onnx"
    result = gan_digits("generate", "--model", model, "--digit", 10, "--out", tmp_path / "g.png")
    assert result.exit_code == 2 and len(result.output.strip().splitlines()) == 1
    assert "--digit 10 is out of range" in result.output and "has 10 digits, 0..9" in result.output
    result = gan_digits("generate", "--model", model, "--class", "seven", "--out", tmp_path / "g.png")
    assert result.exit_code == 2 and "has no digit 'seven'; its digits: 0, 1, 2" in result.output
    assert not (tmp_path / "g.png").exists()


def test_interpolating_a_conditional_model_needs_a_digit(conditional_run, tmp_path):
    model = conditional_run[0] / "generator.onnx"
    refused = gan_digits("interpolate", "--model", model, "--from", 1, "--to", 2, "--out", tmp_path / "w.png")
    assert refused.exit_code == 2 and "--digit" in refused.output
    assert (
        gan_digits(
            "interpolate", "--model", model, "--from", 1, "--to", 2, "--digit", 4, "--out", tmp_path / "w.png"
        ).exit_code
        == 0
    )
