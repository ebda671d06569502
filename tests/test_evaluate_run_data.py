"""`gan-job evaluate --model RUN/generator.onnx` knows its run: without --data it measures against the data the run
recorded (a Keras data set's name, or a path that is still there), offline, and says in one line when that path is
gone."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import onnx
import pytest
from click.testing import CliRunner

import job.data.load
from job.cli import main as gan_job
from job.errors import ConfigError
from job.rundir.claim import data_of
from serving.model import META_DATA
from tests.conftest import SMALL_MNIST, recorded_run
from tests.test_output_guard import assert_refused, without_tensorflow


def recording(run: Path, **values: object) -> None:
    """Change what the run's config.json records."""
    saved = json.loads((run / "config.json").read_text())
    (run / "config.json").write_text(json.dumps(saved | values))


def trained_on_a_local_mnist_npz(trained_run, tmp_path: Path) -> Path:
    """The trained run as `gan-job train --data FOLDER/mnist.npz` leaves it: its config.json records the path, its
    model's metadata only the file's stem, mnist, the name of a Keras data set too."""
    run = tmp_path / "run"
    shutil.copytree(trained_run[0], run)
    (tmp_path / "local").mkdir()
    local = shutil.copy(SMALL_MNIST, tmp_path / "local" / "mnist.npz")
    recording(run, data=str(local))
    model = onnx.load(str(run / "generator.onnx"))
    for prop in model.metadata_props:
        if prop.key == META_DATA:
            prop.value = "mnist"
    onnx.save(model, str(run / "generator.onnx"))
    return run


def evaluate(*args: str | Path) -> dict:
    result = CliRunner().invoke(gan_job, ["evaluate", *map(str, args), "--samples", "100", "--json"])
    assert result.exit_code == 0, result.output
    return json.loads(result.stdout)


def test_evaluate_measures_a_runs_model_against_the_file_its_run_trained_on_offline(
    trained_run, tmp_path, monkeypatch, small_mnist_classifier
):
    run = trained_on_a_local_mnist_npz(trained_run, tmp_path)

    def no_download(name: str) -> None:
        raise AssertionError(f"evaluate downloaded {name}")

    monkeypatch.setattr(job.data.load, "_from_keras_download", no_download)

    measured = evaluate("--model", run / "generator.onnx")

    assert measured == evaluate("--model", run / "generator.onnx", "--data", tmp_path / "local" / "mnist.npz")


def test_evaluate_finds_the_data_its_run_recorded_from_any_folder(tmp_path, monkeypatch):
    # gan-job train --out A/run1 --data data/small.npz, started in tmp_path: both relative to it
    model = recorded_run(tmp_path / "A" / "run1", out="A/run1", data="data/small.npz")
    (tmp_path / "data").mkdir()
    (tmp_path / "data" / "small.npz").write_bytes(b"")
    for folder in (tmp_path, tmp_path / "A" / "run1", Path("/")):
        monkeypatch.chdir(folder)
        assert data_of(model) == str(tmp_path / "data" / "small.npz")
    keras_named = recorded_run(tmp_path / "B", out=str(tmp_path / "B"), data="fashion_mnist")
    assert data_of(keras_named) == "fashion_mnist"  # a Keras name
    assert data_of(tmp_path / "bare" / "generator.onnx") is None  # a model without its run: its metadata's data set


def test_evaluate_says_which_data_its_run_recorded_when_that_is_gone(tmp_path):
    model = recorded_run(tmp_path / "run", out=str(tmp_path / "run"), data=str(tmp_path / "gone.npz"))
    with pytest.raises(ConfigError, match=r"records --data .*gone\.npz, which is not there: pass .* with --data"):
        data_of(model)
    # relative to a folder that the run's --out no longer tells, moved with the folder around it
    moved = recorded_run(tmp_path / "A2" / "run1", out="A/run1", data="data/small.npz")
    unplaced = "records --data data/small.npz relative to the folder the run was started in, which its --out A/run1"
    with pytest.raises(ConfigError, match=unplaced + " does not tell"):
        data_of(moved)


def test_evaluate_refuses_in_one_line_before_tensorflow_loads_when_its_runs_data_is_gone(trained_run, tmp_path):
    run = tmp_path / "run"
    shutil.copytree(trained_run[0], run)
    recording(run, data=str(tmp_path / "gone.npz"))

    result = without_tensorflow("gan-job", "evaluate", "--model", run / "generator.onnx")

    assert_refused(result, f"records --data {tmp_path / 'gone.npz'}, which is not there", "--data")


def test_a_sweeps_best_model_is_measured_against_the_data_of_the_run_it_copies(tmp_path):
    recorded_run(tmp_path / "sweep" / "seed-7", out=str(tmp_path / "sweep" / "seed-7"), data=str(SMALL_MNIST))
    best = tmp_path / "sweep" / "best"
    best.mkdir()
    (best / "run.txt").write_text("seed-7\nFréchet distance: 3.14\n")  # as the sweep writes it
    assert data_of(best / "generator.onnx") == str(SMALL_MNIST)
    (best / "run.txt").write_text("../elsewhere\n")  # names no run beside best/: a model without its run
    assert data_of(best / "generator.onnx") is None
