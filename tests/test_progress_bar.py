"""`gan-job train` on a terminal: a progress bar that moves with every compiled call and tells the time left."""

import io
import logging
import os
import signal

import pytest

from job import progress_bar, signals
from job.errors import EXIT_INTERRUPTED
from job.progress_bar import CLEAR_LINE, ESTIMATE_AFTER_SECONDS, SHOW_CURSOR, ProgressBar
from job.train import Progress


class Terminal(io.StringIO):
    def isatty(self) -> bool:
        return True


@pytest.fixture
def clock(monkeypatch):
    """time.monotonic() as the bar reads it, set by the test; a terminal 200 columns wide."""
    monkeypatch.setenv("COLUMNS", "200")
    now = [1000.0]
    monkeypatch.setattr(progress_bar, "monotonic", lambda: now[0])
    return now


def last_line(terminal: Terminal) -> str:
    return terminal.getvalue().split("\r")[-1]


def a_log_line(step: int) -> Progress:
    return Progress(step, 6000, d_loss=0.5, g_loss=1.25, d_accuracy=0.75, steps_per_s=60.0, elapsed_s=30.0)


def test_a_resumed_run_tells_the_time_left_from_its_own_speed_not_from_step_0(clock):
    terminal = Terminal()
    with ProgressBar(6000, terminal) as bar:
        bar.advanced(2001)  # resumed at step 2,000: its first call
        clock[0] += ESTIMATE_AFTER_SECONDS
        bar.advanced(2251)
        clock[0] += 10
        bar.advanced(2751)  # 500 steps in 10 s: 3,249 steps left take 65 s
        assert "2751/6000" in last_line(terminal) and "1m 05s left" in last_line(terminal)


def test_the_time_left_is_not_guessed_from_the_first_short_calls(clock):
    terminal = Terminal()
    with ProgressBar(6000, terminal) as bar:
        for step in (1, 3, 7, 15, 31):
            bar.advanced(step)
            clock[0] += 1
        assert "31/6000" in last_line(terminal) and "left" not in last_line(terminal)


def test_the_bar_moves_between_log_lines_and_shows_the_last_ones_losses(clock):
    terminal = Terminal()
    with ProgressBar(6000, terminal) as bar:
        bar.advanced(400)
        assert "400/6000" in last_line(terminal) and "d_loss" not in last_line(terminal)
        bar.logged(a_log_line(1000))
        bar.advanced(1000)
        bar.advanced(1400)
        assert "1400/6000" in last_line(terminal)
        assert "d_loss 0.500  g_loss 1.250  d_acc 0.75  60 steps/s" in last_line(terminal)


def test_on_a_narrow_terminal_the_line_fits_its_width(clock, monkeypatch):
    monkeypatch.setenv("COLUMNS", "60")
    terminal = Terminal()
    with ProgressBar(20000, terminal) as bar:
        bar.logged(a_log_line(1000))
        bar.advanced(1000)
        line = last_line(terminal).removeprefix("\033[?25l").rstrip()
        assert "1000/20000" in line and len(line) < 60
        assert line.endswith("d_loss 0.500")  # whole items only


def test_a_log_line_stands_on_a_line_of_its_own_and_an_interrupted_bar_gives_the_cursor_back(clock):
    terminal = Terminal()
    handler = logging.StreamHandler(terminal)
    logging.getLogger().addHandler(handler)
    try:
        with pytest.raises(KeyboardInterrupt), ProgressBar(6000, terminal) as bar:
            bar.advanced(400)
            logging.getLogger("job.train").warning("quality at step 400")
            bar.advanced(800)
            raise KeyboardInterrupt  # as a SIGINT's Interrupted, or any failure
    finally:
        logging.getLogger().removeHandler(handler)
    before_log, log_and_after = terminal.getvalue().split(CLEAR_LINE)
    assert "400/6000" in before_log
    assert log_and_after.startswith("quality at step 400\n")
    assert "800/6000" in log_and_after and log_and_after.endswith(SHOW_CURSOR + "\n")
    assert not handler.filters  # the bar's filter went with it


def test_a_second_ctrl_c_which_ends_the_job_gives_the_cursor_back_first(clock, monkeypatch):
    ended = []

    def exit_now(code: int) -> None:  # as os._exit, the handler goes no further
        ended.append(code)
        raise SystemExit(code)

    monkeypatch.setattr(signals.os, "_exit", exit_now)
    reading, writing = os.pipe()
    terminal = Terminal()
    terminal.fileno = lambda: writing  # the bar draws through the stream; the abort writes to its descriptor
    with ProgressBar(6000, terminal) as bar:
        bar.advanced(400)
        signals.requested.set()  # the first Ctrl-C
        try:
            with pytest.raises(SystemExit):
                signals._handle(signal.SIGINT, None)  # the second
        finally:
            signals.requested.clear()
        os.close(writing)
        assert ended == [EXIT_INTERRUPTED] and os.read(reading, 100) == (SHOW_CURSOR + "\n").encode()
    os.close(reading)
