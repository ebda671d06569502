"""What sample quality figures mean: when a class counts as covered, when its samples look alike, and when a run's
measurements say its generator has collapsed. Plain Python on metrics.jsonl's values, so that the report reads them
without TensorFlow; job/analysis/quality.py measures the figures."""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence

COVERED = 0.05  # a class counts as covered when at least 5% of the samples are classified as it
# A class's variety (how far apart its samples are, over how far apart its real images are) below this: its samples
# look alike: well apart from what collapsed models and varied ones measure (docs/decisions/collapse-warning.md).
LOOK_ALIKE = 0.4
# A run improves when a figure beats its best before by more than this factor: by more than two runs of the same
# networks differ (docs/decisions/collapse-warning.md).
IMPROVING = 0.925


def looks_alike(variety: float) -> bool:
    return variety < LOOK_ALIKE


def collapsed(measurements: Sequence[Mapping], steps: int) -> bool:
    """Whether the newest of a run's quality measurements (its metrics.jsonl lines, oldest first; a run of `steps`)
    says that the generator has collapsed. The training log and report.html warn on this and on nothing else:

    - a class looks alike, in the second half of the run,
    - and has at every measurement for a quarter of the run or more,
    - and the run has stopped improving: in the newest quarter, neither the lowest Fréchet distance nor the highest
      least variety beats the best of the measurements before it (the first quarter left out, whose samples are
      noise, then blobs) by more than two runs of the same networks differ (IMPROVING).

    Samples look alike for long stretches while a run is still blurring into shape and improving; one measurement,
    or a class that only now looks alike, is too early to tell (docs/decisions/collapse-warning.md)."""
    measured = [line for line in measurements if _finite(line.get("frechet_distance")) and _is_step(line.get("step"))]
    alike = [_finite(line.get("least_variety")) and looks_alike(line["least_variety"]) for line in measured]
    if not measured or not alike[-1] or measured[-1]["step"] < steps / 2:
        return False
    step, quarter = measured[-1]["step"], steps / 4
    streak = len(alike) - alike[::-1].index(False) if False in alike else 0  # where it began to look alike
    if step - measured[streak]["step"] < quarter:
        return False
    recent = [line for line in measured if step - quarter < line["step"]]
    earlier = [line for line in measured if quarter < line["step"] <= step - quarter]
    if not earlier:
        return False

    def best(lines: list[Mapping], key: str, pick) -> float:
        return pick((line[key] for line in lines if _finite(line.get(key))), default=0.0)

    closer = best(recent, "frechet_distance", min) < IMPROVING * best(earlier, "frechet_distance", min)
    more_varied = IMPROVING * best(recent, "least_variety", max) > best(earlier, "least_variety", max)
    return not (closer or more_varied)


def _is_step(value: object) -> bool:
    return type(value) is int and value >= 0  # bool is an int too


def _finite(value: object) -> bool:
    return type(value) in (int, float) and math.isfinite(value)
