"""Turning generator outputs into pictures with pillow: shared by the job's sample grids and gan-digits."""

from __future__ import annotations

import math

import numpy as np
from PIL import Image


def to_uint8(images: np.ndarray) -> np.ndarray:
    """Generator output in [-1, 1] -> uint8: grey (N, H, W[, 1]) -> (N, H, W); RGB (N, H, W, 3) stays (N, H, W, 3)."""
    images = np.asarray(images, dtype=np.float32)
    if images.ndim == 4 and images.shape[-1] == 1:
        images = images[..., 0]
    return np.clip(np.rint((images + 1.0) * 127.5), 0, 255).astype(np.uint8)


def grid_columns(count: int) -> int:
    """As square as possible, never more rows than columns: 16 -> 4, 10 -> 4, 100 -> 10."""
    return max(1, math.ceil(math.sqrt(count)))


def grid_size(
    count: int, tile: tuple[int, int], columns: int | None = None, scale: int = 1, padding: int = 2
) -> tuple[int, int]:
    """Width and height in pixels of the grid of `count` tiles of (height, width) that `grid` draws."""
    columns = columns or grid_columns(count)
    rows = math.ceil(count / columns)
    height, width = tile
    return (columns * (width + padding) + padding) * scale, (rows * (height + padding) + padding) * scale


def grid(images: np.ndarray, columns: int | None = None, scale: int = 1, padding: int = 2) -> Image.Image:
    """uint8 images, grey (N, H, W) or RGB (N, H, W, 3), tiled into one picture, black between tiles, each tile
    scaled `scale` times."""
    count, height, width = images.shape[:3]
    columns = columns or grid_columns(count)
    canvas_width, canvas_height = grid_size(count, (height, width), columns, 1, padding)
    canvas = np.zeros((canvas_height, canvas_width, *images.shape[3:]), dtype=np.uint8)
    for index, image in enumerate(images):
        row, column = divmod(index, columns)
        top, left = padding + row * (height + padding), padding + column * (width + padding)
        canvas[top : top + height, left : left + width] = image
    picture = Image.fromarray(canvas)  # 2-D uint8: greyscale ("L"); 3-D: RGB
    if scale > 1:
        picture = picture.resize((picture.width * scale, picture.height * scale), Image.Resampling.NEAREST)
    return picture
