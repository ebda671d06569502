"""Everything before a training's first step, in a folder already claimed: the networks, their checkpoints, the
quality meter, config.json and the outputs a new run writes once (reals.png, the model summaries)."""

from __future__ import annotations

import json
import logging
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
import tensorflow as tf

from job import signals
from job.analysis.quality import GanQualityMeter, load_or_train_classifier
from job.config import SAMPLE_IMAGES, ArchitectureSettings, TrainConfig
from job.data.load import ImageData, reference_images, to_unit_range, training_set
from job.data.memory import check_fits
from job.loop import log_lines
from job.networks.clusters import cluster_count, run_clusters
from job.networks.gan import Gan, TrainStep, build_gan, make_deterministic, sample_images
from job.networks.models import conditioning_strength, training_bytes
from job.rundir.checkpoints import Checkpoints
from job.rundir.claim import RunDir, architecture_of, clusters_of, config_json
from job.rundir.outputs import save_grid, write_model_summaries
from job.rundir.timings import Timings
from serving.files import atomic_write_text
from serving.model import cycling_labels

log = logging.getLogger(__name__)


@dataclass
class Training:
    """What the loop trains: the networks at the step a start begins from, their checkpoints, the data they learn
    from and the meter that measures them (None: quality is not measured)."""

    gan: Gan
    checkpoints: Checkpoints
    images: np.ndarray
    labels: np.ndarray | None  # classes, or clusters for a self-conditioned run; None for neither
    meter: GanQualityMeter | None
    start: int  # the step of the checkpoint this start resumes from, 0 for a new run
    device: str

    def compiled_calls(self, config: TrainConfig) -> Callable[[int], dict[str, float]]:
        """A call that trains `n` steps in one compiled program and returns the means of their metrics."""
        lr = config.hyper.learning_rate
        train_steps = TrainStep(self.gan, self.images, config.batch, self.labels, config.steps, lr).compiled()
        return lambda n: {name: float(value) for name, value in train_steps(tf.constant(n)).items()}

    def sample_images(self) -> np.ndarray:
        """The sampler's images of the fixed latents, in [-1, 1]: what a sample grid shows."""
        return sample_images(self.gan)


def set_up(config: TrainConfig, run: RunDir, data: ImageData, force: bool, timings: Timings) -> Training:
    """Build the run's networks and restore its newest checkpoint; a new run also gets reals.png and the model
    summaries, and every start writes config.json. Whatever can fail on the data or the machine (memory, the quality
    classifier's training) fails before the folder is touched."""
    log.info("configuration: %s", json.dumps(config.to_dict(), sort_keys=True))
    make_deterministic()  # a resumed run ends bit for bit where an uninterrupted one does
    images, labels = training_set(data, config.digit)
    device_name = device()
    log_lines.log_training_set(config, data, len(images), device_name)
    resuming = not force and run.has_checkpoints()
    clusters = _clusters(config, run, len(images), resuming)
    architecture = _architecture(config, run, resuming)
    gan = build_gan(config, data.image_shape, data.num_classes, clusters, architecture)
    warn_if_the_label_stays_weak(config, gan)
    log_learning_rates(config, gan)
    if not tf.config.list_physical_devices("GPU"):  # on a GPU, TensorFlow reports a lack of memory itself
        check_fits(images, training_bytes(gan.generator, gan.discriminator, config.batch))
    with timings.part("quality_classifier"):
        meter = _quality_meter(config, data)
    signals.raise_if_requested()

    checkpoints = Checkpoints(run.checkpoints, gan.checkpoint(), keep=config.keep_checkpoints)
    if force and run.config.exists():
        log.warning("--force: starting a new run in %s; the old run's outputs are removed", run.root)
        run.remove_outputs()
    start = checkpoints.restore_latest()
    atomic_write_text(run.config, config_json(config, data, clusters, architecture))
    if clusters:  # the networks learn the clusters as classes
        labels = run_clusters(run.clusters, images, clusters, config.seed)
        gan.set_cluster_shares(labels)
    if start:
        log.info("resuming from the checkpoint of step %d", start)
    else:
        save_grid(to_unit_range(real_grid_images(images, labels)), run.samples / "reals.png")
        write_model_summaries(run, [gan.generator, gan.discriminator])
    return Training(gan, checkpoints, images, labels, meter, start, device_name)


def warn_if_the_label_stays_weak(config: TrainConfig, gan: Gan) -> None:
    """A conditional run that ends inside its architecture's conditioning ramp draws the class asked for less often:
    say so at the start, not after the user has found out."""
    ramp = gan.architecture.conditioning_ramp
    if gan.conditional and config.steps < ramp:
        log.warning(
            "the label of a conditional %s comes in over its first %d steps: after %d it has %.0f%% of its "
            "strength, and the model will often draw another class than the one asked for (docs: "
            '"Conditioning")',
            config.arch,
            ramp,
            config.steps,
            100 * float(conditioning_strength(config.steps - 1, ramp)),  # in its last step
        )


def log_learning_rates(config: TrainConfig, gan: Gan) -> None:
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


def device() -> str:
    gpus = tf.config.list_physical_devices("GPU")
    return f"GPU ({', '.join(gpu.name for gpu in gpus)})" if gpus else "CPU (no GPU visible)"


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


def _clusters(config: TrainConfig, run: RunDir, images: int, resuming: bool) -> int:
    """How many clusters a self-conditioned run learns (0: none). A run resumes with the number it began with, which
    its config.json records (as `gan-job export` reads it)."""
    if config.conditional:
        return 0
    if resuming:
        return clusters_of(run.saved_config() or {}, run.config)
    return cluster_count(images, config.architecture.self_conditioning)


def _architecture(config: TrainConfig, run: RunDir, resuming: bool) -> ArchitectureSettings:
    """The settings a run's networks are built to: this version's for a new run; the ones a resumed run began with,
    which its config.json records (as `gan-job export` reads them), though a later version would choose others."""
    if not resuming:
        return config.architecture
    recorded = architecture_of(run.saved_config() or {}, run.config)
    if recorded != config.architecture:
        log.info("resuming with the architecture settings the run began with: %s", recorded.record())
    return recorded


def _quality_meter(config: TrainConfig, data: ImageData) -> GanQualityMeter | None:
    """The meter of sample quality, its classifier trained once per data set and cached; None when quality is off or
    the data has no classes to measure by."""
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
