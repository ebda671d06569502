"""An exported generator, loaded with onnxruntime: checked to be one, with its metadata and batched generation."""

from __future__ import annotations

import collections
import json
import os
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np

# The file format shared with the job's export: names of the inputs, the output and the batch dimension.
LATENT_INPUT = "z"
LABEL_INPUT = "label"
IMAGE_OUTPUT = "image"
BATCH_DIM = "batch"
# Metadata the job writes into every model (ONNX metadata_props, all strings):
META_IMAGE_SHAPE = "image_shape"  # JSON [height, width, channels], as the output's dimensions
META_DATA = "data"  # the training data's name: mnist, fashion_mnist, cifar10, or the file or folder's name
META_CLASS_NAMES = "class_names"  # JSON list of the data's class names, index = label; absent for unlabelled data
META_CLASS = "digit"  # the class an unconditional model was trained on, -1 for all (named for the digits it began with)
CHANNELS = (1, 3)  # grey or RGB
MNIST_CLASSES = [str(digit) for digit in range(10)]  # the classes of models exported before class names were recorded
MAX_CLASSES = 1000  # what the job trains on at most: more in a model's metadata means the metadata is broken
MAX_LATENT_DIM = 10_000  # the latent size the job trains with at most (typical GANs: 100 to 512)
# Pixels: the largest image side the job trains on (beyond, a few hundred images would fill the memory while they are
# read), and so the largest a model draws.
MAX_SIDE = 1024
LISTED_CLASSES = 12  # how many classes a message lists before it shortens the list


class ModelError(ValueError):
    """A file that is not a usable generator model (exit code 2)."""


@dataclass(frozen=True)
class Tensor:
    name: str
    shape: tuple[int | str | None, ...]
    type: str

    def __str__(self) -> str:
        dims = ", ".join("?" if d is None else str(d) for d in self.shape)
        return f"{self.name} [{dims}] {self.type}"


class Generator:
    """A generator ONNX model: latents (and, for a conditional model, class labels) in, uint8-ready images out.

    Its image shape comes from the output's dimensions, its classes and data set from the metadata; models exported
    before the metadata recorded them (no `image_shape`) are of MNIST's digits 0..9.
    """

    def __init__(self, path: Path) -> None:
        # Telemetry off: a CLI has no business reporting usage, and on a read-only root filesystem onnxruntime warns
        # that it cannot keep the id it would report under. The variable must be set before the import, which
        # already starts it; disable_telemetry_events() covers an onnxruntime imported earlier.
        os.environ.setdefault("ORT_DISABLE_TELEMETRY", "1")
        import onnxruntime

        onnxruntime.disable_telemetry_events()
        self.path = Path(path)
        try:
            options = onnxruntime.SessionOptions()
            options.log_severity_level = 4  # fatal only: a failure reaches the user once, as our own one line
            self.session = onnxruntime.InferenceSession(
                str(path), sess_options=options, providers=["CPUExecutionProvider"]
            )
        except Exception as error:  # onnxruntime raises its own exception types for unreadable files
            raise ModelError(f"cannot load {path} as an ONNX model: {first_line(error)}") from error
        self.inputs = [Tensor(i.name, tuple(i.shape), i.type) for i in self.session.get_inputs()]
        self.outputs = [Tensor(o.name, tuple(o.shape), o.type) for o in self.session.get_outputs()]
        self.metadata = dict(self.session.get_modelmeta().custom_metadata_map)
        self.latent_dim, self.image_shape = self._check_signature()
        self.class_names = self._class_names()
        self.data_name = self.metadata.get(META_DATA, "mnist" if self._before_shapes else "unnamed")
        self.trained_class = self._trained_class()

    def _check_signature(self) -> tuple[int, tuple[int, int, int]]:
        """The latent size and the image shape (height, width, channels), once the inputs and output are a
        generator's and the metadata agrees with them."""
        inputs = {t.name: t for t in self.inputs}
        z, image = inputs.get(LATENT_INPUT), next((t for t in self.outputs if t.name == IMAGE_OUTPUT), None)
        is_generator = (
            z is not None
            and image is not None
            and z.type == "tensor(float)"
            and len(z.shape) == 2
            and isinstance(z.shape[1], int)
            and _is_image_shape(image.shape[1:])
            and set(inputs) <= {LATENT_INPUT, LABEL_INPUT}
        )
        if not is_generator:
            raise ModelError(
                f"{self.path} is not a generator model: expected input '{LATENT_INPUT}' [batch, latent_dim] float "
                f"and output '{IMAGE_OUTPUT}' [batch, height, width, channels] with channels "
                f"{' or '.join(map(str, CHANNELS))}, found inputs {', '.join(map(str, self.inputs))} "
                f"and outputs {', '.join(map(str, self.outputs))}"
            )
        declared = self.metadata.get("latent_dim")
        if declared is not None and declared != str(z.shape[1]):
            raise ModelError(f"{self.path}: metadata says latent_dim {declared}, the input has {z.shape[1]}")
        shape = tuple(image.shape[1:])
        if z.shape[1] > MAX_LATENT_DIM or max(shape[:2]) > MAX_SIDE:  # the job never exports such a model
            raise ModelError(
                f"{self.path} draws {shape[0]}x{shape[1]} images from {z.shape[1]} latent values: at most "
                f"{MAX_SIDE}x{MAX_SIDE} images and {MAX_LATENT_DIM:,} latent values are supported"
            )
        declared_shape = self._declared_shape()
        if declared_shape is not None and declared_shape != shape:
            raise ModelError(
                f"{self.path}: metadata says {META_IMAGE_SHAPE} {list(declared_shape)}, the output "
                f"'{IMAGE_OUTPUT}' draws {list(shape)}"
            )
        return int(z.shape[1]), shape

    @property
    def _before_shapes(self) -> bool:
        # Exported before models recorded their shape, data and classes: then they were all of MNIST's digits.
        return META_IMAGE_SHAPE not in self.metadata

    def _declared_shape(self) -> tuple[int, ...] | None:
        raw = self.metadata.get(META_IMAGE_SHAPE)
        if raw is None:
            return None
        shape = _json(raw)
        if not (isinstance(shape, list) and len(shape) == 3 and all(map(_is_positive_int, shape))):
            raise ModelError(
                f"{self.path}: metadata {META_IMAGE_SHAPE} is {_quoted(raw)}, expected a JSON list "
                "[height, width, channels] of 3 positive integers"
            )
        return tuple(shape)

    def _class_names(self) -> list[str]:
        raw = self.metadata.get(META_CLASS_NAMES)
        if raw is not None:
            return self._listed_class_names(raw)
        if self._before_shapes:
            return list(MNIST_CLASSES)
        if self.conditional:
            raise ModelError(f"{self.path} is a conditional model, but its metadata names no {META_CLASS_NAMES}")
        return []  # unlabelled data

    def _listed_class_names(self, raw: str) -> list[str]:
        names = _json(raw)
        if not (isinstance(names, list) and all(isinstance(name, str) for name in names)):
            raise ModelError(
                f"{self.path}: metadata {META_CLASS_NAMES} is {_quoted(raw)}, expected a JSON list of strings"
            )
        if not names or len(names) > MAX_CLASSES:  # unlabelled data has no class_names at all
            raise ModelError(
                f"{self.path}: metadata {META_CLASS_NAMES} lists {len(names)} classes, expected 1 to {MAX_CLASSES}"
            )
        unreadable = next((name for name in names if not (name and name.isprintable())), None)
        if unreadable is not None:  # a newline in a name would break the one-line messages that list them
            raise ModelError(
                f"{self.path}: metadata {META_CLASS_NAMES} names a class {_quoted(unreadable)}, expected names of "
                "printable characters"
            )
        repeated = sorted(name for name, count in collections.Counter(names).items() if count > 1)
        if repeated:  # --class NAME would be ambiguous
            raise ModelError(f"{self.path}: metadata {META_CLASS_NAMES} repeats {_quoted(', '.join(repeated))}")
        return names

    def _trained_class(self) -> int:
        raw = self.metadata.get(META_CLASS, "-1")
        if raw not in {str(index) for index in range(-1, self.num_classes)}:
            expected = f"or 0..{self.num_classes - 1}" if self.class_names else "(the data has no labels)"
            raise ModelError(f"{self.path}: metadata says {META_CLASS} {_quoted(raw)}, expected -1 (all) {expected}")
        return int(raw)

    @property
    def conditional(self) -> bool:
        return any(t.name == LABEL_INPUT for t in self.inputs)

    @property
    def num_classes(self) -> int:
        """How many classes the training data had: 0 for unlabelled data."""
        return len(self.class_names)

    @property
    def of_digits(self) -> bool:
        """A model of MNIST's digits, whose messages say 'digit' where other models' say 'class' or 'image'."""
        return self.class_names == MNIST_CLASSES and self.image_shape == (28, 28, 1)

    @property
    def class_word(self) -> tuple[str, str]:
        """What messages call a class, singular and plural."""
        return ("digit", "digits") if self.of_digits else ("class", "classes")

    def class_label(self, index: int) -> str:
        """A class as messages name it: 'digit 3', 'class 2 (bird)'."""
        name = self.class_names[index]
        return f"{self.class_word[0]} {index}" + ("" if name == str(index) else f" ({name})")

    def choose_class(self, digit: int | None = None, name: str | None = None) -> int | None:
        """The class index that --digit D or --class NAME asks for (None for neither), once checked that the model
        can draw it."""
        if digit is not None and name is not None:
            raise ModelError("--digit and --class both choose the class: give one of them")
        if digit is None and name is None:
            return None
        if not self.class_names:
            raise ModelError(
                f"{self.path} was trained on unlabelled data ({self.data_name}): it has no classes to choose from "
                "with --digit or --class"
            )
        index = digit if name is None else self._class_index(name)
        if not 0 <= index < self.num_classes:
            counted = f"{self.num_classes} {self.class_word[self.num_classes > 1]}"
            raise ModelError(
                f"--digit {index} is out of range: {self.path} has {counted}, 0..{self.num_classes - 1} "
                f"({class_listing(self.class_names)})"
            )
        self.check_class(index)
        return index

    def _class_index(self, name: str) -> int:
        if name not in self.class_names:
            raise ModelError(
                f"{self.path} has no {self.class_word[0]} {_quoted(name)}; its {self.class_word[1]}: "
                f"{class_listing(self.class_names)}"
            )
        return self.class_names.index(name)

    def check_class(self, index: int | None) -> None:
        """Refuse a class (an index) the model cannot honour: an unconditional model draws the class it was
        trained on, or any of them at random."""
        if index is None or self.conditional or index == self.trained_class:
            return
        word, words = self.class_word
        if self.trained_class == -1:
            raise ModelError(
                f"{self.path} was trained on all {words} without labels: it cannot generate a chosen {word} "
                f"(train on one {word}, or a conditional model)"
            )
        raise ModelError(
            f"{self.path} was trained on {self.class_label(self.trained_class)} only, not {self.class_label(index)}"
        )

    def images(self, latents: np.ndarray, labels: np.ndarray | None = None) -> np.ndarray:
        """Images in [-1, 1], shape (N, *image_shape), for float32 latents (N, latent_dim)."""
        feed = {LATENT_INPUT: latents.astype(np.float32, copy=False)}
        if self.conditional:
            feed[LABEL_INPUT] = np.asarray(labels, dtype=np.int64)
        try:
            (images,) = self.session.run([IMAGE_OUTPUT], feed)
        except Exception as error:  # a model that has a generator's signature but fails to compute
            raise ModelError(f"{self.path} fails inside onnxruntime: {first_line(error)}") from error
        if not np.isfinite(images).all():
            raise ModelError(f"{self.path} draws images that are not finite numbers (NaN or Inf): not a usable model")
        return images


def named_class(index: int, name: str) -> str:
    """A class as messages name it: '3 cat', or '3' alone where the name is the index."""
    return name if name == str(index) else f"{index} {name}"


def class_listing(names: list[str], limit: int = LISTED_CLASSES) -> str:
    """Classes with their indices, '0 cat, 1 dog' ('3' alone where the name is the index); past `limit` classes, the
    first few, '…', the last one and how many there are."""
    items = [named_class(index, name) for index, name in enumerate(names)]
    if len(items) <= limit:
        return ", ".join(items)
    return f"{', '.join(items[: limit - 2])}, …, {items[-1]} ({len(items)} in all)"


def _is_image_shape(dims: tuple) -> bool:
    return len(dims) == 3 and all(map(_is_positive_int, dims)) and dims[2] in CHANNELS


def _is_positive_int(value: object) -> bool:
    return isinstance(value, int) and not isinstance(value, bool) and value >= 1  # JSON's true is no dimension


def _json(text: str) -> object:
    """The value a metadata string holds as JSON; None when it holds none (and None is never valid metadata)."""
    try:
        return json.loads(text)
    except ValueError:
        return None


def _quoted(text: str, limit: int = 60) -> str:
    """A metadata value quoted for a one-line message: escaped (a newline stays on the line) and cut short."""
    return repr(text if len(text) <= limit else text[: limit - 1] + "…")


def latent_batches(seed: int, count: int, latent_dim: int, batch_size: int) -> Iterator[np.ndarray]:
    """The latents for `count` images from `seed`, in batches: image i is the same whatever count and batch size."""
    rng = np.random.default_rng(seed)
    for start in range(0, count, batch_size):
        yield rng.standard_normal((min(batch_size, count - start), latent_dim), dtype=np.float32)


def cycling_labels(count: int, num_classes: int, start: int = 0, every: int = 1) -> np.ndarray:
    """The labels of a conditional model's samples where no class is asked for: 0..num_classes-1 in turn, each
    `every` times (a grid's row length: class r on row r), for the samples start..start+count."""
    return (np.arange(start, start + count, dtype=np.int64) // every) % num_classes


def first_line(error: BaseException) -> str:
    """An exception's message in one line (onnxruntime's and TensorFlow's run over several)."""
    return (str(error).strip().splitlines() or [type(error).__name__])[0]
