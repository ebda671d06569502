"""`gan-digits`: generate images (MNIST digits, or whatever the model learnt) from an exported generator with
onnxruntime, numpy and pillow alone."""

from __future__ import annotations

import contextlib
import itertools
import json
import math
import os
import shutil
import socket
import sys
import tempfile
import time
from pathlib import Path

import click
import numpy as np

from serving.files import OutputPath, atomic_write
from serving.images import grid, grid_size, to_uint8
from serving.model import Generator, ModelError, class_listing, cycling_labels, latent_batches
from serving.oneline import OneLineErrors
from serving.triton import CONFIG_FILE, MAX_BATCH_SIZE, MODEL_FILE, VERSION, model_config, model_name, write_repository

MAX_GRID_PIXELS = 100_000_000  # a grid is built whole in memory: 100 megapixels is 100 MB grey, 300 MB RGB
MAX_FRAMES = 1000  # an interpolation is drawn whole in memory, frame by frame
MAX_IMAGES = 10_000_000  # -n at most: 7.8 GB of MNIST digits as .npy, or ten million PNG files
MAX_FRAME_MS = 655_350  # a GIF stores a frame's duration in 16 bits, in hundredths of a second
CALL_BYTES = 256_000_000  # a model call's latents and images (float32, and their uint8 copy) at most
SEED = click.IntRange(min=0)  # what numpy's generators accept
DEFAULT_COUNT = 16  # images generate draws without -n: a 4x4 grid
ROW_PER_CLASS = 4  # ... but a conditional model's grid without -n: a row of this many for each class


class BadInput(click.ClickException):
    """A user's mistake: one line on stderr, exit code 2, nothing half-written."""

    exit_code = 2


model_option = click.option(
    "--model",
    type=click.Path(exists=True, dir_okay=False, path_type=Path),
    required=True,
    help="An exported generator (.onnx), e.g. RUN/generator.onnx.",
)
# A class by its index or by its name (`gan-digits info` lists both): for MNIST, the index is the digit.
digit_option = click.option(
    "--digit",
    type=int,
    default=None,
    metavar="D",
    help="The class by its index, from 0 (for MNIST: the digit D); `gan-digits info` lists the model's classes.",
)
class_option = click.option(
    "--class", "class_name", metavar="NAME", default=None, help="The class by its name, instead of --digit."
)


@click.group(cls=OneLineErrors, context_settings={"help_option_names": ["-h", "--help"], "max_content_width": 100})
@click.version_option(package_name="mnist-gan")
def main() -> None:
    """Generate images from a generator exported by gan-job (no TensorFlow needed): MNIST digits, or the classes of
    whatever data it was trained on."""


@main.command()
@model_option
@click.option(
    "-n",
    "--count",
    type=click.IntRange(1, MAX_IMAGES),
    default=None,
    help=f"How many images [default: {DEFAULT_COUNT}; a conditional model's grid: a row of {ROW_PER_CLASS} for each "
    "class].",
)
@click.option("--seed", type=SEED, default=0, show_default=True, help="The same seed gives the same images.")
@digit_option
@class_option
@click.option(
    "--format",
    "output_format",
    type=click.Choice(["grid", "png", "npy"]),
    default="grid",
    show_default=True,
    help="grid: one PNG of all images; png: a folder with one PNG per image; npy: a uint8 array (N, height, width), "
    "(N, height, width, 3) for RGB.",
)
@click.option("--scale", type=click.IntRange(1, 64), default=2, show_default=True, help="Pixels per model pixel.")
@click.option("--columns", type=click.IntRange(min=1), default=None, help="Grid columns [default: about √n].")
@click.option(
    "--batch-size",
    type=click.IntRange(min=1),
    default=1024,
    show_default=True,
    help="Images per model call (fewer where a call would hold more than "
    f"{CALL_BYTES // 1_000_000} MB): memory stays flat whatever -n is.",
)
@click.option(
    "--out",
    type=OutputPath(),
    required=True,
    help="The grid .png, the folder of PNGs, or the .npy file to write.",
)
def generate(
    model: Path,
    count: int | None,
    seed: int,
    digit: int | None,
    class_name: str | None,
    output_format: str,
    scale: int,
    columns: int | None,
    batch_size: int,
    out: Path,
) -> None:
    """Generate -n images from latents drawn with --seed.

    A conditional model draws the class that --digit or --class chooses; without either, a grid has one row per
    class. A model trained on one class draws that one."""
    generator = _load(model)
    label = _chosen_class(generator, digit, class_name)
    _check_output(out, output_format)
    began = time.perf_counter()
    row_per_class = output_format == "grid" and generator.conditional and label is None
    if count is None:
        count = ROW_PER_CLASS * generator.num_classes if row_per_class else DEFAULT_COUNT
    if row_per_class:
        # As many columns as every class can fill: each gets a row (from -n of the number of classes on), and
        # images beyond a multiple of it start the classes over on rows of their own.
        columns = columns or max(1, count // generator.num_classes)
    if output_format == "grid":
        _check_grid_size(generator, count, columns, scale)
    if output_format == "npy":
        _check_room_on_disk(out, count * math.prod(generator.image_shape))
    batches = _image_batches(
        generator, seed, count, batch_size, label, row=columns if output_format == "grid" else None
    )
    with _writing(out):
        if output_format == "npy":
            _write_npy(batches, count, out)
        elif output_format == "png":
            _write_png_folder(batches, out, scale, count)
        else:
            images = np.concatenate(list(batches))
            with atomic_write(out) as file:
                grid(images, columns=columns, scale=scale).save(file, format="PNG")
    click.echo(f"wrote {count} {_images_word(generator)} to {out} in {time.perf_counter() - began:.2f} s", err=True)


@main.command()
@model_option
@click.option("--json", "as_json", is_flag=True, help="Print one JSON object instead of text.")
def info(model: Path, as_json: bool) -> None:
    """Print what the model draws (image shape, data, classes), its inputs, outputs and metadata."""
    generator = _load(model)
    if as_json:
        click.echo(json.dumps(_info_record(generator, model)))
        return
    height, width, channels = generator.image_shape
    click.echo(f"model:    {model}")
    click.echo(f"data:     {generator.data_name}")
    click.echo(f"images:   {height} x {width} x {channels} (height x width x channels, {_colours(generator)})")
    click.echo(f"classes:  {_classes_line(generator)}")
    click.echo(f"inputs:   {'; '.join(map(str, generator.inputs))}")
    click.echo(f"outputs:  {'; '.join(map(str, generator.outputs))}")
    click.echo("metadata:")
    for key, value in sorted(generator.metadata.items()):
        click.echo(f"  {key}: {value}")


def _info_record(generator: Generator, model: Path) -> dict:
    return {
        "model": str(model),
        "data": generator.data_name,
        "image_shape": list(generator.image_shape),
        "class_names": generator.class_names,  # index = label; [] for unlabelled data
        "conditional": generator.conditional,
        "trained_class": generator.trained_class,  # -1: all classes
        "inputs": [{"name": t.name, "shape": list(t.shape), "type": t.type} for t in generator.inputs],
        "outputs": [{"name": t.name, "shape": list(t.shape), "type": t.type} for t in generator.outputs],
        "metadata": generator.metadata,
    }


def _colours(generator: Generator) -> str:
    return "grey" if generator.image_shape[2] == 1 else "RGB"


def _classes_line(generator: Generator) -> str:
    """The classes with their indices, and which of them the model draws."""
    if not generator.class_names:
        return "none (unlabelled data)"
    listing = f"{generator.num_classes}: {class_listing(generator.class_names)}"
    if generator.conditional:
        return f"{listing}; conditional: --digit or --class chooses"
    if generator.trained_class == -1:
        return f"{listing}; trained on all without labels"
    return f"{listing}; trained on {generator.class_label(generator.trained_class)} only"


@main.command()
@model_option
@click.option("--from", "from_seed", type=SEED, required=True, help="Seed of the first image.")
@click.option("--to", "to_seed", type=SEED, required=True, help="Seed of the last image.")
@click.option(
    "--steps", type=click.IntRange(2, MAX_FRAMES), default=10, show_default=True, help="Frames, both ends included."
)
@digit_option
@class_option
@click.option("--scale", type=click.IntRange(1, 64), default=2, show_default=True, help="Pixels per model pixel.")
@click.option(
    "--frame-ms",
    type=click.IntRange(10, MAX_FRAME_MS),
    default=120,
    show_default=True,
    help="GIF frame duration (GIF keeps it in hundredths of a second).",
)
@click.option(
    "--out",
    type=OutputPath(dir_okay=False),
    required=True,
    help="A .png (a strip of frames) or a .gif (an animation).",
)
def interpolate(
    model: Path,
    from_seed: int,
    to_seed: int,
    steps: int,
    digit: int | None,
    class_name: str | None,
    scale: int,
    frame_ms: int,
    out: Path,
) -> None:
    """Walk the latent space from the first image of --from's seed to the first image of --to's (a conditional
    model: within the class that --digit or --class chooses)."""
    generator = _load(model)
    label = _chosen_class(generator, digit, class_name)
    if generator.conditional and label is None:
        word = generator.class_word[0]
        raise BadInput(f"{model} is a conditional model: choose the {word} to walk through with --digit or --class")
    if out.suffix.lower() not in (".png", ".gif"):
        raise BadInput(f"--out must end in .png (a strip) or .gif (an animation), got {out.name}")
    _check_grid_size(generator, steps, steps if out.suffix.lower() == ".png" else 1, scale)
    start, end = (next(latent_batches(seed, 1, generator.latent_dim, 1))[0] for seed in (from_seed, to_seed))
    latents = np.stack([slerp(start, end, t) for t in np.linspace(0.0, 1.0, steps)])
    with _writing(out), atomic_write(out) as file:
        images = to_uint8(generator.images(latents, _labels(generator, label, 0, steps, None)))
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


def _chosen_class(generator: Generator, digit: int | None, class_name: str | None) -> int | None:
    try:
        return generator.choose_class(digit, class_name)
    except ModelError as error:
        raise BadInput(str(error)) from error


def _images_word(generator: Generator) -> str:
    return "digits" if generator.of_digits else "images"


def _labels(generator: Generator, label: int | None, start: int, count: int, row: int | None) -> np.ndarray | None:
    """Labels of a conditional model's images start..start+count: the class asked for; else, in a grid of `row`
    columns, class r on row r; else every class in turn."""
    if not generator.conditional:
        return None
    if label is not None:
        return np.full(count, label, dtype=np.int64)
    return cycling_labels(count, generator.num_classes, start, every=row or 1)


def _image_batches(generator: Generator, seed: int, count: int, batch_size: int, label: int | None, row=None):
    """uint8 images (B, height, width[, 3]), batch after batch; a progress bar on a terminal for large counts."""
    done = 0
    with contextlib.ExitStack() as stack:
        bar = None
        if count > 10 * batch_size and sys.stderr.isatty():
            bar = stack.enter_context(click.progressbar(length=count, label="generating", file=sys.stderr))
        for latents in latent_batches(seed, count, generator.latent_dim, min(batch_size, images_per_call(generator))):
            yield to_uint8(generator.images(latents, _labels(generator, label, done, len(latents), row)))
            done += len(latents)
            if bar is not None:
                bar.update(len(latents))


def images_per_call(generator: Generator) -> int:
    """The most images one model call may draw within CALL_BYTES: their latents and images as float32 (the model's
    output and its scaled copy) and as uint8."""
    values = math.prod(generator.image_shape)
    return max(1, CALL_BYTES // ((generator.latent_dim + 2 * values) * 4 + values))


def _check_room_on_disk(out: Path, size: int) -> None:
    """Refuse a file of `size` bytes that the disk it goes to has no room for, before any work is done."""
    folder = next((parent for parent in [out.parent, *out.parent.parents] if parent.is_dir()), Path.cwd())
    try:
        free = shutil.disk_usage(folder).free
    except OSError:
        return  # the write will say what is wrong
    if size > free:
        raise BadInput(
            f"--out {out} would be {size / 1e9:.1f} GB, its disk has {free / 1e9:.1f} GB free: ask for fewer"
        )


def _check_output(out: Path, output_format: str) -> None:
    """Refuse an output we could not finish writing, before any work is done."""
    suffix = {"grid": ".png", "npy": ".npy"}.get(output_format)
    if suffix and out.suffix.lower() != suffix:
        raise BadInput(f"--format {output_format} writes a {suffix} file: --out must end in {suffix}, got {out.name}")
    if output_format == "png" and out.exists() and (not out.is_dir() or any(out.iterdir())):
        raise BadInput(f"--out {out} exists and is not an empty folder: choose a new folder for the PNGs")
    if output_format != "png" and out.is_dir():
        raise BadInput(f"--out {out} is a folder: --format {output_format} writes a file")


def _check_grid_size(generator: Generator, count: int, columns: int | None, scale: int) -> None:
    """Refuse a grid picture too large to hold in memory, before any work is done."""
    width, height = grid_size(count, generator.image_shape[:2], columns, scale)
    if width * height > MAX_GRID_PIXELS:
        raise BadInput(
            f"a grid of {count} {_images_word(generator)} at --scale {scale} would be {width}x{height} pixels "
            f"(more than {MAX_GRID_PIXELS // 1_000_000} megapixels): ask for fewer or a smaller --scale "
            "(generate also has --format png and npy, which need no grid)"
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
    # The .npy header first, then each batch as it comes: 100,000 images never sit in memory at once. The first
    # batch gives the header its image shape, as to_uint8 made it: (H, W) grey, (H, W, 3) RGB.
    batches = iter(batches)
    first = next(batches)
    with atomic_write(out) as file:
        header = {"descr": np.dtype(np.uint8).str, "fortran_order": False, "shape": (count, *first.shape[1:])}
        np.lib.format.write_array_header_1_0(file, header)
        for images in itertools.chain([first], batches):
            file.write(np.ascontiguousarray(images).tobytes())


def _write_png_folder(batches, out: Path, scale: int, count: int) -> None:
    # All files go into a hidden folder beside `out`, renamed to `out` only once complete. Their names sort as
    # the images do: six digits, more from a million images on.
    digits = max(6, len(str(count - 1)))
    temporary = Path(tempfile.mkdtemp(prefix=f".{out.name}.", suffix=".tmp", dir=out.parent))
    try:
        index = 0
        for images in batches:
            for image in images:
                grid(image[np.newaxis], scale=scale, padding=0).save(temporary / f"{index:0{digits}d}.png")
                index += 1
        if out.exists():
            out.rmdir()  # empty, checked before
        os.replace(temporary, out)
    except BaseException:
        shutil.rmtree(temporary, ignore_errors=True)
        raise


# ---- the model for other programs: a Triton model repository, and an Open Inference Protocol server ----------------

name_option = click.option(
    "--name",
    default=None,
    help="The model's name: its folder in the repository and its request path (/v2/models/NAME/infer) "
    "[default: the file's name less .onnx, 'generator' for a run's model].",
)
batch_limit_option = click.option(
    "--max-batch-size",
    type=click.IntRange(min=1),
    default=None,
    help=f"The most images one request may ask for [default: {MAX_BATCH_SIZE}, fewer for large images].",
)


@main.command()
@model_option
@click.option(
    "--out",
    type=OutputPath(file_okay=False),
    required=True,
    help="The model repository folder: NAME/config.pbtxt and NAME/1/model.onnx are written into it.",
)
@name_option
@batch_limit_option
def triton(model: Path, out: Path, name: str | None, max_batch_size: int | None) -> None:
    """Write a Triton model repository for the model, for NVIDIA Triton or KServe's Triton runtime (a run's
    export writes one into RUN/triton by itself)."""
    try:
        folder = write_repository(model, out, name, max_batch_size)
    except ModelError as error:
        raise BadInput(str(error)) from error
    except OSError as error:
        raise BadInput(f"cannot write {out}: {error.strerror or error}") from error
    click.echo(f"wrote {folder / CONFIG_FILE} and {folder / VERSION / MODEL_FILE}", err=True)


@main.command()
@model_option
@name_option
@click.option("--http-port", type=click.IntRange(1, 65535), default=8080, show_default=True, help="REST port.")
@click.option("--grpc-port", type=click.IntRange(1, 65535), default=8081, show_default=True, help="gRPC port.")
@batch_limit_option
def serve(model: Path, name: str | None, http_port: int, grpc_port: int, max_batch_size: int | None) -> None:
    """Serve the model over the Open Inference Protocol (KServe's v2, REST and gRPC) until SIGTERM or Ctrl-C, as
    Triton would serve its repository. Needs the server extra: pip install 'mnist-gan[server]'."""
    generator = _load(model)
    try:
        config = model_config(generator, name or model_name(model), max_batch_size)
    except ModelError as error:
        raise BadInput(str(error)) from error
    for port in (http_port, grpc_port):
        _check_port(port)
    try:
        from serving import server
    except ImportError as error:
        raise BadInput(f"gan-digits serve needs the server extra ({error}): pip install 'mnist-gan[server]'") from error
    click.echo(
        f"serving {model} as '{config['name']}': REST on port {http_port} (/v2/models/{config['name']}/infer), "
        f"gRPC on port {grpc_port}",
        err=True,
    )
    server.serve(generator, config, http_port, grpc_port)


def _check_port(port: int) -> None:
    """Refuse a port that another process listens on, before the server (and KServe) loads."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
        probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            probe.bind(("0.0.0.0", port))  # where KServe listens: every interface
        except OSError as error:
            raise BadInput(f"port {port} cannot be listened on: {error.strerror or error}") from error
