"""`gan-job report FOLDER...` compares every run in or below the folders it is given, as TensorBoard's --logdir finds
every run below it: run folders, folders of runs, sweeps. The pages share one plotly.min.js, written beside them.

The runs are written as a training writes them, without training (tests/test_damaged_runs.py's synthetic_run).
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
from click.testing import CliRunner
from plotly.offline import get_plotlyjs

from job.analysis.report import PLOTLY_NAME, compare, runs_in
from job.cli import main
from job.errors import EXIT_BAD_INPUT
from tests.conftest import run_cli
from tests.test_damaged_runs import embedded_charts, synthetic_run
from tests.test_output_guard import assert_refused, without_tensorflow


def run_names(page: Path) -> set[str]:
    return {trace["name"] for chart in embedded_charts(page.read_text()) for trace in chart["figure"]["data"]}


def sweep_folder(out: Path, names: list[str]) -> Path:
    """What `gan-job sweep --out OUT` leaves: a run per variation, its logs, failures, comparison and best/ (the best
    run's generator and its name, no run of its own)."""
    for name in names:
        synthetic_run(out / name, seed=len(name))
        (out / name / "generator.onnx").write_bytes(b"onnx")
    (out / "logs").mkdir()
    (out / "logs" / f"{names[0]}.log").write_text("training\n")
    (out / "best").mkdir()
    shutil.copy(out / names[0] / "generator.onnx", out / "best" / "generator.onnx")
    (out / "best" / "run.txt").write_text(f"{names[0]}\nFréchet distance 1.0\n")
    (out / "report.html").write_text("<html></html>")
    return out


@pytest.mark.slow  # starts gan-job in a process of its own
def test_a_folder_of_runs_and_sweeps_compares_every_run_below_it_once(tmp_path):
    runs = tmp_path / "runs"
    synthetic_run(runs / "plain")
    synthetic_run(runs / "group" / "nested", seed=5)
    sweep_folder(runs / "sweep", ["seed-0", "seed-1"])
    out = tmp_path / "pages" / "compare.html"
    result = run_cli("report", str(runs), str(runs / "plain"), "--out", str(out))  # plain given twice
    assert result.returncode == 0, result.stderr
    assert result.stderr.strip().splitlines()[-1] == f"compared 4 runs in {out}"
    assert run_names(out) == {"plain", "nested", "seed-0", "seed-1"}  # best/ is no run, and plain counts once
    assert "<h1>4 runs compared</h1>" in out.read_text()


@pytest.mark.slow  # starts gan-job in a process of its own
def test_one_run_is_compared_as_one_run(tmp_path):
    synthetic_run(tmp_path / "runs" / "only")
    out = tmp_path / "compare.html"
    result = run_cli("report", str(tmp_path / "runs"), "--out", str(out))
    assert result.returncode == 0, result.stderr
    assert result.stderr.strip().splitlines()[-1] == f"compared 1 run in {out}"
    assert "<h1>1 run compared</h1>" in out.read_text() and "<title>1 run compared</title>" in out.read_text()


@pytest.mark.slow  # starts gan-job in a process of its own
def test_a_folder_that_holds_no_run_anywhere_below_is_one_line_and_exit_code_2(tmp_path):
    folder = tmp_path / "not-runs"
    (folder / "notes" / "drafts").mkdir(parents=True)
    (folder / "notes" / "drafts" / "todo.txt").write_text("train a GAN\n")
    result = without_tensorflow("gan-job", "report", folder, "--out", tmp_path / "compare.html")
    assert result.returncode == EXIT_BAD_INPUT, result.stderr
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("Error: ") and f"{folder} " in lines[0], result.stderr
    assert "holds no run" in lines[0]
    assert not (tmp_path / "compare.html").exists()


def test_runs_are_found_in_the_order_of_their_names_and_their_own_folders_are_not_searched(tmp_path):
    for name in ("b", "a", "c/inner"):
        synthetic_run(tmp_path / name)
    synthetic_run(tmp_path / "b" / "samples" / "looks-like-a-run")  # inside a run: not one of the runs compared
    (tmp_path / ".hidden").mkdir()
    (tmp_path / ".hidden" / "config.json").write_text("{}")
    assert runs_in(tmp_path) == [tmp_path / "a", tmp_path / "b", tmp_path / "c" / "inner"]
    assert runs_in(tmp_path / "a") == [tmp_path / "a"]  # a run folder given is that run


def test_comparisons_load_one_plotly_min_js_from_beside_them(tmp_path):
    first, second = synthetic_run(tmp_path / "first"), synthetic_run(tmp_path / "second", seed=2)
    pages = tmp_path / "pages"
    compare([first], pages / "one.html")
    compare([first, second], pages / "both.html")
    assert sorted(path.name for path in pages.iterdir()) == ["both.html", "one.html", PLOTLY_NAME]
    assert (pages / PLOTLY_NAME).read_text() == get_plotlyjs()
    for page in ("one.html", "both.html"):
        html = (pages / page).read_text()
        assert f'<script src="{PLOTLY_NAME}"></script>' in html
        assert "plotly.js v" not in html and len(html) < 500_000  # the library is not in the page


def test_settings_that_are_lists_read_as_text(tmp_path):
    names = ["zero", "one", "two"]
    run = synthetic_run(tmp_path / "run", class_names=names)
    compare([run], tmp_path / "compare.html")
    page = (tmp_path / "compare.html").read_text()
    assert json.loads((run / "config.json").read_text())["data_set"]["class_names"] == names
    assert "<td>zero, one, two</td>" in page and "zero&#39;" not in page
    assert "<td>28, 28, 1</td>" in page  # the image shape


def test_a_comparison_written_to_a_name_that_is_no_page_is_refused_in_one_line(tmp_path):
    result = CliRunner().invoke(main, ["report", str(tmp_path), "--out", str(tmp_path / "cmp.png")])
    assert result.exit_code == 2 and not (tmp_path / "cmp.png").exists()
    assert (
        result.output.strip()
        == f"Error: Invalid value for '--out': {tmp_path / 'cmp.png'} is no page name: end it in .html"
    )


def test_runs_of_the_same_folder_name_in_two_sweeps_are_told_apart_by_their_paths(tmp_path):
    sweep_folder(tmp_path / "runs" / "first", ["seed-0", "seed-1"])
    sweep_folder(tmp_path / "runs" / "second", ["seed-0"])
    out = tmp_path / "compare.html"
    compare([tmp_path / "runs"], out)
    assert run_names(out) == {"first/seed-0", "first/seed-1", "second/seed-0"}


@pytest.mark.slow  # starts gan-job in processes of their own
def test_report_neither_needs_nor_loads_tensorflow_to_compare_runs_or_to_refuse_a_folder(tmp_path):
    sweep_folder(tmp_path / "runs", ["seed-0", "seed-1"])
    (tmp_path / "empty").mkdir()
    compared = without_tensorflow("gan-job", "report", tmp_path / "runs", "--out", tmp_path / "compare.html")
    assert compared.returncode == 0, compared.stderr
    assert run_names(tmp_path / "compare.html") == {"seed-0", "seed-1"}
    refused = without_tensorflow("gan-job", "report", tmp_path / "empty", "--out", tmp_path / "none.html")
    assert_refused(refused, "no run to compare", "holds no run")
