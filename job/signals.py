"""SIGTERM and SIGINT, honoured in every phase of a command, and never mistaken for an error.

Interrupted derives from BaseException, as KeyboardInterrupt does, so that no `except Exception` (TensorFlow's,
Keras', tf2onnx's or ours, around a checkpoint's restore, a cached classifier's load, a download) takes it for a
failure and carries on with something else.

Inside the training loop a signal only sets `requested`: the loop finishes the compiled call under way, writes a
checkpoint of that step and raises Interrupted. Anywhere else in a command (start-up, loading data, restoring a
checkpoint, training the quality classifier, an export, a report) there is nothing worth saving that is not already on
disk, so the signal raises Interrupted at once; atomic writes leave nothing half-written behind. Where a library still
swallows it (a bare `except:`, a finalizer, whose exceptions Python only prints), the request stays recorded: the job
checks it before it commits work (raise_if_requested), and the CLI takes an error raised after a signal for the
interruption it is. Once a command's work is done (`work_done`), a signal has nothing left to stop: the command ends
as done. A second signal ends the process at once, with the same exit code (what is on disk resumes).

Outside a command (Python's start-up, the imports, click's parsing, the interpreter's exit) nothing is being written:
from this module's import on, SIGTERM ends the process at once with the interrupted exit code, never with the 143 of
a process killed by the signal.
"""

from __future__ import annotations

import atexit
import contextlib
import logging
import os
import signal
import sys
import threading
from collections.abc import Callable, Iterator

from job.errors import EXIT_INTERRUPTED, Interrupted

log = logging.getLogger(__name__)

HANDLED = (signal.SIGTERM, signal.SIGINT)


requested = threading.Event()
_received: list[str] = []  # the names of the signals received, for the message
_deferred = threading.Event()  # set while the training loop checks `requested` itself
_handling = threading.Event()  # set within handled(): the signals are this module's
_done = threading.Event()  # set once the command's work is done: a signal only lets it finish
_before_abort: list[Callable[[], None]] = []  # run even when a second signal ends the process at once


@contextlib.contextmanager
def handled() -> Iterator[None]:
    """Handle SIGTERM and SIGINT within this block (the CLI's whole command), then as before. `requested` stays as
    the block left it, for the caller to tell an error that a signal caused."""
    requested.clear()
    _received.clear()
    _done.clear()
    previous = {signum: signal.signal(signum, _handle) for signum in HANDLED}
    previous_hook, sys.unraisablehook = sys.unraisablehook, _quiet_interruptions(sys.unraisablehook)
    _handling.set()
    try:
        yield
    finally:
        _handling.clear()
        _done.clear()
        sys.unraisablehook = previous_hook
        for signum, handler in previous.items():
            signal.signal(signum, handler)
        # Registered last, so that it runs first: before the exit handlers of the libraries the command imported.
        atexit.unregister(_ignored_while_exiting)
        atexit.register(_ignored_while_exiting)


def raise_if_requested() -> None:
    """Honour a signal whose Interrupted some library swallowed: the request stays recorded, and the job checks it
    before it commits work."""
    if requested.is_set() and not _done.is_set():
        raise Interrupted(message())


def message() -> str:
    """The line a command interrupted outside the training steps ends with."""
    return f"interrupted by {received()}: nothing half-written is left; run the same command again to continue"


def received() -> str:
    """The name of the signal that stopped the command, for its messages."""
    return _received[-1] if _received else "a signal"


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
        raise Interrupted(
            f"interrupted by {received()} after the last training step; run the same command again to finish"
        )


def work_done() -> None:
    """The command's outputs are all written: from here to the end of `handled()`, a signal lets the command finish
    (its bookkeeping, its report) and end as done, rather than leave a finished run looking interrupted. Outside
    `handled()` (a test, a notebook) there is nothing to mark."""
    if _handling.is_set():
        _done.set()


@contextlib.contextmanager
def before_abort(action: Callable[[], None]) -> Iterator[None]:
    """Within this block, a second signal runs `action` before it ends the process at once (no `finally` runs).
    `action` runs inside a signal handler: it must not write through a stream the program may be writing to."""
    _before_abort.append(action)
    try:
        yield
    finally:
        _before_abort.remove(action)


def _handle(signum: int, _frame) -> None:
    name = signal.Signals(signum).name
    if requested.is_set():  # asked twice: stop now, without the checkpoint under way
        for action in _before_abort:
            with contextlib.suppress(Exception):  # nothing may keep the second signal from ending the process
                action()
        # The interrupted exit code, not the signal's (143, 130): what is on disk resumes, as after the first signal
        os.write(2, f"Error: aborted by a second {name}: run the same command again to resume\n".encode())
        os._exit(EXIT_INTERRUPTED)
    _received.append(name)
    requested.set()
    if _done.is_set():
        log.info("%s: the work is done, finishing", name)
        return
    if _deferred.is_set():
        log.warning("%s: stopping after the steps under way, writing a checkpoint (send it again to abort)", name)
        return
    raise Interrupted(message())


def _quiet_interruptions(hook: Callable) -> Callable:
    """sys.unraisablehook that drops an Interrupted raised where Python can only print it (a finalizer, a weakref
    callback): printed, it would be a traceback; dropped, the request stays and raise_if_requested honours it."""

    def quiet(unraisable) -> None:
        if isinstance(unraisable.exc_value, Interrupted):
            log.debug("%s landed in %r, which cannot raise it", unraisable.exc_value, unraisable.object)
            return
        hook(unraisable)

    return quiet


def _outside_a_command(signum: int, _frame) -> None:
    """SIGTERM before a command's work began, or after it ended: nothing is being written, so end at once."""
    name = signal.Signals(signum).name
    os.write(2, f"Error: interrupted by {name} outside the command's work: nothing half-written is left\n".encode())
    os._exit(EXIT_INTERRUPTED)


def _ignored_while_exiting() -> None:
    """At the interpreter's exit the command is over; Python would give SIGTERM back to the system, which kills
    (143) a process that a library's teardown keeps for a while. Ignored, the process ends with its own code."""
    for signum in HANDLED:
        signal.signal(signum, signal.SIG_IGN)


# From the import of the CLI on: Python's start-up is all that is left unhandled. SIGINT keeps raising
# KeyboardInterrupt until a command begins (a Ctrl-C in a test session or a shell must stay one).
if threading.current_thread() is threading.main_thread() and signal.getsignal(signal.SIGTERM) is signal.SIG_DFL:
    signal.signal(signal.SIGTERM, _outside_a_command)
