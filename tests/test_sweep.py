"""Sweeps: one YAML file, many `gan-job train` runs, one comparison and the best generator."""

from __future__ import annotations

import json
import signal
import subprocess
import time
from pathlib import Path

import pytest
import yaml

from job.analysis.report import Run, ranked
from job.analysis.sweep import TRAIN, SweepError, best_summary, finish_sweep, load_sweep
from job.cli import train as train_command
from tests.conftest import progress_records, run_cli
from tests.test_output_guard import assert_refused, without_tensorflow


def sweep_file(folder: Path, text: str) -> Path:
    path = folder / "sweep.yaml"
    path.write_text(text)
    return path


def test_a_sweep_is_the_product_of_vary_plus_the_explicit_runs_each_named_by_its_settings(tmp_path):
    path = sweep_file(
        tmp_path,
        "settings: {steps: 2000, preset: default, latent-dim: 64}\n"
        "vary: {seed: [0, 1], ema: [true, false]}\n"
        "runs: [{preset: seed}]\n",
    )
    variations = load_sweep(path, train_command)
    assert [v.name for v in variations] == [
        "seed-0_ema-true",
        "seed-0_ema-false",
        "seed-1_ema-true",
        "seed-1_ema-false",
        "preset-seed",
    ]
    assert variations[1].options == {"steps": 2000, "preset": "default", "latent_dim": 64, "seed": 0, "ema": False}
    assert variations[1].arguments(train_command) == [
        "--steps", "2000", "--preset", "default", "--latent-dim", "64", "--seed", "0", "--no-ema",
    ]  # fmt: skip
    assert variations[4].options["preset"] == "seed"


def test_command_line_options_override_the_shared_settings_but_not_a_variation(tmp_path):
    path = sweep_file(tmp_path, "settings: {steps: 2000, seed: 3}\nruns: [{steps: 500}, {digit: 7}]\n")
    variations = load_sweep(path, train_command, overrides={"steps": 100, "seed": 5})
    assert [(v.options["steps"], v.options["seed"]) for v in variations] == [(500, 5), (100, 5)]


def test_a_sweep_file_with_only_settings_is_one_run(tmp_path):
    (variation,) = load_sweep(sweep_file(tmp_path, "settings: {steps: 100}\n"), train_command)
    assert variation.name == "run" and variation.options == {"steps": 100}


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("settings: {stpes: 100}", "'stpes' is not an option of gan-job train"),
        ("vary: {seed: 3}", "seed must be a list of values"),
        ("settings: {digit: 1000}", "1000 is not in the range -1<=x<=999"),
        ("vary: {preset: [default, fancy]}", "'fancy' is not one of 'default', 'seed'"),
        ("runs: [{conditional: true, digit: 3}]", "--conditional trains on every class"),
        ("settings: {ema: 1}", "ema is a switch: true or false"),
        ("settings: {data: null}", "data must be one value, got None"),
        ("settings: {batch: 3}", "--batch must be even"),
        ("runs: [{seed: 1}, {seed: 1}]", "the same run twice: seed-1"),
        ("settings: {out: somewhere}", "leave 'out' out"),
        ("setings: {steps: 100}", "a sweep file is a mapping of settings, vary, runs"),
    ],
)
def test_an_unknown_key_or_value_is_refused(tmp_path, text, message):
    with pytest.raises(SweepError, match=message.replace("(", r"\(").replace("[", r"\[")):
        load_sweep(sweep_file(tmp_path, text), train_command)


def fake_run(name: str, frechet_distance: float | None, classes_covered: int = 10) -> Run:
    quality = {} if frechet_distance is None else {"frechet_distance": frechet_distance, "class_shares": [0.1] * 10}
    line = {"step": 100, "classes_covered": classes_covered} | quality
    return Run(Path(name), {"steps": 100}, [line])


def test_runs_rank_by_final_frechet_distance_then_digits_covered_then_sweep_order():
    runs = [
        fake_run("unmeasured", None),
        fake_run("worse", 9.0),
        fake_run("tied-fewer-digits", 4.0, classes_covered=9),
        fake_run("tied-first", 4.0),
        fake_run("tied-second", 4.0),
    ]
    assert [run.name for run in ranked(runs)] == [
        "tied-first",
        "tied-second",
        "tied-fewer-digits",
        "worse",
        "unmeasured",
    ]


def test_the_best_runs_summary_shows_its_distance_rounded_as_the_report_does():
    summary = best_summary(fake_run("seed-1", 3.14159265, classes_covered=9)).splitlines()
    assert summary[0] == "seed-1"  # the first line is the run's name alone, for scripts
    assert "Fréchet distance: 3.14" in summary and "classes covered: 9 of 10" in summary
    assert "Fréchet distance: not measured" in best_summary(fake_run("unmeasured", None))


@pytest.mark.slow
def test_a_sweep_trains_every_run_compares_them_and_keeps_the_best(tmp_path, small_mnist):
    path = sweep_file(
        tmp_path,
        f"settings: {{data: {small_mnist}, steps: 100, checkpoint-every: 50, log-every: 50, quality-samples: 100}}\n"
        "vary: {seed: [1, 2]}\n",
    )
    out = tmp_path / "sweep"
    first = run_cli("sweep", str(path), "--out", str(out), "--parallel", "2", "--steps", "150", timeout=600)
    assert first.returncode == 0, first.stderr
    for name in ("seed-1", "seed-2"):
        assert (out / name / "generator.onnx").is_file() and (out / name / "report.html").is_file()
        assert json.loads((out / name / "config.json").read_text())["steps"] == 150  # the command line's --steps
    finals = {name: progress_records(out / name)[-1] for name in ("seed-1", "seed-2")}
    best = min(finals, key=lambda name: finals[name]["frechet_distance"])
    assert (out / "best" / "generator.onnx").read_bytes() == (out / best / "generator.onnx").read_bytes()
    assert (out / "best" / "run.txt").read_text().startswith(best + "\n")
    page = (out / "report.html").read_text()
    assert page.index(f"<th>{best}</th>") < page.index(f"<th>{({'seed-1', 'seed-2'} - {best}).pop()}</th>")

    logs = {name: (out / "logs" / f"{name}.log").read_text() for name in finals}
    again = run_cli("sweep", str(path), "--out", str(out), "--parallel", "2", "--steps", "150", timeout=600)
    assert again.returncode == 0, again.stderr
    assert all(f"{name}: already finished at step 150" in again.stderr for name in finals)  # no training started
    assert logs == {name: (out / "logs" / f"{name}.log").read_text() for name in finals}


def test_a_bad_sweep_file_is_refused_before_anything_runs(tmp_path):
    out = tmp_path / "sweep"
    result = run_cli("sweep", str(sweep_file(tmp_path, "vary: {seed: [0, 1], digit: [3, 1000]}")), "--out", str(out))
    assert result.returncode == 2
    assert "1000 is not in the range -1<=x<=999" in result.stderr
    assert not out.exists()


def test_a_train_option_the_command_line_gets_wrong_is_refused_too(tmp_path):
    path = sweep_file(tmp_path, "vary: {seed: [0, 1]}")
    result = run_cli("sweep", str(path), "--out", str(tmp_path / "sweep"), "--stepz", "3")
    assert result.returncode == 2 and "--stepz" in result.stderr


def test_finishing_a_sweep_with_nothing_finished_writes_no_best(tmp_path):
    path = sweep_file(tmp_path, "vary: {seed: [0, 1]}")
    assert finish_sweep(load_sweep(path, train_command), tmp_path / "sweep") is None
    assert not (tmp_path / "sweep" / "best").exists()


# --- the sweep as a Kubernetes Indexed Job ------------------------------------------------------------------------

K8S = Path(__file__).parents[1] / "k8s"


def sweep_job() -> dict:
    return yaml.safe_load((K8S / "sweep-job.yaml").read_text())


def test_the_indexed_job_has_one_completion_per_variation_of_its_sweep_file():
    variations = load_sweep(K8S / "sweep" / "sweep.yaml", train_command)
    assert sweep_job()["spec"]["completions"] == len(variations) == 6
    kustomization = yaml.safe_load((K8S / "kustomization.yaml").read_text())
    (generator,) = kustomization["configMapGenerator"]
    assert generator["files"] == ["sweep.yaml=sweep/sweep.yaml"]
    volumes = {v["name"]: v for v in sweep_job()["spec"]["template"]["spec"]["volumes"]}
    assert volumes["sweep"]["configMap"]["name"] == generator["name"]


@pytest.mark.slow
def test_two_pods_at_once_each_train_their_variation_and_the_last_one_compares(tmp_path, small_mnist):
    container = sweep_job()["spec"]["template"]["spec"]["containers"][0]
    path = sweep_file(
        tmp_path,
        f"settings: {{data: {small_mnist}, steps: 60, checkpoint-every: 30, log-every: 30, quality-samples: 100}}\n"
        "vary: {seed: [1, 2]}\n",
    )
    runs = tmp_path / "runs"

    def pod_args(index: int) -> list[str]:
        """The container's args on this machine: the ConfigMap's file, the volume, the completion index."""
        here = {"/sweep/sweep.yaml": str(path), "$(SWEEP_INDEX)": str(index)}
        return [here.get(arg, arg.replace("/runs", str(runs), 1)) for arg in container["args"]]

    gan_job = TRAIN[:-1]  # the image's entrypoint, gan-job
    pods = [
        subprocess.Popen([*gan_job, *pod_args(i)], stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
        for i in range(2)
    ]
    outputs = [pod.communicate(timeout=600)[0] for pod in pods]
    assert [pod.returncode for pod in pods] == [0, 0], outputs
    out = runs / "sweep"
    assert (out / "report.html").is_file() and (out / "best" / "generator.onnx").is_file()
    assert sum("best run:" in output for output in outputs) >= 1


@pytest.mark.slow
def test_sigterm_reaches_every_training_which_checkpoints_and_the_sweep_exits_75(tmp_path, small_mnist):
    path = sweep_file(
        tmp_path,
        f"settings: {{data: {small_mnist}, steps: 1000000, checkpoint-every: 1000000, log-every: 50, quality: false}}\n"
        "vary: {seed: [1, 2]}\n",
    )
    out = tmp_path / "sweep"
    sweep = subprocess.Popen([*TRAIN[:-1], "sweep", str(path), "--out", str(out), "--parallel", "2"], text=True)
    logs = [out / "logs" / f"seed-{seed}.log" for seed in (1, 2)]
    deadline = time.monotonic() + 300
    while not all(log.exists() and "step 50/" in log.read_text() for log in logs):
        assert time.monotonic() < deadline and sweep.poll() is None, "the trainings did not start"
        time.sleep(1)
    sweep.send_signal(signal.SIGTERM)
    assert sweep.wait(timeout=120) == 75
    for seed, log in zip((1, 2), logs, strict=True):
        assert "SIGTERM: stopping after the steps under way" in log.read_text()
        assert list((out / f"seed-{seed}" / "checkpoints").glob("ckpt-*.index")), "no checkpoint written"


@pytest.mark.slow  # starts gan-job in a process of its own
def test_a_bad_sweep_file_is_refused_in_one_line_without_tensorflow(tmp_path):
    path = sweep_file(tmp_path, "vary: {seed: []}\n")
    refused = without_tensorflow("gan-job", "sweep", path, "--out", tmp_path / "out")
    assert_refused(refused, "vary: seed must be a list of values, one or more")
    assert not (tmp_path / "out").exists()
