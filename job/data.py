"""MNIST from Keras' download, a Keras-style .npz, or a folder of IDX files; filtered and scaled for the GAN."""

from __future__ import annotations

import gzip
import logging
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from serving.model import IMAGE_SHAPE

log = logging.getLogger(__name__)

IDX_MAGIC = {3: 0x00000803, 1: 0x00000801}  # unsigned bytes, with 3 dimensions (images) or 1 (labels)
IDX_NAMES = {
    "x_train": "train-images-idx3-ubyte",
    "y_train": "train-labels-idx1-ubyte",
    "x_test": "t10k-images-idx3-ubyte",
    "y_test": "t10k-labels-idx1-ubyte",
}


class DataError(ValueError):
    """Data the job cannot train on (exit code 2)."""


@dataclass(frozen=True)
class Mnist:
    x_train: np.ndarray  # (N, height, width) uint8
    y_train: np.ndarray  # (N,) uint8, digits 0..9
    x_test: np.ndarray | None = None
    y_test: np.ndarray | None = None


def load_mnist(path: Path | None) -> Mnist:
    """MNIST from `path` (a .npz file or a folder of IDX files), or Keras' own download when no path is given."""
    if path is None:
        return _from_keras_download()
    path = Path(path)
    if not path.exists():
        raise DataError(f"data not found: {path}")
    arrays = _read_idx_folder(path) if path.is_dir() else _read_npz(path)
    return _checked(arrays, source=str(path))


def training_images(mnist: Mnist, digit: int) -> np.ndarray:
    """The training images of one digit (or all for -1), as float32 in [-1, 1] with shape (N, *IMAGE_SHAPE)."""
    return training_set(mnist, digit)[0]


def training_set(mnist: Mnist, digit: int) -> tuple[np.ndarray, np.ndarray]:
    """The training images of one digit (or all for -1) in [-1, 1], (N, *IMAGE_SHAPE), and their labels."""
    keep = np.ones(len(mnist.y_train), bool) if digit == -1 else mnist.y_train == digit
    if not keep.any():
        raise DataError(f"the training set holds no images of digit {digit}")
    return to_unit_range(mnist.x_train[keep]), mnist.y_train[keep]


def reference_images(mnist: Mnist) -> np.ndarray:
    """The real images generated ones are compared with: the test set, else the training set."""
    if mnist.x_test is None:
        log.warning("the data has no test set: sample quality is measured against training images")
        return to_unit_range(mnist.x_train[:10_000])
    return to_unit_range(mnist.x_test)


def to_unit_range(images: np.ndarray) -> np.ndarray:
    return ((images.astype(np.float32) - 127.5) / 127.5)[..., np.newaxis]


def _from_keras_download() -> Mnist:
    import keras  # only here: reading a file must not need the training stack

    log.info("no --data given: loading MNIST through keras.datasets.mnist (downloads once, then cached)")
    try:
        (x_train, y_train), (x_test, y_test) = keras.datasets.mnist.load_data()
    except Exception as error:  # network or cache trouble: say so in one line
        raise DataError(f"could not download MNIST through Keras ({error}); pass --data PATH instead") from error
    return _checked({"x_train": x_train, "y_train": y_train, "x_test": x_test, "y_test": y_test}, "keras")


def _read_npz(path: Path) -> dict[str, np.ndarray]:
    try:
        with np.load(path, allow_pickle=False) as npz:
            return {key: npz[key] for key in npz.files}
    except Exception as error:
        raise DataError(f"cannot read {path} as a .npz file: {error}") from error


def _read_idx_folder(folder: Path) -> dict[str, np.ndarray]:
    arrays = {}
    for key, stem in IDX_NAMES.items():
        found = _find_idx_file(folder, stem)
        if found is not None:
            arrays[key] = read_idx(found)
        elif key.endswith("train"):
            raise DataError(f"{folder} holds no {stem} file (plain or .gz)")
    return arrays


def _find_idx_file(folder: Path, stem: str) -> Path | None:
    # Mirrors spell the names either 'train-images-idx3-ubyte' or 'train-images.idx3-ubyte'.
    for name in (stem, stem.replace("-idx", ".idx")):
        for candidate in (folder / name, folder / f"{name}.gz"):
            if candidate.is_file():
                return candidate
    return None


def read_idx(path: Path) -> np.ndarray:
    """One IDX file (gzipped or not) of unsigned bytes, as a numpy array."""
    try:
        raw = gzip.decompress(path.read_bytes()) if path.suffix == ".gz" else path.read_bytes()
    except (OSError, EOFError) as error:
        raise DataError(f"cannot read {path}: {error}") from error
    if len(raw) < 4:
        raise DataError(f"{path} is too short to be an IDX file")
    magic = int.from_bytes(raw[:4], "big")
    ndim = raw[3]
    if IDX_MAGIC.get(ndim) != magic:
        raise DataError(f"{path} is not an IDX file of unsigned bytes (magic number {magic:#010x})")
    header = 4 + 4 * ndim
    shape = tuple(int.from_bytes(raw[4 + 4 * i : 8 + 4 * i], "big") for i in range(ndim))
    if len(raw) != header + int(np.prod(shape)):
        raise DataError(f"{path} holds {len(raw) - header} bytes of data, its header promises shape {shape}")
    return np.frombuffer(raw, dtype=np.uint8, offset=header).reshape(shape)


def _checked(arrays: dict[str, np.ndarray], source: str) -> Mnist:
    for key in ("x_train", "y_train"):
        if key not in arrays:
            raise DataError(f"{source} has no '{key}' array (expected Keras' mnist.npz keys x_train, y_train, ...)")
    for split in ("train", "test"):
        x, y = arrays.get(f"x_{split}"), arrays.get(f"y_{split}")
        if x is None and y is None:
            continue
        if x is None or y is None:
            raise DataError(f"{source} has only one of x_{split} and y_{split}")
        if x.dtype != np.uint8 or x.ndim != 3 or x.shape[1:] != IMAGE_SHAPE[:2]:
            shape = f"(N, {IMAGE_SHAPE[0]}, {IMAGE_SHAPE[1]})"
            raise DataError(f"{source}: x_{split} must be uint8 images of shape {shape}, got {x.dtype} {x.shape}")
        if y.shape != (len(x),) or not np.issubdtype(y.dtype, np.integer):
            raise DataError(f"{source}: y_{split} must be {len(x)} integer labels, got {y.dtype} {y.shape}")
        if len(y) and (y.min() < 0 or y.max() > 9):
            raise DataError(f"{source}: y_{split} holds labels outside 0..9")
    return Mnist(
        x_train=arrays["x_train"],
        y_train=arrays["y_train"].astype(np.uint8),
        x_test=arrays.get("x_test"),
        y_test=None if arrays.get("y_test") is None else arrays["y_test"].astype(np.uint8),
    )
