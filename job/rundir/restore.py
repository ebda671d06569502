"""Reopening a finished (or running) run directory: its configuration and the state of one of its checkpoints."""

from __future__ import annotations

from pathlib import Path

from job.config import ConfigError, TrainConfig
from job.errors import CheckpointsUnreadable
from job.networks.gan import Gan, build_gan
from job.rundir.checkpoints import Checkpoints
from job.rundir.claim import RunDir, architecture_of, clusters_of, data_set_of
from serving.model import first_line


def load_run(root: Path, step: int | None = None) -> tuple[TrainConfig, dict, Gan, int]:
    """The run's config, what its data is (rundir.data_set_of), its GAN restored from checkpoint `step` (the
    newest by default), and that step."""
    run = RunDir(root)
    saved = run.saved_config()
    if saved is None:
        raise ConfigError(f"{root} is not a run directory: it has no config.json")
    try:
        config = TrainConfig.from_dict(saved)
    except (ValueError, KeyError, TypeError) as error:
        raise ConfigError(f"{run.config} is not a valid run configuration: {error}") from error
    data_set = data_set_of(saved)
    shape, classes = tuple(data_set["image_shape"]), len(data_set["class_names"])
    gan = build_gan(config, shape, classes, clusters_of(saved, run.config), architecture_of(saved, run.config))
    checkpoints = Checkpoints(run.checkpoints, gan.checkpoint(), keep=config.keep_checkpoints)
    if step is None:
        step = checkpoints.restore_latest()
        if step == 0:
            raise ConfigError(f"{root} has no checkpoint yet")
    elif step not in checkpoints.steps():
        kept = ", ".join(map(str, checkpoints.steps())) or "none"
        raise ConfigError(f"{root} keeps no checkpoint of step {step} (kept: {kept})")
    else:
        try:
            checkpoints.restore_step(step)
        except Exception as error:  # truncated or corrupt files: TensorFlow raises several kinds
            raise CheckpointsUnreadable(
                f"the checkpoint of step {step} in {run.checkpoints} does not read back ({first_line(error)})"
            ) from error
    return config, data_set, gan, step
