"""Where commands write: atomically (a reader, or a restarted job, sees the old file or the new one, never half of
one), and never over a run's own state."""

from __future__ import annotations

import contextlib
import os
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import IO

import click


@contextlib.contextmanager
def atomic_write(path: str | os.PathLike, mode: str = "wb") -> Iterator[IO]:
    """Write to a temporary file beside `path`, flush and fsync it, then rename it over `path`."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    handle, temporary = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    os.chmod(temporary, 0o666 & ~_umask())  # mkstemp makes it private; the result should read like any new file
    try:
        with os.fdopen(handle, mode) as file:
            yield file
            file.flush()
            os.fsync(file.fileno())
        os.replace(temporary, path)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(temporary)
        raise
    fsync_directory(path.parent)


def atomic_write_bytes(path: str | os.PathLike, data: bytes) -> None:
    with atomic_write(path) as file:
        file.write(data)


def atomic_write_text(path: str | os.PathLike, text: str) -> None:
    atomic_write_bytes(path, text.encode("utf-8"))


def _umask() -> int:
    mask = os.umask(0o022)  # reading the umask means setting it: put it straight back
    os.umask(mask)
    return mask


def fsync_directory(folder: Path) -> None:
    # The rename itself is durable only once the directory entry is on disk.
    with contextlib.suppress(OSError):
        descriptor = os.open(folder, os.O_RDONLY)
        try:
            os.fsync(descriptor)
        finally:
            os.close(descriptor)


# --- a run folder's state, which no command's output may land on -----------------------------------------------------

# What a run resumes from (job/rundir/claim.py names a run's files from these): written by the training job alone.
CONFIG_FILE = "config.json"
METRICS_FILE = "metrics.jsonl"
CHECKPOINTS_FOLDER = "checkpoints"
LOCK_FILE = ".lock"
CLUSTERS_FILE = "clusters.npy"
RUN_STATE = (CONFIG_FILE, METRICS_FILE, CHECKPOINTS_FOLDER, LOCK_FILE, CLUSTERS_FILE)
RUN_MARKERS = (CONFIG_FILE, LOCK_FILE)  # what a run folder holds from its start: a folder holding one is a run's
# The run's exported generator, which gan-digits, the Triton repository and a sweep's best/ take.
RUN_MODEL = "generator.onnx"


# A sweep's best run: OUT/best/ holds a copy of its RUN_MODEL and BEST_SUMMARY, whose first line is the run's folder
# name in OUT.
BEST_FOLDER, BEST_SUMMARY = "best", "run.txt"


def step_model(step: int) -> str:
    """The name `gan-job export --step` gives a kept checkpoint's generator in its run folder, beside RUN_MODEL."""
    return f"generator-step-{step}.onnx"


def run_state_at(path: str | os.PathLike) -> Path | None:
    """The piece of a run's state that `path` lands on or inside (RUN/config.json, RUN/checkpoints/...), symlinks
    and `..` resolved; None when it lands on none."""
    resolved = Path(os.path.realpath(path))
    for folder in resolved.parents:
        state = folder / resolved.relative_to(folder).parts[0]
        if state.name in RUN_STATE and any(os.path.lexists(folder / name) for name in RUN_MARKERS):
            return state
    return None


class OutputPath(click.Path):
    """A path a command writes to (a click option type): refused, before any work, when it lands on a run's state.

    The job's own writes of that state do not go through here: only the paths users give."""

    def __init__(self, **kwargs) -> None:
        super().__init__(path_type=Path, **kwargs)

    def convert(self, value, param: click.Parameter | None, ctx: click.Context | None) -> Path:
        path = super().convert(value, param, ctx)
        state = run_state_at(path)
        if state is not None:
            self.fail(
                f"{path} lands on {state.name} of the run in {state.parent}: no command writes over a run's own "
                f"state ({', '.join(RUN_STATE)}); choose another path",
                param,
                ctx,
            )
        return path
