"""A run that would not fit in memory is refused in one line before it trains, instead of being killed by the kernel
with no message (exit 137)."""

from __future__ import annotations

import pytest

from job.config import ConfigError
from job.data import memory
from job.data.load import load_data
from job.errors import EXIT_BAD_INPUT
from job.loop.train import train
from tests.conftest import SMALL_MNIST, image_folder, run_cli, short_run_config

pytestmark = pytest.mark.slow

# 1024x1024 RGB through the DCGAN: its layer outputs for one step of 32 images alone are about 85 GB.
HUGE = ["--arch", "dcgan", "--image-size", "1024", "--channels", "3", "--no-quality", "--steps", "10"]


def test_a_run_larger_than_the_memory_available_is_refused_and_leaves_no_folder(tmp_path, monkeypatch):
    monkeypatch.setattr(memory, "available_bytes", lambda: 10_000_000)  # 10 MB: the small MNIST run needs about 50
    parts = r"needs at least \d+ MB of memory \(data \d+ MB, variables \d+ MB, activations \d+ MB\), 10 MB is"
    with pytest.raises(ConfigError, match=parts):
        train(short_run_config(tmp_path / "run"))
    assert not (tmp_path / "run").exists()


def test_images_that_would_not_fit_once_resized_are_refused_before_they_are_read(monkeypatch, tmp_path):
    monkeypatch.setattr(memory, "available_bytes", lambda: 5_000_000)  # 5 MB
    with pytest.raises(ConfigError, match=r"reading 1000 images of 64x64x3 needs at least 25 MB of memory"):
        load_data(SMALL_MNIST, image_size=(64, 64), channels=3)  # 12 MB once resized, twice while stacked
    folder = image_folder(tmp_path, {"": [(400, 300, "RGB")] * 10})  # 3.6 MB as read, from the first one's header
    with pytest.raises(ConfigError, match=r"reading 10 images of 400x300x3 needs at least 7 MB"):
        load_data(folder)
    assert load_data(SMALL_MNIST).image_shape == (28, 28, 1)  # as they are in the file: nothing to resize


@pytest.mark.skipif((memory.available_bytes() or 0) > 80e9, reason="this machine has the memory for it")
def test_huge_images_through_the_dcgan_are_one_line_not_a_killed_process(tmp_path):
    data = image_folder(tmp_path, {"": [(12, 12, "RGB")] * 3})
    result = run_cli("train", "--data", str(data), "--out", str(tmp_path / "huge"), *HUGE)
    assert result.returncode == EXIT_BAD_INPUT, result.stderr
    lines = result.stderr.strip().splitlines()
    assert lines[-1].startswith("Error: training 3 images of 1024x1024x3 needs at least"), lines[-1]
    assert "GB is available: use a smaller --image-size" in lines[-1]
    assert not (tmp_path / "huge").exists()
