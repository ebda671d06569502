"""TensorFlow's native start-up lines, kept out of the job's stderr at default verbosity.

TensorFlow's C++ runtime writes to file descriptor 2 before any Python logging exists: absl's "All log messages
before absl::InitializeLog()" banner, a failed `cuInit` on a machine without a GPU, oneDNN notices, an E0000 line
about a NodeDef attribute, another when Grappler cannot fuse two ops of the DCGAN's step. They read as errors when
nothing is wrong, and TF_CPP_MIN_LOG_LEVEL does not silence them all. So descriptor 2 becomes a pipe whose lines
a thread copies to the real stderr, less the ones known to be start-up noise; Python's own `sys.stderr` keeps
writing to the real stderr directly, so a terminal stays a terminal (for the progress bar) and the job's lines
never wait on the thread.
"""

from __future__ import annotations

import atexit
import os
import re
import sys
import threading

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
    sys.stderr is the process's own (not under a test runner that captures it)."""
    global _installed
    if _installed or sys.stderr is not sys.__stderr__ or sys.stderr is None:
        return
    sys.stderr.flush()
    real = os.dup(2)
    read_end, write_end = os.pipe()
    os.dup2(write_end, 2)
    os.close(write_end)
    sys.stderr = open(real, "w", buffering=1, encoding="utf-8", errors="backslashreplace")  # noqa: SIM115
    copier = threading.Thread(target=_copy_lines, args=(read_end, real), name="native-stderr", daemon=True)
    copier.start()
    atexit.register(_drain, copier, real)
    _installed = True


def _drain(copier: threading.Thread, real: int) -> None:
    # Pointing descriptor 2 back at the real stderr closes the pipe's last writer: the copier reads what is left,
    # then the end of the pipe.
    os.dup2(real, 2)
    copier.join(timeout=2)


def _copy_lines(read_end: int, real: int) -> None:
    with open(read_end, "rb") as pipe:
        for line in pipe:
            if not is_noise(line.decode("utf-8", errors="replace")):
                os.write(real, line)
