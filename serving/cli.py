"""`gan-digits`: generate MNIST digits from an exported generator with onnxruntime, numpy and pillow alone."""

from __future__ import annotations

import contextlib
import json
import math
import os
import shutil
import sys
import tempfile
import time
from pathlib import Path

import click
import numpy as np

from serving.files import atomic_write
from serving.images import grid, grid_size, to_uint8
from serving.model import IMAGE_SHAPE, NUM_CLASSES, Generator, ModelError, cycling_labels, latent_batches
from serving.oneline import OneLineErrors

MAX_GRID_PIXELS = 100_000_000  # a grid is built whole in memory: 100 megapixels is 100 MB of greyscale
MAX_FRAMES = 1000  # an interpolation is drawn whole in memory, frame by frame
SEED = click.IntRange(min=0)  # what numpy's generators accept


class BadInput(click.ClickException):
    """A user's mistake: one line on stderr, exit code 2, nothing half-written."""

    exit_code = 2


model_option = click.option(
    "--model",
    type=click.Path(exists=True, dir_okay=False, path_type=Path),
    required=True,
    help="An exported generator (.onnx), e.g. RUN/generator.onnx.",
)


@click.group(cls=OneLineErrors, context_settings={"help_option_names": ["-h", "--help"], "max_content_width": 100})
@click.version_option(package_name="mnist-gan")
def main() -> None:
    """Generate MNIST digits from a generator exported by gan-job (no TensorFlow needed)."""


@main.command()
@model_option
@click.option("-n", "--count", type=click.IntRange(min=1), default=16, show_default=True, help="How many digits.")
@click.option("--seed", type=SEED, default=0, show_default=True, help="The same seed gives the same digits.")
@click.option(
    "--digit",
    type=click.IntRange(0, 9),
    default=None,
    help="The digit to generate: any, for a conditional model (without it, a grid has one row per digit); "
    "for a model trained on one digit, that one.",
)
@click.option(
    "--format",
    "output_format",
    type=click.Choice(["grid", "png", "npy"]),
    default="grid",
    show_default=True,
    help="grid: one PNG of all digits; png: a folder with one PNG per digit; npy: a uint8 array (N, height, width).",
)
@click.option("--scale", type=click.IntRange(1, 64), default=2, show_default=True, help="Pixels per model pixel.")
@click.option("--columns", type=click.IntRange(min=1), default=None, help="Grid columns [default: about √n].")
@click.option(
    "--batch-size",
    type=click.IntRange(min=1),
    default=1024,
    show_default=True,
    help="Digits per model call: memory stays flat whatever -n is.",
)
@click.option(
    "--out",
    type=click.Path(path_type=Path),
    required=True,
    help="The grid .png, the folder of PNGs, or the .npy file to write.",
)
def generate(
    model: Path,
    count: int,
    seed: int,
    digit: int | None,
    output_format: str,
    scale: int,
    columns: int | None,
    batch_size: int,
    out: Path,
) -> None:
    """Generate COUNT digits from latents drawn with SEED."""
    generator = _load(model)
    _check(generator.check_digit, digit)
    _check_output(out, output_format)
    began = time.perf_counter()
    if output_format == "grid" and generator.conditional and digit is None:
        columns = columns or math.ceil(count / NUM_CLASSES)  # one row per digit, 0 to 9
    if output_format == "grid":
        _check_grid_size(count, columns, scale)
    batches = _image_batches(
        generator, seed, count, batch_size, digit, row=columns if output_format == "grid" else None
    )
    with _writing(out):
        if output_format == "npy":
            _write_npy(batches, count, out)
        elif output_format == "png":
            _write_png_folder(batches, out, scale)
        else:
            images = np.concatenate(list(batches))
            with atomic_write(out) as file:
                grid(images, columns=columns, scale=scale).save(file, format="PNG")
    click.echo(f"wrote {count} digits to {out} in {time.perf_counter() - began:.2f} s", err=True)


@main.command()
@model_option
@click.option("--json", "as_json", is_flag=True, help="Print one JSON object instead of text.")
def info(model: Path, as_json: bool) -> None:
    """Print the model's inputs, outputs and metadata."""
    generator = _load(model)
    if as_json:
        click.echo(
            json.dumps(
                {
                    "model": str(model),
                    "inputs": [{"name": t.name, "shape": list(t.shape), "type": t.type} for t in generator.inputs],
                    "outputs": [{"name": t.name, "shape": list(t.shape), "type": t.type} for t in generator.outputs],
                    "metadata": generator.metadata,
                }
            )
        )
        return
    click.echo(f"model:    {model}")
    click.echo(f"inputs:   {'; '.join(map(str, generator.inputs))}")
    click.echo(f"outputs:  {'; '.join(map(str, generator.outputs))}")
    click.echo("metadata:")
    for key, value in sorted(generator.metadata.items()):
        click.echo(f"  {key}: {value}")


@main.command()
@model_option
@click.option("--from", "from_seed", type=SEED, required=True, help="Seed of the first digit.")
@click.option("--to", "to_seed", type=SEED, required=True, help="Seed of the last digit.")
@click.option(
    "--steps", type=click.IntRange(2, MAX_FRAMES), default=10, show_default=True, help="Frames, both ends included."
)
@click.option("--digit", type=click.IntRange(0, 9), default=None, help="The digit (conditional models need it).")
@click.option("--scale", type=click.IntRange(1, 64), default=2, show_default=True, help="Pixels per model pixel.")
@click.option("--frame-ms", type=click.IntRange(min=10), default=120, show_default=True, help="GIF frame duration.")
@click.option(
    "--out",
    type=click.Path(dir_okay=False, path_type=Path),
    required=True,
    help="A .png (a strip of frames) or a .gif (an animation).",
)
def interpolate(
    model: Path, from_seed: int, to_seed: int, steps: int, digit: int | None, scale: int, frame_ms: int, out: Path
) -> None:
    """Walk the latent space from the first digit of --from's seed to the first digit of --to's."""
    generator = _load(model)
    _check(generator.check_digit, digit)
    if generator.conditional and digit is None:
        raise BadInput(f"{model} is a conditional model: choose the digit to walk through with --digit")
    if out.suffix.lower() not in (".png", ".gif"):
        raise BadInput(f"--out must end in .png (a strip) or .gif (an animation), got {out.name}")
    _check_grid_size(steps, steps if out.suffix.lower() == ".png" else 1, scale)
    start, end = (next(latent_batches(seed, 1, generator.latent_dim, 1))[0] for seed in (from_seed, to_seed))
    latents = np.stack([slerp(start, end, t) for t in np.linspace(0.0, 1.0, steps)])
    with _writing(out), atomic_write(out) as file:
        images = to_uint8(generator.images(latents, _labels(generator, digit, 0, steps, None)))
        if out.suffix.lower() == ".gif":
            frames = [grid(image[np.newaxis], scale=scale, padding=0) for image in images]
            frames[0].save(file, format="GIF", save_all=True, append_images=frames[1:], duration=frame_ms, loop=0)
        else:
            grid(images, columns=steps, scale=scale).save(file, format="PNG")
    click.echo(f"wrote {steps} frames to {out}", err=True)


def slerp(a: np.ndarray, b: np.ndarray, t: float) -> np.ndarray:
    """Spherical interpolation: keeps the latents at the norm the generator saw in training, unlike a straight line."""
    cos = np.dot(a, b) / (np.linalg.norm(a) * np.linalg.norm(b))
    omega = np.arccos(np.clip(cos, -1.0, 1.0))
    if omega < 1e-6:
        return ((1 - t) * a + t * b).astype(np.float32)
    return ((np.sin((1 - t) * omega) * a + np.sin(t * omega) * b) / np.sin(omega)).astype(np.float32)


def _load(path: Path) -> Generator:
    try:
        return Generator(path)
    except ModelError as error:
        raise BadInput(str(error)) from error


def _check(check, *args) -> None:
    try:
        check(*args)
    except ModelError as error:
        raise BadInput(str(error)) from error


def _labels(generator: Generator, digit: int | None, start: int, count: int, row: int | None) -> np.ndarray | None:
    """Labels of a conditional model's digits start..start+count: the digit asked for; else, in a grid of `row`
    columns, digit r on row r; else 0-9 in turn."""
    if not generator.conditional:
        return None
    if digit is not None:
        return np.full(count, digit, dtype=np.int64)
    return cycling_labels(count, NUM_CLASSES, start, every=row or 1)


def _image_batches(generator: Generator, seed: int, count: int, batch_size: int, digit: int | None, row=None):
    """uint8 images (B, height, width), batch after batch; a progress bar on a terminal for large counts."""
    done = 0
    with contextlib.ExitStack() as stack:
        bar = None
        if count > 10 * batch_size and sys.stderr.isatty():
            bar = stack.enter_context(click.progressbar(length=count, label="generating", file=sys.stderr))
        for latents in latent_batches(seed, count, generator.latent_dim, batch_size):
            yield to_uint8(generator.images(latents, _labels(generator, digit, done, len(latents), row)))
            done += len(latents)
            if bar is not None:
                bar.update(len(latents))


def _check_output(out: Path, output_format: str) -> None:
    """Refuse an output we could not finish writing, before any work is done."""
    suffix = {"grid": ".png", "npy": ".npy"}.get(output_format)
    if suffix and out.suffix.lower() != suffix:
        raise BadInput(f"--format {output_format} writes a {suffix} file: --out must end in {suffix}, got {out.name}")
    if output_format == "png" and out.exists() and (not out.is_dir() or any(out.iterdir())):
        raise BadInput(f"--out {out} exists and is not an empty folder: choose a new folder for the PNGs")
    if output_format != "png" and out.is_dir():
        raise BadInput(f"--out {out} is a folder: --format {output_format} writes a file")


def _check_grid_size(count: int, columns: int | None, scale: int) -> None:
    """Refuse a grid picture too large to hold in memory, before any work is done."""
    width, height = grid_size(count, IMAGE_SHAPE[:2], columns, scale)
    if width * height > MAX_GRID_PIXELS:
        raise BadInput(
            f"a grid of {count} digits at --scale {scale} would be {width}x{height} pixels (more than "
            f"{MAX_GRID_PIXELS // 1_000_000} megapixels): ask for fewer or a smaller --scale (generate also has "
            "--format png and npy, which need no grid)"
        )


@contextlib.contextmanager
def _writing(out: Path):
    """Turn a failing write (permissions, a full disk, a missing parent), or a model that fails while generating,
    into one clear line."""
    try:
        out.parent.mkdir(parents=True, exist_ok=True)
        yield
    except ModelError as error:
        raise BadInput(str(error)) from error
    except OSError as error:
        raise BadInput(f"cannot write {out}: {error.strerror or error}") from error


def _write_npy(batches, count: int, out: Path) -> None:
    # The .npy header first, then each batch as it comes: 100,000 digits never sit in memory at once.
    with atomic_write(out) as file:
        header = {"descr": np.dtype(np.uint8).str, "fortran_order": False, "shape": (count, *IMAGE_SHAPE[:2])}
        np.lib.format.write_array_header_1_0(file, header)
        for images in batches:
            file.write(np.ascontiguousarray(images).tobytes())


def _write_png_folder(batches, out: Path, scale: int) -> None:
    # All files go into a hidden folder beside `out`, renamed to `out` only once complete.
    temporary = Path(tempfile.mkdtemp(prefix=f".{out.name}.", suffix=".tmp", dir=out.parent))
    try:
        index = 0
        for images in batches:
            for image in images:
                grid(image[np.newaxis], scale=scale, padding=0).save(temporary / f"{index:06d}.png")
                index += 1
        if out.exists():
            out.rmdir()  # empty, checked before
        os.replace(temporary, out)
    except BaseException:
        shutil.rmtree(temporary, ignore_errors=True)
        raise
