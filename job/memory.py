"""Whether a run fits in this machine's memory, checked before it trains: a run that does not fit is killed by the
kernel (exit 137, no message), so it is refused in one line instead. Twice: before images are read or resized (their
uint8 arrays, TensorFlow-free), then before the first step (the networks).

The networks' estimate is a lower bound of what training holds at once, on the CPU: the training set twice (the
uint8 array and TensorFlow's copy of it, resident for the whole run), every network variable with its gradient and
the two Adam slots (the moving average once more), and each layer's output for a step's images three times (kept
for the backward pass, its gradient, one more in flight). TensorFlow itself needs about 1-3 GB beside it.
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from job.errors import ConfigError

if TYPE_CHECKING:
    import keras

FLOAT = 4  # bytes of a float32
MEMINFO = Path("/proc/meminfo")
CGROUP = Path("/sys/fs/cgroup")  # a container's limit (cgroup v2): what a pod's memory limit sets


def training_bytes(generator: keras.Model, discriminator: keras.Model, images: np.ndarray, batch: int) -> dict:
    """The estimate's parts, in bytes."""
    variables = generator.count_params() * 5 + discriminator.count_params() * 4  # + gradient, 2 Adam slots (+ EMA)
    activations = (layer_outputs(generator) + layer_outputs(discriminator)) * batch * 3
    return {"data": 2 * images.nbytes, "variables": variables * FLOAT, "activations": activations * FLOAT}


def layer_outputs(model: keras.Model) -> int:
    """Values of one image's layer outputs through `model` (nested models included)."""
    import keras  # only here: the check of the images runs before TensorFlow loads

    total = 0
    for layer in model.layers:
        if isinstance(layer, keras.Model):
            total += layer_outputs(layer)
        elif not isinstance(layer, keras.layers.InputLayer):
            total += sum(math.prod(output.shape[1:]) for output in keras.tree.flatten(layer.output))
    return total


def available_bytes() -> int | None:
    """Memory this process may still use: the kernel's MemAvailable, or less under a container's limit; None where
    neither can be read."""
    candidates = []
    try:
        for line in MEMINFO.read_text().splitlines():
            if line.startswith("MemAvailable:"):
                candidates.append(int(line.split()[1]) * 1024)
    except (OSError, ValueError):
        pass
    try:
        limit = (CGROUP / "memory.max").read_text().strip()
        if limit != "max":
            candidates.append(int(limit) - int((CGROUP / "memory.current").read_text()))
    except (OSError, ValueError):
        pass
    return min(candidates) if candidates else None


def check_fits(generator: keras.Model, discriminator: keras.Model, images: np.ndarray, batch: int) -> None:
    """ConfigError when the training estimate exceeds the memory available."""
    parts = training_bytes(generator, discriminator, images, batch)
    what = f"training {len(images)} images of {_shape(images.shape[1:])}"
    _refuse_beyond(what, parts, "a smaller --image-size, fewer images, or a machine with more memory")


def check_room_for_images(count: int, shape: tuple[int, ...]) -> None:
    """ConfigError when `count` uint8 images of `shape` (height, width, channels) would not fit, twice over (they
    are stacked into one array from the images read or resized one by one)."""
    _refuse_beyond(
        f"reading {count} images of {_shape(shape)}",
        {"images": 2 * count * math.prod(shape)},
        "a smaller --image-size or fewer images",
    )


def _refuse_beyond(what: str, parts: dict[str, int], advice: str) -> None:
    available = available_bytes()
    if available is None or sum(parts.values()) <= available:
        return
    detail = ", ".join(f"{name} {_size(size)}" for name, size in parts.items())
    raise ConfigError(
        f"{what} needs at least {_size(sum(parts.values()))} of memory ({detail}), {_size(available)} is "
        f"available: use {advice}"
    )


def _shape(shape: tuple[int, ...]) -> str:
    return "x".join(map(str, shape))


def _size(size: int) -> str:
    return f"{size / 1e9:.1f} GB" if size >= 1e9 else f"{size / 1e6:.0f} MB"
