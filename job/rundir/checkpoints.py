"""Checkpoints of the full training state, named by step, the last few kept; restore falls back past bad ones.

The files on disk are the record: `ckpt-N.index` exists only once checkpoint N is complete and durable. TensorFlow's
own bookkeeping file (`checkpoint`) is not needed, so losing or damaging it loses nothing. Each checkpoint is written
into a private folder first, fsynced (TensorFlow does not), and only then moved into place, data before index, so
that what is recorded survives a power cut and not only a killed process.

Rotation counts only checkpoints that read back: after each save the newest `keep` of those stay, so a corrupt
checkpoint above the resume point never pushes a readable one out. What reads back is known without restoring
everything after every save: a checkpoint this process wrote or restored does, one that restore_latest found
unreadable does not, and any other is read once with TensorFlow's checkpoint reader (every tensor, whose checksums it
verifies). A checkpoint known unreadable is removed at the first rotation, that is once this process has written a
readable one: a resumed run retraces the same steps bit for bit, so the unreadable one holds nothing the run still
needs, and left in place it would be warned about at every start until the run passed its step.
"""

from __future__ import annotations

import logging
import os
import re
import shutil
from pathlib import Path

import tensorflow as tf

from job import signals
from job.errors import CheckpointsUnreadable, Interrupted
from job.rundir.claim import PREFIX, steps_on_disk
from serving.files import fsync_directory
from serving.model import first_line

log = logging.getLogger(__name__)

PARTIAL = ".partial-"  # a checkpoint being written: a folder that a restart removes
OTHER_SHAPES = "incompatible tensor with shape"  # what TensorFlow says of a checkpoint of networks of other sizes


class Checkpoints:
    def __init__(self, folder: Path, checkpoint: tf.train.Checkpoint, keep: int) -> None:
        self.folder = Path(folder)
        self.checkpoint = checkpoint
        self.keep = keep
        self._readable: set[int] = set()  # steps known to read back: written or restored by this process, or read
        self._unreadable: dict[int, str] = {}  # steps known not to, and why
        # Restoring creates the checkpoint's save counter, which only save() (not write()) would record: create
        # it now so that every checkpoint holds it and a restore matches every object.
        _ = checkpoint.save_counter

    def steps(self) -> list[int]:
        """The steps of the checkpoints on disk, oldest first."""
        return steps_on_disk(self.folder)

    def prefix(self, step: int) -> Path:
        return self.folder / f"{PREFIX}-{step}"

    def save(self, step: int) -> Path:
        """Write checkpoint `step` durably, then drop the oldest beyond `keep`."""
        partial = self.folder / f"{PARTIAL}{step}"
        shutil.rmtree(partial, ignore_errors=True)
        try:
            earlier: list[int] | None = self.steps()
        except OSError:  # a lost volume: whether earlier checkpoints are there cannot be told now
            earlier = None
        try:  # a second signal ends the process at once: it removes the partial write first
            with signals.before_abort(lambda: shutil.rmtree(partial, ignore_errors=True)):
                written = self._write_durably(step, partial)
        except (tf.errors.OpError, OSError) as error:  # a full disk or a lost volume: earlier ones are intact
            reason = re.sub(r"\{\{.*?\}\}\s*|\s*\[Op:\w+\]", "", getattr(error, "message", None) or str(error))
            if earlier is None:
                kept = "the checkpoints before it are intact, run again to resume"
            elif earlier:
                kept = f"the checkpoints before it (the newest of step {earlier[-1]}) are intact, run again to resume"
            else:
                kept = "no earlier checkpoint is on disk, run again to start"
            raise OSError(
                f"cannot write the checkpoint of step {step} ({reason}); {kept} once the volume is fixed"
            ) from error
        finally:
            shutil.rmtree(partial, ignore_errors=True)
        self._unreadable.pop(step, None)
        self._readable.add(step)
        self._drop_old()
        return self.folder / written.name

    def _write_durably(self, step: int, partial: Path) -> Path:
        """Checkpoint `step` written into `partial`, fsynced, then moved into place: data first, the index last."""
        partial.mkdir(parents=True)
        written = Path(self.checkpoint.write(str(partial / f"{PREFIX}-{step}")))
        files = sorted(partial.iterdir(), key=lambda path: path.suffix == ".index")  # the index last
        for path in files:
            _fsync(path)
        self._remove(step)  # an unreadable one of the same step: its index must never meet the new data
        for path in files:
            os.replace(path, self.folder / path.name)
        fsync_directory(self.folder)
        return written

    def _drop_old(self) -> None:
        """Keep the newest `keep` checkpoints that read back; remove the older ones and those that do not."""
        steps = self.steps()
        kept = []
        for step in reversed(steps):
            if len(kept) == self.keep:
                break
            if self.reads_back(step):
                kept.append(step)
        for step in steps:
            if step in kept:
                continue
            if step in self._unreadable:
                log.warning(
                    "removing checkpoint %s, which does not read back (%s): the run goes on from step %d",
                    self.prefix(step),
                    self._unreadable[step],
                    max(kept),
                )
            self._remove(step)
            self._readable.discard(step)
            self._unreadable.pop(step, None)

    def reads_back(self, step: int) -> bool:
        """Whether checkpoint `step` (on disk) reads back whole: known, or read once with the checkpoint reader."""
        if step in self._readable:
            return True
        if step in self._unreadable:
            return False
        try:
            reader = tf.train.load_checkpoint(str(self.prefix(step)))
            for name in reader.get_variable_to_shape_map():
                reader.get_tensor(name)
        except Exception as error:  # truncated or corrupt files: TensorFlow raises several kinds
            self._unreadable[step] = first_line(error)
            return False
        self._readable.add(step)
        return True

    def holds(self, step: int) -> bool:
        """Whether a checkpoint of `step` is on disk that is not known to be unreadable."""
        return step in self.steps() and step not in self._unreadable

    def newest_readable(self) -> int | None:
        """The step of the newest checkpoint that reads back, None when none does."""
        return next((step for step in reversed(self.steps()) if self.reads_back(step)), None)

    def _remove(self, step: int) -> None:
        """The files of checkpoint `step`, its index first: without it the rest is no checkpoint."""
        index = self.folder / f"{PREFIX}-{step}.index"
        index.unlink(missing_ok=True)
        for path in self.folder.glob(f"{PREFIX}-{step}.*"):
            path.unlink(missing_ok=True)

    def size(self, step: int) -> int:
        """Bytes of the checkpoint of `step` on disk."""
        return sum(path.stat().st_size for path in self.folder.glob(f"{PREFIX}-{step}.*"))

    def restore_latest(self) -> int:
        """Restore the newest checkpoint that reads back whole; returns its step, or 0 when there is none.
        CheckpointsUnreadable when there are checkpoints and none reads back: they are all left as they are.
        Interrupted when a signal comes meanwhile, whatever the restore under way raised: never the next one down."""
        self._remove_partial_writes()
        steps = self.steps()
        reasons = []
        for step in reversed(steps):
            signals.raise_if_requested()
            try:
                self.restore_step(step)
            except BaseException as error:
                if isinstance(error, Interrupted) or signals.requested.is_set():
                    # A restore cut short by a signal: TensorFlow would list its unused values after the error line
                    logging.getLogger("tensorflow").addFilter(_unused_values_noise)
                if not isinstance(error, Exception):
                    raise
                signals.raise_if_requested()  # a signal the library turned into an error is no corruption
                reasons.append(first_line(error))
                self._unreadable[step] = reasons[-1]
                log.warning(
                    "checkpoint %s is unreadable (%s); trying the one before it", self.prefix(step), reasons[-1]
                )
                continue
            self._readable.add(step)
            return step
        if reasons:
            logging.getLogger("tensorflow").addFilter(_unused_values_noise)
        if reasons and all(OTHER_SHAPES in reason for reason in reasons):
            raise CheckpointsUnreadable(
                f"the checkpoints in {self.folder} hold networks of other shapes than this version builds for the "
                "run's settings (begun by an earlier version of mnist-gan?): they are left as they are; resume with "
                "that version, or --force to start a new run there"
            )
        if steps:
            raise CheckpointsUnreadable(
                f"none of the {len(steps)} checkpoints in {self.folder} reads back (steps "
                f"{', '.join(map(str, steps))}); they are left as they are: restore them from a backup, or --force "
                "to start a new run there"
            )
        return 0

    def restore_step(self, step: int) -> None:
        """Restore the checkpoint of `step`, one of `steps()` (the caller says what to do when it is not kept)."""
        self.checkpoint.restore(str(self.prefix(step))).assert_existing_objects_matched()

    def _remove_partial_writes(self) -> None:
        if self.folder.is_dir():
            for partial in self.folder.glob(f"{PARTIAL}*"):
                shutil.rmtree(partial, ignore_errors=True)


def _unused_values_noise(record: logging.LogRecord) -> bool:
    """False for TensorFlow's warnings, when a refused checkpoint is dropped, about each of its values left unused:
    expected here, and about a hundred lines that would bury the one-line error."""
    message = record.getMessage()
    return not message.startswith(("Value in checkpoint could not be found", "Detecting that an object or model"))


def _fsync(path: Path) -> None:
    with open(path, "rb") as file:
        os.fsync(file.fileno())
