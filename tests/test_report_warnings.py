"""Collapse is warned about where it means something, and in the same places by the training log and report.html:
a class whose samples look alike while the run still blurs into shape is no warning; a collapsed model still is.

The runs' quality measurements are written by hand, from real runs (job.analysis.quality.collapsed says where they
come from).
"""

from __future__ import annotations

import json
import logging
import re
from pathlib import Path

import pytest

from job.analysis.quality import QualityReport
from job.analysis.quality_rules import collapsed
from job.analysis.report import FINISHED, RUNNING, write_run_report
from tests.test_damaged_runs import synthetic_run

# (step, Fréchet distance, least variety) every 100 steps of 2,000-step runs on tests/data/mnist_small.npz:
# gan-job train --steps 2000 --sample-every 100 [--conditional] (the MLP, seed 0). Their samples are noise at first,
# then blobs that look alike (below 0.4) for over half of the run, while the distance falls.
BLURRING = [
    (100, 630.3, 1.35), (200, 449.1, 1.17), (300, 463.1, 0.88), (400, 579.1, 0.35), (500, 724.7, 0.26),
    (600, 620.2, 0.29), (700, 592.4, 0.28), (800, 532.0, 0.23), (900, 474.9, 0.28), (1000, 490.3, 0.35),
    (1100, 452.7, 0.28), (1200, 455.0, 0.29), (1300, 479.3, 0.25), (1400, 474.0, 0.32), (1500, 406.8, 0.31),
    (1600, 393.1, 0.38), (1700, 406.1, 0.36), (1800, 382.6, 0.37), (1900, 361.0, 0.41), (2000, 302.7, 0.49),
]  # fmt: skip
BLURRING_CONDITIONAL = [
    (100, 598.7, 1.34), (200, 515.7, 1.2), (300, 465.9, 0.87), (400, 588.2, 0.53), (500, 635.4, 0.38),
    (600, 587.4, 0.35), (700, 573.7, 0.36), (800, 646.2, 0.35), (900, 605.5, 0.32), (1000, 550.6, 0.36),
    (1100, 469.7, 0.34), (1200, 420.4, 0.29), (1300, 354.8, 0.31), (1400, 322.6, 0.33), (1500, 279.3, 0.31),
    (1600, 241.4, 0.34), (1700, 222.7, 0.35), (1800, 206.6, 0.38), (1900, 182.4, 0.41), (2000, 166.2, 0.42),
]  # fmt: skip
# A 400-step run whose samples first look alike at its last measurement, as blobs after noise.
SHORT = BLURRING[:4]
# A generator that draws each class as a few images from step 500 on: its distance and variety stay where they are.
COLLAPSED = BLURRING[:4] + [
    (step, 40.0 + (step // 100) % 3, 0.05 + 0.01 * ((step // 100) % 2)) for step in range(500, 2001, 100)
]


def lines(measurements: list[tuple[int, float, float]]) -> list[dict]:
    return [{"step": step, "frechet_distance": fd, "least_variety": variety} for step, fd, variety in measurements]


def run_of(root: Path, measurements: list[tuple[int, float, float]], steps: int) -> Path:
    """A run of `steps` steps whose metrics.jsonl holds these quality measurements (and losses at each)."""
    synthetic_run(root)
    config = json.loads((root / "config.json").read_text())
    (root / "config.json").write_text(json.dumps(config | {"steps": steps}))
    records = [line | {"d_loss": 0.5, "g_loss": 1.0, "classes_covered": 10} for line in lines(measurements)]
    (root / "metrics.jsonl").write_text("".join(json.dumps(record) + "\n" for record in records))
    return root


def warned_on_page(page: Path) -> bool:
    html = re.sub(r"<script[^>]*>.*?</script>", "", page.read_text(), flags=re.DOTALL)
    red = 'class="fact warning"' in html
    assert red == ("(look alike)" in html)  # the badge and its words come together
    return red


def logged_warnings(measurements: list[tuple[int, float, float]], steps: int, caplog) -> list[int]:
    """The steps at which the training log warns, measurement after measurement, as the training loop calls it."""
    from job.loop.log_lines import log_quality

    caplog.clear()
    with caplog.at_level(logging.WARNING, logger="job.loop.log_lines"):
        for count, (step, fd, variety) in enumerate(measurements, start=1):
            report = QualityReport(fd, [0.1] * 10, None, [variety] + [0.9] * 9, tuple("0123456789"))
            log_quality(step, steps, report, lines(measurements[:count]))
    return [int(re.search(r"step (\d+)", record.getMessage()).group(1)) for record in caplog.records]


@pytest.mark.parametrize("measurements", [BLURRING, BLURRING_CONDITIONAL], ids=["mlp", "conditional-mlp"])
def test_a_run_still_blurring_into_shape_is_never_warned_about(tmp_path, caplog, measurements):
    assert not any(collapsed(lines(measurements[:count]), 2000) for count in range(1, len(measurements) + 1))
    assert logged_warnings(measurements, 2000, caplog) == []
    # Its page, while it runs in the second half, its samples looking alike:
    page = write_run_report(run_of(tmp_path / "run", measurements[:18], 2000), RUNNING)
    assert not warned_on_page(page)


def test_a_short_run_whose_samples_only_now_look_alike_has_no_warning(tmp_path, caplog):
    assert logged_warnings(SHORT, 400, caplog) == []
    assert not warned_on_page(write_run_report(run_of(tmp_path / "run", SHORT, 400), FINISHED))


def test_a_collapsed_model_is_still_flagged_by_the_log_and_the_page(tmp_path, caplog):
    warned = logged_warnings(COLLAPSED, 2000, caplog)
    assert warned and warned[-1] == 2000 and min(warned) >= 1000  # in the second half, and at its end
    assert "the samples of class 0 look alike" in caplog.records[-1].getMessage()
    assert warned_on_page(write_run_report(run_of(tmp_path / "run", COLLAPSED, 2000), FINISHED))


def test_a_single_measurement_says_nothing_of_collapse_yet():
    assert not collapsed(lines([(2000, 40.0, 0.05)]), 2000)
    assert not collapsed([], 2000)
