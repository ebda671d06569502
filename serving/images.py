"""Turning generator outputs into pictures with pillow: shared by the job's sample grids and gan-digits."""

from __future__ import annotations

import math

import numpy as np
from PIL import Image


def to_uint8(images: np.ndarray) -> np.ndarray:
    """Generator output in [-1, 1], shape (N, H, W[, 1]) -> uint8 grey images of shape (N, H, W)."""
    images = np.asarray(images, dtype=np.float32)
    if images.ndim == 4:
        images = images[..., 0]
    return np.clip(np.rint((images + 1.0) * 127.5), 0, 255).astype(np.uint8)


def grid_columns(count: int) -> int:
    """As square as possible, never more rows than columns: 16 -> 4, 10 -> 4, 100 -> 10."""
    return max(1, math.ceil(math.sqrt(count)))


def grid(images: np.ndarray, columns: int | None = None, scale: int = 1, padding: int = 2) -> Image.Image:
    """uint8 images (N, H, W) tiled into one picture, black between tiles, each tile scaled `scale` times."""
    count, height, width = images.shape
    columns = columns or grid_columns(count)
    rows = math.ceil(count / columns)
    canvas = np.zeros((rows * (height + padding) + padding, columns * (width + padding) + padding), dtype=np.uint8)
    for index, image in enumerate(images):
        row, column = divmod(index, columns)
        top, left = padding + row * (height + padding), padding + column * (width + padding)
        canvas[top : top + height, left : left + width] = image
    picture = Image.fromarray(canvas)  # 2-D uint8: greyscale ("L")
    if scale > 1:
        picture = picture.resize((picture.width * scale, picture.height * scale), Image.Resampling.NEAREST)
    return picture
