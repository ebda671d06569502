"""SIGTERM and SIGINT, honoured in every phase of a job.

Inside the training loop a signal only sets `requested`: the loop finishes the compiled call under way, writes a
checkpoint of that step and raises Interrupted. Anywhere else (start-up, loading data, training the quality
classifier, the final export) there is nothing worth saving that is not already on disk, so the signal raises
Interrupted at once; atomic writes leave nothing half-written behind. A second signal aborts the process.
"""

from __future__ import annotations

import contextlib
import logging
import os
import signal
import threading
from collections.abc import Callable, Iterator

from job.errors import Interrupted

log = logging.getLogger(__name__)

HANDLED = (signal.SIGTERM, signal.SIGINT)


requested = threading.Event()
_received: list[str] = []  # the names of the signals received, for the message
_deferred = threading.Event()  # set while the training loop checks `requested` itself
_before_abort: list[Callable[[], None]] = []  # run even when a second signal kills the process


@contextlib.contextmanager
def handled() -> Iterator[None]:
    """Handle SIGTERM and SIGINT within this block (the CLI's whole command), then as before."""
    requested.clear()
    _received.clear()
    previous = {signum: signal.signal(signum, _handle) for signum in HANDLED}
    try:
        yield
    finally:
        for signum, handler in previous.items():
            signal.signal(signum, handler)


def raise_if_requested() -> None:
    """Honour a signal whose Interrupted some library swallowed (code that catches every exception, as parts of
    Keras and TensorFlow do): the request stays recorded, and the job checks it between phases."""
    if requested.is_set():
        raise _interrupted_outside_the_steps()


def _interrupted_outside_the_steps() -> Interrupted:
    return Interrupted(
        f"interrupted by {_received[-1] if _received else 'a signal'} outside the training steps: nothing "
        "half-written is left; run the same command again to continue"
    )


@contextlib.contextmanager
def deferred() -> Iterator[threading.Event]:
    """Within this block a signal only sets the returned event, for the training loop to act on."""
    raise_if_requested()  # a signal before the loop is not a reason to write a checkpoint
    _deferred.set()
    try:
        yield requested
    finally:
        _deferred.clear()
    if requested.is_set():  # a signal came after the loop's last look: honour it now
        raise Interrupted("interrupted after the last training step; run the same command again to finish")


@contextlib.contextmanager
def before_abort(action: Callable[[], None]) -> Iterator[None]:
    """Within this block, a second signal runs `action` before it kills the process (which runs no `finally`).
    `action` runs inside a signal handler: it must not write through a stream the program may be writing to."""
    _before_abort.append(action)
    try:
        yield
    finally:
        _before_abort.remove(action)


def _handle(signum: int, _frame) -> None:
    name = signal.Signals(signum).name
    if requested.is_set():  # asked twice: stop now, without a checkpoint
        for action in _before_abort:
            with contextlib.suppress(Exception):  # nothing may keep the second signal from ending the process
                action()
        signal.signal(signum, signal.SIG_DFL)
        os.kill(os.getpid(), signum)
        return
    _received.append(name)
    requested.set()
    if _deferred.is_set():
        log.warning("%s: stopping after the steps under way, writing a checkpoint (send it again to abort)", name)
        return
    raise _interrupted_outside_the_steps()
