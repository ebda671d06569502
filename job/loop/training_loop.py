"""The training steps of one start, from the step it begins at to the run's last: compiled calls, and between them
the log lines, quality measurements, checkpoints and sample grids that the schedule (schedule.py) calls for."""

from __future__ import annotations

import math
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass

from job import signals
from job.config import TrainConfig
from job.errors import Interrupted, TrainingDiverged
from job.loop.log_lines import Progress, log_quality
from job.loop.schedule import CallLength, CheckpointClock, Interval, is_log_step, is_measure_step, is_sample_step
from job.loop.setup import Training
from job.rundir.claim import RunDir
from job.rundir.outputs import MetricsLog, save_grid
from job.rundir.timings import START_STEP, WALL_TIME, Timings


@dataclass
class TrainingLoop:
    """Everything the loop works with, from the first compiled call to the last."""

    config: TrainConfig
    run: RunDir
    training: Training
    train_steps: Callable[[int], dict[str, float]]  # n steps in one compiled call → the means of their metrics
    on_progress: Callable[[Progress], None]  # at each log line
    on_advance: Callable[[int], None]  # after each compiled call, with the step reached
    on_sample: Callable[[], None]  # after each sample grid: rewrites report.html
    timings: Timings

    def train_from(self, start: int, stop: threading.Event) -> None:
        """Train from step `start` to the configured steps in compiled calls that end at each log line, sample grid
        and checkpoint by step, and after about CALL_SECONDS (job/loop/schedule.py); checkpoints by wall time fall
        between calls. When `stop` is set (SIGTERM, SIGINT), checkpoint the step reached and raise Interrupted."""
        config, gan = self.config, self.training.gan
        metrics = MetricsLog(self.run, resume_step=start)
        step, first_line = start, True  # the first log line of a start records where it began
        call_length, interval, checkpoint_clock = CallLength(), Interval(), CheckpointClock(config)
        try:
            while step < config.steps:
                if stop.is_set():
                    self._interrupt_at(step)

                n = call_length.next(step, config)
                began = time.perf_counter()
                means = self.train_steps(n)
                seconds = time.perf_counter() - began
                call_length.measured(n, seconds)
                interval.add(n, seconds, means)
                self.timings.seconds["training"] += seconds
                gan.train_seconds.assign_add(seconds)
                step = int(gan.step.numpy())
                if not all(math.isfinite(value) for value in means.values()):
                    raise TrainingDiverged(
                        f"a loss became NaN or infinite between steps {step - n} and {step} ({means}); "
                        + self._last_good()
                    )

                if is_log_step(step, config):
                    self._log_line(step, interval, metrics, {START_STEP: start} if first_line else {})
                    interval, first_line = Interval(), False
                if checkpoint_clock.due(step):
                    self._checkpoint(step)
                    checkpoint_clock.written()
                if is_sample_step(step, config):
                    with self.timings.part("sample_grids"):
                        metrics.image(step, save_grid(self.training.sample_images(), self.run.sample(step)))
                        self.on_sample()
                self.on_advance(step)
        finally:
            metrics.close()

    def _log_line(self, step: int, interval: Interval, metrics: MetricsLog, facts: dict) -> None:
        """A log interval's metrics.jsonl record (with `facts`) and line; at a sample grid, with the quality
        measured."""
        gan = self.training.gan
        progress = Progress(
            step,
            self.config.steps,
            steps_per_s=interval.steps_per_s,
            elapsed_s=float(gan.train_seconds.numpy()),
            **interval.means(),
        )
        quality = None
        if self.training.meter is not None and is_measure_step(step, self.config):
            with self.timings.part("quality"):
                quality = self.training.meter.measure_gan(gan)
        # Beside its measurements, a line records when it was written and both optimizers' rate in its last step.
        written = {
            WALL_TIME: round(time.time(), 3),
            "d_learning_rate": float(gan.d_optimizer.learning_rate.numpy()),
            "g_learning_rate": float(gan.g_optimizer.learning_rate.numpy()),
        }
        metrics.write(progress.record() | written | facts | (quality.record() if quality else {}))
        self.on_progress(progress)
        if quality:
            log_quality(step, self.config.steps, quality, self.run.records())

    def _interrupt_at(self, step: int) -> None:
        if not self.training.checkpoints.holds(step):
            self._checkpoint(step)
        raise Interrupted(
            f"interrupted by {signals.received()}: checkpoint written at step {step}; run the same command again to "
            "resume"
        )

    def _last_good(self) -> str:
        """Where a run that diverged can go on from, for its message."""
        newest = self.training.checkpoints.newest_readable()
        if newest is None:
            return "no checkpoint was written before it"
        return f"the last good checkpoint (step {newest}) is kept in {self.run.checkpoints}"

    def _checkpoint(self, step: int) -> None:
        with self.timings.part("checkpoints"):
            if not self.training.gan.is_finite():  # never a broken state as the "last good" one a resume starts from
                raise TrainingDiverged(f"a weight became NaN or infinite by step {step}; " + self._last_good())
            self.training.checkpoints.save(step)
        self.timings.checkpoint_bytes += self.training.checkpoints.size(step)
