"""Your own images, end to end: data of another shape trains, exports and generates, its shape and classes carried
from the data to the model's metadata and gan-digits' pictures."""

import json
import shutil

import numpy as np
import onnx
import pytest
from PIL import Image

from job.loop.train import train
from tests.conftest import (
    SMALL_MNIST,
    invoke_cli,
    mnist_png_folders,
    progress_records,
    run_cli,
    short_run_config,
    tinted_mnist_32,
    unlabelled_npz,
)

# Every test trains. One pytest-xdist worker runs the whole module: the tinted DCGAN, trained once.
pytestmark = [pytest.mark.slow, pytest.mark.xdist_group("test_shapes")]


def metadata(model) -> dict:
    return {prop.key: prop.value for prop in onnx.load(model).metadata_props}


@pytest.fixture(scope="module")
def tinted_dcgan(tmp_path_factory):
    """A conditional DCGAN on MNIST padded to 32x32 and tinted into RGB (quality off: the tinted set's classifier is
    not what these tests are about)."""
    root = tmp_path_factory.mktemp("tinted")
    out = root / "run"
    train(
        short_run_config(
            out,
            data=tinted_mnist_32(root / "tinted.npz"),
            arch="dcgan",
            conditional=True,
            steps=20,
            checkpoint_every=20,
            sample_every=20,
            log_every=10,
            quality=False,
        )
    )
    return out


def test_a_conditional_dcgan_on_rgb_images_exports_their_shape_and_classes(tinted_dcgan):
    meta = metadata(tinted_dcgan / "generator.onnx")
    assert json.loads(meta["image_shape"]) == [32, 32, 3] and meta["data"] == "tinted" and meta["arch"] == "dcgan"
    assert json.loads(meta["class_names"])[7] == "tinted 7"
    config = json.loads((tinted_dcgan / "config.json").read_text())
    assert config["data_set"]["image_shape"] == [32, 32, 3]
    assert Image.open(tinted_dcgan / "samples" / "step_000020.png").mode == "RGB"


def test_gan_digits_draws_the_class_asked_for_by_name_in_rgb(tinted_dcgan, tmp_path):
    model = tinted_dcgan / "generator.onnx"
    out = tmp_path / "threes.npy"
    result = run_cli("gan-digits", "generate", "--model", str(model), "--class", "tinted 3", "-n", "6",
                     "--format", "npy", "--out", str(out))  # fmt: skip
    assert result.returncode == 0, result.stderr
    assert np.load(out).shape == (6, 32, 32, 3)
    grid = tmp_path / "grid.png"
    assert run_cli("gan-digits", "generate", "--model", str(model), "-n", "20", "--out", str(grid)).returncode == 0
    picture = Image.open(grid)
    assert picture.mode == "RGB" and picture.size == (2 * (2 * 34 + 2), 2 * (10 * 34 + 2))  # a row per class
    info = run_cli("gan-digits", "info", "--model", str(model)).stdout
    assert "tinted 9" in info and "32" in info


def test_labelled_png_folders_train_resized_with_quality_measured_on_their_own_classes(tmp_path):
    out = tmp_path / "run"
    result = invoke_cli(
        "train", "--data", str(mnist_png_folders(tmp_path)), "--out", str(out), "--steps", "200",
        "--image-size", "16x20", "--channels", "3", "--sample-every", "100", "--log-every", "100",
        "--quality-samples", "100",
    )  # fmt: skip
    assert result.returncode == 0, result.stderr
    assert "classes covered" in result.stderr  # measured: the data has labels, of 3 classes
    assert len(progress_records(out)[-1]["class_shares"]) == 3
    assert json.loads(metadata(out / "generator.onnx")["class_names"]) == ["one", "seven", "zero"]
    assert json.loads(metadata(out / "generator.onnx")["image_shape"]) == [16, 20, 3]
    # evaluate makes the folder's 28x28 grey images to the model's shape itself
    result = invoke_cli("evaluate", "--model", str(out / "generator.onnx"), "--data",
                     str(mnist_png_folders(tmp_path / "again")), "--samples", "100", "--json")  # fmt: skip
    assert result.returncode == 0, result.stderr
    assert len(json.loads(result.stdout.splitlines()[-1])["class_shares"]) == 3


def test_unlabelled_images_train_with_quality_off_and_no_classes(tmp_path):
    out = tmp_path / "run"
    result = invoke_cli(
        "train", "--data", str(unlabelled_npz(tmp_path / "plain.npz")), "--out", str(out), "--steps", "100",
        "--sample-every", "100", "--log-every", "50",
    )  # fmt: skip
    assert result.returncode == 0, result.stderr
    assert "quality is off" in result.stderr and "has no labels" in result.stderr
    assert all("frechet_distance" not in record for record in progress_records(out))
    meta = metadata(out / "generator.onnx")
    assert "class_names" not in meta and json.loads(meta["image_shape"]) == [28, 28, 1]
    refused = run_cli("gan-digits", "generate", "--model", str(out / "generator.onnx"), "--digit", "1",
                      "--out", str(tmp_path / "g.png"))  # fmt: skip
    assert refused.returncode == 2 and "unlabelled" in refused.stderr
    unmeasured = invoke_cli("evaluate", "--model", str(out / "generator.onnx"))
    assert unmeasured.returncode == 2 and "unlabelled data" in unmeasured.stderr
    assert "pass labelled data of the same kind of images with --data" in unmeasured.stderr


def test_a_run_begun_before_data_shapes_were_recorded_still_resumes_and_exports(trained_run, tmp_path):
    run = tmp_path / "old"
    shutil.copytree(trained_run[0], run)
    config = json.loads((run / "config.json").read_text())
    for key in ("arch", "image_size", "channels", "data_set"):
        del config[key]
    (run / "config.json").write_text(json.dumps(config | {"data": None}))
    exported = invoke_cli("export", "--run", str(run), "--out", str(tmp_path / "old.onnx"))
    assert exported.returncode == 0, exported.stderr
    assert json.loads(metadata(tmp_path / "old.onnx")["image_shape"]) == [28, 28, 1]
    resumed = invoke_cli("train", "--out", str(run), "--data", str(SMALL_MNIST), "--steps", "350", "--seed", "7",
                      "--checkpoint-every", "50", "--sample-every", "50", "--log-every", "50")  # fmt: skip
    assert resumed.returncode == 0, resumed.stderr
    assert "resuming from the checkpoint of step 300" in resumed.stderr
