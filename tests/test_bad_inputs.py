"""What a user may rely on when something is wrong: every bad input or damaged state ends in ONE line on stderr,
exit code 2 and no traceback, and the folders are left as they were found (a new run's folder is not left behind).
A valid checkpoint is never deleted or overwritten by a restart.

Each case builds its fixture (bad files, damaged run folders) itself, runs the command in a fresh process as a
user or a container does, and checks the exit code, the one line and the state of the folder afterwards.
"""

from __future__ import annotations

import gzip
import hashlib
import json
import shutil
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass
from functools import partial
from pathlib import Path

import numpy as np
import onnx
import pytest
from onnx import TensorProto, helper

from job.errors import EXIT_BAD_INPUT, EXIT_INTERRUPTED
from tests.conftest import SMALL_MNIST, image_folder, invoke_cli, progress_records, run_cli
from tests.test_output_guard import without_tensorflow

pytestmark = pytest.mark.slow

# The configuration of the session's `trained_run` (tests/conftest.py): the same command resumes that run.
RUN_OPTIONS = ["--steps", "300", "--checkpoint-every", "100", "--log-every", "50", "--seed", "7"]
JOB = "import sys; from job.cli import main; sys.exit(main())"


def snapshot(folder: Path) -> dict[str, str]:
    """Every file below `folder` (the lock file aside) and a hash of its content."""
    return {
        str(path.relative_to(folder)): hashlib.sha256(path.read_bytes()).hexdigest()
        for path in sorted(folder.rglob("*"))
        if path.is_file() and path.name != ".lock"
    }


def arrays() -> dict[str, np.ndarray]:
    with np.load(SMALL_MNIST) as npz:
        return {key: npz[key] for key in npz.files}


def npz_with(folder: Path, **changes) -> Path:
    """The small MNIST subset with some arrays replaced (None removes one)."""
    values = arrays() | changes
    path = folder / "data.npz"
    np.savez(path, **{key: value for key, value in values.items() if value is not None})
    return path


def copy_of(run: Path, tmp_path: Path) -> Path:
    copy = tmp_path / "run"
    shutil.copytree(run, copy)
    return copy


def assert_one_line(stderr: str, message: str) -> None:
    lines = stderr.strip().splitlines()
    assert "Traceback" not in stderr
    assert len(lines) == 1, stderr
    assert lines[0].startswith("Error: ") and message in lines[0], lines[0]


# ---- gan-job train: bad input refused before anything is written ---------------------------------------------------


@dataclass(frozen=True)
class NewRun:
    """A start in a new folder that must be refused: (extra options, a builder of the data) -> message."""

    options: list[str]
    message: str
    data: Callable[[Path], Path] = lambda _: SMALL_MNIST


def corrupt_gzip_idx(folder: Path) -> Path:
    data = folder / "idx"
    data.mkdir()
    for name, key in [("train-images-idx3-ubyte", "x_train"), ("train-labels-idx1-ubyte", "y_train")]:
        array = arrays()[key]
        raw = bytes([0, 0, 8, array.ndim]) + b"".join(d.to_bytes(4, "big") for d in array.shape) + array.tobytes()
        packed = bytearray(gzip.compress(raw))
        packed[len(packed) // 2 : len(packed) // 2 + 64] = bytes(64)  # damage in the middle of the deflate stream
        (data / f"{name}.gz").write_bytes(bytes(packed))
    return data


NEW_RUNS = {
    "seed below 0": NewRun(["--seed", "-1"], "--seed"),
    "seed above 2**32-1": NewRun(["--seed", str(2**32)], "--seed"),
    "odd batch": NewRun(["--batch", "31"], "--batch must be even"),
    "digit out of range": NewRun(["--digit", "12"], "--digit"),
    "missing data": NewRun([], "data not found", lambda folder: folder / "nothing.npz"),
    "data that is no npz": NewRun(
        [], "x.npz: it is not a .npz file", lambda folder: _write(folder / "x.npz", b"not a zip file")
    ),
    "an npz of Python objects": NewRun(
        [], "it holds arrays of Python objects; save numeric arrays", lambda folder: _object_npz(folder / "x.npz")
    ),
    "data that is a device": NewRun([], "/dev/null is neither a file nor a folder", lambda _: Path("/dev/null")),
    "npz without x_train": NewRun([], "has no 'x_train'", lambda folder: npz_with(folder, x_train=None)),
    "images with 2 channels": NewRun(
        [], "must be uint8 images", lambda folder: npz_with(folder, x_train=np.zeros((10, 32, 32, 2), np.uint8))
    ),
    "test images of another shape": NewRun(
        [], "differ from x_train's", lambda folder: npz_with(folder, x_train=np.zeros((1000, 32, 32), np.uint8))
    ),
    "images smaller than 8x8": NewRun(
        [], "too small, at least 8x8", lambda folder: image_folder(folder, {"a": [(4, 4, "L")] * 3})
    ),
    "labels of more than 1000 classes": NewRun(
        [], "labels outside 0..999", lambda folder: npz_with(folder, y_train=np.full(1000, 1000, np.uint16))
    ),
    "more than 1000 class folders": NewRun(
        [],
        "1001 class folders, more than 1000",
        lambda folder: image_folder(folder, {str(i): [(8, 8, "L")] for i in range(1001)}),
    ),
    "image files of mixed sizes": NewRun(
        [], "different sizes", lambda folder: image_folder(folder, {"": [(12, 12, "L"), (16, 12, "L")]})
    ),
    "an unreadable image file": NewRun(
        [],
        "cannot read image",
        lambda folder: _write(image_folder(folder, {"": [(12, 12, "L")]}) / "bad.png", b"not a png"),
    ),
    "an empty folder": NewRun([], "holds no images", lambda folder: _made(folder / "empty")),
    "a class folder asked of unlabelled images": NewRun(
        ["--digit", "1"], "has no labels", lambda folder: image_folder(folder, {"": [(12, 12, "L")] * 3})
    ),
    "conditional on unlabelled images": NewRun(
        ["--conditional"], "needs data of two classes", lambda folder: image_folder(folder, {"": [(12, 12, "L")] * 3})
    ),
    "an image size that is none": NewRun(["--image-size", "big"], "--image-size"),
    "an image size below 8x8": NewRun(["--image-size", "4x32"], "at least 8x8"),
    "an image size above 1024x1024": NewRun(["--image-size", "100000x100000"], "at most 1024x1024"),
    "an empty class folder": NewRun(
        [],
        "no images in the class folder(s) b",
        lambda folder: _made(image_folder(folder, {"a": [(12, 12, "L")]}) / "b").parent,
    ),
    "mlp on images too large for it": NewRun(
        [], "use --arch dcgan", lambda folder: image_folder(folder, {"": [(100, 100, "RGB")] * 3})
    ),
    "two channels": NewRun(["--channels", "2"], "--channels must be 1 (grey) or 3 (RGB)"),
    "empty training set": NewRun(
        [],
        "holds no images",
        lambda folder: npz_with(folder, x_train=np.zeros((0, 28, 28), np.uint8), y_train=np.zeros(0, np.uint8)),
    ),
    "corrupt gzip inside an IDX file": NewRun([], "cannot read", corrupt_gzip_idx),
    "too few real images to measure quality": NewRun(
        [],
        "at least 10 real images",
        lambda folder: npz_with(folder, x_test=arrays()["x_test"][:3], y_test=arrays()["y_test"][:3]),
    ),
}


def _object_npz(path: Path) -> Path:
    np.savez(path, x_train=np.array([{"not": "an image"}], dtype=object))
    return path


def _write(path: Path, content: bytes) -> Path:
    path.write_bytes(content)
    return path.parent if path.suffix == ".png" else path


def _made(folder: Path) -> Path:
    folder.mkdir()
    return folder


@pytest.mark.parametrize("case", NEW_RUNS.values(), ids=NEW_RUNS.keys())
def test_a_new_run_with_bad_input_is_one_line_and_leaves_no_folder(tmp_path, case):
    out = tmp_path / "runs" / "new"
    data = case.data(tmp_path)
    args = ["train", "--data", str(data), "--out", str(out), "--steps", "20", "--quality-cache", str(tmp_path / "c")]
    result = without_tensorflow("gan-job", *args, *case.options)  # refused before TensorFlow loads
    assert result.returncode == EXIT_BAD_INPUT, result.stderr
    assert_one_line(result.stderr, case.message)
    assert not out.exists()


# ---- gan-job train: a damaged or foreign run folder is refused, and left exactly as it was --------------------------


def other_configuration(run: Path) -> list[str]:
    return ["--seed", "8"]


def config_not_an_object(run: Path) -> list[str]:
    (run / "config.json").write_text("[1, 2, 3]\n")
    return []


def config_not_json(run: Path) -> list[str]:
    (run / "config.json").write_text('{"out": ')
    return []


def every_checkpoint_unreadable(run: Path) -> list[str]:
    (run / "generator.onnx").unlink()  # the run must restore to finish, so it reads its checkpoints
    for data in (run / "checkpoints").glob("*.data-*"):
        data.write_bytes(data.read_bytes()[:1000])
    return []


def other_data(run: Path) -> list[str]:
    x_train = arrays()["x_train"].copy()
    x_train[0, 0, 0] ^= 1  # one pixel differs: another data set
    return ["--data", str(npz_with(run.parent, x_train=x_train))]


def checkpoints_a_file(run: Path) -> list[str]:
    shutil.rmtree(run / "checkpoints")
    (run / "checkpoints").write_text("x")
    return []


def config_lost(run: Path) -> list[str]:
    (run / "config.json").unlink()
    return ["--digit", "3", "--steps", "350"]  # another run's settings: nothing would tell


def finished_run_without_checkpoints(run: Path) -> list[str]:
    shutil.rmtree(run / "checkpoints")
    return []


def architecture_damaged(run: Path) -> list[str]:
    saved = json.loads((run / "config.json").read_text())
    (run / "config.json").write_text(json.dumps(saved | {"architecture": saved["architecture"] | {"widths": "wide"}}))
    return []


def other_class_names(run: Path) -> list[str]:
    names = np.array([f"class {letter}" for letter in "abcdefghij"])  # the same images and labels, named anew
    return ["--data", str(npz_with(run.parent, class_names=names))]


DAMAGED = {
    "checkpoints is a file": (checkpoints_a_file, "is not a folder"),
    "config.json lost beside checkpoints": (config_lost, "no config.json"),
    "a finished run whose checkpoints are gone": (finished_run_without_checkpoints, "checkpoints are gone"),
    "a run of another configuration": (other_configuration, "another configuration (seed: run has 7, asked for 8"),
    "config.json valid JSON but not an object": (config_not_an_object, "is not a run configuration"),
    "config.json not JSON": (config_not_json, "is unreadable"),
    "every checkpoint unreadable": (every_checkpoint_unreadable, "none of the 3 checkpoints"),
    "other data behind --data": (other_data, "trained on other data"),
    "the same data under other class names": (other_class_names, "classes are named 0, 1, 2"),
    "config.json's architecture section damaged": (architecture_damaged, "no usable architecture section (widths"),
}


# Found out only by reading the checkpoints, which takes TensorFlow; every other case is refused before it loads.
READ_BY_TENSORFLOW = {every_checkpoint_unreadable}


@pytest.mark.parametrize("case", DAMAGED.values(), ids=DAMAGED.keys())
def test_a_damaged_or_foreign_run_folder_is_one_line_and_left_as_it_was(trained_run, tmp_path, case):
    damage, message = case
    run = copy_of(trained_run[0], tmp_path)
    extra = damage(run)
    before = snapshot(run)
    start = invoke_cli if damage in READ_BY_TENSORFLOW else partial(without_tensorflow, "gan-job")
    result = start("train", "--data", str(SMALL_MNIST), "--out", str(run), *RUN_OPTIONS, *extra)
    assert result.returncode == EXIT_BAD_INPUT, result.stderr
    assert message in result.stderr.strip().splitlines()[-1] and "Traceback" not in result.stderr
    assert snapshot(run) == before


# ---- gan-job train: damaged state that the job repairs without losing anything -------------------------------------


@pytest.mark.parametrize("damage", ["deleted", "garbage"])
def test_a_lost_or_damaged_checkpoint_index_loses_nothing(trained_run, tmp_path, damage):
    run = copy_of(trained_run[0], tmp_path)
    index = run / "checkpoints" / "checkpoint"  # TensorFlow's bookkeeping file, where there is one
    if damage == "deleted":
        index.unlink(missing_ok=True)
    else:
        index.write_text("garbage {{{")
    (run / "generator.onnx").unlink()
    kept = {name: digest for name, digest in snapshot(run).items() if name.startswith("checkpoints/ckpt-")}
    result = invoke_cli("train", "--data", str(SMALL_MNIST), "--out", str(run), *RUN_OPTIONS)
    assert result.returncode == 0, result.stderr
    assert (run / "generator.onnx").is_file()
    after = snapshot(run)
    assert {name: after.get(name) for name in kept} == kept  # every checkpoint still there, byte for byte


def test_the_same_data_at_another_path_still_resumes(trained_run, tmp_path):
    run = copy_of(trained_run[0], tmp_path)
    moved = tmp_path / "elsewhere.npz"
    shutil.copy(SMALL_MNIST, moved)
    result = invoke_cli("train", "--data", str(moved), "--out", str(run), *RUN_OPTIONS)
    assert result.returncode == 0, result.stderr
    assert "already finished" in result.stderr


def test_metrics_lines_without_a_usable_step_are_dropped_on_resume(trained_run, tmp_path):
    run = copy_of(trained_run[0], tmp_path)
    with open(run / "metrics.jsonl", "a") as metrics:
        metrics.write('{"d_loss": 1.0}\n{"step": "three hundred"}\n[1, 2]\n{"step": 1e400}\n')
    longer = [*RUN_OPTIONS[:1], "350", *RUN_OPTIONS[2:]]
    result = invoke_cli("train", "--data", str(SMALL_MNIST), "--out", str(run), *longer)
    assert result.returncode == 0, result.stderr
    assert [record["step"] for record in progress_records(run)] == [50, 100, 150, 200, 250, 300, 350]


# ---- one writer per run folder ----------------------------------------------------------------------------------


def start_training(out: Path, *options: str) -> subprocess.Popen:
    args = ["train", "--data", str(SMALL_MNIST), "--out", str(out), "--no-quality", *options]
    return subprocess.Popen([sys.executable, "-c", JOB, *args], stderr=subprocess.PIPE, text=True)


def wait_for(process: subprocess.Popen, text: str) -> None:
    for line in process.stderr:
        if text in line:
            return
    raise AssertionError(f"the job ended before it logged {text!r}")


def test_a_second_start_on_the_same_folder_is_refused_and_a_killed_ones_lock_does_not_stick(tmp_path):
    out = tmp_path / "run"
    first = start_training(out, "--steps", "100000", "--checkpoint-every", "50", "--log-every", "50")
    try:
        wait_for(first, "step 100/")  # logged after the checkpoint of step 50 is on disk
        second = invoke_cli("train", "--data", str(SMALL_MNIST), "--out", str(out), "--no-quality", "--steps", "100000")
        assert second.returncode == EXIT_BAD_INPUT
        assert_one_line(second.stderr, "another gan-job is training in")
    finally:
        first.kill()  # SIGKILL: no chance to release anything itself
        first.wait(timeout=60)
    # The kill may land after a later checkpoint than step 100's: the third start asks for a step beyond the newest
    newest = max(int(path.name.split("-")[1].split(".")[0]) for path in (out / "checkpoints").glob("ckpt-*.index"))
    steps = str(newest + 50)
    third = invoke_cli(
        "train", "--data", str(SMALL_MNIST), "--out", str(out), "--no-quality", "--steps", steps, "--log-every", "50"
    )
    assert third.returncode == 0, third.stderr
    assert "resuming from the checkpoint of step" in third.stderr


# ---- signals outside the training steps ---------------------------------------------------------------------------


@pytest.mark.parametrize("phase", ["start-up", "classifier training"])
def test_sigterm_outside_the_training_steps_exits_75_at_once_leaving_nothing_half_written(tmp_path, phase):
    out, cache = tmp_path / "runs" / "new", tmp_path / "cache"
    process = subprocess.Popen(
        [sys.executable, "-c", JOB, "train", "--data", str(SMALL_MNIST), "--out", str(out)]
        + ["--quality-cache", str(cache), "--steps", "50"],
        stderr=subprocess.PIPE,
        text=True,
    )
    if phase == "start-up":
        time.sleep(1.5)  # loading TensorFlow
    else:
        wait_for(process, "training the classifier")
    process.send_signal(signal.SIGTERM)
    stderr = process.communicate(timeout=120)[1]  # a hang guard, not a speed test
    assert process.returncode == EXIT_INTERRUPTED, stderr
    assert "interrupted by SIGTERM" in stderr.strip().splitlines()[-1] and "Traceback" not in stderr
    assert not out.exists()  # a new run stopped before its first checkpoint leaves no folder
    # At once: the classifier's training did not run to its end (it would have been cached), nor left a part.
    assert not cache.exists() or not list(cache.iterdir())


# ---- gan-job export and evaluate ------------------------------------------------------------------------------------


def test_export_of_a_damaged_checkpoint_is_one_line(trained_run, tmp_path):
    run = copy_of(trained_run[0], tmp_path)
    data = next((run / "checkpoints").glob("ckpt-200.data-*"))
    data.write_bytes(data.read_bytes()[:1000])
    before = snapshot(run)
    result = invoke_cli("export", "--run", str(run), "--step", "200", "--out", str(tmp_path / "g.onnx"))
    assert result.returncode == EXIT_BAD_INPUT, result.stderr
    assert_one_line(result.stderr, "the checkpoint of step 200")
    assert snapshot(run) == before and not (tmp_path / "g.onnx").exists()


@pytest.mark.parametrize(
    ("args", "message"),
    [(["--step", "250"], "keeps no checkpoint of step 250"), (["--run", "/"], "is not a run directory")],
)
def test_export_of_what_a_run_does_not_hold_is_one_line(trained_run, tmp_path, args, message):
    result = invoke_cli("export", "--run", str(trained_run[0]), *args, "--out", str(tmp_path / "g.onnx"))
    assert result.returncode == EXIT_BAD_INPUT, result.stderr
    assert_one_line(result.stderr, message)


def test_an_interpolation_too_long_for_memory_is_one_line(tmp_path):
    model = generator_lookalike(tmp_path / "m.onnx", latent_dim=784)
    args = ["--model", str(model), "--from", "1", "--to", "2", "--out", str(tmp_path / "walk.gif")]
    result = run_cli("gan-digits", "interpolate", *args, "--steps", "10000000")
    assert result.returncode == EXIT_BAD_INPUT
    assert_one_line(result.stderr, "--steps")
    assert not (tmp_path / "walk.gif").exists()


def test_evaluate_on_data_too_small_to_measure_is_one_line(trained_run, tmp_path):
    data = npz_with(tmp_path, x_test=arrays()["x_test"][:3], y_test=arrays()["y_test"][:3])
    model = trained_run[0] / "generator.onnx"
    result = invoke_cli("evaluate", "--model", str(model), "--data", str(data), "--quality-cache", str(tmp_path / "c"))
    assert result.returncode == EXIT_BAD_INPUT, result.stderr
    assert_one_line(result.stderr, "at least 10 real images")


# ---- gan-digits --------------------------------------------------------------------------------------------------


def generator_lookalike(
    path: Path, metadata: dict[str, str] | None = None, latent_dim: int = 100, times: float = 1.0
) -> Path:
    """An ONNX model with a generator's inputs and outputs whose graph reshapes the latents, times `times`, to an
    image: it loads, and fails inside onnxruntime unless latent_dim is 784."""
    z = helper.make_tensor_value_info("z", TensorProto.FLOAT, ["batch", latent_dim])
    image = helper.make_tensor_value_info("image", TensorProto.FLOAT, ["batch", 28, 28, 1])
    shape = helper.make_tensor("shape", TensorProto.INT64, [4], [-1, 28, 28, 1])
    factor = helper.make_tensor("factor", TensorProto.FLOAT, [], [times])
    nodes = [
        helper.make_node("Mul", ["z", "factor"], ["scaled"]),
        helper.make_node("Reshape", ["scaled", "shape"], ["image"]),
    ]
    graph = helper.make_graph(nodes, "g", [z], [image], [shape, factor])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    helper.set_model_props(model, metadata or {})
    onnx.save(model, path)
    return path


@pytest.mark.parametrize(
    ("model", "args", "message"),
    [
        (lambda folder: generator_lookalike(folder / "m.onnx"), [], "fails inside onnxruntime"),
        (
            lambda folder: generator_lookalike(folder / "m.onnx", {"digit": "seven"}, latent_dim=784),
            [],
            "metadata says digit 'seven'",
        ),
        (
            lambda folder: generator_lookalike(folder / "m.onnx", latent_dim=784),
            ["-n", "2000000", "--scale", "4"],
            "megapixels",
        ),
        (lambda folder: _write(folder / "m.onnx", b"\x08\x07garbage"), [], "cannot load"),
        (lambda folder: generator_lookalike(folder / "m.onnx", latent_dim=784, times=float("nan")), [], "not finite"),
        (lambda folder: generator_lookalike(folder / "m.onnx", latent_dim=784), ["--seed", "-1"], "--seed"),
    ],
    ids=["fails inside onnxruntime", "foreign metadata", "grid too large for memory", "not ONNX", "NaN", "seed"],
)
def test_gan_digits_bad_models_and_requests_are_one_line_and_write_nothing(tmp_path, model, args, message):
    path = model(tmp_path)
    out = tmp_path / "out" / "grid.png"
    result = run_cli("gan-digits", "generate", "--model", str(path), *args, "--out", str(out))
    assert result.returncode == EXIT_BAD_INPUT, result.stderr
    assert_one_line(result.stderr, message)
    assert not out.exists() and not (out.parent.exists() and any(out.parent.iterdir()))
