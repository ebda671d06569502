"""report.html as a page kept open while the run trains: it reloads itself while the run is running, marks where the
run was stopped and resumed, charts the learning rates, smooths its curves and draws them over steps or wall time,
labels a conditional model's grids by class, and names everything in words with units.

Most pages here are built from runs written by hand (tests/test_damaged_runs.py's synthetic_run); one real training
is stopped and resumed to check what metrics.jsonl records of each start.
"""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest

from job.analysis.report import FINISHED, INTERRUPTED, RUNNING, write_run_report
from tests.test_damaged_runs import embedded_charts, synthetic_run
from tests.test_report import CHROMIUM, console_messages, markup, open_in_chromium

T0 = 1_800_000_000.0  # the wall time of the hand-written runs' first line, in seconds since 1970


def resumed_run(root: Path) -> Path:
    """A run of 300 steps stopped after step 150 and resumed from that checkpoint an hour later, as the job records
    it: every line's wall time and learning rates, and each start's first line the step that start began from."""
    synthetic_run(root)
    lines = [json.loads(line) for line in (root / "metrics.jsonl").read_text().splitlines()]
    for line in lines:
        line |= {"wall_time": T0 + line["step"] + (3600 if line["step"] > 150 else 0)}
        line |= {"d_learning_rate": 2e-4, "g_learning_rate": 2e-4 * (300 - line["step"]) / 300}
    lines[0]["start_step"], lines[3]["start_step"] = 0, 150  # the lines of steps 50 and 200
    timings = {"step": 300, "start_step": 150, "timings": {"training_s": 12.5, "overhead_ratio": 1.2}}
    (root / "metrics.jsonl").write_text("".join(json.dumps(line) + "\n" for line in [*lines, timings]))
    return root


def text_of(page: str) -> str:
    return " ".join(re.sub(r"<[^>]+>", " ", markup(page)).split())


def resumes(page: str) -> list[dict]:
    return json.loads(re.search(r'<script type="application/json" id="resumes">(.*?)</script>', page).group(1))


@pytest.mark.parametrize("status, reloads", [(RUNNING, True), (FINISHED, False), (INTERRUPTED, False)])
def test_the_page_reloads_itself_while_the_run_is_running_only(tmp_path, status, reloads):
    page = write_run_report(synthetic_run(tmp_path / "run"), status).read_text()
    assert ("location.reload()" in page) == reloads
    assert ("reloads itself every 30 seconds while the run is running" in text_of(page)) == reloads


def test_the_page_marks_where_the_run_was_stopped_and_resumed(tmp_path):
    page = write_run_report(resumed_run(tmp_path / "run"), FINISHED).read_text()
    stopped, resumed = 1000 * (T0 + 150), 1000 * (T0 + 200 + 3600)  # its last line before, its first line after
    assert resumes(page) == [{"step": 150, "stopped": stopped, "resumed": resumed}]
    assert "The run was stopped and resumed 1 time: from step 150" in text_of(page)


def test_a_run_never_stopped_marks_nothing(tmp_path):
    page = write_run_report(synthetic_run(tmp_path / "run"), FINISHED).read_text()
    assert resumes(page) == [] and "stopped and resumed" not in text_of(page)


def test_the_timings_say_which_start_they_cover_in_words_and_units(tmp_path):
    page = write_run_report(resumed_run(tmp_path / "run"), FINISHED).read_text()
    text = text_of(page)
    covered = "In the start that finished the run, from step 150 to step 300: the run's earlier starts are not counted"
    assert covered in text
    assert "training 12.5 seconds" in text
    assert "wall time, the quality classifier apart, over the time in the training calls 1.20×" in text
    assert '<th title="training_s">training</th>' in page  # metrics.jsonl's key, on hover


def test_the_learning_rates_are_charted_as_metrics_jsonl_records_them(tmp_path):
    run = resumed_run(tmp_path / "run")
    chart = embedded_charts(write_run_report(run, FINISHED).read_text())
    (rates,) = [c for c in chart if c["id"] == "chart-d_learning_rate+g_learning_rate"]
    lines = [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines() if "timings" not in line]
    for trace in rates["figure"]["data"]:
        assert trace["y"] == [line[trace["meta"]] for line in lines]
    assert [trace["name"] for trace in rates["figure"]["data"]] == [
        "discriminator learning rate",
        "generator learning rate",
    ]


def test_every_curve_can_be_drawn_over_wall_time(tmp_path):
    run = resumed_run(tmp_path / "run")
    page = write_run_report(run, FINISHED).read_text()
    lines = [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines() if "timings" not in line]
    over_steps = [chart for chart in embedded_charts(page) if chart["id"] != "chart-class_shares"]
    for chart in over_steps:
        for trace, times in zip(chart["figure"]["data"], chart["times"], strict=True):
            expected = [1000 * line["wall_time"] for line in lines if trace["meta"] in line]
            assert times == expected, trace["meta"]
    assert 'id="smoothing"' in page and 'id="x-time" value="time">' in page


def test_counts_and_learning_rates_are_drawn_as_measured_whatever_the_smoothing(tmp_path):
    page = write_run_report(resumed_run(tmp_path / "run"), FINISHED).read_text()
    smoothed = {chart["id"]: chart["smooth"] for chart in embedded_charts(page) if "smooth" in chart}
    assert smoothed["chart-d_learning_rate+g_learning_rate"] is False
    assert smoothed["chart-classes_covered"] is False
    assert smoothed["chart-frechet_distance"] is True


def test_a_run_whose_lines_record_no_wall_time_offers_steps_only(tmp_path):
    page = write_run_report(synthetic_run(tmp_path / "run"), FINISHED).read_text()
    assert 'id="x-time" value="time" disabled>' in page


def test_a_conditional_runs_grids_are_labelled_by_class(tmp_path):
    names = ["zero", "one", "two"]
    page = write_run_report(synthetic_run(tmp_path / "run", class_names=names, conditional=True), FINISHED)
    html = markup(page.read_text())
    tiles = re.findall(r'<div class="tiles"[^>]*>(.*?)</div>', html)
    assert len(tiles) == 2  # the real images and the newest samples
    cycle = [names[index % 3] for index in range(16)]  # the classes in turn, row by row, as the grids draw them
    assert all(re.findall(r"<span>(.*?)</span>", labels) == cycle for labels in tiles)


def test_an_unconditional_runs_grids_are_not_labelled(tmp_path):
    page = write_run_report(synthetic_run(tmp_path / "run"), FINISHED).read_text()
    assert 'class="tiles"' not in markup(page)


def test_the_timeline_is_named_by_the_sample_cadence(tmp_path):
    page = write_run_report(synthetic_run(tmp_path / "run", sample_every=100), FINISHED).read_text()
    assert "Timeline: the same latents every 100 steps (--sample-every)" in text_of(page)
    assert "checkpoint" not in text_of(page).split("Configuration")[0]  # only the settings' names say it


@pytest.mark.slow
def test_each_start_records_the_step_it_began_from_and_every_line_its_wall_time_and_learning_rates(tmp_path):
    from job.loop.train import train
    from tests.conftest import progress_records, short_run_config, train_until_preempted

    config = short_run_config(tmp_path, steps=200, quality=False)
    train_until_preempted(config, step=100)
    train(config)
    lines = progress_records(tmp_path)
    assert [line["step"] for line in lines if "start_step" in line] == [50, 150]
    assert [line["start_step"] for line in lines if "start_step" in line] == [0, 100]
    times = [line["wall_time"] for line in lines]
    assert times == sorted(times)
    rate = config.hyper.learning_rate  # the MLP's rates do not decay
    assert all(line["d_learning_rate"] == pytest.approx(rate) == line["g_learning_rate"] for line in lines)
    timings = json.loads((tmp_path / "metrics.jsonl").read_text().splitlines()[-1])
    assert timings["start_step"] == 100 and "timings" in timings
    page = (tmp_path / "report.html").read_text()
    assert [resume["step"] for resume in resumes(page)] == [100]


def x_titles(dom: str) -> set[str]:
    """The x-axis titles of the charts plotly drew."""
    return set(re.findall(r'<text class="xtitle"[^>]*>([^<]*)</text>', dom))


@pytest.mark.slow
@pytest.mark.skipif(CHROMIUM is None, reason="Debian's chromium is not installed (apt-get install -y chromium)")
def test_a_page_opened_smoothed_and_over_wall_time_draws_every_chart(tmp_path):
    page = write_run_report(resumed_run(tmp_path / "run"), FINISHED)
    plain = open_in_chromium(page, tmp_path, "--dump-dom").stdout
    assert x_titles(plain) == {"step", "class"}  # over steps by default
    # The view is kept in the address's fragment (so that a reload keeps it): open the page with one.
    opener = tmp_path / "open.html"
    opener.write_text(f'<script>location.replace("{page.resolve().as_uri()}#smoothing=0.6&x=time")</script>')
    result = open_in_chromium(opener, tmp_path, "--dump-dom")
    assert console_messages(result) == []
    dom = result.stdout
    assert '<output id="smoothing-value">0.60</output>' in dom and x_titles(dom) == {"wall time (UTC)", "class"}
    assert dom.count('class="main-svg"') >= len(embedded_charts(page.read_text()))
