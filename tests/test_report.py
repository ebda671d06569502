"""report.html: a run's page (and a comparison of runs) that a person opens and understands in ten seconds.

The pages are built from real short runs; the headless-Chromium checks need Debian's `chromium` (skipped without).
"""

from __future__ import annotations

import json
import re
import shutil
import subprocess
from pathlib import Path

import pytest

from job.analysis.report import FINISHED, INTERRUPTED, RUNNING, read_run, write_comparison, write_run_report
from tests.conftest import progress_records

pytestmark = pytest.mark.slow

CHROMIUM = shutil.which("chromium")
needs_chromium = pytest.mark.skipif(
    CHROMIUM is None, reason="Debian's chromium is not installed (apt-get install -y chromium)"
)


def embedded_charts(page: str) -> dict[str, dict]:
    """The plotly figures a page embeds, by chart id."""
    match = re.search(r'<script type="application/json" id="charts">(.*?)</script>', page, re.DOTALL)
    return {chart["id"]: chart["figure"] for chart in json.loads(match.group(1))}


def markup(page: str) -> str:
    """The page without its scripts (plotly.js mentions data URIs of its own)."""
    return re.sub(r"<script[^>]*>.*?</script>", "", page, flags=re.DOTALL)


def metrics_lines(run: Path) -> list[dict]:
    return progress_records(run)


def copy_run(source: Path, target: Path) -> Path:
    shutil.copytree(source, target, ignore=shutil.ignore_patterns("checkpoints", "tensorboard"))
    return target


def test_the_charts_show_exactly_what_metrics_jsonl_holds(trained_run, tmp_path):
    run = copy_run(trained_run[0], tmp_path / "run")
    page = write_run_report(run, FINISHED).read_text()
    lines = metrics_lines(run)
    traces = [
        trace for figure in embedded_charts(page).values() for trace in figure["data"] if trace["type"] == "scatter"
    ]
    assert {trace["meta"] for trace in traces} == {
        "d_loss",
        "g_loss",
        "d_accuracy",
        "steps_per_s",
        "frechet_distance",
        "classes_covered",
        "least_variety",
        "d_learning_rate",
        "g_learning_rate",
    }
    for trace in traces:
        expected = [(line["step"], line[trace["meta"]]) for line in lines if trace["meta"] in line]
        assert list(zip(trace["x"], trace["y"], strict=True)) == expected, trace["meta"]
    shares = embedded_charts(page)["chart-class_shares"]["data"][0]
    assert shares["y"] == lines[-1]["class_shares"]
    assert shares["x"] == [str(digit) for digit in range(10)]  # MNIST's classes are its digits


@pytest.mark.parametrize(
    "variety, early, warned",
    [(0.05, False, True), (0.9, False, False), (0.05, True, False)],  # early: alike in every run, not collapse
)
def test_a_run_whose_samples_look_alike_says_so_at_the_top(trained_run, tmp_path, variety, early, warned):
    run = copy_run(trained_run[0], tmp_path / "run")
    lines = [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines()]
    measured = [line for line in lines if "frechet_distance" in line]
    assert measured and all("least_variety" in line for line in measured)  # every quality measurement has it
    # As a collapsed model measures: a class that looks alike at every measurement, the distance no longer falling
    # (job.analysis.quality.collapsed: one measurement, or a run still improving, is no collapse).
    for line in measured:
        line["least_variety"] = variety
        line["frechet_distance"] = measured[-1]["frechet_distance"]
    if early:  # the same measurement, as if it were the first of a run ten times as long
        config = json.loads((run / "config.json").read_text())
        (run / "config.json").write_text(json.dumps(config | {"steps": 10 * config["steps"]}))
    (run / "metrics.jsonl").write_text("".join(json.dumps(line) + "\n" for line in lines))
    text = " ".join(re.sub(r"<[^>]+>", " ", markup(write_run_report(run, FINISHED).read_text())).split())
    assert f"least variety {variety:.2f}" in text
    assert ("(look alike)" in text) == warned


def test_the_class_shares_are_named_as_the_data_names_its_classes(trained_run, tmp_path):
    run = copy_run(trained_run[0], tmp_path / "run")
    config = json.loads((run / "config.json").read_text())
    names = [f"letter {letter}" for letter in "abcdefghij"]
    config["data_set"]["class_names"] = names
    (run / "config.json").write_text(json.dumps(config))
    shares = embedded_charts(write_run_report(run, FINISHED).read_text())["chart-class_shares"]
    assert shares["data"][0]["x"] == names and shares["layout"]["xaxis"]["type"] == "category"


def test_the_page_shows_status_progress_samples_and_configuration(trained_run, tmp_path):
    run = copy_run(trained_run[0], tmp_path / "run")
    page = write_run_report(run, RUNNING, device="CPU (no GPU visible)").read_text()
    assert 'class="status running"' in page and "300 of 300" in page and "CPU (no GPU visible)" in page
    assert f"{metrics_lines(run)[-1]['steps_per_s']:.1f} steps/s" in page
    assert "Fréchet distance" in page and "preset" in page and "beta_1" in page
    # reals.png and the three checkpoints' grids, each once in the timeline, the newest also beside the reals
    assert markup(page).count("data:image/png;base64,") == 1 + 3 + 1


def test_the_page_is_self_contained(trained_run, tmp_path):
    run = copy_run(trained_run[0], tmp_path / "run")
    page = write_run_report(run, FINISHED).read_text()
    html = markup(page)
    assert re.findall(r"""\b(?:src|href)=["']?([^"'\s>]{0,5})""", html) == ["data:"] * 5  # no other file needed
    assert "<link" not in html
    assert page.count("plotly.js v") == 1  # the library is embedded once


def test_a_conditional_run_charts_how_often_it_draws_the_digit_asked_for(conditional_run, tmp_path):
    run = copy_run(conditional_run[0], tmp_path / "run")
    page = write_run_report(run, FINISHED).read_text()
    trace = embedded_charts(page)["chart-label_accuracy"]["data"][0]
    assert trace["y"] == [line["label_accuracy"] for line in metrics_lines(run) if "label_accuracy" in line]
    assert "drawn as asked" in page


def test_lines_it_does_not_know_are_skipped_and_a_timings_record_is_shown(trained_run, tmp_path):
    run = copy_run(trained_run[0], tmp_path / "run")
    with open(run / "metrics.jsonl", "a") as file:
        file.write('{"timings": {"train_steps_s": 12.5, "quality": {"seconds": 3.25}}}\n')
        file.write('{"something": "new"}\n[1, 2]\n{"step": 350, "d_lo')  # and a line torn by a kill
    page = write_run_report(run, INTERRUPTED).read_text()
    assert "Where the time goes" in page and "train_steps_s" in page and "quality.seconds" in page
    assert 'class="status interrupted"' in page
    assert max(max(trace["x"]) for trace in embedded_charts(page)["chart-d_loss+g_loss"]["data"]) == 300


def test_a_run_that_has_not_measured_anything_yet_still_has_a_page(tmp_path):
    (tmp_path / "config.json").write_text(json.dumps({"steps": 1000, "preset": "default"}))
    page = write_run_report(tmp_path, RUNNING).read_text()
    assert "No metrics yet" in page and "No sample grid yet" in page
    assert read_run(tmp_path).step == 0


# --- comparing runs -----------------------------------------------------------------------------------------------


def test_gan_job_report_compares_runs_ranked_by_final_frechet_distance(trained_run, conditional_run, tmp_path):
    from tests.conftest import run_cli

    runs = {"plain": trained_run[0], "conditional": conditional_run[0]}
    result = run_cli("report", *map(str, runs.values()), "--out", str(tmp_path / "compare.html"))
    assert result.returncode == 0, result.stderr
    page = (tmp_path / "compare.html").read_text()

    finals = {name: metrics_lines(run)[-1]["frechet_distance"] for name, run in runs.items()}
    best, worse = sorted(runs, key=finals.get)
    ranking = page[page.index('id="ranking"') :]
    assert ranking.index(f"<th>{runs[best].name}</th>") < ranking.index(f"<th>{runs[worse].name}</th>")
    assert f"{finals[best]:.2f}" in ranking and "drawn as asked" in ranking  # a conditional run is among them

    settings = page[page.index('id="settings"') :]
    assert re.search(r'<tr class="differs"><th>conditional</th>', settings)
    assert not re.search(r'<tr class="differs"><th>batch</th>', settings)  # the same in both

    charts = embedded_charts(page)
    assert [trace["name"] for trace in charts["chart-frechet_distance"]["data"]] == [run.name for run in runs.values()]
    assert [trace["name"] for trace in charts["chart-label_accuracy"]["data"]] == [runs["conditional"].name]
    for name, run in runs.items():
        trace = next(t for t in charts["chart-g_loss"]["data"] if t["name"] == run.name)
        assert trace["y"] == [line["g_loss"] for line in metrics_lines(run)], name
    assert markup(page).count("data:image/png;base64,") == 2  # the newest grid of each run


# --- kept current by the training loop ---------------------------------------------------------------------------


def status_of(page: str) -> str:
    return re.search(r'class="status (\w+)"', page).group(1)


def test_a_finished_run_leaves_a_page_that_says_finished(trained_run):
    page = (trained_run[0] / "report.html").read_text()
    assert status_of(page) == FINISHED and "300 of 300" in page and "CPU" in page


def test_while_training_the_page_says_running_and_follows_each_sample_grid(tmp_path):
    from job.loop.train import train
    from tests.conftest import short_run_config

    seen = {}

    def look(progress) -> None:  # called at every log line
        if progress.step == 150:  # after the sample grid of step 100, before the one of step 200
            seen[progress.step] = (tmp_path / "report.html").read_text()

    train(short_run_config(tmp_path, steps=200, quality=False), on_progress=look)
    assert status_of(seen[150]) == RUNNING and "100 of 200" in seen[150]
    assert "time left" in seen[150] and markup(seen[150]).count("data:image/png;base64,") == 1 + 1 + 1
    assert status_of((tmp_path / "report.html").read_text()) == FINISHED


def test_an_interrupted_run_says_so(tmp_path):
    from tests.conftest import short_run_config, train_until_preempted

    train_until_preempted(short_run_config(tmp_path, quality=False))  # as if SIGTERM came during the first steps
    assert status_of((tmp_path / "report.html").read_text()) == INTERRUPTED


def test_a_run_interrupted_between_two_log_lines_shows_the_step_its_checkpoint_holds(tmp_path, trained_run):
    out, _ = trained_run
    run = shutil.copytree(out, tmp_path / "run")
    lines = (run / "metrics.jsonl").read_text().splitlines()
    logged = [line for line in lines if json.loads(line)["step"] <= 100 and "timings" not in line]
    (run / "metrics.jsonl").write_text("\n".join(logged) + "\n")  # stopped after the line of step 100 ...
    assert (run / "checkpoints" / "ckpt-300.index").exists()  # ... and checkpointed step 300
    assert read_run(run).step == 300
    assert "step<b>300 of 300</b>" in write_run_report(run, INTERRUPTED).read_text()


# --- in a browser -----------------------------------------------------------------------------------------------


def open_in_chromium(page: Path, tmp_path: Path, *options: str) -> subprocess.CompletedProcess:
    """Load a page in headless Chromium, with its console messages logged to stderr."""
    return subprocess.run(
        [
            CHROMIUM,
            "--headless",
            "--no-sandbox",
            "--disable-gpu",
            "--disable-quic",
            "--no-first-run",
            "--disable-background-networking",
            "--disable-component-update",
            "--disable-sync",
            f"--user-data-dir={tmp_path / 'chromium-profile'}",
            "--enable-logging=stderr",
            "--v=0",
            "--virtual-time-budget=10000",
            *options,
            page.resolve().as_uri(),
        ],
        capture_output=True,
        text=True,
        timeout=120,
    )


def console_messages(result: subprocess.CompletedProcess) -> list[str]:
    return [line for line in result.stderr.splitlines() if ":CONSOLE" in line]


@needs_chromium
def test_chromium_sees_a_broken_script(tmp_path):
    """The check below can fail: a page with a script error is caught."""
    page = tmp_path / "broken.html"
    page.write_text("<html><body><script>notAFunction();</script></body></html>")
    result = open_in_chromium(page, tmp_path, "--dump-dom")
    assert any("notAFunction" in line for line in console_messages(result))


@needs_chromium
def test_the_page_loads_in_chromium_without_a_console_message_and_draws_every_chart(trained_run, tmp_path):
    page = write_run_report(copy_run(trained_run[0], tmp_path / "run"), FINISHED)
    result = open_in_chromium(page, tmp_path, "--dump-dom")
    assert console_messages(result) == []
    dom = result.stdout
    for chart_id in embedded_charts(page.read_text()):
        drawn = re.search(rf'<div class="chart[^"]*" id="{re.escape(chart_id)}".*?class="main-svg"', dom, re.DOTALL)
        assert drawn, f"{chart_id} was not drawn"


@needs_chromium
def test_the_comparison_loads_in_chromium_without_a_console_message(trained_run, conditional_run, tmp_path):
    page = write_comparison([trained_run[0], conditional_run[0]], tmp_path / "compare.html")
    result = open_in_chromium(page, tmp_path, "--dump-dom")
    assert console_messages(result) == []
    assert result.stdout.count('class="main-svg"') >= len(embedded_charts(page.read_text()))


def test_a_run_that_fails_says_failed_and_the_error_goes_on(tmp_path):
    from job.analysis.report import FAILED, kept_current

    (tmp_path / "config.json").write_text(json.dumps({"steps": 100}))
    with pytest.raises(MemoryError), kept_current(tmp_path, "CPU", interrupted=KeyboardInterrupt):
        raise MemoryError
    assert status_of((tmp_path / "report.html").read_text()) == FAILED
