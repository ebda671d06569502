"""The training run's progress bar on a terminal (container logs get plain lines from the loop instead): tqdm's, with
a rate and time left counted from this start's own steps, and log lines kept off the bar's line."""

from __future__ import annotations

import contextlib
import os
import shutil
from typing import TYPE_CHECKING, TextIO

from tqdm import tqdm
from tqdm.contrib.logging import logging_redirect_tqdm

if TYPE_CHECKING:
    from job.loop.log_lines import Progress


class ProgressBar:
    """Moves after every compiled call (about every CALL_SECONDS, job/loop/schedule.py), not only at log lines: with
    `--log-every 5000` a DCGAN on a CPU stood still for half an hour. The losses beside it are the last log line's.

    The rate and time left are this start's steps over this start's wall time (sampling, quality and checkpoints
    included), counted from the end of its first compiled call: that call also compiles the step, so it is far slower
    per step than the rest, and a resumed run's jump from step 0 to where it stands is no speed at all.

    Use it as a context manager: the console's log lines are written above the bar (tqdm's logging redirect), and
    however training ends the bar is closed, its line ended."""

    def __init__(self, total: int, file: TextIO) -> None:
        self.total = total
        self.file = file
        self.bar: tqdm | None = None  # drawn from the end of this start's first compiled call
        self.last_log_line = ""
        self.cleanup = contextlib.ExitStack()

    def __enter__(self) -> ProgressBar:
        # The root logger's handlers on sys.stderr or sys.stdout (job/cli.py's is on sys.stderr) write through tqdm,
        # which blanks the bar's line first and draws the bar again below the log line.
        self.cleanup.enter_context(logging_redirect_tqdm())
        self.cleanup.callback(self._close)  # first out: the bar's line ends before logging goes back
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.cleanup.close()

    def advanced(self, step: int) -> None:
        """After each compiled call, with the step reached."""
        if self.bar is None:
            self.bar = tqdm(
                total=self.total,
                initial=step,  # the rate counts from here: this start's steps since its first call ended
                file=self.file,
                unit="step",
                **_width(self.file),
                smoothing=0,  # the mean since the first call: a moving one would swing with each quality measurement
                mininterval=0,  # a redraw after every call, which is seconds apart
                miniters=1,
                postfix=self.last_log_line or None,
            )
        else:
            self.bar.set_postfix_str(self.last_log_line, refresh=False)
            self.bar.update(step - self.bar.n)
        if step >= self.total:
            self._close()  # what the job logs after its last step goes below the finished bar

    def logged(self, progress: Progress) -> None:
        """At each log line (the loop calls `advanced` right after it)."""
        # The bar tells its own rate: the log line's speed beside it would be a second, differently counted one.
        losses = f"d_loss {progress.d_loss:.3f}  g_loss {progress.g_loss:.3f}"
        self.last_log_line = f"{losses}  d_acc {progress.d_accuracy:.2f}"

    def _close(self) -> None:
        if self.bar is not None:
            self.bar.close()  # draws the bar a last time and ends its line; a second close does nothing


def _width(file: TextIO) -> dict:
    """tqdm's width arguments: the terminal's width, read again at each redraw (a line longer than the terminal
    wraps, and each redraw then adds a line). A pseudo-terminal without a window (`script`, `docker run -t` from a
    script) tells 0 columns and 0 rows, with which tqdm draws nothing at all: there, COLUMNS or 80."""
    try:
        size = os.get_terminal_size(file.fileno())
    except (OSError, ValueError):  # no terminal behind the stream (a test's): tqdm draws the whole line
        return {"dynamic_ncols": True}
    if size.columns > 0 and size.lines > 0:
        return {"dynamic_ncols": True}
    columns, rows = shutil.get_terminal_size()  # COLUMNS and LINES, else 80 by 24
    return {"ncols": columns - 1, "nrows": rows}  # one column short of the edge, as tqdm's own width
