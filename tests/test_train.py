"""A short real training run leaves a complete run directory, and resumes bit for bit."""

import json
import shutil
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from job.config import ConfigError, TrainConfig
from job.loop.schedule import FIRST_CALL_STEPS
from job.loop.setup import real_grid_images, warn_if_the_label_stays_weak
from job.loop.train import train
from job.networks.gan import build_gan
from tests.conftest import MNIST, progress_records, short_run_config

pytestmark = pytest.mark.slow


def test_run_directory_holds_everything_a_user_needs(trained_run):
    out, _ = trained_run
    for name in (
        "config.json",
        "metrics.jsonl",
        "generator.keras",
        "generator.onnx",
        "model.txt",
        "samples/reals.png",
        "samples/step_000100.png",
        "samples/step_000300.png",
    ):
        assert (out / name).is_file(), name
    assert any((out / "tensorboard").iterdir())
    assert "generator" in (out / "model.txt").read_text() and "discriminator" in (out / "model.txt").read_text()
    assert json.loads((out / "config.json").read_text())["steps"] == 300


def test_checkpoints_follow_the_interval_counting_steps_from_one(trained_run):
    out, _ = trained_run
    names = sorted(p.name for p in (out / "checkpoints").glob("*.index"))
    assert names == ["ckpt-100.index", "ckpt-200.index", "ckpt-300.index"]


def test_metrics_have_one_line_per_log_interval(trained_run):
    out, _ = trained_run
    records = progress_records(out)
    assert [r["step"] for r in records] == [50, 100, 150, 200, 250, 300]
    assert set(records[0]) == {
        *("step", "d_loss", "g_loss", "d_accuracy", "steps_per_s", "elapsed_s"),
        *("wall_time", "d_learning_rate", "g_learning_rate", "start_step"),  # start_step: a start's first line
    }
    assert all(np.isfinite(r["d_loss"]) and np.isfinite(r["g_loss"]) for r in records)


def test_sample_grids_are_4x4_pictures_that_change_as_training_goes(trained_run):
    out, _ = trained_run
    first = np.asarray(Image.open(out / "samples/step_000100.png"))
    last = np.asarray(Image.open(out / "samples/step_000300.png"))
    assert first.shape == last.shape == (2 * (4 * 30 + 2),) * 2  # 4 tiles of 28 px + 2 px borders, scaled 2x
    assert not np.array_equal(first, last)


def test_the_same_command_again_says_finished(trained_run, tmp_path, caplog):
    out = shutil.copytree(trained_run[0], tmp_path / "run")  # the session's run is shared, read only
    caplog.set_level("INFO")
    gan = train(short_run_config(out))
    assert int(gan.step.numpy()) == 300
    assert "already finished" in caplog.text


def test_a_resumed_run_ends_with_the_same_weights_bit_for_bit(trained_run, tmp_path, small_mnist):
    _, uninterrupted = trained_run
    train(short_run_config(tmp_path, small_mnist, steps=200))  # stops after the checkpoint of step 200 ...
    resumed = train(short_run_config(tmp_path, small_mnist, steps=300))  # ... and a second start goes on to 300
    for a, b in zip(uninterrupted.generator.weights, resumed.generator.weights, strict=True):
        np.testing.assert_array_equal(a.numpy(), b.numpy())
    for a, b in zip(uninterrupted.discriminator.weights, resumed.discriminator.weights, strict=True):
        np.testing.assert_array_equal(a.numpy(), b.numpy())
    assert [record["step"] for record in progress_records(tmp_path)] == [50, 100, 150, 200, 250, 300]


def test_an_out_folder_with_another_run_is_refused(trained_run, tmp_path, small_mnist):
    out = shutil.copytree(trained_run[0], tmp_path / "run")  # the session's run is shared, read only
    with pytest.raises(ConfigError, match="digit: run has -1, asked for 4"):
        train(short_run_config(out, small_mnist, digit=4))


def test_quality_is_measured_at_every_checkpoint(trained_run):
    out, _ = trained_run
    records = progress_records(out)
    measured = [r for r in records if "frechet_distance" in r]
    assert [r["step"] for r in measured] == [100, 200, 300]
    for record in measured:
        assert record["frechet_distance"] > 0 and 0 <= record["classes_covered"] <= 10
        assert len(record["class_shares"]) == 10 and abs(sum(record["class_shares"]) - 1) < 1e-3


def test_a_conditional_run_measures_how_often_it_draws_the_digit_asked_for(conditional_run):
    out, gan = conditional_run
    last = progress_records(out)[-1]
    assert 0 <= last["label_accuracy"] <= 1
    assert gan.conditional and gan.ema_generator is not None


def test_a_finished_start_says_where_its_time_went(trained_run):
    out, _ = trained_run
    last = json.loads((out / "metrics.jsonl").read_text().splitlines()[-1])
    assert last["step"] == 300
    timings = last["timings"]
    parts = ("training", "quality", "checkpoints", "sample_grids", "export", "start_up", "other")
    assert all(timings[f"{part}_s"] >= 0 for part in parts) and timings["training_s"] > 0
    assert sum(timings[f"{part}_s"] for part in parts) + timings["quality_classifier_s"] == pytest.approx(
        timings["total_s"], abs=0.05
    )
    assert timings["overhead_ratio"] > 1
    kept = sum(p.stat().st_size for p in (out / "checkpoints").glob("ckpt-*"))
    assert timings["checkpoint_bytes"] == kept  # three checkpoints written, three kept


def test_a_start_that_only_finishes_the_export_says_where_its_time_went_too(trained_run, tmp_path):
    run = tmp_path / "run"
    shutil.copytree(trained_run[0], run)
    for model in ("generator.keras", "generator.onnx"):  # as a start stopped while exporting leaves it
        (run / model).unlink()
    train(short_run_config(run))
    last = json.loads((run / "metrics.jsonl").read_text().splitlines()[-1])
    assert last["step"] == 300 and last["timings"]["training_s"] == 0 and last["timings"]["export_s"] > 0
    assert last["timings"]["overhead_ratio"] is None  # no training call to compare with
    assert (run / "generator.onnx").is_file()


def test_checkpoints_by_wall_time_fall_anywhere_and_a_resume_from_one_is_bit_for_bit(trained_run, tmp_path):
    _, uninterrupted = trained_run
    # A checkpoint after every compiled call (each takes longer than a millisecond): the first call's at step 1, off
    # the log interval; the last at step 175, between two updates of the moving average.
    by_time = {
        "checkpoint_every": 0,
        "checkpoint_minutes": 1e-5,
        "log_every": 35,
        "sample_every": 175,
        "keep_checkpoints": 1000,
    }
    train(short_run_config(tmp_path, steps=175, **by_time))
    kept = sorted(int(p.name[5:-6]) for p in (tmp_path / "checkpoints").glob("*.index"))
    assert kept[0] == FIRST_CALL_STEPS and {35, 70, 105, 140, 175} <= set(kept) and kept[-1] == 175
    resumed = train(short_run_config(tmp_path, steps=300))
    for model in ("generator", "discriminator", "ema_generator"):
        for a, b in zip(getattr(uninterrupted, model).weights, getattr(resumed, model).weights, strict=True):
            np.testing.assert_array_equal(a.numpy(), b.numpy(), err_msg=model)


def test_the_progress_hears_of_every_compiled_call_not_only_of_log_lines(tmp_path):
    # A terminal's progress bar moves with each call, as calls end about every 2 s however far apart log lines are.
    logged, advanced = [], []
    config = short_run_config(tmp_path, steps=300, log_every=300, sample_every=300, checkpoint_every=0, quality=False)
    train(config, on_progress=lambda progress: logged.append(progress.step), on_advance=advanced.append)
    assert logged == [300]
    assert advanced[0] == FIRST_CALL_STEPS and advanced[-1] == 300
    assert len(advanced) > 2 and advanced == sorted(set(advanced))  # a call's growth is bounded: several calls


def test_the_real_grid_shows_every_class_in_turn_even_when_the_data_comes_sorted_by_class():
    labels = np.repeat([0, 1, 2], [20, 3, 20])  # as a folder of class subfolders is read; class 1 has few images
    images = np.arange(len(labels))  # each image's value: its index
    shown = real_grid_images(images, labels)
    assert list(labels[shown]) == [0, 1, 2] * 5 + [0]  # as a conditional run's sample grid draws them
    assert len(set(shown[labels[shown] != 1])) == 11  # no image twice while the class has more
    assert list(real_grid_images(images, None)) == list(range(16))


@pytest.mark.parametrize(
    ("arch", "steps", "warned"), [("dcgan", 300, True), ("dcgan", 2001, False), ("mlp", 300, False)]
)
def test_a_conditional_run_shorter_than_its_labels_ramp_is_told_so(arch, steps, warned, caplog):
    config = TrainConfig(out=Path("unused"), arch=arch, conditional=True, steps=steps)
    warn_if_the_label_stays_weak(config, build_gan(config, *MNIST))
    assert ("after 300 it has 15% of its strength" in caplog.text) == warned
    assert ("comes in over" in caplog.text) == warned
