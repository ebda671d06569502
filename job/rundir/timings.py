"""Where a run's wall time goes: the compiled training calls, and everything the loop does beside them."""

from __future__ import annotations

import contextlib
import time
from collections.abc import Iterator

# Keys of a metrics line that say when and in which start it was written, not what was measured: no TensorBoard scalar.
WALL_TIME = "wall_time"  # Unix time, in seconds, when the line was written
START_STEP = "start_step"  # on the first line of each start (and on the timings line): the step that start began from

# The parts of a run, in the order the end-of-run line and the timings record list them.
PARTS = ("training", "quality", "checkpoints", "sample_grids", "export", "start_up")
APART = "quality_classifier"  # the classifier's one-time training (cached once per data set): reported on its own


def duration(seconds: float) -> str:
    """How long, as the report and the progress bar say it: '1h 05m', '4m 09s'."""
    minutes, seconds = divmod(round(seconds), 60)
    hours, minutes = divmod(minutes, 60)
    return f"{hours}h {minutes:02d}m" if hours else f"{minutes}m {seconds:02d}s"


class Timings:
    """Seconds spent in each part of one start of a run, from that start to the exported model."""

    def __init__(self) -> None:
        self.began = time.perf_counter()
        self.seconds = dict.fromkeys((*PARTS, APART), 0.0)
        self.checkpoint_bytes = 0

    def start_up_ends(self) -> None:
        """Start-up: from this start to its first training call, the classifier's one-time training apart."""
        self.seconds["start_up"] = time.perf_counter() - self.began - self.seconds[APART]

    @contextlib.contextmanager
    def part(self, name: str) -> Iterator[None]:
        began = time.perf_counter()
        try:
            yield
        finally:
            self.seconds[name] += time.perf_counter() - began

    def record(self) -> dict:
        """The `timings` entry of metrics.jsonl: seconds by part, the rest as `other`, and the run's overhead."""
        total = time.perf_counter() - self.began
        seconds = dict(self.seconds)
        seconds["other"] = total - sum(seconds.values())  # metrics lines, progress logs, reading results back
        beside_classifier = total - seconds[APART]
        return {
            **{f"{name}_s": round(value, 2) for name, value in seconds.items()},
            "total_s": round(total, 2),
            # wall time (the classifier's one-time training apart) over the time inside the compiled calls
            "overhead_ratio": round(beside_classifier / seconds["training"], 3) if seconds["training"] else None,
            "checkpoint_bytes": self.checkpoint_bytes,
        }

    def summary(self) -> str:
        """One log line."""
        record = self.record()
        parts = ", ".join(f"{name.replace('_', ' ')} {record[f'{name}_s']:.1f}s" for name in (*PARTS, "other"))
        line = f"this start took {record['total_s']:.1f}s: {parts}"
        if record[f"{APART}_s"]:  # trained once per data set, else loaded
            line += f", quality classifier {record[f'{APART}_s']:.1f}s"
        if record["overhead_ratio"] is not None:  # what the run spent beside its steps, the classifier apart
            line += f"; all but the training steps and the classifier added {record['overhead_ratio'] - 1:.0%}"
        return line
