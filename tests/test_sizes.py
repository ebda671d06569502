"""Sizes are checked before work: a latent size, a sample count, an image or a GIF frame duration that cannot fit in
memory (or on disk) or is out of range is refused in one line, exit code 2, before anything heavy starts. The memory
a container may use is read from cgroup v2 and v1 alike."""

from __future__ import annotations

import math
import struct
import warnings
import zlib
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import onnx
import pytest
from onnx import TensorProto, helper
from PIL import Image

from job.config import MAX_SAMPLES, ConfigError, TrainConfig
from job.data import memory
from job.data.load import load_data
from job.errors import EXIT_BAD_INPUT, DataError
from serving import cli as digits
from serving.model import MAX_LATENT_DIM, MAX_SIDE
from tests.conftest import SMALL_MNIST, run_cli, short_run_config

GIB = 2**30


# ---- the memory available: cgroup v2 and v1, read from a root of the test's own -----------------------------------


def fake_root(root: Path, files: dict[str, str], available_kb: int = 16 * 2**20) -> Path:
    """A folder standing for / : /proc/meminfo saying `available_kb` kB is available, and `files` (path: text)."""
    files = {"proc/meminfo": f"MemTotal: 33554432 kB\nMemAvailable: {available_kb} kB\n"} | files
    for name, text in files.items():
        (root / name).parent.mkdir(parents=True, exist_ok=True)
        (root / name).write_text(text)
    return root


V1 = "sys/fs/cgroup/memory"
V2 = "sys/fs/cgroup"

CGROUPS = {
    "no limit file at all: the kernel's MemAvailable": ({}, 16 * GIB),
    "cgroup v2 limit: what it leaves, page cache it would reclaim counted free": (
        {
            f"{V2}/memory.max": f"{2 * GIB}\n",
            f"{V2}/memory.current": f"{GIB}\n",
            f"{V2}/memory.stat": f"anon 1\ninactive_file {GIB // 4}\n",
        },
        GIB + GIB // 4,
    ),
    "cgroup v2 without a limit": ({f"{V2}/memory.max": "max\n", f"{V2}/memory.current": f"{GIB}\n"}, 16 * GIB),
    "cgroup v1 limit": (
        {
            f"{V1}/memory.limit_in_bytes": f"{3 * GIB}\n",
            f"{V1}/memory.usage_in_bytes": f"{GIB}\n",
            f"{V1}/memory.stat": f"cache 5\ntotal_inactive_file {GIB // 2}\n",
        },
        2 * GIB + GIB // 2,
    ),
    "cgroup v1 without a limit (its huge number)": (
        {f"{V1}/memory.limit_in_bytes": "9223372036854771712\n", f"{V1}/memory.usage_in_bytes": f"{GIB}\n"},
        16 * GIB,
    ),
    "cgroup v1, the host's hierarchy visible: this process's own cgroup": (
        {
            "proc/self/cgroup": "5:cpu,cpuacct:/kubepods/pod-a\n4:memory:/kubepods/pod-a\n0::/\n",
            f"{V1}/memory.limit_in_bytes": "9223372036854771712\n",
            f"{V1}/memory.usage_in_bytes": f"{4 * GIB}\n",
            f"{V1}/kubepods/pod-a/memory.limit_in_bytes": f"{GIB}\n",
            f"{V1}/kubepods/pod-a/memory.usage_in_bytes": f"{GIB // 4}\n",
        },
        GIB - GIB // 4,
    ),
    "cgroup v2, the host's hierarchy visible: this process's own cgroup": (
        {
            "proc/self/cgroup": "0::/system.slice/job.service\n",
            f"{V2}/system.slice/job.service/memory.max": f"{GIB}\n",
            f"{V2}/system.slice/job.service/memory.current": f"{GIB // 2}\n",
        },
        GIB // 2,
    ),
    "a limit already exceeded: nothing left": (
        {f"{V1}/memory.limit_in_bytes": f"{GIB}\n", f"{V1}/memory.usage_in_bytes": f"{2 * GIB}\n"},
        0,
    ),
}


@pytest.mark.parametrize("case", CGROUPS.values(), ids=CGROUPS.keys())
def test_the_memory_available_is_the_least_of_meminfo_and_the_cgroup_limits(tmp_path, case):
    files, expected = case
    assert memory.available_bytes(fake_root(tmp_path, files)) == expected


def test_nothing_readable_means_no_memory_check(tmp_path):
    assert memory.available_bytes(tmp_path) is None


def test_images_that_would_not_fit_under_a_cgroup_v1_limit_are_refused(tmp_path, monkeypatch):
    limit = {f"{V1}/memory.limit_in_bytes": "5000000\n", f"{V1}/memory.usage_in_bytes": "0\n"}  # 5 MB
    monkeypatch.setattr(memory, "ROOT", fake_root(tmp_path, limit))
    with pytest.raises(ConfigError, match=r"reading 1000 images of 64x64x3 needs at least 25 MB of memory.*5 MB"):
        load_data(SMALL_MNIST, image_size=(64, 64), channels=3)


# ---- training's sizes: declared ranges, and quality samples that must fit -------------------------------------------


@pytest.mark.parametrize(
    ("option", "value"), [("--latent-dim", MAX_LATENT_DIM + 1), ("--quality-samples", MAX_SAMPLES + 1)]
)
def test_a_training_size_out_of_its_declared_range_is_one_line(tmp_path, option, value):
    result = run_cli("train", "--out", str(tmp_path / "run"), option, str(value))
    assert result.returncode == EXIT_BAD_INPUT, result.stderr
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and option in lines[0] and str(value) in lines[0], result.stderr
    assert not (tmp_path / "run").exists()


def test_quality_samples_that_would_not_fit_are_refused_before_training(tmp_path, monkeypatch):
    from job.rundir.claim import check_trainable

    config = short_run_config(tmp_path / "run", quality_samples=MAX_SAMPLES)
    data = load_data(SMALL_MNIST)
    monkeypatch.setattr(memory, "available_bytes", lambda: GIB // 4)  # 100,000 samples of MNIST hold 718 MB
    with pytest.raises(
        ConfigError, match=r"measuring 100000 samples of 28x28x1 needs at least 718 MB .*--quality-samples"
    ):
        check_trainable(config, data)
    check_trainable(short_run_config(tmp_path / "run"), data)  # the default 1,000 fit


def test_evaluates_samples_are_checked_the_same_way(monkeypatch):
    monkeypatch.setattr(memory, "available_bytes", lambda: GIB)
    memory.check_room_for_samples(10_000, 100, (32, 32, 3), "--samples")  # 0.25 GB
    with pytest.raises(ConfigError, match=r"measuring 100000 samples of 1024x1024x3 .* use fewer --samples"):
        memory.check_room_for_samples(100_000, 100, (1024, 1024, 3), "--samples")  # 2.5 TB


def test_a_config_json_of_the_wrong_types_is_no_configuration(tmp_path):
    saved = TrainConfig(out=tmp_path).to_dict()
    for key, value in {
        "latent_dim": 1.5,
        "batch": "32",
        "ema": 1,
        "quality": None,
        "checkpoint_minutes": math.nan,
    }.items():
        with pytest.raises(ConfigError, match=f"--{key.replace('_', '-')} must be"):
            TrainConfig.from_dict(saved | {key: value})
    assert TrainConfig.from_dict(saved).to_dict() == saved


# ---- images in a folder: their headers are read, and checked, before any is decoded ---------------------------------


def png_header(path: Path, width: int, height: int) -> Path:
    """A PNG that says it is `width` x `height` grey pixels and holds no pixel data: it opens, and cannot decode."""

    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))

    header = struct.pack(">IIBBBBB", width, height, 8, 0, 0, 0, 0)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header) + chunk(b"IEND", b""))
    return path


def digit_png(path: Path) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(np.full((28, 28), 200, np.uint8)).save(path)
    return path


@pytest.mark.parametrize("side", [10_000, 50_000], ids=["beyond pillow's limit", "beyond twice the limit"])
def test_an_image_too_large_to_decode_is_refused_from_its_header(tmp_path, side):
    digit_png(tmp_path / "images" / "0.png")
    png_header(tmp_path / "images" / "1.png", side, side)
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # not pillow's DecompressionBombWarning on stderr: one line of our own
        with pytest.raises(DataError, match=r"cannot read image .*1\.png: .*pixels.*: make it smaller"):
            load_data(tmp_path / "images", image_size=(28, 28))


def test_images_of_different_sizes_are_refused_before_any_is_decoded(tmp_path):
    digit_png(tmp_path / "images" / "0.png")
    png_header(tmp_path / "images" / "1.png", 30, 30)  # decoding it would fail: the sizes are refused first
    with pytest.raises(DataError, match=r"images of different sizes \(0.png 28x28, 1.png 30x30\)"):
        load_data(tmp_path / "images")


def test_images_larger_than_the_largest_side_need_an_image_size(tmp_path):
    png_header(tmp_path / "images" / "0.png", 1500, MAX_SIDE + 1)
    with pytest.raises(DataError, match=rf"images of {MAX_SIDE + 1}x1500 are too large, at most {MAX_SIDE}x{MAX_SIDE}"):
        load_data(tmp_path / "images")


def test_a_huge_image_in_the_data_folder_is_one_line_from_gan_job_train(tmp_path):
    digit_png(tmp_path / "images" / "0.png")
    png_header(tmp_path / "images" / "1.png", 100_000, 100_000)
    result = run_cli("train", "--data", str(tmp_path / "images"), "--image-size", "28", "--out", str(tmp_path / "run"))
    assert result.returncode == EXIT_BAD_INPUT, result.stderr
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("Error: cannot read image") and "pixels" in lines[0], result.stderr
    assert not (tmp_path / "run").exists()


# ---- gan-digits ------------------------------------------------------------------------------------------------


def model(path: Path, latent_dim: int = 784, shape: tuple[int, int, int] = (28, 28, 1)) -> Path:
    """An ONNX model with a generator's signature: latents reshaped to images (it draws only where they agree)."""
    z = helper.make_tensor_value_info("z", TensorProto.FLOAT, ["batch", latent_dim])
    image = helper.make_tensor_value_info("image", TensorProto.FLOAT, ["batch", *shape])
    target = helper.make_tensor("shape", TensorProto.INT64, [4], [-1, *shape])
    graph = helper.make_graph([helper.make_node("Reshape", ["z", "shape"], ["image"])], "g", [z], [image], [target])
    onnx.save(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)]), path)
    return path


def assert_refused(result, *words: str) -> None:
    assert result.returncode == EXIT_BAD_INPUT, result.stderr
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("Error: "), result.stderr
    assert all(word in lines[0] for word in words), lines[0]


@pytest.mark.parametrize(
    ("latent_dim", "shape", "words"),
    [
        (MAX_LATENT_DIM + 1, (28, 28, 1), ["10,000 latent values"]),
        (784, (MAX_SIDE * 2, 16, 1), [f"{MAX_SIDE * 2}x16 images", f"{MAX_SIDE}x{MAX_SIDE}"]),
    ],
    ids=["latent size", "image side"],
)
def test_a_model_beyond_what_the_job_exports_is_refused_when_loaded(tmp_path, latent_dim, shape, words):
    path = model(tmp_path / "m.onnx", latent_dim, shape)
    result = run_cli("gan-digits", "generate", "--model", str(path), "-n", "1", "--out", str(tmp_path / "g.png"))
    assert_refused(result, *words)
    assert not (tmp_path / "g.png").exists()


def test_a_count_beyond_the_largest_is_refused(tmp_path):
    path = model(tmp_path / "m.onnx")
    result = run_cli(
        "gan-digits", "generate", "--model", str(path), "-n", str(digits.MAX_IMAGES + 1), "--format", "npy",
        "--out", str(tmp_path / "d.npy"),
    )  # fmt: skip
    assert_refused(result, "-n", str(digits.MAX_IMAGES + 1))


def test_a_gif_frame_duration_beyond_what_gif_stores_is_refused_and_the_longest_is_written(tmp_path):
    path = model(tmp_path / "m.onnx")
    walk = ["gan-digits", "interpolate", "--model", str(path), "--from", "1", "--to", "2", "--steps", "3"]
    result = run_cli(*walk, "--frame-ms", str(digits.MAX_FRAME_MS + 10), "--out", str(tmp_path / "long.gif"))
    assert_refused(result, "--frame-ms")
    assert not (tmp_path / "long.gif").exists()
    result = run_cli(*walk, "--frame-ms", str(digits.MAX_FRAME_MS), "--out", str(tmp_path / "longest.gif"))
    assert result.returncode == 0, result.stderr
    with Image.open(tmp_path / "longest.gif") as gif:
        assert gif.info["duration"] == digits.MAX_FRAME_MS


def test_an_npy_file_larger_than_the_disk_has_room_for_is_refused_before_any_image_is_drawn(tmp_path, monkeypatch):
    monkeypatch.setattr(digits.shutil, "disk_usage", lambda folder: SimpleNamespace(free=1_000_000))
    with pytest.raises(digits.BadInput, match=r"would be 0.8 GB, its disk has 0.0 GB free"):
        digits._check_room_on_disk(tmp_path / "new" / "d.npy", 1_000_000 * 784)
    digits._check_room_on_disk(tmp_path / "d.npy", 999_000)


@pytest.mark.parametrize(
    ("latent_dim", "shape"), [(100, (28, 28, 1)), (512, (256, 256, 3)), (MAX_LATENT_DIM, (MAX_SIDE, MAX_SIDE, 3))]
)
def test_a_model_call_holds_at_most_its_budget_whatever_the_batch_size(latent_dim, shape):
    generator = SimpleNamespace(latent_dim=latent_dim, image_shape=shape)
    images = digits.images_per_call(generator)
    values = math.prod(shape)
    assert images >= 1 and (images == 1 or images * ((latent_dim + 2 * values) * 4 + values) <= digits.CALL_BYTES)
    if shape == (28, 28, 1):
        assert images >= 1024  # the default --batch-size is untouched for MNIST
