"""SIGTERM and SIGINT are never taken for errors: wherever one lands, the command ends interrupted (exit 75) with
nothing half-written, or done when its work was; never with other work done, a traceback, or a checkpoint called
unreadable."""

from __future__ import annotations

import gc
import shutil
import signal
import subprocess
import sys

import pytest
import tensorflow as tf

from job import signals
from job.cli import _run
from job.errors import EXIT_INTERRUPTED, Interrupted
from job.rundir.checkpoints import Checkpoints
from tests.conftest import SMALL_MNIST, invoke_cli


@pytest.fixture(autouse=True)
def no_signal_left():
    """A test's signal stays its own: the request it leaves would interrupt the next test's training."""
    yield
    signals.requested.clear()


@pytest.fixture
def saved_steps(tmp_path) -> tuple[Checkpoints, tf.Variable]:
    """Checkpoints of steps 10 and 20 of a small state whose value is the step, and that value, now 0."""
    value = tf.Variable(0.0)
    checkpoints = Checkpoints(tmp_path, tf.train.Checkpoint(value=value), keep=5)
    for step in (10, 20):
        value.assign(step)
        checkpoints.save(step)
    value.assign(0)
    return checkpoints, value


def test_code_that_catches_every_error_lets_an_interruption_pass():
    with pytest.raises(Interrupted):
        try:
            raise Interrupted("interrupted by SIGTERM")
        except Exception:
            pass


def test_a_signal_during_a_restore_is_an_interruption_not_an_unreadable_checkpoint(saved_steps, monkeypatch, caplog):
    def signalled(step: int) -> None:
        signal.raise_signal(signal.SIGTERM)  # lands inside TensorFlow's restore

    checkpoints, value = saved_steps
    monkeypatch.setattr(checkpoints, "restore_step", signalled)
    with signals.handled(), pytest.raises(Interrupted):
        checkpoints.restore_latest()
    assert "unreadable" not in caplog.text and value.numpy() == 0  # not the step before


def test_a_signal_that_a_library_turned_into_an_error_during_a_restore_is_still_an_interruption(
    saved_steps, monkeypatch, caplog
):
    def signalled(step: int) -> None:
        try:
            signal.raise_signal(signal.SIGTERM)
        except BaseException as error:
            raise tf.errors.DataLossError(None, None, "read cut short") from error

    checkpoints, value = saved_steps
    monkeypatch.setattr(checkpoints, "restore_step", signalled)
    with signals.handled(), pytest.raises(Interrupted):
        checkpoints.restore_latest()
    assert "unreadable" not in caplog.text and value.numpy() == 0


def test_a_restore_once_a_stop_is_requested_restores_nothing(saved_steps):
    checkpoints, value = saved_steps
    signals.requested.set()  # as by a signal that some library swallowed
    with pytest.raises(Interrupted):
        checkpoints.restore_latest()
    assert value.numpy() == 0


def test_a_signal_landing_in_a_finalizer_prints_no_traceback_and_is_honoured_at_the_next_check(monkeypatch):
    printed = []  # what Python would print as "Exception ignored in ...", with a traceback
    monkeypatch.setattr(sys, "unraisablehook", printed.append)

    class Finalized:
        def __del__(self) -> None:
            signal.raise_signal(signal.SIGTERM)  # what a finalizer raises, Python can only print

    with signals.handled():
        Finalized()
        gc.collect()
        with pytest.raises(Interrupted):
            signals.raise_if_requested()
    assert printed == []


def test_a_signal_once_the_work_is_done_lets_the_command_finish():
    with signals.handled():
        signals.work_done()
        signal.raise_signal(signal.SIGTERM)
        signals.raise_if_requested()  # nothing is raised: the command ends as done
    assert signals.requested.is_set()


def test_an_error_raised_because_of_a_signal_ends_the_command_as_interrupted(capsys):
    def work() -> None:
        try:
            signal.raise_signal(signal.SIGTERM)
        except BaseException as error:  # a library that reports whatever stopped it as its own failure
            raise RuntimeError("the operation failed") from error

    with pytest.raises(SystemExit) as exited:
        _run(work)
    assert exited.value.code == EXIT_INTERRUPTED
    assert capsys.readouterr().err.startswith("Error: interrupted by SIGTERM")


@pytest.mark.slow
def test_an_export_interrupted_while_a_stop_is_requested_writes_nothing(trained_run, tmp_path):
    from job.export import export_onnx

    signals.requested.set()  # as by a signal that tf2onnx or onnxruntime swallowed
    with pytest.raises(Interrupted):
        export_onnx(trained_run[1].sampler, tmp_path / "g.onnx", {})
    assert list(tmp_path.iterdir()) == []


# ---- whole commands, signalled at several moments -----------------------------------------------------------------

JOB = "import sys; from job.cli import main; sys.exit(main())"


def signalled(args: list[str], after: float) -> subprocess.CompletedProcess:
    """Run gan-job with `args`, send SIGTERM `after` seconds after its start (unless it ended before)."""
    process = subprocess.Popen([sys.executable, "-c", JOB, *args], stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    try:
        process.wait(timeout=after)
    except subprocess.TimeoutExpired:
        process.send_signal(signal.SIGTERM)
    stdout, stderr = process.communicate(timeout=300)  # a hang guard, not a speed test
    return subprocess.CompletedProcess(process.args, process.returncode, stdout.decode(), stderr.decode())


def assert_interrupted_or_done(result: subprocess.CompletedProcess, after: float) -> None:
    assert result.returncode in (0, EXIT_INTERRUPTED), (after, result.returncode, result.stderr)
    assert "Traceback" not in result.stderr and "unreadable" not in result.stderr, (after, result.stderr)
    if result.returncode == EXIT_INTERRUPTED:
        assert result.stderr.strip().splitlines()[-1].startswith("Error: interrupted by SIGTERM"), result.stderr


# Seconds after the start. A resume (about 15 s): Python's start, TensorFlow's loading, the restore, the steps; an
# export (about 6 s): the start, the restore, the conversion, the check against Keras.
RESUME_OFFSETS = (0.3, 4.0, 8.0, 12.0)
EXPORT_OFFSETS = (0.3, 2.0, 4.0, 6.0)


@pytest.mark.slow
def test_a_resume_signalled_at_any_moment_ends_interrupted_or_done_and_resumes_to_the_end(trained_run, tmp_path):
    run = tmp_path / "run"
    shutil.copytree(trained_run[0], run)
    options = ["--data", str(SMALL_MNIST), "--out", str(run), "--seed", "7", "--steps", "500", "--log-every", "50"]
    options += ["--sample-every", "100", "--checkpoint-every", "100", "--checkpoint-minutes", "0"]
    for after in RESUME_OFFSETS:
        assert_interrupted_or_done(signalled(["train", *options], after), after)
    finished = invoke_cli("train", *options)  # the last start is not signalled: no process of its own
    assert finished.returncode == 0 and "unreadable" not in finished.stderr, finished.stderr
    assert (run / "checkpoints" / "ckpt-500.index").exists() and (run / "generator.onnx").exists()


@pytest.mark.slow
@pytest.mark.parametrize("after", EXPORT_OFFSETS)
def test_an_export_signalled_at_any_moment_writes_the_newest_step_whole_or_nothing(trained_run, tmp_path, after):
    from serving.model import Generator

    out = tmp_path / "exported" / "g.onnx"
    out.parent.mkdir()
    result = signalled(["export", "--run", str(trained_run[0]), "--out", str(out)], after)
    assert_interrupted_or_done(result, after)
    if result.returncode == 0:
        assert Generator(out).metadata["step"] == "300" and "exported step 300" in result.stderr
    else:
        assert not out.exists()
    assert [path.name for path in out.parent.iterdir()] == ([out.name] if out.exists() else [])  # no part left


def test_sigterm_before_a_command_begins_ends_it_as_interrupted_not_killed():
    process = subprocess.Popen(
        [sys.executable, "-c", "import time; from job import signals; print('ready', flush=True); time.sleep(60)"],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    assert process.stdout.readline() == "ready\n"
    process.send_signal(signal.SIGTERM)
    _, stderr = process.communicate(timeout=60)
    assert process.returncode == EXIT_INTERRUPTED and stderr.startswith("Error: interrupted by SIGTERM"), stderr


SECOND_SIGTERM_DURING_A_SAVE = """
import os, signal, sys
import tensorflow as tf
from job import signals
from job.rundir.checkpoints import Checkpoints

checkpoint = tf.train.Checkpoint(v=tf.Variable(1.0))
checkpoints = Checkpoints(sys.argv[1], checkpoint, keep=3)
checkpoints.save(10)
write = checkpoint.write

def write_then_two_sigterms(prefix):
    written = write(prefix)  # the files are in the partial folder, not yet moved into place
    os.kill(os.getpid(), signal.SIGTERM)  # the first: a checkpoint after the steps under way
    os.kill(os.getpid(), signal.SIGTERM)  # the second: stop now
    return written

checkpoint.write = write_then_two_sigterms
with signals.handled(), signals.deferred():
    checkpoints.save(20)
"""


def test_a_second_sigterm_during_a_checkpoint_write_ends_interrupted_and_leaves_no_partial_write(tmp_path):
    folder = tmp_path / "checkpoints"
    ended = subprocess.run(
        [sys.executable, "-c", SECOND_SIGTERM_DURING_A_SAVE, str(folder)], capture_output=True, text=True, timeout=120
    )
    assert ended.returncode == EXIT_INTERRUPTED, ended.stderr
    assert ended.stderr.splitlines()[-1] == "Error: aborted by a second SIGTERM: run the same command again to resume"
    assert sorted(path.name for path in folder.iterdir()) == ["ckpt-10.data-00000-of-00001", "ckpt-10.index"]
