"""The end of a training: the generator saved as Keras and ONNX, and where the start's time went."""

from __future__ import annotations

import logging

from job import signals
from job.config import TrainConfig
from job.data.load import ImageData
from job.export import export_onnx, exported_step, metadata
from job.networks.gan import Gan
from job.rundir.claim import RunDir
from job.rundir.outputs import append_record, save_keras_atomically
from job.rundir.timings import START_STEP, Timings

log = logging.getLogger(__name__)


def already_exported(run: RunDir, step: int) -> bool:
    """Whether the run's generator is saved and its ONNX model is of `step` (not of an earlier, shorter run)."""
    return run.generator.exists() and exported_step(run.onnx) == step


def save_final_models(gan: Gan, config: TrainConfig, data: ImageData, run: RunDir) -> None:
    """generator.keras and generator.onnx (the moving average when there is one), each written atomically."""
    step = int(gan.step.numpy())
    signals.raise_if_requested()  # a signal some library swallowed: no output after it
    save_keras_atomically(gan.sampler, run.generator)
    export_onnx(gan.sampler, run.onnx, metadata(config, data.description(), step, gan.clusters))
    log.info("done: step %d, generator saved to %s and %s", step, run.generator, run.onnx)


def record_timings(run: RunDir, gan: Gan, start: int, timings: Timings) -> None:
    """Log where this start's time went and add it to metrics.jsonl as a `timings` record."""
    log.info("timings: %s", timings.summary())
    append_record(run.metrics, {"step": int(gan.step.numpy()), START_STEP: start, "timings": timings.record()})
