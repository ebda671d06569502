"""The mnist-gan training job: config -> data -> models -> training loop -> checkpoints/samples -> export."""

__version__ = "0.1.0"

# SIGTERM ends a gan-job command as interrupted from its first moment on, before the CLI's imports (job/signals.py).
from job import signals  # noqa: E402, F401
