"""The training loop: owns a run directory, trains to completion, resumes from where a previous start stopped."""

from __future__ import annotations

import dataclasses
import json
import logging
import math
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
import tensorflow as tf

from job import signals
from job.analysis.quality import GanQualityMeter, QualityReport, load_or_train_classifier
from job.analysis.quality_rules import collapsed
from job.analysis.report import kept_current
from job.config import SAMPLE_IMAGES, TrainConfig
from job.data.load import ImageData, reference_images, to_unit_range, training_set
from job.data.memory import check_fits
from job.errors import Interrupted, TrainingDiverged
from job.export import export_onnx, exported_step, metadata
from job.networks.clusters import cluster_count, run_clusters
from job.networks.gan import Gan, TrainStep, build_gan, make_deterministic, sample_images
from job.networks.models import ARCHITECTURES, conditioning_strength, training_bytes
from job.rundir.checkpoints import Checkpoints
from job.rundir.claim import RunDir, claimed, clusters_of, config_json
from job.rundir.outputs import (
    MetricsLog,
    append_record,
    save_grid,
    save_keras_atomically,
    write_model_summaries,
)
from job.rundir.timings import START_STEP, WALL_TIME, Timings
from serving.files import atomic_write_text
from serving.model import cycling_labels

log = logging.getLogger(__name__)

CALL_SECONDS = 2.0  # about how long one compiled call trains: how long a SIGTERM waits for the checkpoint
# The first call also traces (and for the MLP, compiles) the step: one step, as a large image's DCGAN may take
# seconds for it, and its time says nothing of the speed.
FIRST_CALL_STEPS = 1

__all__ = ["Interrupted", "TrainingDiverged", "train"]


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


def train(
    config: TrainConfig,
    force: bool = False,
    on_progress: Callable[[Progress], None] | None = None,
    on_advance: Callable[[int], None] | None = None,
) -> Gan:
    """Train the run in `config.out` to `config.steps`, resuming from its newest checkpoint; returns the state.
    `on_progress` hears of each log interval (by default it logs a line), `on_advance` of the step reached after
    each compiled call, about every CALL_SECONDS (a terminal's progress bar moves with it).

    On SIGTERM or SIGINT (job/signals.py) training ends after the compiled call under way, writes a checkpoint and
    raises Interrupted. A new run that fails before its first checkpoint leaves no folder behind. A start that
    finishes the run (trains to the end, or exports what an interrupted start trained) logs where its time went and
    adds a `timings` record to metrics.jsonl.
    """
    with claimed(config, force) as (run, data):
        return train_claimed(config, run, data, force, on_progress, on_advance)


def real_grid_images(images: np.ndarray, labels: np.ndarray | None) -> np.ndarray:
    """The real images of reals.png: with labels, every class in turn (the order of a conditional run's sample grid),
    as a folder's images come sorted by class and its first ones would all show one; without, the first ones."""
    if labels is None:
        return images[:SAMPLE_IMAGES]
    classes = np.unique(labels)
    picks = []
    for position, class_index in enumerate(cycling_labels(SAMPLE_IMAGES, len(classes))):
        of_class = np.flatnonzero(labels == classes[class_index])
        picks.append(of_class[position // len(classes) % len(of_class)])
    return images[picks]


def train_claimed(
    config: TrainConfig,
    run: RunDir,
    data: ImageData,
    force: bool = False,
    on_progress: Callable[[Progress], None] | None = None,
    on_advance: Callable[[int], None] | None = None,
) -> Gan:
    """`train` in a run folder already claimed (job/rundir/claim.py), with its data loaded."""
    timings = Timings()
    on_progress = on_progress or _log_progress
    on_advance = on_advance or (lambda step: None)
    log.info("configuration: %s", json.dumps(config.to_dict(), sort_keys=True))
    make_deterministic()  # a resumed run ends bit for bit where an uninterrupted one does
    images, labels = training_set(data, config.digit)
    device = _device()
    log.info("training on %d images of %s (%s) on %s", len(images), _shape_text(data), _classes(config, data), device)
    clusters = _clusters(config, run, len(images), resuming=not force and run.has_checkpoints())
    gan = build_gan(config, data.image_shape, data.num_classes, clusters)
    warn_if_the_label_stays_weak(config, gan)
    _log_learning_rates(config, gan)
    if not tf.config.list_physical_devices("GPU"):  # on a GPU, TensorFlow reports a lack of memory itself
        check_fits(images, training_bytes(gan.generator, gan.discriminator, config.batch))
    with timings.part("quality_classifier"):
        meter = _quality_meter(config, data)  # the classifier's one-time training, before the run folder is touched
    signals.raise_if_requested()
    checkpoints = Checkpoints(run.checkpoints, gan.checkpoint(), keep=config.keep_checkpoints)
    if force and run.config.exists():
        log.warning("--force: starting a new run in %s; the old run's outputs are removed", run.root)
        run.remove_outputs()
    start = checkpoints.restore_latest()
    atomic_write_text(run.config, config_json(config, data, clusters))
    if clusters:  # the networks learn the clusters as classes
        labels = run_clusters(run.clusters, images, clusters, config.seed)
        gan.set_cluster_shares(labels)
    if start:
        log.info("resuming from the checkpoint of step %d", start)
    else:
        save_grid(to_unit_range(real_grid_images(images, labels)), run.samples / "reals.png")
        write_model_summaries(run, [gan.generator, gan.discriminator])

    with kept_current(run.root, device, interrupted=Interrupted) as update_report:  # report.html
        if start < config.steps:
            train_step = TrainStep(gan, images, config.batch, labels, config.steps, config.hyper.learning_rate)
            loop = TrainingLoop(
                config, run, gan, checkpoints, train_step, meter, on_progress, on_advance, update_report, timings
            )
            timings.start_up_ends()
            with signals.deferred() as stop:
                loop.train_from(start, stop)
        elif run.generator.exists() and exported_step(run.onnx) == start:  # not a model of an earlier, shorter run
            log.info("run in %s already finished at step %d: nothing to do", run.root, start)
            return gan
        else:  # the steps are done, the export is not (a start stopped while exporting)
            timings.start_up_ends()
        with timings.part("export"):
            save_final_models(gan, config, data, run)
        signals.work_done()  # the run is finished: a signal now leaves its bookkeeping whole and its report finished
        log.info("timings: %s", timings.summary())
        append_record(run.metrics, {"step": int(gan.step.numpy()), START_STEP: start, "timings": timings.record()})
    return gan


def save_final_models(gan: Gan, config: TrainConfig, data: ImageData, run: RunDir) -> None:
    """generator.keras and generator.onnx (the moving average when there is one), each written atomically."""
    step = int(gan.step.numpy())
    signals.raise_if_requested()  # a signal some library swallowed: no output after it
    save_keras_atomically(gan.sampler, run.generator)
    export_onnx(gan.sampler, run.onnx, metadata(config, data.description(), step, gan.clusters))
    log.info("done: step %d, generator saved to %s and %s", step, run.generator, run.onnx)


@dataclass
class TrainingLoop:
    """Everything the loop works with, from the first compiled call to the last."""

    config: TrainConfig
    run: RunDir
    gan: Gan
    checkpoints: Checkpoints
    train_step: TrainStep
    meter: GanQualityMeter | None  # None: quality is not measured
    on_progress: Callable[[Progress], None]  # at each log line
    on_advance: Callable[[int], None]  # after each compiled call, with the step reached
    on_sample: Callable[[], None]  # after each sample grid: rewrites report.html
    timings: Timings
    last_checkpoint: float = dataclasses.field(default=0.0, init=False)  # time.monotonic() of the newest

    def train_from(self, start: int, stop: threading.Event) -> None:
        """Train from step `start` to the configured steps in compiled calls that end at each log line, sample grid
        and checkpoint by step, and after about CALL_SECONDS; checkpoints by wall time fall between calls. When `stop`
        is set (SIGTERM, SIGINT), checkpoint the step reached and raise Interrupted."""
        config, gan, timings = self.config, self.gan, self.timings
        train_steps = self.train_step.compiled()
        metrics = MetricsLog(self.run, resume_step=start)
        step = start
        first_line = True  # of this start
        call_length, interval = CallLength(), Interval()
        self.last_checkpoint = time.monotonic()
        try:
            while step < config.steps:
                if stop.is_set():
                    if not self.checkpoints.holds(step):
                        self._checkpoint(step)
                    raise Interrupted(
                        f"interrupted by {signals.received()}: checkpoint written at step {step}; run the same "
                        "command again to resume"
                    )
                n = call_length.next(step, config)
                began = time.perf_counter()
                means = {name: float(value) for name, value in train_steps(tf.constant(n)).items()}
                seconds = time.perf_counter() - began
                call_length.measured(n, seconds)
                interval.add(n, seconds, means)
                timings.seconds["training"] += seconds
                gan.train_seconds.assign_add(seconds)
                step = int(gan.step.numpy())
                if not all(math.isfinite(value) for value in means.values()):
                    raise TrainingDiverged(
                        f"a loss became NaN or infinite between steps {step - n} and {step} ({means}); "
                        + self._last_good()
                    )
                sample_now = step % config.sample_every == 0 or step == config.steps
                if step % config.log_every == 0 or sample_now:
                    progress = Progress(
                        step,
                        config.steps,
                        steps_per_s=interval.steps / interval.seconds,
                        elapsed_s=float(gan.train_seconds.numpy()),
                        **interval.means(),
                    )
                    interval = Interval()
                    quality = None
                    if self.meter is not None and sample_now:
                        with timings.part("quality"):
                            quality = self.meter.measure_gan(gan)
                    record = progress.record() | self._line_facts(start, first_line)
                    metrics.write(record | (quality.record() if quality else {}))
                    first_line = False
                    self.on_progress(progress)
                    if quality:
                        _log_quality(step, config.steps, quality, self.run.records())
                if self._checkpoint_due(step):
                    self._checkpoint(step)
                if sample_now:
                    with timings.part("sample_grids"):
                        metrics.image(step, save_grid(sample_images(gan), self.run.sample(step)))
                        self.on_sample()
                self.on_advance(step)
        finally:
            metrics.close()

    def _line_facts(self, start: int, first_line: bool) -> dict:
        """What a metrics line records beside its measurements: when it was written, both optimizers' learning rate
        in the line's last step, and on the first line of each start the step that start began from."""
        facts = {
            WALL_TIME: round(time.time(), 3),
            "d_learning_rate": float(self.gan.d_optimizer.learning_rate.numpy()),
            "g_learning_rate": float(self.gan.g_optimizer.learning_rate.numpy()),
        }
        return facts | ({START_STEP: start} if first_line else {})

    def _checkpoint_due(self, step: int) -> bool:
        """After the last step, every --checkpoint-every steps when set, and --checkpoint-minutes after the last."""
        config = self.config
        by_time = (
            config.checkpoint_minutes and time.monotonic() - self.last_checkpoint >= 60 * config.checkpoint_minutes
        )
        by_step = config.checkpoint_every and step % config.checkpoint_every == 0
        return step == config.steps or bool(by_step) or bool(by_time)

    def _last_good(self) -> str:
        """Where a run that diverged can go on from, for its message."""
        newest = self.checkpoints.newest_readable()
        if newest is None:
            return "no checkpoint was written before it"
        return f"the last good checkpoint (step {newest}) is kept in {self.run.checkpoints}"

    def _checkpoint(self, step: int) -> None:
        with self.timings.part("checkpoints"):
            if not self.gan.is_finite():  # never a broken state as the "last good" checkpoint a resume starts from
                raise TrainingDiverged(f"a weight became NaN or infinite by step {step}; " + self._last_good())
            self.checkpoints.save(step)
        self.timings.checkpoint_bytes += self.checkpoints.size(step)
        self.last_checkpoint = time.monotonic()


def _steps_to_next_event(step: int, config: TrainConfig) -> int:
    """Steps until the next log line, sample grid, checkpoint by step or the end: no compiled call runs past one."""
    intervals = [config.log_every, config.sample_every] + ([config.checkpoint_every] if config.checkpoint_every else [])
    return min([interval - step % interval for interval in intervals] + [config.steps - step])


class CallLength:
    """How many steps the next compiled call runs: up to the next event, and about CALL_SECONDS at the speed of the
    call before, at most twice that call's steps (one fast call does not make the next one long). Between calls the
    loop sees a stop request and a checkpoint due by wall time; bounded by events alone, a DCGAN at 3 steps/s with
    --log-every 5000 trained 25 minutes before it saw a SIGTERM, far past Kubernetes' 30 s grace period."""

    def __init__(self) -> None:
        self.limit = FIRST_CALL_STEPS
        self.calls = 0

    def next(self, step: int, config: TrainConfig) -> int:
        return min(_steps_to_next_event(step, config), self.limit)

    def measured(self, steps: int, seconds: float) -> None:
        self.calls += 1
        if self.calls == 1:  # the trace's time, not the step's
            return
        self.limit = max(1, min(2 * steps, int(CALL_SECONDS * steps / max(seconds, 1e-6))))


@dataclass
class Interval:
    """The compiled calls since the last log line: their steps, seconds and the sums of their metrics over steps."""

    steps: int = 0
    seconds: float = 0.0
    sums: dict[str, float] = dataclasses.field(default_factory=dict)

    def add(self, steps: int, seconds: float, means: dict[str, float]) -> None:
        self.steps += steps
        self.seconds += seconds
        for name, mean in means.items():
            self.sums[name] = self.sums.get(name, 0.0) + mean * steps

    def means(self) -> dict[str, float]:
        return {name: total / self.steps for name, total in self.sums.items()}


def _log_progress(progress: Progress) -> None:
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


def warn_if_the_label_stays_weak(config: TrainConfig, gan: Gan) -> None:
    """A conditional run that ends inside its architecture's conditioning ramp draws the class asked for less often:
    say so at the start, not after the user has found out."""
    ramp = gan.architecture.conditioning_ramp
    if gan.conditional and config.steps < ramp:
        log.warning(
            "the label of a conditional %s comes in over its first %d steps: after %d it has %.0f%% of its "
            "strength, and the model will often draw another class than the one asked for (README, "
            '"Architectures")',
            config.arch,
            ramp,
            config.steps,
            100 * float(conditioning_strength(config.steps - 1, ramp)),  # in its last step
        )


def _log_learning_rates(config: TrainConfig, gan: Gan) -> None:
    """Where an architecture's learning rates decay, over which steps: they follow --steps, also when a resumed run
    changes it."""
    decay_from = gan.architecture.decay_from
    if decay_from < 1:
        log.info(
            "learning rates: %g until step %d, then falling linearly to 0 at step %d (--steps)",
            config.hyper.learning_rate,
            round(config.steps * decay_from),
            config.steps,
        )


def _clusters(config: TrainConfig, run: RunDir, images: int, resuming: bool) -> int:
    """How many clusters a self-conditioned run learns (0: none). A run resumes with the number it began with, which
    its config.json records (as `gan-job export` reads it): an earlier version may have made another."""
    if config.conditional:
        return 0
    if resuming:
        return clusters_of(run.saved_config() or {}, run.config)
    return cluster_count(images, ARCHITECTURES[config.arch].self_conditioning)


def _shape_text(data: ImageData) -> str:
    height, width, channels = data.image_shape
    return f"{data.name}, {height}x{width} {'grey' if channels == 1 else 'RGB'}"


def _classes(config: TrainConfig, data: ImageData) -> str:
    if not data.labelled:
        return "unlabelled"
    if config.conditional:
        return f"all {data.num_classes} classes, conditional on the label"
    if config.digit != -1:
        return f"class {data.class_names[config.digit]}"
    return "one class" if data.num_classes == 1 else f"all {data.num_classes} classes"


def _quality_meter(config: TrainConfig, data: ImageData) -> GanQualityMeter | None:
    if not config.quality:
        return None
    if not data.measurable:
        log.warning(
            "quality is off: it is measured through a classifier of the data's classes, and %s has %s",
            data.name,
            "no labels" if not data.labelled else "one class",
        )
        return None
    real = reference_images(data)  # refuses data too small to measure, before the classifier's training
    classifier = load_or_train_classifier(data, config.classifier_cache, seed=config.seed)
    return GanQualityMeter(classifier, real, config.quality_samples, config.latent_dim, data.class_names)


def _log_quality(step: int, steps: int, quality: QualityReport, measurements: list[dict]) -> None:
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


def _device() -> str:
    gpus = tf.config.list_physical_devices("GPU")
    return f"GPU ({', '.join(gpu.name for gpu in gpus)})" if gpus else "CPU (no GPU visible)"
