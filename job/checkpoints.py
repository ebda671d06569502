"""Checkpoints of the full training state, named by step, the last few kept; restore falls back past bad ones."""

from __future__ import annotations

import logging
import re
import shutil
from pathlib import Path

import tensorflow as tf

from serving.model import first_line

log = logging.getLogger(__name__)

PREFIX = "ckpt"


class Checkpoints:
    def __init__(self, folder: Path, checkpoint: tf.train.Checkpoint, keep: int) -> None:
        self.folder = Path(folder)
        self.checkpoint = checkpoint
        self.manager = tf.train.CheckpointManager(checkpoint, str(folder), max_to_keep=keep, checkpoint_name=PREFIX)

    def steps(self) -> list[int]:
        """The steps of the checkpoints kept, oldest first."""
        return [step_of(path) for path in self.manager.checkpoints]

    def save(self, step: int) -> Path:
        try:
            return Path(self.manager.save(checkpoint_number=step))
        except tf.errors.OpError as error:  # a full disk or a lost volume: the earlier checkpoints are intact
            shutil.rmtree(self.folder / f"{PREFIX}-{step}_temp", ignore_errors=True)  # TensorFlow's partial files
            reason = re.sub(r"\{\{.*?\}\}\s*|\s*\[Op:\w+\]", "", error.message)  # drop TensorFlow's op names
            raise OSError(
                f"cannot write the checkpoint of step {step} ({reason}); the checkpoints before it are intact, "
                "run again to resume once the volume is fixed"
            ) from error

    def size(self, step: int) -> int:
        """Bytes of the checkpoint of `step` on disk."""
        return sum(path.stat().st_size for path in self.folder.glob(f"{PREFIX}-{step}.*"))

    def restore_latest(self) -> int:
        """Restore the newest checkpoint that reads back whole; returns its step, or 0 when there is none."""
        for path in reversed(self.manager.checkpoints):
            try:
                self.checkpoint.restore(path).assert_existing_objects_matched()
            except Exception as error:  # truncated or corrupt files: TensorFlow raises several kinds
                log.warning("checkpoint %s is unreadable (%s); trying the one before it", path, first_line(error))
                continue
            return step_of(path)
        return 0

    def restore_step(self, step: int) -> None:
        """Restore the checkpoint of `step`, one of `steps()` (the caller says what to do when it is not kept)."""
        self.checkpoint.restore(str(self.folder / f"{PREFIX}-{step}")).assert_existing_objects_matched()


def step_of(path: str | Path) -> int:
    return int(str(path).rsplit("-", 1)[1])
