"""What a training says as it goes: its data, each log interval's line, the quality line and its warning. Imports
no TensorFlow."""

from __future__ import annotations

import dataclasses
import logging
from dataclasses import dataclass
from typing import TYPE_CHECKING

from job.analysis.quality_rules import collapsed
from job.config import TrainConfig
from job.data.load import ImageData

if TYPE_CHECKING:
    from job.analysis.quality import QualityReport

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Progress:
    """One log interval: what metrics.jsonl records, plus where the run stands."""

    step: int
    steps: int
    d_loss: float
    g_loss: float
    d_accuracy: float
    steps_per_s: float
    elapsed_s: float

    def record(self) -> dict:
        """The metrics.jsonl line: everything but the total step count."""
        return {key: value for key, value in dataclasses.asdict(self).items() if key != "steps"}


def log_progress(progress: Progress) -> None:
    log.info(
        "step %d/%d  d_loss %.4f  g_loss %.4f  d_acc %.3f  %.1f steps/s  %.0fs of training",
        progress.step,
        progress.steps,
        progress.d_loss,
        progress.g_loss,
        progress.d_accuracy,
        progress.steps_per_s,
        progress.elapsed_s,
    )


def log_training_set(config: TrainConfig, data: ImageData, images: int, on: str) -> None:
    height, width, channels = data.image_shape
    shape = f"{data.name}, {height}x{width} {'grey' if channels == 1 else 'RGB'}"
    log.info("training on %d images of %s (%s) on %s", images, shape, _classes(config, data), on)


def _classes(config: TrainConfig, data: ImageData) -> str:
    if not data.labelled:
        return "unlabelled"
    if config.conditional:
        return f"all {data.num_classes} classes, conditional on the label"
    if config.digit != -1:
        return f"class {data.class_names[config.digit]}"
    return "one class" if data.num_classes == 1 else f"all {data.num_classes} classes"


def log_quality(step: int, steps: int, quality: QualityReport, measurements: list[dict]) -> None:
    """The quality line, and the collapse warning when the run's measurements so far (metrics.jsonl) call for it."""
    covered = f"{quality.classes_covered} of {len(quality.class_shares)} classes covered"
    line = f"Fréchet distance {quality.frechet_distance:.2f}, {covered}"
    if quality.label_accuracy is not None:
        line += f", {quality.label_accuracy:.1%} classified as the class asked for"
    if quality.least_varied is not None:
        label, variety = quality.least_varied
        line += f", least varied class {quality.class_name(label)} ({variety:.2f} of the data's variety)"
    log.info("quality at step %d: %s", step, line)
    if collapsed(measurements, steps):
        log.warning("quality at step %d: %s", step, quality.look_alike())
