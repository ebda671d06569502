"""Shared fixtures: a 1,000-image real MNIST subset (tests/data/mnist_small.npz, the first images of each split)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

SMALL_MNIST = Path(__file__).parent / "data" / "mnist_small.npz"


@pytest.fixture
def small_mnist() -> Path:
    return SMALL_MNIST


def short_run_config(out: Path, data: Path = SMALL_MNIST, **overrides):
    """A real training run small enough for a test: 300 steps on 1,000 images."""
    from job.config import TrainConfig

    options = {
        "steps": 300,
        "checkpoint_every": 100,
        "checkpoint_minutes": 0,  # checkpoints by step only, so that a test knows where they fall
        "sample_every": 100,
        "log_every": 50,
        "seed": 7,
    } | overrides
    return TrainConfig(out=out, data=data, **options)


@pytest.fixture(scope="session")
def trained_run(tmp_path_factory):
    """One finished short run for the whole session: (run directory, final training state)."""
    from job.train import train

    out = tmp_path_factory.mktemp("run")
    return out, train(short_run_config(out))


def progress_records(run: Path) -> list[dict]:
    """metrics.jsonl's progress lines: every line but the `timings` record a start that finishes adds."""
    lines = (run / "metrics.jsonl").read_text().splitlines()
    return [record for record in map(json.loads, lines) if "timings" not in record]


def run_cli(*args: str, env: dict | None = None, timeout: float = 300) -> subprocess.CompletedProcess:
    """Run a console script of this package the way a user or a container does, in a fresh process."""
    return subprocess.run(
        [sys.executable, "-c", "import sys; from job.cli import main; sys.exit(main())", *args]
        if args[0] != "gan-digits"
        else [sys.executable, "-c", "import sys; from serving.cli import main; sys.exit(main())", *args[1:]],
        capture_output=True,
        text=True,
        env={**os.environ, **(env or {})},
        timeout=timeout,
    )


@pytest.fixture(scope="session")
def conditional_run(tmp_path_factory):
    """One finished short conditional run: (run directory, final training state)."""
    from job.train import train

    out = tmp_path_factory.mktemp("conditional")
    return out, train(short_run_config(out, conditional=True))
