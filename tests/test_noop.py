"""A start with nothing to do is quick and changes nothing: a finished run started again answers before TensorFlow
loads and leaves every file as it was, a start asking for fewer steps than its run has done is refused in one line,
and a finished sweep started again starts no training and rewrites nothing."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
from pathlib import Path

import pytest

from job.analysis import sweep as sweep_module
from job.analysis.sweep import comparison_current, finish_sweep, load_sweep, run_sweep
from job.cli import train as train_command
from tests.conftest import SMALL_MNIST
from tests.test_output_guard import assert_refused, without_tensorflow

# The settings of the session's trained_run (tests/conftest.py short_run_config)
TRAINED_RUN = {"data": str(SMALL_MNIST), "steps": 300, "checkpoint-every": 100, "checkpoint-minutes": 0}
TRAINED_RUN |= {"sample-every": 100, "log-every": 50, "seed": 7}


def train_options(**changes: object) -> list[str]:
    """The trained run's settings as gan-job train's options, with `changes` (sample_every=30: --sample-every 30)."""
    values = TRAINED_RUN | {key.replace("_", "-"): value for key, value in changes.items()}
    return [word for key, value in values.items() for word in (f"--{key}", str(value))]


def state(folder: Path) -> dict[str, tuple[bytes, int]]:
    """Every file and folder under `folder`: its bytes (b"" for a folder) and its modification time."""
    return {
        str(path.relative_to(folder)): (b"" if path.is_dir() else path.read_bytes(), path.stat().st_mtime_ns)
        for path in sorted(folder.rglob("*"))
    }


def copied_run(trained_run, tmp_path: Path) -> Path:
    run = tmp_path / "run"
    shutil.copytree(trained_run[0], run)
    return run


def train_again(run: Path, *options: str) -> subprocess.CompletedProcess:
    """`gan-job train --out RUN OPTIONS` in a fresh process that fails should it load TensorFlow."""
    return without_tensorflow("gan-job", "train", "--out", run, *options)


@pytest.mark.parametrize(
    "changes",
    [
        {},
        # options a resume may change, given otherwise: the run has no step left for them to act on
        {"sample_every": 30, "log_every": 10, "checkpoint_minutes": 1, "quality_samples": 50, "data": "elsewhere.npz"},
    ],
    ids=["the same options", "other resumable options"],
)
def test_a_finished_run_started_again_answers_before_tensorflow_loads_and_changes_no_file(
    trained_run, tmp_path, changes
):
    run = copied_run(trained_run, tmp_path)
    shutil.copy(SMALL_MNIST, tmp_path / "elsewhere.npz")
    changes = {key: tmp_path / value if key == "data" else value for key, value in changes.items()}
    before = state(run)

    result = train_again(run, *train_options(**changes))

    assert result.returncode == 0, result.stderr
    assert f"run in {run} already finished at step 300: nothing to do" in result.stderr
    assert state(run) == before


@pytest.mark.parametrize("finished", [True, False], ids=["finished", "stopped at step 300 of 400"])
def test_fewer_steps_than_the_run_has_done_are_refused_in_one_line_before_tensorflow_loads(
    trained_run, tmp_path, finished
):
    run = copied_run(trained_run, tmp_path)
    if not finished:
        saved = json.loads((run / "config.json").read_text())
        (run / "config.json").write_text(json.dumps(saved | {"steps": 400}))
    before = state(run)

    result = train_again(run, *train_options(steps=200))

    assert_refused(result, f"{run} holds a run at step 300", "--steps 200", "--force")
    assert state(run) == before  # nothing recorded: config.json still says its own steps


def sweep_of_the_trained_run(folder: Path, *seeds: int) -> Path:
    """A sweep file whose variations have the trained run's settings, but for their seeds."""
    settings = {key: value for key, value in TRAINED_RUN.items() if key != "seed"}
    path = folder / "sweep.yaml"
    path.write_text(json.dumps({"settings": settings, "vary": {"seed": list(seeds)}}))
    return path


class RecordedTrainings:
    """subprocess.Popen for the sweep's trainings: records each one's --out, and each ends at once with exit 0."""

    def __init__(self) -> None:
        self.outs: list[Path] = []

    def __call__(self, arguments: list[str], **kwargs) -> RecordedTrainings:
        self.outs.append(Path(arguments[arguments.index("--out") + 1]))
        return self

    def wait(self) -> int:
        return 0


def test_a_sweep_starts_no_training_for_a_run_that_finished(trained_run, tmp_path, monkeypatch):
    variations = load_sweep(sweep_of_the_trained_run(tmp_path, 7, 8), train_command)
    out = tmp_path / "sweep"
    shutil.copytree(trained_run[0], out / "seed-7")
    trainings = RecordedTrainings()
    monkeypatch.setattr(sweep_module.subprocess, "Popen", trainings)

    codes = run_sweep(variations, out, train_command)

    assert codes == {"seed-7": 0, "seed-8": 0}
    assert trainings.outs == [out / "seed-8"]
    assert not (out / "logs" / "seed-7.log").exists()


def test_a_finished_sweep_started_again_loads_no_tensorflow_and_rewrites_nothing(trained_run, tmp_path):
    path = sweep_of_the_trained_run(tmp_path, 7)
    out = tmp_path / "sweep"
    shutil.copytree(trained_run[0], out / "seed-7")
    variations = load_sweep(path, train_command)
    finish_sweep(variations, out)  # the comparison and best/ of the sweep's first run
    before = state(out)

    again = without_tensorflow("gan-job", "sweep", path, "--out", out)

    assert again.returncode == 0, again.stderr
    assert "seed-7: already finished at step 300" in again.stderr
    assert state(out) == before
    # once a run changes, the comparison is no longer current: the next re-run writes it again
    metrics = out / "seed-7" / "metrics.jsonl"
    os.utime(metrics, ns=(metrics.stat().st_atime_ns, (out / "report.html").stat().st_mtime_ns + 1))
    assert not comparison_current(variations, out)


def test_a_sweep_asking_a_run_for_fewer_steps_than_it_has_done_is_refused_before_anything_starts(trained_run, tmp_path):
    path = sweep_of_the_trained_run(tmp_path, 7, 8)
    out = tmp_path / "sweep"
    shutil.copytree(trained_run[0], out / "seed-7")
    before = state(out)

    result = without_tensorflow("gan-job", "sweep", path, "--out", out, "--steps", "200")

    assert_refused(result, "run seed-7:", f"{out / 'seed-7'} holds a run at step 300", "--steps 200 is fewer")
    assert "--force" not in result.stderr  # which sweeps refuse
    assert state(out) == before  # no training of seed-8 either, no log, no failure recorded
