"""`gan-job train` on a terminal: a progress bar that moves with every compiled call and tells the time left from this
start's own speed."""

import contextlib
import fcntl
import io
import logging
import os
import struct
import sys
import termios
from collections.abc import Iterator

import pytest
import tqdm.std

from job.errors import Interrupted
from job.loop.log_lines import Progress
from job.loop.progress_bar import ProgressBar


class Terminal(io.StringIO):
    """Keeps what the bar writes. Given a window (a pseudo-terminal's descriptor), it has that window's width, which
    tqdm reads from the file's descriptor; without one it has no width, as a pipe."""

    def __init__(self, window: int | None = None) -> None:
        super().__init__()
        self.window = window

    def isatty(self) -> bool:
        return True

    def fileno(self) -> int:
        return super().fileno() if self.window is None else self.window


def screen(written: str) -> list[str]:
    """The lines a terminal shows for what was written to it: a carriage return goes back to the line's start, and
    what follows overwrites the line from there. The last item is the line the cursor is on ("" once a line ended)."""
    lines = []
    for text in written.split("\n"):
        line = ""
        for part in text.split("\r"):
            line = part + line[len(part) :]
        lines.append(line.rstrip())
    return lines


def current_line(terminal: Terminal) -> str:
    return screen(terminal.getvalue())[-1]


@pytest.fixture
def clock(monkeypatch):
    """The wall clock as the bar reads it (tqdm.std's `time`, which each bar keeps from its creation), set by the
    test."""
    now = [1000.0]
    monkeypatch.setattr(tqdm.std, "time", lambda: now[0])
    return now


@contextlib.contextmanager
def console(monkeypatch) -> Iterator[Terminal]:
    """stderr a terminal, and the root logger writing to it, as job/cli.py sets up logging. Entered in the test itself:
    pytest sets its own sys.stderr between the fixtures and the test."""
    terminal = Terminal()
    monkeypatch.setattr(sys, "stderr", terminal)
    handler = logging.StreamHandler(sys.stderr)
    root = logging.getLogger()
    root.addHandler(handler)
    try:
        yield terminal
    finally:
        root.removeHandler(handler)
    assert not any(type(each).__module__.startswith("tqdm") for each in root.handlers)  # logging is back as it was


@pytest.fixture
def window():
    """A pseudo-terminal's window: its descriptor, and a function that sets its width (0: a window of no size)."""
    leader, follower = os.openpty()

    def resize(columns: int) -> None:
        fcntl.ioctl(follower, termios.TIOCSWINSZ, struct.pack("HHHH", 24 if columns else 0, columns, 0, 0))

    yield follower, resize
    os.close(follower)
    os.close(leader)


def a_log_line(step: int) -> Progress:
    return Progress(step, 6000, d_loss=0.5, g_loss=1.25, d_accuracy=0.75, steps_per_s=60.0, elapsed_s=30.0)


def test_a_resumed_run_tells_its_rate_and_time_left_from_its_own_steps_not_from_step_0(clock):
    terminal = Terminal()
    with ProgressBar(6000, terminal) as bar:
        clock[0] += 8  # the first call: one step, and the step's compilation
        bar.advanced(2001)  # resumed at step 2,000
        clock[0] += 10
        bar.advanced(2501)  # 500 steps in 10 s; 3,499 steps left take 70 s less a fraction
        assert "2501/6000 [00:10<01:09, 50.00step/s" in current_line(terminal)


def test_the_time_left_is_not_guessed_from_the_first_compiling_call(clock):
    terminal = Terminal()
    with ProgressBar(6000, terminal) as bar:
        clock[0] += 8  # one step, and the compilation
        bar.advanced(1)
        assert "1/6000 [00:00<?, ?step/s" in current_line(terminal)  # nothing to tell it from yet
        clock[0] += 2
        bar.advanced(201)  # 200 steps in 2 s; 5,799 steps left take 58 s less a fraction
        assert "201/6000 [00:02<00:57, 100.00step/s" in current_line(terminal)


def test_the_rate_counts_every_second_since_the_first_call_pauses_for_quality_and_samples_included(clock):
    terminal = Terminal()
    with ProgressBar(6000, terminal) as bar:
        bar.advanced(1)
        clock[0] += 2
        bar.advanced(201)
        clock[0] += 10  # 8 s measuring quality, then a 2 s call
        bar.advanced(401)  # 400 steps in 12 s; 5,599 steps left take 168 s less a fraction
        assert "401/6000 [00:12<02:47, 33.33step/s" in current_line(terminal)


def test_the_bar_moves_between_log_lines_and_shows_the_last_ones_losses(clock):
    terminal = Terminal()
    with ProgressBar(6000, terminal) as bar:
        bar.advanced(400)
        assert "400/6000" in current_line(terminal) and "d_loss" not in current_line(terminal)
        bar.logged(a_log_line(1000))
        bar.advanced(1000)
        bar.advanced(1400)
        assert "1400/6000" in current_line(terminal)
        assert "d_loss 0.500  g_loss 1.250  d_acc 0.75" in current_line(terminal)


def test_a_log_line_stands_on_a_line_of_its_own_and_an_interrupted_bar_ends_its_line(clock, monkeypatch):
    with console(monkeypatch) as terminal, pytest.raises(Interrupted), ProgressBar(6000, sys.stderr) as bar:
        bar.advanced(400)
        logging.getLogger("job.loop.train").warning("quality at step 400")
        bar.advanced(800)
        raise Interrupted("interrupted by SIGINT")  # or any failure
    quality, last_bar, after = screen(terminal.getvalue())
    assert quality == "quality at step 400"  # the bar drawn over it was blanked first
    assert "800/6000" in last_bar and after == ""  # the terminal's last line is complete


def test_the_finished_bar_ends_its_line_and_later_log_lines_go_below_it(clock, monkeypatch):
    with console(monkeypatch) as terminal, ProgressBar(6000, sys.stderr) as bar:
        bar.advanced(3000)
        bar.advanced(6000)
        logging.getLogger("job.loop.train").warning("run finished")
    finished, log_line, after = screen(terminal.getvalue())
    assert "6000/6000" in finished and log_line == "run finished" and after == ""


def test_a_run_stopped_during_its_first_call_leaves_the_terminal_as_it_was(clock, monkeypatch):
    with console(monkeypatch) as terminal, pytest.raises(Interrupted), ProgressBar(6000, sys.stderr):
        logging.getLogger("job.loop.train").warning("interrupted while compiling")
        raise Interrupted("interrupted by SIGTERM")
    assert terminal.getvalue() == "interrupted while compiling\n"


def test_on_a_narrow_terminal_the_line_fits_its_width_also_once_narrowed(clock, window):
    descriptor, resize = window
    resize(60)
    terminal = Terminal(window=descriptor)
    with ProgressBar(20000, terminal) as bar:
        bar.logged(a_log_line(1000))
        bar.advanced(1000)
        assert "1000/20000" in current_line(terminal) and len(current_line(terminal)) < 60
        resize(40)
        bar.advanced(2000)
        assert "2000/20000" in current_line(terminal) and len(current_line(terminal)) < 40


def test_a_terminal_that_does_not_tell_its_width_gets_a_bar_of_columns_width(clock, window, monkeypatch):
    descriptor, resize = window
    resize(0)  # a pseudo-terminal without a window, as under `script` or `docker run -t` from a script
    monkeypatch.setenv("COLUMNS", "70")
    terminal = Terminal(window=descriptor)
    with ProgressBar(20000, terminal) as bar:
        bar.logged(a_log_line(1000))
        bar.advanced(1000)
        assert "1000/20000" in current_line(terminal) and len(current_line(terminal)) < 70
