"""Preemption, kills, full disks and bad states: nothing is lost, nothing half-written is trusted, and every failure
is one clear line with a documented exit code."""

from __future__ import annotations

import contextlib
import errno
import os
import random
import shutil
import signal
import subprocess
import sys
from collections.abc import Callable, Iterator
from pathlib import Path

import numpy as np
import pytest
import tensorflow as tf
from click.testing import CliRunner

from job.cli import EXIT_BAD_INPUT, EXIT_INTERRUPTED
from job.cli import main as gan_job
from job.errors import CheckpointsUnreadable, Interrupted
from job.loop.train import TrainingDiverged, train
from job.networks.gan import TrainStep
from job.rundir.checkpoints import Checkpoints
from tests.conftest import SMALL_MNIST, invoke_cli, progress_records, run_cli, short_run_config, train_until_preempted

pytestmark = pytest.mark.slow

# Checkpoints by wall time, every 3 s: they fall at whatever step the clock says, which differs between runs. The
# seed and length of the session's `trained_run`, whose final state is the uninterrupted one.
FAULT_RUN = ["--steps", "300", "--checkpoint-minutes", "0.05", "--log-every", "10", "--seed", "7"]


def checkpoint_tensors(run: Path, step: int) -> dict[str, np.ndarray]:
    """Every tensor of a checkpoint (weights, optimizer slots, random state, step), the bookkeeping left out."""
    reader = tf.train.load_checkpoint(str(run / "checkpoints" / f"ckpt-{step}"))
    skip = ("save_counter", "train_seconds", "_CHECKPOINTABLE_OBJECT_GRAPH")
    return {k: reader.get_tensor(k) for k in reader.get_variable_to_shape_map() if not k.startswith(skip)}


def assert_same_state(a: Path, b: Path, step: int) -> None:
    first, second = checkpoint_tensors(a, step), checkpoint_tensors(b, step)
    assert first.keys() == second.keys()
    for key in first:
        np.testing.assert_array_equal(first[key], second[key], err_msg=key)


def start_job(out: Path) -> subprocess.Popen:
    code = "import sys; from job.cli import main; sys.exit(main())"
    return subprocess.Popen(
        [sys.executable, "-c", code, "train", "--data", str(SMALL_MNIST), "--out", str(out), *FAULT_RUN],
        stderr=subprocess.PIPE,
        text=True,
    )


def run_until_killed(out: Path, signum: int, after_lines: int) -> int:
    """Start the job, send `signum` once it has logged `after_lines` progress lines; its exit code."""
    process = start_job(out)
    seen = 0
    for line in process.stderr:
        seen += " INFO step " in line
        if seen >= after_lines:
            process.send_signal(signum)
            break
    process.stderr.read()
    return process.wait(timeout=120)


def test_killed_and_terminated_at_random_points_a_run_ends_bit_for_bit_as_an_uninterrupted_one(trained_run, tmp_path):
    rng = random.Random(2026)
    faults = [
        (signal.SIGKILL, rng.randint(1, 29)),
        (signal.SIGTERM, rng.randint(1, 29)),
        (signal.SIGKILL, rng.randint(1, 29)),
    ]
    interrupted = tmp_path / "interrupted"
    for signum, after_lines in faults:
        code = run_until_killed(interrupted, signum, after_lines)
        assert code in (-signal.SIGKILL, EXIT_INTERRUPTED, 0), (signum, after_lines, code)
        if signum == signal.SIGTERM and code != 0:
            assert code == EXIT_INTERRUPTED
    finished = invoke_cli("train", "--data", str(SMALL_MNIST), "--out", str(interrupted), *FAULT_RUN)
    assert finished.returncode == 0, finished.stderr

    assert_same_state(trained_run[0], interrupted, 300)
    steps = [record["step"] for record in progress_records(interrupted)]
    assert steps == list(range(10, 301, 10))  # no duplicated or torn lines after the resumes


@pytest.mark.parametrize("conditional", [False, True], ids=["dropout", "conditional-spectral-norm"])
def test_a_resumed_dcgan_ends_bit_for_bit_as_an_uninterrupted_one(tmp_path, conditional):
    # The convolutional step runs without XLA, through other kernels than the MLP's: determinism must hold there too,
    # with the random state of the discriminator's dropout and the conditional one's spectral normalisation.
    dcgan = {
        "arch": "dcgan",
        "conditional": conditional,
        "steps": 24,
        "checkpoint_every": 12,
        "sample_every": 12,
        "log_every": 6,
    }
    train(short_run_config(tmp_path / "straight", **dcgan))
    # Preempted at step 12 of the same 24: a shorter run would be another run, as its learning rates fall sooner.
    train_until_preempted(short_run_config(tmp_path / "resumed", **dcgan), 12)
    train(short_run_config(tmp_path / "resumed", **dcgan | {"log_every": 4}))  # other compiled-call lengths, too
    assert_same_state(tmp_path / "straight", tmp_path / "resumed", 24)


def test_two_identical_runs_on_large_images_end_bit_for_bit_the_same(tmp_path):
    # 96x96: TensorFlow's inter-op threads once made two such runs differ after 10 steps. The job's own setting is
    # what is tested: the variable this test session sets for itself is not passed on.
    environment = {key: value for key, value in os.environ.items() if key != "TF_NUM_INTEROP_THREADS"}
    options = ["--arch", "dcgan", "--image-size", "96", "--steps", "10", "--log-every", "10", "--no-quality"]
    for name in ("first", "second"):
        command = [sys.executable, "-c", "import sys; from job.cli import main; sys.exit(main())", "train"]
        subprocess.run(
            [*command, "--data", str(SMALL_MNIST), "--out", str(tmp_path / name), *options, "--checkpoint-every", "10"],
            check=True,
            capture_output=True,
            env=environment,
        )
    assert_same_state(tmp_path / "first", tmp_path / "second", 10)


def test_sigterm_writes_a_checkpoint_and_exits_with_the_interrupted_code(tmp_path):
    code = run_until_killed(tmp_path, signal.SIGTERM, after_lines=3)
    assert code == EXIT_INTERRUPTED
    kept = sorted(int(p.name[5:-6]) for p in (tmp_path / "checkpoints").glob("ckpt-*.index"))
    assert kept and kept[-1] >= 30  # the checkpoint of the step it stopped at, not only the last interval's


def test_a_stop_request_is_seen_after_the_call_under_way_not_at_the_next_log_line(tmp_path):
    from job import signals

    advanced: list[int] = []  # the step reached after each compiled call

    def after_call(step: int) -> None:
        advanced.append(step)
        if len(advanced) == 3:  # as a SIGTERM during the third call: Python's handler runs when the call returns
            signals.requested.set()

    config = short_run_config(tmp_path, steps=100_000, log_every=100_000, sample_every=100_000, checkpoint_every=0)
    try:
        with pytest.raises(Interrupted) as interrupted:
            train(config, on_advance=after_call)
    finally:
        signals.requested.clear()
    stopped_at = advanced[-1]
    assert len(advanced) == 3 and stopped_at < 100_000
    assert f"checkpoint written at step {stopped_at}" in str(interrupted.value)
    assert sorted(p.name for p in (tmp_path / "checkpoints").glob("*.index")) == [f"ckpt-{stopped_at}.index"]


def test_checkpoints_of_networks_of_other_shapes_are_named_as_such_and_kept(tmp_path):
    # A run begun by a version of the job that built other networks for the same settings (the DCGAN got wider).
    Checkpoints(tmp_path, tf.train.Checkpoint(kernel=tf.Variable(tf.zeros([4, 32]))), keep=3).save(100)
    before = sorted(path.name for path in tmp_path.iterdir())
    now = Checkpoints(tmp_path, tf.train.Checkpoint(kernel=tf.Variable(tf.zeros([4, 64]))), keep=3)
    with pytest.raises(CheckpointsUnreadable, match="networks of other shapes .*earlier version of mnist-gan"):
        now.restore_latest()
    assert sorted(path.name for path in tmp_path.iterdir()) == before


REFUSE_CHECKPOINTS_OF_MORE_VALUES = """
import logging, sys
from pathlib import Path
import tensorflow as tf
from job.rundir.checkpoints import Checkpoints
from job.errors import CheckpointsUnreadable
logging.basicConfig(level=logging.INFO)
values = {f"v{i}": tf.Variable(0.0) for i in range(20)}
Checkpoints(Path(sys.argv[1]), tf.train.Checkpoint(kernel=tf.Variable(tf.zeros([4, 32])), **values), keep=3).save(1)
try:
    Checkpoints(Path(sys.argv[1]), tf.train.Checkpoint(kernel=tf.Variable(tf.zeros([4, 64]))), keep=3).restore_latest()
except CheckpointsUnreadable:
    print("refused", file=sys.stderr)
"""


def test_refused_checkpoints_do_not_bury_the_error_under_tensorflows_unused_value_warnings(tmp_path):
    # Without the filter, TensorFlow logs one warning per unused value as the refused checkpoint is dropped (20 here,
    # about a hundred for a DCGAN run), after the job's one-line error.
    result = subprocess.run(
        [sys.executable, "-c", REFUSE_CHECKPOINTS_OF_MORE_VALUES, str(tmp_path)], capture_output=True, text=True
    )
    assert "refused" in result.stderr and "is unreadable" in result.stderr
    assert "Value in checkpoint could not be found" not in result.stderr
    assert "unrestored values" not in result.stderr


def test_a_corrupt_newest_checkpoint_is_skipped_with_a_warning(trained_run, tmp_path, caplog):
    run = tmp_path / "run"
    shutil.copytree(trained_run[0], run)
    newest = run / "checkpoints" / "ckpt-300.data-00000-of-00001"
    newest.write_bytes(newest.read_bytes()[: newest.stat().st_size // 2])  # truncated by a kill or a bad disk
    with open(run / "metrics.jsonl", "a") as metrics:
        metrics.write('{"step": 310, "d_lo')  # a line torn by a kill
    (run / "generator.onnx").unlink()

    caplog.set_level("INFO")
    gan = train(short_run_config(run))
    assert "ckpt-300 is unreadable" in caplog.text and "resuming from the checkpoint of step 200" in caplog.text
    assert int(gan.step.numpy()) == 300
    assert_same_state(trained_run[0], run, 300)
    assert [record["step"] for record in progress_records(run)] == [50, 100, 150, 200, 250, 300]


def after_each_call(monkeypatch: pytest.MonkeyPatch, change: Callable[[TrainStep, dict], None]) -> None:
    """Training calls `change(train_step, means)` after each compiled call, before the loop looks at the means."""
    from job.networks import gan as gan_module

    original = gan_module.TrainStep.compiled

    def changed(self, jit_compile=None):
        steps = original(self, jit_compile)

        def run(n):
            means = steps(n)
            change(self, means)
            return means

        return run

    monkeypatch.setattr(gan_module.TrainStep, "compiled", changed)


def test_a_nan_loss_stops_the_run_and_keeps_the_last_good_checkpoint(tmp_path, monkeypatch):
    def poison_the_loss(train_step, means) -> None:
        if int(train_step.gan.step.numpy()) > 150:  # the losses go NaN after step 150
            means["g_loss"] = tf.constant(float("nan"))

    after_each_call(monkeypatch, poison_the_loss)
    # Calls end at each log line (every 50 steps) or sooner under load: the first poisoned call begins at 150 or later.
    with pytest.raises(TrainingDiverged, match="NaN or infinite between steps 1[5-9][0-9] and "):
        train(short_run_config(tmp_path))
    assert sorted(p.name for p in (tmp_path / "checkpoints").glob("*.index")) == ["ckpt-100.index"]

    result = CliRunner().invoke(
        gan_job,
        [
            "train",
            "--out",
            str(tmp_path),
            "--data",
            str(SMALL_MNIST),
            "--steps",
            "300",
            "--checkpoint-every",
            "100",
            "--log-every",
            "50",
            "--seed",
            "7",
        ],
    )
    assert result.exit_code == EXIT_BAD_INPUT
    assert "NaN or infinite" in result.stderr


def test_weights_that_became_nan_are_never_checkpointed_even_when_the_losses_were_finite(tmp_path, monkeypatch):
    def break_the_last_update(train_step, means) -> None:
        if int(train_step.gan.step.numpy()) == 200:  # the call that ends at the checkpoint of step 200
            kernel = train_step.gan.discriminator.weights[0]
            kernel.assign(kernel * float("nan"))  # as an update made with NaN gradients, after the losses

    after_each_call(monkeypatch, break_the_last_update)
    with pytest.raises(TrainingDiverged, match=r"a weight became NaN or infinite by step 200; .*\(step 100\)"):
        train(short_run_config(tmp_path))
    assert sorted(p.name for p in (tmp_path / "checkpoints").glob("*.index")) == ["ckpt-100.index"]


def test_an_out_folder_holding_another_run_is_refused_unless_forced(trained_run, tmp_path):
    run = tmp_path / "run"
    shutil.copytree(trained_run[0], run)
    before = sorted(p.name for p in (run / "checkpoints").iterdir())
    refused = invoke_cli("train", "--out", str(run), "--data", str(SMALL_MNIST), "--steps", "20", "--seed", "8")
    assert refused.returncode == EXIT_BAD_INPUT
    assert "another configuration (seed: run has 7, asked for 8" in refused.stderr
    assert sorted(p.name for p in (run / "checkpoints").iterdir()) == before

    forced = invoke_cli(
        "train",
        "--out",
        str(run),
        "--data",
        str(SMALL_MNIST),
        "--steps",
        "20",
        "--checkpoint-every",
        "20",
        "--seed",
        "8",
        "--force",
    )
    assert forced.returncode == 0, forced.stderr
    assert sorted(p.name for p in (run / "checkpoints").glob("*.index")) == ["ckpt-20.index"]
    assert sorted(p.name for p in (run / "samples").iterdir()) == ["reals.png", "step_000020.png"]


@pytest.mark.skipif(os.geteuid() != 0 or not shutil.which("setpriv"), reason="needs root to act as another user")
def test_an_output_volume_that_is_not_writable_is_one_line_and_nothing_written(tmp_path):
    volume = tmp_path / "runs"
    volume.mkdir()  # owned by root, and the job runs as nobody: as a container's uid 1000 on a root-owned ./runs
    tmp_path.chmod(0o755)
    code = "import sys; from job.cli import main; sys.exit(main())"
    result = subprocess.run(
        [
            "setpriv",
            "--reuid=65534",
            "--regid=65534",
            "--clear-groups",
            sys.executable,
            "-c",
            code,
            "train",
            "--data",
            str(SMALL_MNIST),
            "--out",
            str(volume / "mnist"),
            "--steps",
            "10",
        ],
        capture_output=True,
        text=True,
        timeout=300,
        cwd="/",
    )
    assert result.returncode == EXIT_BAD_INPUT, result.stderr
    assert "Permission denied" in result.stderr and "Traceback" not in result.stderr
    assert list(volume.iterdir()) == []


@contextlib.contextmanager
def tmpfs(mount: Path, size: str) -> Iterator[Path]:
    """A file system of `size` at `mount`; skips the test where mounting one is not allowed (needs root)."""
    mount.mkdir()
    if subprocess.run(
        ["mount", "-t", "tmpfs", "-o", f"size={size}", "tmpfs", str(mount)], capture_output=True
    ).returncode:
        pytest.skip("cannot mount a small tmpfs here (needs root)")
    try:
        yield mount
    finally:
        subprocess.run(["umount", "-l", str(mount)], check=False)


@pytest.fixture
def small_disk(tmp_path):
    """A 45 MB file system: room for one checkpoint (29 MB) but not two."""
    with tmpfs(tmp_path / "disk", "45m") as mount:
        yield mount


def test_a_full_disk_is_one_line_and_the_last_good_checkpoint_survives(small_disk):
    out = small_disk / "run"
    result = run_cli(
        "train", "--data", str(SMALL_MNIST), "--out", str(out), "--steps", "300", "--checkpoint-every", "100"
    )
    assert result.returncode == EXIT_BAD_INPUT, result.stderr
    assert "No space left on device" in result.stderr or errno.errorcode[errno.ENOSPC] in result.stderr
    assert "the checkpoints before it (the newest of step 100) are intact" in result.stderr
    assert "Traceback" not in result.stderr
    assert (
        tf.train.load_checkpoint(str(out / "checkpoints" / "ckpt-100")).get_tensor("step/.ATTRIBUTES/VARIABLE_VALUE")
        == 100
    )


def test_a_first_checkpoint_that_does_not_fit_says_there_is_none_to_resume_from(tmp_path):
    with tmpfs(tmp_path / "disk", "1m") as disk:
        checkpoints = Checkpoints(
            disk / "checkpoints", tf.train.Checkpoint(kernel=tf.Variable(tf.zeros([1024, 1024]))), keep=3
        )
        with pytest.raises(OSError, match=r"checkpoint of step 100 .*; no earlier checkpoint is on disk, run again"):
            checkpoints.save(100)
        assert checkpoints.steps() == []


def test_an_extended_run_stopped_between_its_last_checkpoint_and_its_export_exports_when_started_again(
    trained_run, tmp_path, monkeypatch
):
    # The run's generator.onnx is the one of its first 300 steps: it must not pass for the export of step 400.
    import job.loop.finish
    from job.export import exported_step
    from job.rundir.claim import steps_on_disk

    run = tmp_path / "run"
    shutil.copytree(trained_run[0], run)
    config = short_run_config(run, steps=400)

    def sigterm_before_the_export(*args) -> None:
        raise Interrupted("interrupted by SIGTERM before the export")

    monkeypatch.setattr(job.loop.finish, "save_final_models", sigterm_before_the_export)
    with pytest.raises(Interrupted):
        train(config)
    monkeypatch.undo()
    assert steps_on_disk(run / "checkpoints")[-1] == 400 and exported_step(run / "generator.onnx") == 300

    train(config)
    assert exported_step(run / "generator.onnx") == 400
