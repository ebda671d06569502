"""An exported generator, loaded with onnxruntime: checked to be one, with its metadata and batched generation."""

from __future__ import annotations

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
IMAGE_SHAPE = (28, 28, 1)  # being replaced: the shape comes from the data (job) and the model (serving)
NUM_CLASSES = 10  # being replaced likewise
CHANNELS = (1, 3)  # grey or RGB
MNIST_CLASSES = [str(digit) for digit in range(10)]  # the classes of models exported before class names were recorded


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
    """A generator ONNX model: latents (and, for a conditional model, digit labels) in, uint8-ready images out."""

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
        self.latent_dim = self._check_signature()

    def _check_signature(self) -> int:
        inputs = {t.name: t for t in self.inputs}
        z, image = inputs.get(LATENT_INPUT), next((t for t in self.outputs if t.name == IMAGE_OUTPUT), None)
        is_generator = (
            z is not None
            and image is not None
            and z.type == "tensor(float)"
            and len(z.shape) == 2
            and isinstance(z.shape[1], int)
            and tuple(image.shape[1:]) == IMAGE_SHAPE
            and set(inputs) <= {LATENT_INPUT, LABEL_INPUT}
        )
        if not is_generator:
            shape = ", ".join(map(str, IMAGE_SHAPE))
            raise ModelError(
                f"{self.path} is not a generator model: expected input '{LATENT_INPUT}' [batch, latent_dim] float "
                f"and output '{IMAGE_OUTPUT}' [batch, {shape}], found inputs {', '.join(map(str, self.inputs))} "
                f"and outputs {', '.join(map(str, self.outputs))}"
            )
        declared = self.metadata.get("latent_dim")
        if declared is not None and declared != str(z.shape[1]):
            raise ModelError(f"{self.path}: metadata says latent_dim {declared}, the input has {z.shape[1]}")
        digit = self.metadata.get("digit", "-1")
        if digit not in {str(d) for d in range(-1, NUM_CLASSES)}:
            raise ModelError(f"{self.path}: metadata says digit {digit!r}, expected -1 (all) or 0..{NUM_CLASSES - 1}")
        return int(z.shape[1])

    @property
    def conditional(self) -> bool:
        return any(t.name == LABEL_INPUT for t in self.inputs)

    @property
    def trained_digit(self) -> int:
        """The digit an unconditional model was trained on, -1 for all digits."""
        return int(self.metadata.get("digit", -1))

    def check_digit(self, digit: int | None) -> None:
        """Refuse a --digit the model cannot honour."""
        if digit is None or self.conditional or digit == self.trained_digit:
            return
        if self.trained_digit == -1:
            raise ModelError(
                f"{self.path} was trained on all digits without labels: it cannot generate a chosen digit "
                "(train with --digit D, or a conditional model)"
            )
        raise ModelError(f"{self.path} was trained on digit {self.trained_digit} only, not {digit}")

    def images(self, latents: np.ndarray, labels: np.ndarray | None = None) -> np.ndarray:
        """Images in [-1, 1], shape (N, *IMAGE_SHAPE), for float32 latents (N, latent_dim)."""
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


def latent_batches(seed: int, count: int, latent_dim: int, batch_size: int) -> Iterator[np.ndarray]:
    """The latents for `count` digits from `seed`, in batches: digit i is the same whatever count and batch size."""
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
