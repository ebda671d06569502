"""Image data of any shape: a Keras data set by name, a Keras-style .npz, a folder of IDX files or a folder of image
files; checked once, made uniform (--image-size, --channels) and scaled for the GAN.

Whatever the source, the result is one `ImageData`: uint8 images (N, height, width, channels), the labels when the
data has them, and the class names. Everything downstream (models, quality, export) takes the shape and the classes
from it.
"""

from __future__ import annotations

import gzip
import hashlib
import logging
import math
import warnings
import zlib
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from PIL import Image, UnidentifiedImageError

from job.data.memory import check_room_for_images
from job.errors import DataError
from serving.model import CHANNELS, MAX_CLASSES, MAX_SIDE, MNIST_CLASSES, first_line, named_class

log = logging.getLogger(__name__)

MIN_REFERENCE_IMAGES = 10  # fewer give no usable covariance for the Fréchet distance
MIN_SIDE = 8  # pixels: smaller images leave nothing for two strided convolutions (or a classifier) to see
IDX_MAGIC = {3: 0x00000803, 1: 0x00000801}  # unsigned bytes, with 3 dimensions (images) or 1 (labels)
IDX_NAMES = {
    "x_train": "train-images-idx3-ubyte",
    "y_train": "train-labels-idx1-ubyte",
    "x_test": "t10k-images-idx3-ubyte",
    "y_test": "t10k-labels-idx1-ubyte",
}
IMAGE_SUFFIXES = {".png", ".jpg", ".jpeg"}
GREY_MODES = {"1", "L", "LA", "I", "I;16", "I;16B", "I;16L", "F"}  # pillow modes without colour
WIDE_GREY_MODES = {"I", "I;16", "I;16B", "I;16L"}  # of them, those whose values go beyond 255 (16-bit PNGs)

# The data sets `--data NAME` downloads through keras.datasets, with their class names.
KERAS_SETS: dict[str, tuple[str, ...]] = {
    "mnist": tuple(MNIST_CLASSES),
    "fashion_mnist": (
        "T-shirt/top",
        "Trouser",
        "Pullover",
        "Dress",
        "Coat",
        "Sandal",
        "Shirt",
        "Sneaker",
        "Bag",
        "Ankle boot",
    ),  # fmt: skip
    "cifar10": ("airplane", "automobile", "bird", "cat", "deer", "dog", "frog", "horse", "ship", "truck"),
}


@dataclass(frozen=True)
class ImageData:
    name: str  # the Keras data set's name, or the file or folder's name
    x_train: np.ndarray  # (N, height, width, channels) uint8
    y_train: np.ndarray | None  # (N,) labels 0..len(class_names)-1; None: unlabelled
    class_names: tuple[str, ...] = ()  # index = label; empty for unlabelled data
    x_test: np.ndarray | None = None
    y_test: np.ndarray | None = None

    @property
    def image_shape(self) -> tuple[int, int, int]:
        return tuple(int(d) for d in self.x_train.shape[1:])

    @property
    def num_classes(self) -> int:
        return len(self.class_names)

    @property
    def labelled(self) -> bool:
        return self.y_train is not None

    @property
    def measurable(self) -> bool:
        """Sample quality is measured through a classifier of the data's classes: it needs two or more."""
        return self.num_classes >= 2

    def fingerprint(self) -> str:
        """Which data this is, whatever its path: a hash of the training images and labels."""
        digest = hashlib.sha256(self.x_train.tobytes())
        if self.y_train is not None:
            digest.update(self.y_train.tobytes())
        return digest.hexdigest()[:16]

    def description(self) -> dict:
        """What config.json and the exported model record of the data."""
        return {"name": self.name, "image_shape": list(self.image_shape), "class_names": list(self.class_names)}


def load_data(source: str | Path, image_size: tuple[int, int] | None = None, channels: int | None = None) -> ImageData:
    """The data `source` names: a Keras data set (KERAS_SETS), a .npz file, a folder of IDX files or a folder of
    image files; resized to `image_size` (height, width) and converted to `channels` when given."""
    if str(source) in KERAS_SETS:
        arrays, name, names = _from_keras_download(str(source)), str(source), KERAS_SETS[str(source)]
    else:
        path = Path(source)
        if not path.exists():
            known = ", ".join(KERAS_SETS)
            raise DataError(f"data not found: {path} (not a file, a folder or a Keras data set's name: {known})")
        arrays, names = _read(path, image_size, channels)
        name = path.stem if path.is_file() else path.resolve().name
    arrays = {
        key: _uniform(array, image_size, channels) if key.startswith("x") else array for key, array in arrays.items()
    }
    return _checked(arrays, name, names, source=str(source))


def _read(path: Path, image_size: tuple[int, int] | None, channels: int | None) -> tuple[dict, tuple[str, ...]]:
    """The arrays (and class names, where the source names them) of a file or folder."""
    if path.is_file():
        arrays = _read_npz(path)
        names = arrays.pop("class_names", None)
        return arrays, () if names is None else tuple(str(n) for n in names)
    if not path.is_dir():  # a device, a socket, a pipe
        raise DataError(f"{path} is neither a file nor a folder: give a .npz file or a folder of images")
    if any(_find_idx_file(path, stem) for stem in IDX_NAMES.values()):
        return _read_idx_folder(path), ()
    return _read_image_folder(path, image_size, channels)


def training_images(data: ImageData, label: int) -> np.ndarray:
    """The training images of one class (or all for -1), uint8 (N, height, width, channels)."""
    return training_set(data, label)[0]


def training_set(data: ImageData, label: int) -> tuple[np.ndarray, np.ndarray | None]:
    """The training images of one class (or all for -1), uint8, and their labels (None when unlabelled). They stay
    uint8 where they are resident for the whole run (a quarter of float32's memory); the training step scales each
    batch to [-1, 1] exactly as `to_unit_range` does."""
    keep = class_mask(data, label)
    if keep.all():
        return data.x_train, data.y_train  # no copy of what may be gigabytes
    return data.x_train[keep], None if data.y_train is None else data.y_train[keep]


def class_mask(data: ImageData, label: int) -> np.ndarray:
    """Which training images to train on: all (-1) or one class's; DataError when that leaves none."""
    if label == -1:
        return np.ones(len(data.x_train), bool)
    if not data.labelled:
        raise DataError(f"--digit {label} picks a class, but {data.name} has no labels: train on all images (-1)")
    if label >= data.num_classes:
        raise DataError(f"--digit {label}: {data.name} has {data.num_classes} classes, 0..{data.num_classes - 1}")
    keep = data.y_train == label
    if not keep.any():
        raise DataError(f"the training set holds no images of class {named_class(label, data.class_names[label])}")
    return keep


def reference_set(data: ImageData) -> np.ndarray:
    """The real images generated ones are compared with, uint8: the test set, else the training set; DataError
    when there are too few to measure with."""
    images = data.x_train[:10_000] if data.x_test is None else data.x_test
    if len(images) < MIN_REFERENCE_IMAGES:
        raise DataError(
            f"sample quality needs at least {MIN_REFERENCE_IMAGES} real images to compare with, the data has "
            f"{len(images)}: give it a test set, or train with --no-quality"
        )
    return images


def reference_images(data: ImageData) -> np.ndarray:
    """`reference_set` in [-1, 1], as the generator draws."""
    if data.x_test is None:
        log.warning("the data has no test set: sample quality is measured against training images")
    return to_unit_range(reference_set(data))


def to_unit_range(images: np.ndarray) -> np.ndarray:
    """uint8 images (N, H, W, C) as float32 in [-1, 1], as the generator's tanh draws them."""
    return (images.astype(np.float32) - 127.5) / 127.5


def parse_image_size(text: str) -> tuple[int, int]:
    """'32x48' (height x width) or '32' (square) -> (32, 48); ValueError when it is neither."""
    parts = text.lower().replace("×", "x").split("x")
    if len(parts) not in (1, 2) or not all(part.strip().isdigit() for part in parts):
        raise ValueError(f"an image size is HxW (e.g. 32x32) or one number for a square, got {text!r}")
    height, width = (int(part) for part in (parts * 2)[:2])
    return height, width


def _from_keras_download(name: str) -> dict[str, np.ndarray]:
    import keras  # only here: reading a file must not need the training stack

    # Keras shows the download itself; our line comes after it, so that a failure stays the one line of an error.
    try:
        (x_train, y_train), (x_test, y_test) = getattr(keras.datasets, name).load_data()
    except Exception as error:  # network or cache trouble: say so in one line
        raise DataError(f"could not download {name} through Keras ({error}); pass --data PATH instead") from error
    log.info("loaded %s through keras.datasets.%s (downloaded once, then cached)", name, name)
    return {"x_train": x_train, "y_train": y_train, "x_test": x_test, "y_test": y_test}


NPZ_MAGIC = b"PK\x03\x04"  # a .npz is a zip file of .npy arrays


def _read_npz(path: Path) -> dict[str, np.ndarray]:
    try:
        with open(path, "rb") as file:
            is_zip = file.read(len(NPZ_MAGIC)) == NPZ_MAGIC
    except OSError as error:
        raise DataError(f"cannot read {path}: {error.strerror or error}") from error
    if not is_zip:  # numpy would call it pickled data and suggest allow_pickle, which must never be taken
        raise DataError(f"cannot read {path}: it is not a .npz file (a zip of numpy arrays, as numpy.savez writes)")
    try:
        with np.load(path, allow_pickle=False) as npz:
            return {key: npz[key] for key in npz.files}
    except ValueError as error:
        if "allow_pickle" not in str(error):
            raise DataError(f"cannot read {path} as a .npz file: {error}") from error
        # an array of Python objects: loading one runs code from the file, which is never done
        raise DataError(f"cannot read {path}: it holds arrays of Python objects; save numeric arrays") from error
    except Exception as error:
        raise DataError(f"cannot read {path} as a .npz file: {error}") from error


def _read_idx_folder(folder: Path) -> dict[str, np.ndarray]:
    arrays = {}
    for key, stem in IDX_NAMES.items():
        found = _find_idx_file(folder, stem)
        if found is not None:
            arrays[key] = read_idx(found)
        elif key == "x_train":
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
    except (OSError, EOFError, zlib.error) as error:  # a missing, unreadable or corrupt (gzip) file
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


def _read_image_folder(
    folder: Path, image_size: tuple[int, int] | None, channels: int | None
) -> tuple[dict[str, np.ndarray], tuple[str, ...]]:
    """A flat folder of images (unlabelled), or one subfolder per class (Keras' image_dataset_from_directory)."""
    class_folders = sorted(p for p in folder.iterdir() if p.is_dir() and not p.name.startswith("."))
    loose = _images_in(folder)
    if not any(_images_in(p) for p in class_folders):
        class_folders = []  # no class holds images: the folder is flat (or empty), whatever subfolders it has
    empty = [p.name for p in class_folders if not _images_in(p)]
    if empty:
        raise DataError(
            f"{folder}: no images in the class folder(s) {', '.join(empty[:5])} (each subfolder is a class: "
            "remove the empty ones)"
        )
    if class_folders and loose:
        raise DataError(f"{folder} mixes image files and class folders: put every image in its class's folder")
    if len(class_folders) > MAX_CLASSES:
        raise DataError(f"{folder} has {len(class_folders)} class folders, more than {MAX_CLASSES}")
    groups = [_images_in(p) for p in class_folders] if class_folders else [loose]
    if not any(groups):
        raise DataError(f"{folder} holds no images ({', '.join(sorted(IMAGE_SUFFIXES))}) nor IDX files")
    paths = [path for group in groups for path in group]
    headers = [_header(path) for path in paths]  # every image's size and mode, before any is decoded
    channels = channels or (1 if all(mode in GREY_MODES for _, mode in headers) else 3)
    if image_size is None:
        _check_same_size([size for size, _ in headers], paths)
        _check_sides(headers[0][0], str(folder))
    check_room_for_images(len(paths), (*(image_size or headers[0][0]), channels))
    images = [_read_image(path, image_size, channels) for path in paths]
    arrays = {"x_train": np.stack(images)}
    if class_folders:
        arrays["y_train"] = np.repeat(np.arange(len(groups)), [len(group) for group in groups])
    log.debug(
        "read %d images from %s (%s)", len(images), folder, f"{len(groups)} classes" if class_folders else "unlabelled"
    )
    return arrays, tuple(p.name for p in class_folders)


def _images_in(folder: Path) -> list[Path]:
    return sorted(p for p in folder.iterdir() if p.suffix.lower() in IMAGE_SUFFIXES and not p.name.startswith("."))


def _header(path: Path) -> tuple[tuple[int, int], str]:
    """An image's (height, width) and pillow mode, from its header alone; DataError for a file that is no image, or
    one too large to decode (pillow's decompression bomb limit, MAX_IMAGE_PIXELS)."""
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", Image.DecompressionBombWarning)  # refused below, in our own words
            with Image.open(path) as image:
                size, mode = (image.height, image.width), image.mode
    except Image.DecompressionBombError as error:  # beyond twice the limit, pillow refuses to open it
        raise DataError(
            f"cannot read image {path}: too large to decode ({first_line(error)}): make it smaller"
        ) from error
    except (OSError, UnidentifiedImageError, ValueError) as error:
        raise DataError(f"cannot read image {path}: {error}") from error
    if math.prod(size) > Image.MAX_IMAGE_PIXELS:
        raise DataError(
            f"cannot read image {path}: {size[0]}x{size[1]} pixels, more than the {Image.MAX_IMAGE_PIXELS:,} an "
            "image may have: make it smaller"
        )
    return size, mode


def _read_image(path: Path, image_size: tuple[int, int] | None, channels: int) -> np.ndarray:
    try:
        with Image.open(path) as image:
            image = _eight_bit(image).convert("L" if channels == 1 else "RGB")
            if image_size is not None and image.size != image_size[::-1]:
                image = image.resize(image_size[::-1], Image.Resampling.LANCZOS)
            pixels = np.asarray(image, dtype=np.uint8)
    except (OSError, UnidentifiedImageError, ValueError) as error:
        raise DataError(f"cannot read image {path}: {error}") from error
    return pixels[..., np.newaxis] if pixels.ndim == 2 else pixels


def _eight_bit(image: Image.Image) -> Image.Image:
    """16-bit grey images (and 32-bit integer ones holding values beyond 255) scaled to 0..255: pillow's
    convert("L") would clip every value above 255, turning a 16-bit PNG's greys into black and white."""
    if image.mode not in WIDE_GREY_MODES:
        return image
    pixels = np.asarray(image, dtype=np.float64)
    if image.mode == "I" and pixels.max(initial=0) <= 255:  # 8-bit values in a 32-bit image: nothing to scale
        return image
    return Image.fromarray(np.rint(pixels / 257).clip(0, 255).astype(np.uint8), "L")  # 65535 / 257 = 255


def _check_same_size(sizes: list[tuple[int, int]], paths: list[Path]) -> None:
    """Without --image-size, every image of a folder must have the first one's (height, width)."""
    first = sizes[0]
    for size, path in zip(sizes, paths, strict=True):
        if size != first:
            raise DataError(
                f"images of different sizes ({paths[0].name} {first[0]}x{first[1]}, {path.name} "
                f"{size[0]}x{size[1]}): pass --image-size HxW to resize them all"
            )


def _uniform(images: np.ndarray, image_size: tuple[int, int] | None, channels: int | None) -> np.ndarray:
    """Images as (N, H, W, C), resized and converted where asked (an image folder's already are)."""
    if images.dtype != np.uint8 or images.ndim not in (3, 4):
        return images  # refused by _checked, with the shape it has
    if images.ndim == 3:
        images = images[..., np.newaxis]
    if images.shape[-1] not in CHANNELS:
        return images
    target = (*(image_size or images.shape[1:3]), channels or images.shape[-1])
    if target != images.shape[1:]:
        check_room_for_images(len(images), target)
    if channels is not None and images.shape[-1] != channels:
        images = _grey(images) if channels == 1 else images.repeat(3, axis=-1)
    if image_size is not None and images.shape[1:3] != image_size:
        mode = "L" if images.shape[-1] == 1 else "RGB"
        resized = [
            np.asarray(Image.fromarray(image.squeeze(-1) if mode == "L" else image, mode).resize(image_size[::-1]))
            for image in images
        ]
        images = np.stack(resized).reshape(len(images), *image_size, images.shape[-1])
    return images


def _grey(images: np.ndarray) -> np.ndarray:
    """RGB to grey with the weights pillow's convert("L") uses (ITU-R 601), as for an image folder."""
    return np.rint(images @ np.array([0.299, 0.587, 0.114]))[..., np.newaxis].astype(np.uint8)


def _checked(arrays: dict[str, np.ndarray], name: str, class_names: tuple[str, ...], source: str) -> ImageData:
    if "x_train" not in arrays:
        raise DataError(f"{source} has no 'x_train' array (expected Keras' mnist.npz keys x_train, y_train, ...)")
    labelled = arrays.get("y_train") is not None
    for split in ("train", "test"):
        x, y = arrays.get(f"x_{split}"), arrays.get(f"y_{split}")
        if x is None and y is None:
            continue
        if x is None:
            raise DataError(f"{source} has y_{split} but no x_{split}")
        _check_images(x, f"{source}: x_{split}")
        if (y is not None) != labelled:
            raise DataError(f"{source}: either both splits have labels (y_train, y_test) or neither")
        if y is not None:
            arrays[f"y_{split}"] = _checked_labels(y, len(x), f"{source}: y_{split}")
    if len(arrays["x_train"]) == 0:
        raise DataError(f"{source}: the training set holds no images")
    if arrays.get("x_test") is not None and arrays["x_test"].shape[1:] != arrays["x_train"].shape[1:]:
        raise DataError(f"{source}: x_test's images {arrays['x_test'].shape[1:]} differ from x_train's")
    return ImageData(
        name=name,
        x_train=arrays["x_train"],
        y_train=arrays.get("y_train"),
        class_names=_class_names(arrays, class_names, source) if labelled else (),
        x_test=arrays.get("x_test"),
        y_test=arrays.get("y_test"),
    )


def _check_images(x: np.ndarray, what: str) -> None:
    if x.dtype != np.uint8 or x.ndim != 4 or x.shape[-1] not in CHANNELS:
        raise DataError(
            f"{what} must be uint8 images of shape (N, height, width) or (N, height, width, 1 or 3), "
            f"got {x.dtype} {x.shape}"
        )
    _check_sides(x.shape[1:3], what)


def _check_sides(size: tuple[int, int], what: str) -> None:
    """Refuse images of (height, width) smaller than MIN_SIDE or larger than MAX_SIDE on a side."""
    height, width = size
    if min(size) < MIN_SIDE:
        raise DataError(
            f"{what}: images of {height}x{width} are too small, at least {MIN_SIDE}x{MIN_SIDE} "
            "(--image-size resizes them)"
        )
    if max(size) > MAX_SIDE:
        raise DataError(
            f"{what}: images of {height}x{width} are too large, at most {MAX_SIDE}x{MAX_SIDE} "
            "(--image-size resizes them)"
        )


def _checked_labels(y: np.ndarray, count: int, what: str) -> np.ndarray:
    if y.ndim == 2 and y.shape[1] == 1:  # CIFAR-10's labels come as (N, 1)
        y = y[:, 0]
    if y.shape != (count,) or not np.issubdtype(y.dtype, np.integer):
        raise DataError(f"{what} must be {count} integer labels, got {y.dtype} {y.shape}")
    if len(y) and (y.min() < 0 or y.max() >= MAX_CLASSES):
        raise DataError(f"{what} holds labels outside 0..{MAX_CLASSES - 1}")
    # The smallest type that holds them: MNIST's stay uint8, so its fingerprint is what it always was.
    return y.astype(np.uint8 if not len(y) or y.max() < 256 else np.uint16)


def _class_names(arrays: dict[str, np.ndarray], given: tuple[str, ...], source: str) -> tuple[str, ...]:
    """The names given by the source, else the labels as numbers; as many as the largest label needs."""
    largest = max(
        int(arrays[key].max()) for key in ("y_train", "y_test") if arrays.get(key) is not None and len(arrays[key])
    )
    if given:
        if len(given) <= largest:
            raise DataError(f"{source} names {len(given)} classes but has label {largest}")
        if len(set(given)) != len(given) or not all(name.strip() and name.isprintable() for name in given):
            raise DataError(f"{source}: class names must be unique and printable, got {list(given)[:12]}")
        return given
    return tuple(str(label) for label in range(largest + 1))
