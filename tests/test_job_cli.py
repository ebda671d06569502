"""`gan-job train` as a user or a container runs it: flags or GAN_* variables, one-line errors with exit code 2."""

import json
import signal
import subprocess
import sys

import numpy as np
import pytest

from tests.conftest import invoke_cli, run_cli


@pytest.mark.slow
def test_every_option_can_come_from_a_gan_environment_variable(tmp_path, small_mnist):
    env = {
        "GAN_OUT": str(tmp_path),
        "GAN_DATA": str(small_mnist),
        "GAN_STEPS": "40",
        "GAN_CHECKPOINT_EVERY": "20",
        "GAN_LOG_EVERY": "20",
        "GAN_DIGIT": "3",
        "GAN_SEED": "5",
        "GAN_PRESET": "seed",
        "GAN_BATCH": "16",
        "GAN_LATENT_DIM": "64",
        "GAN_KEEP_CHECKPOINTS": "1",
        "GAN_CHECKPOINT_MINUTES": "0.5",
        "GAN_SAMPLE_EVERY": "20",
    }
    result = run_cli("train", env=env)
    assert result.returncode == 0, result.stderr
    saved = json.loads((tmp_path / "config.json").read_text())
    assert {k: saved[k] for k in ("steps", "digit", "seed", "preset", "batch", "latent_dim", "keep_checkpoints")} == {
        "steps": 40,
        "digit": 3,
        "seed": 5,
        "preset": "seed",
        "batch": 16,
        "latent_dim": 64,
        "keep_checkpoints": 1,
    }
    assert (saved["checkpoint_minutes"], saved["sample_every"]) == (0.5, 20)
    assert sorted(p.name for p in (tmp_path / "checkpoints").glob("*.index")) == ["ckpt-40.index"]
    assert sorted(p.name for p in (tmp_path / "samples").iterdir()) == [
        "reals.png",
        "step_000020.png",
        "step_000040.png",
    ]
    # Not a terminal: plain progress lines, one per log interval, for container logs.
    assert "step 20/40" in result.stderr and "step 40/40" in result.stderr
    assert "on CPU" in result.stderr or "on GPU" in result.stderr
    # TensorFlow's native start-up lines, which read as errors, are not shown at default verbosity.
    for noise in ("absl::InitializeLog", "cuInit", "E0000", "I0000", "oneDNN", "cuda drivers"):
        assert noise not in result.stderr


def test_native_lines_that_are_not_start_up_noise_still_reach_stderr():
    code = (
        "import os; from job.native_logs import filter_native_stderr; filter_native_stderr(); "
        "os.write(2, b'W0000 00:00:1.2 1 cuda_platform.cc:52] failed call to cuInit\\n'); "
        "os.write(2, b'E0000 00:00:1.3 1 meta_optimizer.cc:967] remapper failed: INVALID_ARGUMENT: Mutation::Apply "
        "error: fanout x exist for missing node y.\\n'); "
        "os.write(2, b'a real native error\\n'); import sys; print('python line', file=sys.stderr)"
    )
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    # Native lines pass through a thread, Python's go straight: their order may differ, their content may not.
    assert sorted(result.stderr.splitlines()) == ["a real native error", "python line"]


def test_a_native_fatal_error_reaches_stderr_whole_though_the_process_aborts_at_once():
    # As TensorFlow's LOG(FATAL) does: many native lines, the last without a newline, then abort(). The job dies at
    # once; the filter must still pass on every line it was given, less the start-up noise among them.
    code = (
        "import ctypes, os; from job.native_logs import filter_native_stderr; filter_native_stderr(); "
        "[os.write(2, b'F0000 native line %d of a fatal error\\n' % i) for i in range(200)]; "
        "os.write(2, b'W0000 00:00:1.2 1 cuda_platform.cc:52] failed call to cuInit\\n'); "
        "os.write(2, b'*** the last line, with no newline'); ctypes.CDLL(None).abort()"
    )
    for _ in range(5):  # a race would lose the last lines now and then
        result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
        assert result.returncode == -signal.SIGABRT
        lines = [f"F0000 native line {i} of a fatal error" for i in range(200)]
        assert result.stderr.splitlines() == [*lines, "*** the last line, with no newline"]


@pytest.mark.slow
def test_export_inside_the_train_image_reads_the_run_from_gan_out(trained_run, tmp_path):
    out = tmp_path / "again.onnx"
    result = invoke_cli("export", "--out", str(out), env={"GAN_OUT": str(trained_run[0])})
    assert result.returncode == 0, result.stderr
    assert out.is_file() and "exported step 300" in result.stderr


def test_help_shows_defaults_and_environment_variables():
    result = run_cli("train", "--help")
    assert result.returncode == 0
    for text in ("GAN_STEPS", "GAN_OUT", "GAN_DATA", "default: 50000", "--preset"):
        assert text in result.stdout


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--digit", "12"], "--digit"),
        (["--batch", "31"], "--batch must be even"),
        (["--steps", "0"], "--steps"),
        (["--preset", "fancy"], "--preset"),
        (["--data", "/nonexistent/mnist.npz"], "data not found: /nonexistent/mnist.npz"),
    ],
)
def test_bad_input_is_one_line_and_exit_code_2_with_nothing_written(tmp_path, small_mnist, args, message):
    out = tmp_path / "run"
    result = run_cli("train", "--out", str(out), "--data", str(small_mnist), "--steps", "10", *args)
    assert result.returncode == 2
    assert message in result.stderr
    assert "Traceback" not in result.stderr
    assert not out.exists()


@pytest.mark.slow
def test_evaluate_prints_the_quality_of_any_exported_generator(trained_run, small_mnist):
    model = trained_run[0] / "generator.onnx"
    args = ["evaluate", "--model", str(model), "--data", str(small_mnist), "--samples", "200"]
    result = invoke_cli(*args, "--json")
    assert result.returncode == 0, result.stderr
    report = json.loads(result.stdout)
    assert report["samples"] == 200 and report["frechet_distance"] > 0
    assert len(report["class_shares"]) == 10 and "label_accuracy" not in report
    text = invoke_cli(*args)
    assert "Fréchet distance:" in text.stdout and "classes covered:" in text.stdout


def test_evaluate_of_a_runs_model_reuses_the_classifier_its_training_measured_with(trained_run, small_mnist):
    run = trained_run[0]
    cache = json.loads((run / "config.json").read_text())["quality_cache"]
    args = ["evaluate", "--model", str(run / "generator.onnx"), "--data", str(small_mnist), "--samples", "100"]
    result = invoke_cli(*args)
    assert result.returncode == 0, result.stderr
    assert f"using the cached classifier {cache}" in result.stderr
    assert "classifier test accuracy" not in result.stderr  # not trained again
    assert not (run / ".quality-cache").exists()


@pytest.mark.slow
def test_evaluate_names_each_class_share_as_the_data_measured_against_names_it(trained_run, small_mnist, tmp_path):
    names = [f"digit {d}" for d in range(10)]
    with np.load(small_mnist) as arrays:
        np.savez(tmp_path / "named.npz", **arrays, class_names=np.array(names))
    model = trained_run[0] / "generator.onnx"
    args = ["evaluate", "--model", str(model), "--data", str(tmp_path / "named.npz"), "--samples", "200"]
    report = json.loads(invoke_cli(*args, "--json").stdout)
    assert report["class_names"] == names
    shares = invoke_cli(*args).stdout.split("share per class:")[1].splitlines()[0]
    assert [part.rsplit(":", 1)[0] for part in shares.strip().split("  ")] == names


def test_evaluate_refuses_a_file_that_is_not_a_generator(tmp_path, small_mnist):
    (tmp_path / "junk.onnx").write_bytes(b"junk")
    result = run_cli("evaluate", "--model", str(tmp_path / "junk.onnx"), "--data", str(small_mnist))
    assert result.returncode == 2 and "cannot load" in result.stderr and "Traceback" not in result.stderr
