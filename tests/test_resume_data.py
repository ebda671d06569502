"""A resume or an extension without --data trains on the data its run recorded, offline, as `gan-job evaluate`
measures against it: the same command that started the run need not repeat where its data lives."""

from __future__ import annotations

import json

import pytest
from click.testing import CliRunner

import job.cli
from job.cli import main
from tests.conftest import SMALL_MNIST, recorded_run


@pytest.fixture
def started(monkeypatch):
    """The configuration each `gan-job train` would train with, instead of training."""
    configs = []
    monkeypatch.setattr(job.cli, "_train", lambda config, *_: configs.append(config))
    monkeypatch.delenv("GAN_DATA", raising=False)
    return configs


def train(*args: str):
    return CliRunner().invoke(main, ["train", *map(str, args)])


def test_a_resume_without_data_trains_on_the_file_its_run_recorded(tmp_path, started):
    run = recorded_run(tmp_path / "run", out=str(tmp_path / "run"), data=str(SMALL_MNIST)).parent
    assert train("--out", run, "--steps", "500").exit_code == 0
    assert started[-1].data == str(SMALL_MNIST)  # not the default, Keras' MNIST, which would need a download


def test_data_given_again_wins_over_the_recorded_data(tmp_path, started):
    run = recorded_run(tmp_path / "run", out=str(tmp_path / "run"), data=str(SMALL_MNIST)).parent
    assert train("--out", run, "--data", "fashion_mnist").exit_code == 0
    assert started[-1].data == "fashion_mnist"  # the start's own check then compares the data's fingerprint


def test_a_new_run_and_a_forced_one_train_on_the_default_data(tmp_path, started):
    assert train("--out", tmp_path / "new").exit_code == 0
    run = recorded_run(tmp_path / "run", out=str(tmp_path / "run"), data=str(SMALL_MNIST)).parent
    assert train("--out", run, "--force").exit_code == 0
    assert [config.data for config in started] == ["mnist", "mnist"]


def test_a_resume_whose_recorded_data_is_gone_is_refused_in_one_line(tmp_path, monkeypatch):
    monkeypatch.delenv("GAN_DATA", raising=False)
    run = recorded_run(tmp_path / "run", out=str(tmp_path / "run"), data=str(tmp_path / "gone.npz")).parent
    result = train("--out", run)
    assert result.exit_code == 2 and len(result.output.strip().splitlines()) == 1
    assert f"records --data {tmp_path / 'gone.npz'}, which is not there" in result.output
    assert "pass the data to train on with --data" in result.output


def test_a_finished_run_whose_recorded_data_cannot_be_placed_is_still_a_no_op_and_work_left_is_refused(
    trained_run, tmp_path, monkeypatch
):
    from tests.test_noop import copied_run, train_options

    run = copied_run(trained_run, tmp_path)
    saved = json.loads((run / "config.json").read_text())
    # started in a folder beside the run's: `cd a; gan-job train --out ../run --data ../data.npz`
    (run / "config.json").write_text(json.dumps(saved | {"data": "../data.npz", "out": "../run"}))
    monkeypatch.delenv("GAN_DATA", raising=False)
    options = [option for option in train_options() if option != str(SMALL_MNIST) and option != "--data"]

    finished = train("--out", run, *options)
    assert finished.exit_code == 0, finished.output

    extended = train("--out", run, *options, "--steps", "400")
    assert extended.exit_code == 2
    assert "records --data ../data.npz relative to the folder the run was started in" in extended.output


def test_a_resume_takes_the_settings_that_define_its_run_from_it_unless_given(tmp_path, started, monkeypatch):
    monkeypatch.delenv("GAN_SEED", raising=False)
    recorded = {"arch": "dcgan", "seed": 7, "latent_dim": 64, "ema": False, "sample_every": 500}
    run = recorded_run(tmp_path / "run", out=str(tmp_path / "run"), data=str(SMALL_MNIST), **recorded).parent
    assert train("--out", run, "--steps", "900").exit_code == 0
    assert train("--out", run, "--seed", "8").exit_code == 0  # given: the start itself compares it with the run's
    resumed, reseeded = started
    assert (resumed.arch, resumed.seed, resumed.latent_dim, resumed.ema, resumed.steps) == ("dcgan", 7, 64, False, 900)
    assert resumed.sample_every == 5000  # an option a resume may change keeps its default unless given
    assert (reseeded.arch, reseeded.seed) == ("dcgan", 8)
