"""Rotation keeps the newest checkpoints that read back: a corrupt one never pushes a readable one out."""

from __future__ import annotations

import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import tensorflow as tf

from job.rundir.checkpoints import Checkpoints
from job.rundir.claim import steps_on_disk
from tests.conftest import SMALL_MNIST, invoke_cli, short_run_config, train_until_preempted


def truncate(folder: Path, step: int) -> None:
    """Checkpoint `step`'s data cut in half, as a kill during a copy or a bad disk leaves it."""
    (data,) = folder.glob(f"ckpt-{step}.data-*")
    data.write_bytes(data.read_bytes()[: data.stat().st_size // 2])


class State:
    """A small training state and its checkpoints, as one start of the job holds them."""

    def __init__(self, folder: Path, keep: int) -> None:
        self.value = tf.Variable(tf.zeros([64]))
        self.checkpoints = Checkpoints(folder, tf.train.Checkpoint(value=self.value), keep=keep)

    def save(self, step: int) -> None:
        self.value.assign(tf.fill([64], float(step)))
        self.checkpoints.save(step)

    def step(self) -> int:
        return int(self.value.numpy()[0])


def saved(folder: Path, steps: list[int], corrupt: list[int]) -> None:
    state = State(folder, keep=len(steps))
    for step in steps:
        state.save(step)
    for step in corrupt:
        truncate(folder, step)


@pytest.mark.parametrize(
    ("keep", "steps", "corrupt", "resumed", "kept"),
    [
        (1, [10, 20], [20], 10, [15]),
        (2, [10, 20, 30, 40], [30, 40], 20, [20, 25]),
    ],
    ids=["keep-1", "keep-2-two-corrupt-above"],
)
def test_the_next_save_after_resuming_below_corrupt_checkpoints_keeps_the_readable_ones(
    tmp_path, keep, steps, corrupt, resumed, kept
):
    saved(tmp_path, steps, corrupt)
    state = State(tmp_path, keep=keep)
    assert state.checkpoints.restore_latest() == resumed

    state.save(15 if keep == 1 else 25)  # a step below the corrupt ones
    assert steps_on_disk(tmp_path) == kept  # the readable ones; the corrupt ones are gone

    # Killed right after that save: the next start resumes from it.
    restarted = State(tmp_path, keep=keep)
    assert restarted.checkpoints.restore_latest() == kept[-1] == restarted.step()


def test_a_save_over_the_step_of_an_unreadable_checkpoint_replaces_it(tmp_path):
    saved(tmp_path, [10, 20], corrupt=[20])
    state = State(tmp_path, keep=2)
    assert state.checkpoints.restore_latest() == 10
    state.save(20)
    restarted = State(tmp_path, keep=2)
    assert restarted.checkpoints.restore_latest() == 20 == restarted.step()


def test_rotation_reads_a_checkpoint_it_neither_wrote_nor_restored_once_and_trusts_the_others(tmp_path, monkeypatch):
    saved(tmp_path, [10, 20, 30], corrupt=[20])  # 20 lies below the resume point: restore never tries it
    state = State(tmp_path, keep=3)
    assert state.checkpoints.restore_latest() == 30

    read = []
    load_checkpoint = tf.train.load_checkpoint
    monkeypatch.setattr(tf.train, "load_checkpoint", lambda prefix: read.append(prefix) or load_checkpoint(prefix))
    state.save(40)
    assert sorted(Path(prefix).name for prefix in read) == ["ckpt-10", "ckpt-20"]
    assert steps_on_disk(tmp_path) == [10, 30, 40]  # the corrupt 20 does not count as one of the three

    read.clear()
    state.save(50)
    assert read == []  # every checkpoint on disk is known by now
    assert steps_on_disk(tmp_path) == [30, 40, 50]


def test_checkpoints_that_all_read_back_rotate_as_the_newest_few(tmp_path):
    state = State(tmp_path, keep=2)
    for step in (10, 20, 30):
        state.save(step)
    assert steps_on_disk(tmp_path) == [20, 30]


# ---- a whole job --------------------------------------------------------------------------------------------------


@pytest.mark.slow
@pytest.mark.parametrize(
    ("keep", "corrupt", "resumed"), [(1, [300], 200), (2, [200, 300], 100)], ids=["keep-1", "keep-2"]
)
def test_a_run_resumed_below_corrupt_checkpoints_and_stopped_after_its_next_save_resumes_from_it(
    trained_run, tmp_path, caplog, keep, corrupt, resumed
):
    from job.loop.train import train
    from tests.test_resilience import assert_same_state

    run = tmp_path / "run"
    shutil.copytree(trained_run[0], run)
    (run / "generator.onnx").unlink()
    for step in corrupt:
        truncate(run / "checkpoints", step)
    config = short_run_config(run, keep_checkpoints=keep, checkpoint_every=50)

    caplog.set_level("INFO")
    train_until_preempted(config, step=resumed + 50)  # stopped (as by a kill) right after the next checkpoint
    assert f"resuming from the checkpoint of step {resumed}" in caplog.text
    assert steps_on_disk(run / "checkpoints") == [resumed, resumed + 50][-keep:]

    caplog.clear()
    train(config)
    assert f"resuming from the checkpoint of step {resumed + 50}" in caplog.text and "unreadable" not in caplog.text
    assert_same_state(trained_run[0], run, 300)


@pytest.mark.slow
def test_a_sigkill_right_after_the_save_that_follows_a_corrupt_newest_checkpoint_loses_nothing(trained_run, tmp_path):
    run = tmp_path / "run"
    shutil.copytree(trained_run[0], run)
    (run / "generator.onnx").unlink()
    truncate(run / "checkpoints", 300)
    options = ["--data", str(SMALL_MNIST), "--out", str(run), "--steps", "300", "--seed", "7", "--log-every", "50"]
    options += ["--sample-every", "100", "--checkpoint-minutes", "0", "--keep-checkpoints", "1"]
    options += ["--checkpoint-every", "25"]
    code = "import sys; from job.cli import main; sys.exit(main())"
    process = subprocess.Popen([sys.executable, "-c", code, "train", *options], stderr=subprocess.DEVNULL)
    try:
        while process.poll() is None and not (run / "checkpoints" / "ckpt-225.index").exists():
            time.sleep(0.005)
        process.send_signal(signal.SIGKILL)
    finally:
        process.wait(timeout=300)
    assert (run / "checkpoints" / "ckpt-225.index").exists()

    restarted = invoke_cli("train", *options)
    assert restarted.returncode == 0, restarted.stderr
    assert "reads back" not in restarted.stderr and "resuming from the checkpoint of step 2" in restarted.stderr
