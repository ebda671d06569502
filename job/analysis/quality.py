"""Sample quality: a small CNN classifier of the data's classes, and from its features a Fréchet distance, class
shares and, for conditional models, how often a sample is the class asked for.

The classifier is trained once per data set (keyed by a fingerprint of the training arrays) and cached as a .keras
file in the user's cache folder (config.user_cache), which every run, sweep and `gan-job evaluate` shares.
"""

from __future__ import annotations

import logging
import math
import time
from dataclasses import dataclass, field
from pathlib import Path

import keras
import numpy as np
from keras import layers

from job import signals
from job.analysis.quality_rules import COVERED, LOOK_ALIKE, looks_alike
from job.data.load import KERAS_SETS, ImageData, load_data, reference_images, to_unit_range
from job.errors import DataError
from job.networks.models import Shape
from job.rundir.outputs import save_keras_atomically
from serving.model import Generator, cycling_labels, latent_batches

log = logging.getLogger(__name__)

FEATURES = "features"
CLASSIFIER_BATCH = 128
CLASSIFIER_EPOCHS = 2  # about 99% test accuracy on MNIST...
# ... but at least this many batches, so that a small data set's classifier reads its own images right (two epochs
# of 240 images are 4 batches: docs/decisions/quality-classifier.md).
CLASSIFIER_MIN_BATCHES = 500
SMALL_IMAGE = 16  # pixels: below this on a side, convolutions pad ("same"), or two blocks would shrink it to nothing
PROGRESS_SECONDS = 10  # between the log lines of the classifier's one-time training
VARIETY_IMAGES = 200  # per class, at most: the images whose mean distance to each other is taken


def build_classifier(image_shape: Shape, num_classes: int) -> keras.Model:
    """Two conv blocks and a 128-unit feature layer: about 99% test accuracy on MNIST after two epochs."""
    padding = "same" if min(image_shape[:2]) < SMALL_IMAGE else "valid"
    return keras.Sequential(
        [
            keras.Input(shape=image_shape),
            layers.Conv2D(32, 3, activation="relu", padding=padding),
            layers.MaxPooling2D(),
            layers.Conv2D(64, 3, activation="relu", padding=padding),
            layers.MaxPooling2D(),
            layers.Flatten(),
            layers.Dense(128, activation="relu", name=FEATURES),
            layers.Dense(num_classes, activation="softmax"),
        ],
        name="classifier",
    )


def classifier_epochs(count: int) -> int:
    """The epochs the classifier trains for on `count` images: CLASSIFIER_EPOCHS, more for small data sets."""
    return max(CLASSIFIER_EPOCHS, math.ceil(CLASSIFIER_MIN_BATCHES * CLASSIFIER_BATCH / count))


def load_or_train_classifier(data: ImageData, cache: Path, epochs: int | None = None, seed: int = 0) -> keras.Model:
    path = Path(cache) / f"classifier-{data.fingerprint()}.keras"
    cached = _load_cached(path)
    if cached is not None:
        return cached
    epochs = epochs or classifier_epochs(len(data.x_train))
    log.info(
        "quality: training the classifier that measures sample quality (Fréchet distance, classes covered) on %s's "
        "%d images, %d epochs. Once per data set: every later run, sweep and evaluate of it reuses %s",
        data.name,
        len(data.x_train),
        epochs,
        path,
    )
    keras.utils.set_random_seed(seed)
    classifier = build_classifier(data.image_shape, data.num_classes)
    classifier.compile(optimizer="adam", loss="sparse_categorical_crossentropy", metrics=["accuracy"])
    classifier.fit(
        to_unit_range(data.x_train),
        data.y_train,
        batch_size=CLASSIFIER_BATCH,
        epochs=epochs,
        verbose=0,
        callbacks=[_ClassifierProgress(epochs)],
    )
    if data.x_test is not None:
        _, accuracy = classifier.evaluate(to_unit_range(data.x_test), data.y_test, batch_size=512, verbose=0)
        log.info("quality: classifier test accuracy %.4f", accuracy)
    signals.raise_if_requested()  # never cache a classifier whose training a signal cut short
    # Runs sharing a volume may train it at the same time (the per-digit pods): each saves under a name of its own
    # and renames it over the cached one, so a reader only ever sees a complete file.
    save_keras_atomically(classifier, path)
    return classifier


class _ClassifierProgress(keras.callbacks.Callback):
    """Logs the classifier's one-time training every PROGRESS_SECONDS (share done, time left) and ends it after the
    batch under way once SIGTERM or SIGINT came. The signal's own Interrupted usually ends it; the check here makes
    sure a classifier whose training a signal cut short is never cached, even where a library swallowed that
    Interrupted (signals.raise_if_requested)."""

    def __init__(self, epochs: int) -> None:
        super().__init__()
        self.epochs = epochs
        self.started = self.last_logged = time.monotonic()
        self._epoch = 0

    def on_train_batch_end(self, batch, logs=None) -> None:
        signals.raise_if_requested()
        now = time.monotonic()
        if now - self.last_logged < PROGRESS_SECONDS:
            return
        self.last_logged = now
        batches = self.params.get("steps") or 1
        done = (self._epoch * batches + batch + 1) / (self.epochs * batches)
        left = (now - self.started) * (1 - done) / done
        log.info("quality: classifier %.0f%% trained, about %.0f s left", 100 * done, left)

    def on_epoch_begin(self, epoch, logs=None) -> None:
        self._epoch = epoch


def _load_cached(path: Path) -> keras.Model | None:
    """The cached classifier, or None when there is none or it cannot be read (it is then trained and replaced)."""
    if not path.exists():
        return None
    try:
        classifier = keras.models.load_model(path)
    except Exception as error:  # Keras raises many types for a truncated or foreign file
        signals.raise_if_requested()  # a signal Keras turned into an error of its own: the file may be fine
        log.warning("quality: the cached classifier %s is unreadable (%s); training it again", path, error)
        return None
    log.info("quality: using the cached classifier %s", path)
    return classifier


@dataclass(frozen=True)
class QualityReport:
    frechet_distance: float
    class_shares: list[float]  # share of the samples classified as each class, by label
    label_accuracy: float | None  # conditional models: share classified as the class asked for
    # Per class, by label: how far apart the samples classified as it are, over how far apart its real images are
    # (1: as varied as the data; near 0: one image repeated). None where fewer than two samples are of the class.
    class_variety: list[float | None] = field(default_factory=list)
    class_names: tuple[str, ...] = ()  # of the data measured against, index = label; () where not known

    @property
    def classes_covered(self) -> int:
        return sum(share >= COVERED for share in self.class_shares)

    @property
    def least_varied(self) -> tuple[int, float] | None:
        """(label, variety) of the covered class whose samples vary least; None when no class is covered."""
        covered = [
            (variety, label)
            for label, (variety, share) in enumerate(zip(self.class_variety, self.class_shares, strict=True))
            if variety is not None and share >= COVERED
        ]
        return (min(covered)[1], min(covered)[0]) if covered else None

    def class_name(self, label: int) -> str:
        return self.class_names[label] if label < len(self.class_names) else str(label)

    def look_alike(self) -> str | None:
        """A warning when a covered class's samples are far less varied than its real images, else None."""
        if self.least_varied is None or not looks_alike(self.least_varied[1]):
            return None
        label, variety = self.least_varied
        name = self.class_name(label)
        return (
            f"the samples of class {name} look alike: their variety is {variety:.2f}, below {LOOK_ALIKE} (1: as varied "
            f"as the real images of {name}). The generator may draw it as a few images repeated; look at the sample "
            "grids"
        )

    def record(self) -> dict:
        record = {
            "frechet_distance": self.frechet_distance,
            "classes_covered": self.classes_covered,
            "class_shares": self.class_shares,
            "class_variety": self.class_variety,
        }
        if self.least_varied is not None:
            record["least_variety"] = self.least_varied[1]
        if self.label_accuracy is not None:
            record["label_accuracy"] = self.label_accuracy
        return record


class QualityMeter:
    """Compares generated images with the real test images through the classifier's features."""

    def __init__(self, classifier: keras.Model, real_images: np.ndarray, class_names: tuple[str, ...] = ()) -> None:
        self.model = keras.Model(classifier.inputs, [classifier.get_layer(FEATURES).output, classifier.outputs[0]])
        self.num_classes = int(classifier.outputs[0].shape[-1])
        self.class_names = class_names
        features, probabilities = self._features(real_images)
        self.real_mean, self.real_cov = _moments(features)
        # Real images grouped as the samples will be: by the classifier's reading of them.
        self.real_spread = _spread_by_class(real_images, probabilities.argmax(axis=1), self.num_classes)

    def _features(self, images: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        features, probabilities = self.model.predict(images, batch_size=500, verbose=0)
        return features.astype(np.float64), probabilities

    def measure(self, images: np.ndarray, asked: np.ndarray | None = None) -> QualityReport:
        """`images` in [-1, 1], (N, H, W, C); `asked`: the class each was generated as (conditional models)."""
        features, probabilities = self._features(images)
        mean, cov = _moments(features)
        predicted = probabilities.argmax(axis=1)
        shares = np.bincount(predicted, minlength=self.num_classes) / len(predicted)
        spread = _spread_by_class(images, predicted, self.num_classes)
        return QualityReport(
            frechet_distance=frechet_distance(self.real_mean, self.real_cov, mean, cov),
            class_shares=[round(float(share), 4) for share in shares],
            label_accuracy=None if asked is None else float(np.mean(predicted == asked)),
            class_variety=[
                None if fake is None or not real else round(fake / real, 3)
                for fake, real in zip(spread, self.real_spread, strict=True)
            ],
            class_names=self.class_names,
        )


def _spread_by_class(images: np.ndarray, classes: np.ndarray, num_classes: int) -> list[float | None]:
    """Per class: the mean pixel distance between two of its images (the first VARIETY_IMAGES), None for fewer than
    two."""
    spread = []
    for label in range(num_classes):
        members = images[np.flatnonzero(classes == label)[:VARIETY_IMAGES]]  # copies those only
        spread.append(mean_pairwise_distance(members) if len(members) >= 2 else None)
    return spread


def mean_pairwise_distance(images: np.ndarray) -> float:
    """The mean Euclidean distance between two different images of `images` (N >= 2)."""
    flat = images.reshape(len(images), -1).astype(np.float64)
    squares = (flat * flat).sum(axis=1)
    distances = np.sqrt(np.maximum(squares[:, None] + squares[None, :] - 2 * flat @ flat.T, 0.0))
    return float(distances.sum() / (len(flat) * (len(flat) - 1)))


def frechet_distance(mean_a: np.ndarray, cov_a: np.ndarray, mean_b: np.ndarray, cov_b: np.ndarray) -> float:
    """|m_a - m_b|² + Tr(C_a + C_b - 2 (C_a C_b)^½) between two Gaussians, as in FID (numpy only: the trace of
    the matrix square root is the sum of the square roots of the eigenvalues of C_a^½ C_b C_a^½)."""
    values, vectors = np.linalg.eigh(cov_a)
    root_a = (vectors * np.sqrt(np.clip(values, 0, None))) @ vectors.T
    middle = np.linalg.eigvalsh(root_a @ cov_b @ root_a)
    trace_root = np.sum(np.sqrt(np.clip(middle, 0, None)))
    return float(np.sum((mean_a - mean_b) ** 2) + np.trace(cov_a) + np.trace(cov_b) - 2 * trace_root)


def _moments(features: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    return features.mean(axis=0), np.cov(features, rowvar=False)


class GanQualityMeter(QualityMeter):
    """The quality of a GAN's samples during training: the same latents (and classes) at every checkpoint."""

    def __init__(
        self,
        classifier: keras.Model,
        real_images: np.ndarray,
        samples: int,
        latent_dim: int,
        class_names: tuple[str, ...] = (),
    ) -> None:
        super().__init__(classifier, real_images, class_names)
        # A generator of its own, so that measuring never touches the training's random state.
        self.latents = np.random.default_rng(20_240_601).standard_normal((samples, latent_dim)).astype(np.float32)
        self.digits = cycling_labels(samples, self.num_classes)

    def measure_gan(self, gan) -> QualityReport:
        from job.networks.gan import sample_images

        if gan.conditional:
            return self.measure(sample_images(gan, self.latents, self.digits), asked=self.digits)
        return self.measure(sample_images(gan, self.latents))


def evaluate_model(model_path: Path, data_source: str | None, samples: int, seed: int, cache: Path) -> QualityReport:
    """The quality of an exported generator (`gan-job evaluate`): `samples` images from latents drawn with `seed`,
    a conditional model's cycling through the classes, against `data_source` made to the model's image shape, as the
    run's --image-size and --channels made it. Without `data_source`: the data the model's run recorded (config.json
    beside the model; rundir.data_of), else the model's own Keras data set. Raises serving's ModelError for a file
    that is no generator, DataError for data it cannot be measured against, ConfigError when the data its run recorded
    is gone."""
    from job.rundir.claim import data_of

    generator = Generator(model_path)
    height, width, channels = generator.image_shape
    source = data_source or data_of(model_path) or _keras_set_of(generator)
    data = load_data(source, image_size=(height, width), channels=channels)
    check_measurable(data, generator.image_shape)
    real = reference_images(data)  # refuses data too small to measure, before the classifier's training
    meter = QualityMeter(load_or_train_classifier(data, cache), real, data.class_names)
    latents = next(latent_batches(seed, samples, generator.latent_dim, samples))
    digits = cycling_labels(samples, meter.num_classes) if generator.conditional else None
    return meter.measure(generator.images(latents, digits), asked=digits)


def _keras_set_of(generator: Generator) -> str:
    """The data set a model without its run is measured against: its metadata's, when that names a Keras one."""
    if generator.data_name not in KERAS_SETS:
        if not generator.num_classes:  # its own data cannot be measured against: the classifier needs labels
            raise DataError(
                f"{generator.path} was trained on unlabelled data ({generator.data_name}): quality is measured "
                f"through a classifier of labels, so pass labelled data of the same kind of images with --data"
            )
        raise DataError(f"{generator.path} was trained on {generator.data_name}: pass that data with --data")
    return generator.data_name


def check_measurable(data: ImageData, image_shape: tuple[int, ...]) -> None:
    """Refuse to measure a model against data of another shape, or data without the classes the classifier needs."""
    if tuple(image_shape) != data.image_shape:
        raise DataError(f"the model draws images of {tuple(image_shape)}, {data.name}'s are {data.image_shape}")
    if not data.measurable:
        raise DataError(
            f"{data.name} is unlabelled data (or of one class): quality is measured through a classifier of its "
            "classes, so pass labelled data of the same kind of images with --data"
        )
