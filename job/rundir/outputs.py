"""What a run leaves in its output folder besides checkpoints: samples, metrics, TensorBoard, model summaries."""

from __future__ import annotations

import contextlib
import importlib.util
import io
import json
import logging
import os
import shutil
import tempfile
from pathlib import Path

import keras
import numpy as np
import tensorflow as tf

from job.rundir.claim import RunDir
from job.rundir.timings import START_STEP, WALL_TIME
from serving.files import atomic_write, atomic_write_text
from serving.images import grid, to_uint8

log = logging.getLogger(__name__)


def save_grid(images: np.ndarray, path: Path) -> np.ndarray:
    """Images in [-1, 1] as a 4x4 (or squarer) grid PNG, written atomically; returns the uint8 grid."""
    picture = grid(to_uint8(images), scale=2)
    with atomic_write(path) as file:
        picture.save(file, format="PNG")
    return np.asarray(picture)


def save_keras_atomically(model: keras.Model, path: Path) -> None:
    # Keras wants a .keras name: save into a hidden folder beside the target, then rename over it. The folder is
    # unique: the runs of a sweep, started together, may all save the shared quality classifier at once.
    path.parent.mkdir(parents=True, exist_ok=True)
    folder = Path(tempfile.mkdtemp(prefix=f".{path.stem}.", suffix=".tmp", dir=path.parent))
    try:
        model.save(folder / path.name)
        os.replace(folder / path.name, path)
    finally:
        shutil.rmtree(folder, ignore_errors=True)


def append_record(path: Path, record: dict) -> None:
    """One line of metrics.jsonl, on disk before this returns (a kill right after loses nothing)."""
    with open(path, "a", encoding="utf-8") as file:
        file.write(json.dumps(record) + "\n")
        file.flush()
        os.fsync(file.fileno())


class MetricsLog:
    """metrics.jsonl (one JSON object per log interval) and the same scalars in TensorBoard.

    Every line has a `step`; a start that trains to the end adds one more, {"step": ..., "timings": {...}}, with
    no training metrics: readers of progress lines skip lines that have a `timings` key.
    """

    def __init__(self, run: RunDir, resume_step: int) -> None:
        self.path = run.metrics
        self._drop_after(resume_step)
        self.writer = tf.summary.create_file_writer(str(run.tensorboard))

    def _drop_after(self, step: int) -> None:
        # Lines past the checkpoint we resume from (or torn by a kill) would be repeated by this run: drop them.
        if not self.path.exists():
            return
        kept = []
        for line in self.path.read_text(encoding="utf-8", errors="replace").splitlines():
            with contextlib.suppress(ValueError, KeyError, TypeError, OverflowError):  # torn, or no usable step
                if int(json.loads(line)["step"]) <= step:
                    kept.append(line + "\n")
        atomic_write_text(self.path, "".join(kept))

    def write(self, record: dict) -> None:
        append_record(self.path, record)
        with self.writer.as_default(step=record["step"]):
            for name, value in record.items():
                if isinstance(value, list):  # class_shares, class_variety: one curve per class...
                    for index, item in enumerate(value):
                        if item is not None:  # ... where it was measured
                            tf.summary.scalar(f"{name}/{index}", item)
                elif name not in ("step", WALL_TIME, START_STEP):
                    tf.summary.scalar(name, value)

    def image(self, step: int, picture: np.ndarray) -> None:
        with self.writer.as_default(step=step):
            pixels = picture if picture.ndim == 3 else picture[:, :, np.newaxis]  # grey grids are (H, W)
            tf.summary.image("samples", pixels[np.newaxis])
        self.writer.flush()

    def close(self) -> None:
        self.writer.close()


def write_model_summaries(run: RunDir, models: list[keras.Model]) -> None:
    """model.txt with each model's summary; diagrams too when pydot and graphviz are installed."""
    text = io.StringIO()
    for model in models:
        model.summary(print_fn=lambda line, *_, **__: text.write(line + "\n"))
        text.write("\n")
    atomic_write_text(run.model_txt, text.getvalue())
    if importlib.util.find_spec("pydot") is None or shutil.which("dot") is None:
        log.debug("pydot or graphviz not installed: no model diagrams (model.txt has the summaries)")
        return
    for model in models:
        try:
            keras.utils.plot_model(model, to_file=str(run.root / f"{model.name}.png"), show_shapes=True)
        except Exception as error:  # a diagram is a nicety: never fail a run for it
            log.warning("could not draw %s: %s", model.name, error)
