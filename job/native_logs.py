"""TensorFlow's native start-up lines, kept out of the job's stderr at default verbosity.

TensorFlow's C++ runtime writes to file descriptor 2 before any Python logging exists: absl's "All log messages
before absl::InitializeLog()" banner, a failed `cuInit` on a machine without a GPU, oneDNN notices, an E0000 line
about a NodeDef attribute, another when Grappler cannot fuse two ops of the DCGAN's step. They read as errors when
nothing is wrong, and TF_CPP_MIN_LOG_LEVEL does not silence them all.

So descriptor 2 becomes a pipe into a copier, a forked process that writes its lines to the real stderr, less the ones
known to be start-up noise. A process, not a thread: when the job dies of a native fatal error (abort, a crash), the
copier still reads the pipe to its end, so the error's last lines reach stderr whole. Python's own `sys.stderr`
keeps writing to the real stderr directly, so a terminal stays a terminal (for the progress bar) and the job's lines
never wait on the copier.
"""

from __future__ import annotations

import atexit
import os
import re
import signal
import sys
import time

# Lines of TensorFlow, XLA and CUDA stubs that say nothing a user must act on.
NOISE = re.compile(
    r"absl::InitializeLog|cuInit|cuda drivers|cudart_stub|cuda_(executor|platform|dnn|fft|blas)"
    r"|Unable to register cu(DNN|FFT|BLAS) factory|computation placer|TF-TRT|TensorRT"
    r"|oneDNN custom operations|TF_ENABLE_ONEDNN_OPTS|use_unbounded_threadpool"
    r"|This TensorFlow binary is optimized|rebuild TensorFlow with the appropriate compiler flags"
    r"|remapper failed: INVALID_ARGUMENT: Mutation::Apply"  # a graph rewrite (DCGAN) skipped: the graph runs as is
    r"|^[IW]\d{4} \d\d:\d\d:\d\d\.\d+ "  # absl's informational and warning lines
)

_installed = False


def is_noise(line: str) -> bool:
    return bool(NOISE.search(line))


def filter_native_stderr() -> None:
    """From now on, native writes to stderr lose TensorFlow's start-up noise; once per process, and only where
    sys.stderr is the process's own (not under a test runner that captures it). Call it before any thread starts: the
    copier is a fork of this process."""
    global _installed
    if _installed or sys.stderr is not sys.__stderr__ or sys.stderr is None:
        return
    sys.stdout.flush()
    sys.stderr.flush()
    real = os.dup(2)
    read_end, write_end = os.pipe()
    copier = os.fork()  # not a new interpreter: no start-up time, and no executable to be allowed to run
    if copier == 0:
        _be_the_copier(read_end, write_end, real)
    os.close(read_end)
    os.dup2(write_end, 2)
    os.close(write_end)  # descriptor 2 is now the pipe's only writer here: when it closes, the copier reads to the end
    sys.stderr = open(real, "w", buffering=1, encoding="utf-8", errors="backslashreplace")  # noqa: SIM115
    atexit.register(_drain, copier, real)
    _installed = True


def _be_the_copier(read_end: int, write_end: int, real: int) -> None:
    """The forked copier's whole life: the pipe's lines to the real stderr, less the noise, until every writer has
    closed it. It ignores SIGINT and SIGTERM, which are the job's to answer, and sits in a session of its own, so a
    terminal's Ctrl-C or hang-up never cuts it off before the job's last lines."""
    try:
        os.setsid()
        signal.signal(signal.SIGINT, signal.SIG_IGN)
        signal.signal(signal.SIGTERM, signal.SIG_IGN)
        os.close(write_end)
        with open(read_end, "rb") as pipe:
            for line in pipe:
                if not is_noise(line.decode("utf-8", errors="replace")):
                    os.write(real, line)
    finally:
        os._exit(0)  # nothing of the job's: no atexit handler, no buffered output of its


def _drain(copier: int, real: int) -> None:
    # Pointing descriptor 2 back at the real stderr closes the pipe's last writer: the copier reads what is left, then
    # the end of the pipe, and exits, before the job's own last line. A child of the job that still holds the pipe
    # keeps the copier going after the job: it is not waited for beyond a moment.
    os.dup2(real, 2)
    deadline = time.monotonic() + 2
    while time.monotonic() < deadline and os.waitpid(copier, os.WNOHANG) == (0, 0):
        time.sleep(0.005)
