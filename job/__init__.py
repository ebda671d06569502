"""The mnist-gan training job: config -> data -> models -> training loop -> checkpoints/samples -> export."""

__version__ = "0.1.0"
