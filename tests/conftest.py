"""Shared fixtures: a 1,000-image real MNIST subset (tests/data/mnist_small.npz, the first images of each split)."""

from __future__ import annotations

import json
import logging
import os
import shutil
import subprocess
import sys
import tempfile
import traceback
from pathlib import Path

import pytest

from serving.files import RUN_MODEL

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
# What job.networks.gan.make_deterministic sets, here for the whole session: tests run TensorFlow before their
# first train().
os.environ.setdefault("TF_NUM_INTEROP_THREADS", "1")

SMALL_MNIST = Path(__file__).parent / "data" / "mnist_small.npz"


def pytest_configure(config) -> None:
    """One user cache folder for the whole test session, its workers and the processes they start: the quality
    classifier of a data set is trained once, as for a user, and the user's own cache is never touched."""
    if "MNIST_GAN_TEST_CACHE" not in os.environ:  # set once, by the first process; workers inherit it
        os.environ["MNIST_GAN_TEST_CACHE"] = tempfile.mkdtemp(prefix="mnist-gan-test-cache-")
        config.add_cleanup(lambda: shutil.rmtree(os.environ.pop("MNIST_GAN_TEST_CACHE"), ignore_errors=True))
    os.environ["XDG_CACHE_HOME"] = os.environ["MNIST_GAN_TEST_CACHE"]
    # XLA's compiled steps kept on disk for the session: a `gan-job` process that trains the MLP finds the step its
    # predecessors compiled instead of compiling it again (about 3 s each). Set before any worker loads TensorFlow.
    xla_cache = Path(os.environ["MNIST_GAN_TEST_CACHE"]) / "xla"
    os.environ.setdefault("TF_XLA_FLAGS", f"--tf_xla_persistent_cache_directory={xla_cache}")


@pytest.fixture
def small_mnist() -> Path:
    return SMALL_MNIST


def short_run_config(out: Path, data: Path = SMALL_MNIST, **overrides):
    """A real training run small enough for a test: 300 steps on 1,000 images."""
    from job.config import TrainConfig

    options = {
        "steps": 300,
        "checkpoint_every": 100,
        "checkpoint_minutes": 0,  # checkpoints by step only, so that a test knows where they fall
        "sample_every": 100,
        "log_every": 50,
        "seed": 7,
    } | overrides
    return TrainConfig(out=out, data=data, **options)


def train_until_preempted(config, step: int = 0) -> None:
    """Train until the run reaches `step` (by default: its first progress line), then act as SIGTERM does: the loop
    writes a checkpoint of the step reached and raises Interrupted."""
    from job import signals
    from job.errors import Interrupted
    from job.loop.train import train

    def sigterm_at_step(progress) -> None:
        if progress.step >= step:
            signals.requested.set()

    try:
        with pytest.raises(Interrupted):
            train(config, on_progress=sigterm_at_step)
    finally:
        signals.requested.clear()


@pytest.fixture(scope="session")
def small_mnist_classifier() -> Path:
    """The session's user cache folder, holding the small set's quality classifier: the first pytest-xdist worker
    that asks trains it while the others wait (without the lock, two workers at once would each train it). The
    fixtures that train with quality on ask for it."""
    import filelock

    from job.analysis.quality import load_or_train_classifier
    from job.config import user_cache
    from job.data.load import load_data

    with filelock.FileLock(Path(os.environ["MNIST_GAN_TEST_CACHE"]) / "small-mnist-classifier.lock"):
        load_or_train_classifier(load_data(SMALL_MNIST), user_cache())
    return user_cache()


def trained_once(tmp_path_factory, name: str, **overrides) -> tuple[Path, object]:
    """A short run trained once for the whole session, read only for the tests (they copy it to change it): the
    first pytest-xdist worker that asks trains it while the others wait, then restore its final state from its
    newest checkpoint. (run directory, final training state)"""
    import filelock

    from job.loop.train import train
    from job.rundir.restore import load_run

    if "PYTEST_XDIST_WORKER" not in os.environ:  # one process: nobody to share with
        out = tmp_path_factory.mktemp(name)
        return out, train(short_run_config(out, **overrides))
    shared = tmp_path_factory.getbasetemp().parent  # the session's folder, above each worker's own
    out, done = shared / name, shared / f"{name}.done"
    with filelock.FileLock(shared / f"{name}.lock"):
        if not done.exists():
            gan = train(short_run_config(out, **overrides))
            done.touch()
            return out, gan
    return out, load_run(out)[2]


@pytest.fixture(scope="session")
def trained_run(tmp_path_factory, small_mnist_classifier):
    """One finished short run for the whole session: (run directory, final training state)."""
    return trained_once(tmp_path_factory, "run")


def progress_records(run: Path) -> list[dict]:
    """metrics.jsonl's progress lines: every line but the `timings` record a start that finishes adds."""
    lines = (run / "metrics.jsonl").read_text().splitlines()
    return [record for record in map(json.loads, lines) if "timings" not in record]


def run_cli(*args: str, env: dict | None = None, timeout: float = 300) -> subprocess.CompletedProcess:
    """Run a console script of this package the way a user or a container does, in a fresh process."""
    return subprocess.run(
        [sys.executable, "-c", "import sys; from job.cli import main; sys.exit(main())", *args]
        if args[0] != "gan-digits"
        else [sys.executable, "-c", "import sys; from serving.cli import main; sys.exit(main())", *args[1:]],
        capture_output=True,
        text=True,
        env={**os.environ, **(env or {})},
        timeout=timeout,
    )


class _LogToCurrentStderr(logging.StreamHandler):
    """The job's log lines, written to whatever sys.stderr is when they are logged: CliRunner's, during a call."""

    def __init__(self) -> None:
        from job.cli import LOG_FORMAT, LOG_TIME_FORMAT

        super().__init__()
        self.setFormatter(logging.Formatter(LOG_FORMAT, LOG_TIME_FORMAT))

    @property
    def stream(self):
        return sys.stderr

    @stream.setter
    def stream(self, _) -> None:
        pass


def invoke_cli(*args: str, env: dict | None = None) -> subprocess.CompletedProcess:
    """Run a gan-job command in this process (click's CliRunner), for tests about what a command writes and answers
    rather than about its process (signals, kills, locks, what it imports): the worker's TensorFlow is loaded already.
    The result reads as run_cli's; an uncaught exception's traceback ends its stderr, as it would a process's."""
    from click.testing import CliRunner

    from job.cli import main

    root = logging.getLogger()
    handler, level = _LogToCurrentStderr(), root.level
    root.addHandler(handler)
    root.setLevel(logging.INFO)
    try:
        result = CliRunner().invoke(main, list(args), env=env)
    finally:
        root.removeHandler(handler)
        root.setLevel(level)
    stderr = result.stderr
    if result.exc_info and not isinstance(result.exception, SystemExit):
        stderr += "".join(traceback.format_exception(*result.exc_info))
    return subprocess.CompletedProcess(["gan-job", *args], result.exit_code, result.stdout, stderr)


@pytest.fixture(scope="session")
def conditional_run(tmp_path_factory, small_mnist_classifier):
    """One finished short conditional run: (run directory, final training state)."""
    return trained_once(tmp_path_factory, "conditional", conditional=True)


MNIST = ((28, 28, 1), 10)  # MNIST's image shape and number of classes, for tests that build networks without data


# ---- data sets of other shapes, built from the small MNIST subset ---------------------------------------------------


def image_folder(root: Path, spec: dict[str, list[tuple[int, int, str]]], seed: int = 0) -> Path:
    """A folder of PNGs of random pixels: for each class folder name ("" for the folder itself), images of
    (height, width, pillow mode)."""
    import numpy as np
    from PIL import Image

    rng = np.random.default_rng(seed)
    folder = root / "images"
    for name, images in spec.items():
        (folder / name).mkdir(parents=True, exist_ok=True)
        for index, (height, width, mode) in enumerate(images):
            shape = (height, width) if mode == "L" else (height, width, 3)
            Image.fromarray(rng.integers(0, 256, shape, dtype=np.uint8), mode).save(folder / name / f"{index}.png")
    return folder


def mnist_arrays() -> dict:
    import numpy as np

    with np.load(SMALL_MNIST) as npz:
        return {key: npz[key] for key in npz.files}


def tinted_mnist_32(path: Path) -> Path:
    """MNIST's digits padded to 32x32 and tinted into three channels (digit d in the colour of d), as a .npz."""
    import numpy as np

    arrays = mnist_arrays()
    tints = np.random.default_rng(1).uniform(0.4, 1.0, size=(10, 3))
    for split in ("train", "test"):
        padded = np.pad(arrays[f"x_{split}"], ((0, 0), (2, 2), (2, 2)))
        tint = tints[arrays[f"y_{split}"]][:, np.newaxis, np.newaxis, :]
        arrays[f"x_{split}"] = np.rint(padded[..., np.newaxis] * tint).astype(np.uint8)
    np.savez(path, **arrays, class_names=np.array([f"tinted {d}" for d in range(10)]))
    return path


def mnist_png_folders(root: Path, per_class: int = 60) -> Path:
    """The first `per_class` images of digits 0, 1 and 7 as PNG files in class folders named zero, one, seven."""
    from PIL import Image

    arrays = mnist_arrays()
    folder = root / "png-digits"
    for digit, name in ((0, "zero"), (1, "one"), (7, "seven")):
        (folder / name).mkdir(parents=True)
        for index, image in enumerate(arrays["x_train"][arrays["y_train"] == digit][:per_class]):
            Image.fromarray(image).save(folder / name / f"{index:04d}.png")
    return folder


def unlabelled_npz(path: Path) -> Path:
    """The small MNIST set's training images alone: no labels, no test set."""
    import numpy as np

    np.savez(path, x_train=mnist_arrays()["x_train"])
    return path


def recorded_run(folder: Path, **recorded: str) -> Path:
    """A run folder whose config.json records `recorded` (e.g. out, data, quality_cache) as `gan-job train` wrote
    them; its model's path (generator.onnx, not written)."""
    folder.mkdir(parents=True)
    (folder / "config.json").write_text(json.dumps(recorded))
    return folder / RUN_MODEL
