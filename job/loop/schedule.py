"""The loop's schedule: when it logs, samples, measures and checkpoints, and how many steps each compiled call runs.
Counts steps and seconds only; imports no TensorFlow."""

from __future__ import annotations

import dataclasses
import time
from dataclasses import dataclass

from job.config import TrainConfig

CALL_SECONDS = 2.0  # about how long one compiled call trains: how long a SIGTERM waits for the checkpoint
# The first call also traces (and for the MLP, compiles) the step, which for a large image's DCGAN may take seconds:
# one step, whose time says nothing of the speed.
FIRST_CALL_STEPS = 1


def is_sample_step(step: int, config: TrainConfig) -> bool:
    """A sample grid (and, with quality on, a measurement) every --sample-every steps and after the last."""
    return step % config.sample_every == 0 or step == config.steps


def is_measure_step(step: int, config: TrainConfig) -> bool:
    """Quality is measured with each sample grid, when it is on (a measurement belongs to a log line)."""
    return config.quality and is_sample_step(step, config)


def is_log_step(step: int, config: TrainConfig) -> bool:
    """A log line and a metrics.jsonl record every --log-every steps, and at each sample grid."""
    return step % config.log_every == 0 or is_sample_step(step, config)


def steps_to_next_event(step: int, config: TrainConfig) -> int:
    """Steps until the next log line, sample grid, checkpoint by step or the end: no compiled call runs past one."""
    intervals = [config.log_every, config.sample_every] + ([config.checkpoint_every] if config.checkpoint_every else [])
    return min([interval - step % interval for interval in intervals] + [config.steps - step])


class CheckpointClock:
    """When a checkpoint is due: after the last step, every --checkpoint-every steps when set, and
    --checkpoint-minutes after the last one."""

    def __init__(self, config: TrainConfig) -> None:
        self.config = config
        self.last = time.monotonic()  # of the newest checkpoint, or of this start

    def due(self, step: int) -> bool:
        config = self.config
        by_time = config.checkpoint_minutes and time.monotonic() - self.last >= 60 * config.checkpoint_minutes
        by_step = config.checkpoint_every and step % config.checkpoint_every == 0
        return step == config.steps or bool(by_step) or bool(by_time)

    def written(self) -> None:
        self.last = time.monotonic()


class CallLength:
    """How many steps the next compiled call runs: up to the next event, and about CALL_SECONDS at the speed of the
    call before, at most twice that call's steps (one fast call does not make the next one long). Between calls the
    loop sees a stop request and a checkpoint due by wall time, so a slow step with a long --log-every still stops
    within a Kubernetes grace period (docs/decisions/call-length.md)."""

    def __init__(self) -> None:
        self.limit = FIRST_CALL_STEPS
        self.calls = 0

    def next(self, step: int, config: TrainConfig) -> int:
        return min(steps_to_next_event(step, config), self.limit)

    def measured(self, steps: int, seconds: float) -> None:
        self.calls += 1
        if self.calls == 1:  # the trace's time, not the step's
            return
        self.limit = max(1, min(2 * steps, int(CALL_SECONDS * steps / max(seconds, 1e-6))))


@dataclass
class Interval:
    """The compiled calls since the last log line: their steps, seconds and the sums of their metrics over steps."""

    steps: int = 0
    seconds: float = 0.0
    sums: dict[str, float] = dataclasses.field(default_factory=dict)

    def add(self, steps: int, seconds: float, means: dict[str, float]) -> None:
        self.steps += steps
        self.seconds += seconds
        for name, mean in means.items():
            self.sums[name] = self.sums.get(name, 0.0) + mean * steps

    def means(self) -> dict[str, float]:
        return {name: total / self.steps for name, total in self.sums.items()}

    @property
    def steps_per_s(self) -> float:
        return self.steps / self.seconds
