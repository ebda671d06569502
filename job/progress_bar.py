"""The training run's progress bar on a terminal (container logs get plain lines from the loop instead)."""

from __future__ import annotations

import contextlib
import io
import logging
import os
import shutil
from time import monotonic
from typing import TYPE_CHECKING, TextIO

import click

from job import signals
from job.timings import duration

if TYPE_CHECKING:
    from job.train import Progress

SHOW_CURSOR = "\033[?25h"
# Back to the line's start, blank it and show the cursor (click hides it while the bar is drawn): a log line then
# stands on a line of its own, and the bar is drawn again below it at the next call's end.
CLEAR_LINE = "\r\033[K" + SHOW_CURSOR
BAR_TEMPLATE = "%(label)s  [%(bar)s]  %(info)s"  # click's; the info is "step/steps  text"
WIDTH = 24  # of the bar itself; the text beside it is cut to the terminal's width
# The time left is measured from the first call that ends this long after the first call's end: the calls before
# are short (each at most twice the one before) and slower per step.
ESTIMATE_AFTER_SECONDS = 5.0


class ProgressBar:
    """Moves after every compiled call (about every CALL_SECONDS, job/train.py), not only at log lines: with
    `--log-every 5000` a DCGAN on a CPU stood still for half an hour. The losses and training speed beside it are the
    last log line's.

    The time left is counted from this start's own steps and wall time (sampling, quality and checkpoints
    included). click's own estimate counts from step 0, so a resumed run's jump to where it stands read as speed:
    resumed at step 2,000 of 6,000, it said 20 s left at step 3,000, where about 45 s were.

    Use it as a context manager: log lines written meanwhile start on a line of their own, and however training
    ends (a second Ctrl-C included), the terminal gets its cursor back on a new line."""

    def __init__(self, total: int, file: TextIO) -> None:
        self.bar = click.progressbar(
            length=total,
            file=file,
            show_pos=True,
            show_eta=False,
            item_show_func=self._fitted,
            bar_template=BAR_TEMPLATE,
            width=WIDTH,
        )
        self.last_log_line = ""
        self.started: float | None = None  # monotonic() at the end of this start's first call
        self.measured_from: tuple[int, float] | None = None  # the step and time the time left is measured from
        self.shown = False  # the bar is on the terminal's last line, the cursor hidden
        self.cleanup = contextlib.ExitStack()

    def __enter__(self) -> ProgressBar:
        for handler in logging.getLogger().handlers:
            handler.addFilter(self._clear_before_log_line)
            self.cleanup.callback(handler.removeFilter, self._clear_before_log_line)
        self.cleanup.enter_context(signals.before_abort(self._give_the_cursor_back))
        return self

    def __exit__(self, *exc_info: object) -> None:
        self._finish()  # first: until the bar is finished, a second signal still gives the cursor back
        self.cleanup.close()

    def advanced(self, step: int) -> None:
        """After each compiled call, with the step reached."""
        now = monotonic()
        self.started = self.started or now
        if self.measured_from is None and now - self.started >= ESTIMATE_AFTER_SECONDS:
            self.measured_from = (step, now)
        self.bar.current_item = "  ".join(filter(None, [self._time_left(step, now), self.last_log_line]))
        if step > self.bar.pos:
            self.bar.update(step - self.bar.pos)  # a resumed run's first update jumps to where it stands
        else:
            self.bar.render_progress()
        self.shown = True
        if step >= self.bar.length:
            self._finish()

    def logged(self, progress: Progress) -> None:
        """At each log line (the loop calls `advanced` right after it)."""
        self.last_log_line = (
            f"d_loss {progress.d_loss:.3f}  g_loss {progress.g_loss:.3f}  "
            f"d_acc {progress.d_accuracy:.2f}  {progress.steps_per_s:.0f} steps/s"
        )

    def _time_left(self, step: int, now: float) -> str:
        if self.measured_from is None:
            return ""
        first_step, first_time = self.measured_from
        if not first_step < step < self.bar.length or now <= first_time:
            return ""
        speed = (step - first_step) / (now - first_time)
        return f"{duration((self.bar.length - step) / speed)} left"

    def _fitted(self, text: str | None) -> str | None:
        """The text beside the bar, cut to what the terminal's width leaves: a longer line wraps, and each
        redraw then adds a line."""
        if text is None:
            return None
        total = self.bar.length
        clutter = BAR_TEMPLATE % {"label": "", "bar": "#" * WIDTH, "info": f"{total}/{total}  "}
        room = max(0, self._columns() - len(clutter) - 1)
        if len(text) <= room:
            return text
        return text[:room].rpartition("  ")[0]  # whole items only: "1m 05s left", not "1m 05s l"

    def _columns(self) -> int:
        """The width of the terminal the bar is drawn on (stdout may be a file or a pipe)."""
        try:
            return os.get_terminal_size(self.bar.file.fileno()).columns
        except (OSError, ValueError):  # no terminal behind the stream (a test's): COLUMNS, or 80
            return shutil.get_terminal_size().columns

    def _finish(self) -> None:
        if self.shown:
            self.bar.render_finish()  # shows the cursor again, ends the line
            self.shown = False

    def _clear_before_log_line(self, record: logging.LogRecord) -> bool:
        if self.shown:
            self.shown = False
            # Also runs inside the signal handler that logs the first Ctrl-C: a failed write must not become an
            # exception in the training loop (a filter's errors are not caught as a handler's are).
            with contextlib.suppress(OSError, RuntimeError, ValueError):
                self.bar.file.write(CLEAR_LINE)
        return True

    def _give_the_cursor_back(self) -> None:
        """Before a second signal kills the process: straight to the file descriptor, as the signal may have come
        in the middle of a write to the stream."""
        if not self.shown:
            return
        try:
            descriptor = self.bar.file.fileno()
        except io.UnsupportedOperation:  # no file descriptor (a test's stream)
            self.bar.file.write(SHOW_CURSOR + "\n")
            return
        with contextlib.suppress(OSError):
            os.write(descriptor, (SHOW_CURSOR + "\n").encode())
