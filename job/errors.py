"""How a job can end other than done, and the exit code each means: the Kubernetes Jobs' podFailurePolicy relies on
them (fail at once on 2, retry everything else). Importing this module needs neither TensorFlow nor numpy."""

from __future__ import annotations

EXIT_FAILED = 1  # a bug (the traceback says where), or an export that fails its own check
EXIT_BAD_INPUT = 2  # bad configuration, data, run folder or output volume, or training diverged: retrying cannot help
EXIT_INTERRUPTED = 75  # SIGTERM or SIGINT; starting again resumes (EX_TEMPFAIL)


class BadInput(Exception):
    """Something the user or operator must fix; retrying as it is cannot help (exit code 2, one line)."""


class ConfigError(BadInput, ValueError):
    """A configuration the job refuses to run with, or a run folder it must not touch."""


class DataError(BadInput, ValueError):
    """Data the job cannot train on."""


class TrainingDiverged(BadInput, RuntimeError):
    """A loss or a weight became NaN or infinite; the last good checkpoint is kept."""


class CheckpointsUnreadable(BadInput):
    """A run's checkpoints exist, but none reads back; they are left as they are."""


class Interrupted(BaseException):
    """Stopped by SIGTERM or SIGINT; nothing half-written is left, and the same command resumes. A BaseException, as
    KeyboardInterrupt is: code that catches every error (`except Exception`) to try something else must let it pass."""


class ExportError(RuntimeError):
    """The exported model does not reproduce the Keras generator; nothing was written."""
