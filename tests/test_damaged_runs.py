"""Every reader of a run folder handles damage as training does: `gan-job report`, the sweep's comparison, `export`
and `evaluate` refuse a damaged run in one line, or leave it out of a comparison saying so, never with a traceback.

The runs here are written as a training writes them (config.json by rundir.config_json, metrics lines, sample grids
as PNGs), without training: each test then damages one thing.
"""

from __future__ import annotations

import json
import logging
import re
import shutil
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest

from job.analysis.report import FINISHED, read_run, render_run, write_comparison, write_run_report
from job.config import TrainConfig, user_cache
from job.data.load import ImageData
from job.errors import EXIT_BAD_INPUT, ConfigError
from job.rundir.claim import RunDir, classifier_cache_of, config_json
from serving.images import grid
from tests.conftest import invoke_cli, run_cli

STEPS = 300


def synthetic_run(root: Path, class_names: list[str] | None = None, **options) -> Path:
    """A finished-looking run of STEPS steps: config.json, a metrics line every 50 steps with a quality measurement
    every 100, and the sample grids of steps 100, 200, 300 beside reals.png."""
    names = class_names if class_names is not None else [str(digit) for digit in range(10)]
    labels = np.arange(len(names)) if names else None
    data = ImageData("digits", np.zeros((len(names) or 1, 28, 28, 1), np.uint8), labels, tuple(names))
    config = TrainConfig(out=root, steps=STEPS, **options)
    run = RunDir(root)
    run.root.mkdir(parents=True, exist_ok=True)
    run.config.write_text(config_json(config, data))
    lines = []
    for step in range(50, STEPS + 1, 50):
        line = {"step": step, "d_loss": 0.6 + step / 1000, "g_loss": 0.9, "d_accuracy": 0.5, "steps_per_s": 100.0}
        if step % 100 == 0:
            shares = [round(1 / max(len(names), 1), 4)] * len(names)
            line |= {"frechet_distance": 300 / step, "classes_covered": len(names), "class_shares": shares}
            line |= {"least_variety": 0.8}
        lines.append(json.dumps(line | {"elapsed_s": step / 100}))
    run.metrics.write_text("\n".join(lines) + "\n")
    run.samples.mkdir()
    pixels = np.random.default_rng(0).integers(0, 256, (16, 28, 28), dtype=np.uint8)
    for path in [run.samples / "reals.png", *(run.sample(step) for step in (100, 200, 300))]:
        grid(pixels).save(path)
    return root


def embedded_charts(page: str) -> list[dict]:
    match = re.search(r'<script type="application/json" id="charts">(.*?)</script>', page, re.DOTALL)
    return json.loads(match.group(1))


def edit_config(run: Path, **values) -> None:
    config = json.loads((run / "config.json").read_text())
    (run / "config.json").write_text(json.dumps(config | values))


def replace(path: Path, content: bytes | str) -> None:
    path.write_bytes(content.encode() if isinstance(content, str) else content)


def into_folder(path: Path) -> None:
    """A folder where the file was: unreadable as a file, whoever runs the test (root reads every file)."""
    path.unlink()
    path.mkdir()


# ---- damage that makes a run unreadable: a reader refuses it, naming the file and the problem ---------------------

UNREADABLE: dict[str, tuple[Callable[[Path], None], str]] = {
    "config.json truncated": (
        lambda run: replace(run / "config.json", (run / "config.json").read_text()[:40]),
        "config.json is unreadable",
    ),
    "config.json not JSON": (lambda run: replace(run / "config.json", "steps: 300"), "config.json is unreadable"),
    "config.json not UTF-8": (
        lambda run: replace(run / "config.json", b'{"out": "\xff\xfe"}'),
        "config.json is unreadable",
    ),
    "config.json a list": (
        lambda run: replace(run / "config.json", "[1, 2, 3]"),
        "config.json is not a run configuration",
    ),
    "config.json a folder": (lambda run: into_folder(run / "config.json"), "config.json is unreadable"),
    "config.json nested without end": (
        lambda run: replace(run / "config.json", "[" * 100_000 + "]" * 100_000),
        "config.json is unreadable",
    ),
    "config.json nested deep": (
        lambda run: edit_config(run, hyperparameters=json.loads('{"a": ' * 500 + "1" + "}" * 500)),
        "nested more than",
    ),
    "steps a string": (lambda run: edit_config(run, steps="300"), "--steps must be a whole number, got '300'"),
    "steps NaN": (
        lambda run: replace(
            run / "config.json", (run / "config.json").read_text().replace('"steps": 300', '"steps": NaN')
        ),
        "--steps must be a whole number, got nan",
    ),
    "steps true": (lambda run: edit_config(run, steps=True), "--steps must be a whole number, got True"),
    "steps negative": (lambda run: edit_config(run, steps=-5), "--steps must be positive"),
    "preset unknown": (lambda run: edit_config(run, preset="fancy"), "--preset must be one of"),
    "out a number": (lambda run: edit_config(run, out=5), "--out must be a path"),
    "data_set not an object": (
        lambda run: edit_config(run, data_set=[28, 28, 1]),
        "records data_set [28, 28, 1], expected an object",
    ),
    "data_set without class names": (
        lambda run: edit_config(run, data_set={"name": "x", "image_shape": [28, 28, 1]}),
        "records data_set.class_names null",
    ),
    "image shape of two channels": (
        lambda run: edit_config(run, data_set={"name": "x", "image_shape": [28, 28, 2], "class_names": []}),
        "data_set.image_shape [28, 28, 2]",
    ),
    "class names not text": (
        lambda run: edit_config(run, data_set={"name": "x", "image_shape": [28, 28, 1], "class_names": [0, 1]}),
        "data_set.class_names [0, 1]",
    ),
    "a class beyond the data's": (lambda run: edit_config(run, digit=12), "records a run of class 12"),
    "clusters a string": (lambda run: edit_config(run, clusters="thirty"), 'records clusters "thirty"'),
    "metrics.jsonl a folder": (lambda run: into_folder(run / "metrics.jsonl"), "metrics.jsonl is unreadable"),
}


@pytest.mark.parametrize("case", UNREADABLE.values(), ids=UNREADABLE.keys())
def test_a_run_whose_files_do_not_read_back_is_read_as_damaged_naming_the_file(tmp_path, case):
    damage, message = case
    run = synthetic_run(tmp_path / "run")
    damage(run)
    read = read_run(run)
    assert read.problem is not None and message in read.problem, read.problem
    assert "\n" not in read.problem
    with pytest.raises(ConfigError, match=re.escape(message)):
        write_run_report(run, FINISHED)


def test_a_folder_without_config_json_is_no_run(tmp_path):
    assert read_run(tmp_path).problem == f"{tmp_path} is not a run directory: it has no config.json"
    assert read_run(tmp_path / "gone").problem.endswith("is not a run directory: it has no config.json")


def test_a_config_json_without_a_setting_it_records_today_is_read_as_a_run_from_before_it(tmp_path):
    run = synthetic_run(tmp_path / "run")
    config = json.loads((run / "config.json").read_text())
    del config["data_set"], config["latent_dim"]
    (run / "config.json").write_text(json.dumps(config))
    read = read_run(run)
    assert read.problem is None and read.class_names == [str(digit) for digit in range(10)]  # MNIST's


# ---- damage inside a readable run: what is damaged is skipped, the page shows the rest ------------------------------

GARBAGE_LINES = (
    "\x00\x01 not JSON\n"
    '{"step": 310, "d_loss": NaN, "g_loss": "high", "frechet_distance": "bad", "class_shares": 3}\n'
    '{"step": true, "d_loss": 1.0}\n{"step": -1, "d_loss": 1.0}\n{"step": 1.5, "d_loss": 1.0}\n{"step": 1e400}\n'
    '[1, 2]\n"text"\n{"timings": 5}\n{"step": ' + "9" * 5000 + "}\n"
    '{"step": 320, "x": ' + "[" * 900 + "]" * 900 + "}\n"
    '{"step": 330, "frechet_distance": Infinity, "classes_covered": "all", "steps_per_s": -Infinity}\n'
    '{"step": 340, "d_loss": 0.5, "class_shares": [0.5, NaN]\n'  # torn by a kill
)


def test_metrics_lines_and_values_of_the_wrong_kind_are_skipped_and_the_charts_stay_valid_json(tmp_path):
    run = synthetic_run(tmp_path / "run")
    with open(run / "metrics.jsonl", "ab") as metrics:
        metrics.write(GARBAGE_LINES.encode() + b"\xff\xfe not UTF-8\n")
    read = read_run(run)
    assert read.problem is None
    assert [line["step"] for line in read.metrics] == [50, 100, 150, 200, 250, 300, 310, 330]  # 320 nests too deep
    assert read.metrics[-2:] == [{"step": 310}, {"step": 330}]  # no value there of its kind
    assert read.quality["step"] == 300 and read.quality["frechet_distance"] == 1.0
    page = write_run_report(run, FINISHED).read_text()
    values = [value for chart in embedded_charts(page) for trace in chart["figure"]["data"] for value in trace["y"]]
    assert values and all(isinstance(value, int | float) for value in values)


def test_a_quality_line_with_only_its_frechet_distance_still_makes_a_page(tmp_path):
    run = synthetic_run(tmp_path / "run")
    with open(run / "metrics.jsonl", "a") as metrics:
        metrics.write('{"step": 400, "frechet_distance": 0.5, "classes_covered": "3", "class_shares": "a"}\n')
    page = render_run(read_run(run), FINISHED)
    assert "Fréchet distance<b>0.50</b>" in page and 'class="fact">classes covered' not in page


def truncate(path: Path) -> None:
    path.write_bytes(path.read_bytes()[:60])


SAMPLES: dict[str, tuple[Callable[[Path], None], int, bool]] = {  # damage -> grids left in the timeline, reals kept
    "the newest grid truncated": (lambda run: truncate(run / "samples" / "step_000300.png"), 2, True),
    "reals.png not a PNG": (lambda run: replace(run / "samples" / "reals.png", b"GIF89a garbage"), 3, False),
    "a grid that is a folder": (lambda run: into_folder(run / "samples" / "step_000200.png"), 2, True),
    "a file named like a grid of no step": (lambda run: replace(run / "samples" / "step_abc.png", b"x"), 3, True),
    "samples a file": (lambda run: (shutil.rmtree(run / "samples"), replace(run / "samples", b"x")), 0, False),
}


@pytest.mark.parametrize("case", SAMPLES.values(), ids=SAMPLES.keys())
def test_a_sample_grid_that_does_not_read_back_is_left_out_and_the_page_still_written(tmp_path, case, caplog):
    damage, grids, reals = case
    run = synthetic_run(tmp_path / "run")
    damage(run)
    read = read_run(run)
    assert read.problem is None
    assert len(read.samples) == grids and (read.reals is not None) == reals
    page = write_run_report(run, FINISHED).read_text()
    embedded = re.sub(r"<script[^>]*>.*?</script>", "", page, flags=re.DOTALL).count("data:image/png;base64,")
    assert embedded == grids + reals + (1 if grids else 0)  # the newest twice


# ---- the comparison: gan-job report and the sweep's --------------------------------------------------------------


def test_a_comparison_leaves_a_damaged_run_out_with_a_warning_naming_it_and_its_problem(tmp_path, caplog):
    good, other = synthetic_run(tmp_path / "good"), synthetic_run(tmp_path / "other", seed=3)
    damaged = synthetic_run(tmp_path / "damaged")
    replace(damaged / "config.json", "[]")
    with caplog.at_level(logging.WARNING):
        page = write_comparison([good, damaged, other], tmp_path / "compare.html").read_text()
    (warning,) = [record.getMessage() for record in caplog.records if record.levelno == logging.WARNING]
    assert f"leaving {damaged} out of the comparison" in warning and "is not a run configuration" in warning
    assert "--force" not in warning  # gan-job train's advice: a reader has no --force
    names = {trace["name"] for chart in embedded_charts(page) for trace in chart["figure"]["data"]}
    assert names == {"good", "other"}


def test_a_comparison_with_no_readable_run_writes_nothing_and_says_why(tmp_path):
    damaged = synthetic_run(tmp_path / "damaged")
    replace(damaged / "config.json", "{")
    with pytest.raises(ConfigError, match=r"^no run to compare: .*config.json is unreadable") as raised:
        write_comparison([damaged, tmp_path / "gone"], tmp_path / "compare.html")
    assert "gone is not a run directory" in str(raised.value)
    assert not (tmp_path / "compare.html").exists()


def test_the_sweeps_comparison_leaves_a_damaged_run_out_too(tmp_path, caplog):
    from job.analysis.sweep import Variation, finish_sweep

    variations = [Variation("seed-0", {"seed": 0}), Variation("seed-1", {"seed": 1}), Variation("seed-2", {"seed": 2})]
    synthetic_run(tmp_path / "seed-0")
    synthetic_run(tmp_path / "seed-1", seed=1)
    edit_config(tmp_path / "seed-1", data_set="mnist")
    with caplog.at_level(logging.WARNING):
        finish_sweep(variations, tmp_path)
    assert "seed-1 out of the comparison" in caplog.text and "data_set" in caplog.text
    page = (tmp_path / "report.html").read_text()
    assert {trace["name"] for chart in embedded_charts(page) for trace in chart["figure"]["data"]} == {"seed-0"}


@pytest.mark.slow
def test_gan_job_report_of_a_damaged_run_and_a_good_one_writes_the_page_with_one_warning(tmp_path):
    good, damaged = synthetic_run(tmp_path / "good"), synthetic_run(tmp_path / "damaged")
    edit_config(damaged, steps="many")
    result = run_cli("report", str(good), str(damaged), "--out", str(tmp_path / "compare.html"))
    assert result.returncode == 0, result.stderr
    warnings = [line for line in result.stderr.splitlines() if "WARNING" in line]
    assert len(warnings) == 1 and str(damaged) in warnings[0] and "--steps must be a whole number" in warnings[0]
    assert "Traceback" not in result.stderr and (tmp_path / "compare.html").is_file()


@pytest.mark.slow
def test_gan_job_report_of_damaged_runs_only_is_one_line_and_exit_code_2(tmp_path):
    damaged = synthetic_run(tmp_path / "damaged")
    into_folder(damaged / "metrics.jsonl")
    empty = tmp_path / "empty"
    empty.mkdir()
    result = run_cli("report", str(damaged), str(empty), "--out", str(tmp_path / "compare.html"))
    assert result.returncode == EXIT_BAD_INPUT, result.stderr
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("Error: no run to compare: "), result.stderr
    assert "metrics.jsonl is unreadable" in lines[0] and f"{empty} is not a run directory" in lines[0]
    assert not (tmp_path / "compare.html").exists()


# ---- export and evaluate ----------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "case", [UNREADABLE[name] for name in ("config.json a list", "steps NaN", "image shape of two channels")]
)
def test_export_refuses_a_run_whose_config_json_is_damaged_in_one_line(tmp_path, case):
    from job.rundir.restore import load_run

    damage, message = case
    run = synthetic_run(tmp_path / "run")
    damage(run)
    with pytest.raises(ConfigError, match=re.escape(message)) as raised:
        load_run(run)
    assert "\n" not in str(raised.value)


def test_export_refuses_a_config_json_that_records_no_out(tmp_path):
    from job.rundir.restore import load_run

    run = synthetic_run(tmp_path / "run")
    config = json.loads((run / "config.json").read_text())
    del config["out"]
    (run / "config.json").write_text(json.dumps(config))
    with pytest.raises(ConfigError, match="config.json is not a run configuration"):
        load_run(run)


@pytest.mark.parametrize(
    "damage", [UNREADABLE[name][0] for name in ("config.json not UTF-8", "out a number", "data_set not an object")]
)
def test_evaluate_takes_a_model_beside_a_damaged_config_json_as_one_without_its_run(tmp_path, damage, caplog):
    run = synthetic_run(tmp_path / "runs" / "run")
    (run / "generator.onnx").write_bytes(b"")
    damage(run)
    with caplog.at_level(logging.WARNING):
        assert classifier_cache_of(run / "generator.onnx") == user_cache()
    assert "taking the model as one without its run" in caplog.text


def test_training_refuses_a_config_json_of_the_wrong_types_in_one_line_before_tensorflow_loads(tmp_path):
    run = synthetic_run(tmp_path / "run")
    edit_config(run, seed="7")
    before = (run / "config.json").read_bytes()
    result = invoke_cli("train", "--out", str(run), "--steps", str(STEPS))
    assert result.returncode == EXIT_BAD_INPUT, result.stderr
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and "--seed must be a whole number, got '7'" in lines[0], result.stderr
    assert (run / "config.json").read_bytes() == before
