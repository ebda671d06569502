"""Sweeps hold up against what operators do: files that are no sweep file are refused in one line, --force never
throws finished runs away on a re-run, an Indexed Job compares what finished even when an index fails for good, and
the trainings die with their sweep."""

from __future__ import annotations

import logging
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import yaml

from job.analysis import sweep as sweep_module
from job.analysis.sweep import FAILED, MAX_VARIATIONS, TRAIN, SweepError, load_sweep, record_outcome, run_index
from job.cli import train as train_command
from tests.conftest import SMALL_MNIST
from tests.test_output_guard import assert_refused, without_tensorflow

K8S = Path(__file__).parents[1] / "k8s"


def sweep_file(folder: Path, content: str | bytes) -> Path:
    path = folder / "sweep.yaml"
    path.write_bytes(content.encode("utf-8") if isinstance(content, str) else content)
    return path


def refused_sweep(tmp_path: Path, content: str | bytes, *options: str) -> subprocess.CompletedProcess:
    """`gan-job sweep` of this file in a fresh process that must not load TensorFlow; nothing may be created."""
    out = tmp_path / "sweep"
    result = without_tensorflow("gan-job", "sweep", sweep_file(tmp_path, content), "--out", out, *options)
    assert not out.exists()
    return result


# ---- files that are no sweep file ------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("content", "words"),
    [
        (b"settings: {steps: 100}\n# caf\xe9\n", ["is not a text file (not UTF-8 at byte 28)"]),
        (b"\x89PNG\r\n\x1a\n\x00\x00\x00\rIHDR", ["is not a text file"]),
        (b"settings: {steps: 100}\x00\n", ["is not a text file (character #x0000)"]),
        ("settings: {steps: 100\nvary: {seed: [1, 2]}\n", ["is not YAML", "(line 2, column 5)"]),
        (
            "settings:\n  steps: 100\n   seed: 2\n",
            ["mapping values are not allowed here (line 3, column 8)"],
        ),
        ("settings: {steps: *undefined}\n", ["is not YAML", "undefined alias", "(line 1, column 19)"]),
        ("settings: !!python/object/apply:os.system [echo]\n", ["is not YAML", "constructor"]),
        ("[" * 100_000, ["nests too deeply"]),
        ("#" * (sweep_module.MAX_FILE_BYTES + 1), ["is larger than 1,000,000 bytes"]),
    ],
    # Short ids: a test's id travels in the environment of the processes it starts (PYTEST_CURRENT_TEST)
    ids=["latin-1", "png", "nul", "unclosed", "indented", "alias", "python-tag", "nested", "too-large"],
)
def test_a_file_that_is_no_text_or_no_yaml_is_refused_in_one_line(tmp_path, content, words):
    assert_refused(refused_sweep(tmp_path, content), *words)


def test_more_variations_than_the_limit_are_refused_before_they_are_made(tmp_path):
    values = "[" + ", ".join(str(value) for value in range(1, 1001)) + "]"
    text = f"vary: {{seed: &values {values}, log-every: *values, sample-every: *values}}\nruns: [{{}}]\n"
    result = refused_sweep(tmp_path, text)  # a billion variations: made one by one, this would not end
    assert_refused(
        result,
        f"makes 1,000,000,001 variations (1000 seed x 1000 log-every x 1000 sample-every + 1 run), more than a "
        f"sweep's {MAX_VARIATIONS:,}",
    )


def test_the_limit_is_a_number_of_variations_from_vary_and_runs_together(tmp_path, monkeypatch):
    monkeypatch.setattr(sweep_module, "MAX_VARIATIONS", 4)
    at_limit = sweep_file(tmp_path, "vary: {seed: [1, 2], ema: [true, false]}\n")
    assert len(load_sweep(at_limit, train_command)) == 4
    over = sweep_file(tmp_path, "vary: {seed: [1, 2], ema: [true, false]}\nruns: [{seed: 3}]\n")
    with pytest.raises(SweepError, match=r"makes 5 variations \(2 seed x 2 ema \+ 1 run\), more than a sweep's 4"):
        load_sweep(over, train_command)


def test_the_limit_is_stated_in_the_help_and_the_documentation():
    help_text = " ".join(without_tensorflow("gan-job", "sweep", "--help").stdout.split())
    assert f"at most {MAX_VARIATIONS:,} variations" in help_text
    pages = [K8S.parent / "README.md", *sorted((K8S.parent / "docs").rglob("*.md"))]
    assert any(f"{MAX_VARIATIONS:,} variations" in " ".join(page.read_text().split()) for page in pages)


# ---- --force -------------------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("content", "options", "where"),
    [
        ("vary: {seed: [1, 2]}\n", ["--force"], "--force: a sweep never starts its runs anew"),
        ("settings: {force: true}\nvary: {seed: [1, 2]}\n", [], "settings: force: a sweep never starts its runs anew"),
        ("runs: [{seed: 1}, {seed: 2, force: true}]\n", [], "runs[1]: force: a sweep never starts its runs anew"),
    ],
)
def test_force_in_a_sweep_is_refused_since_every_rerun_would_start_finished_runs_anew(
    tmp_path, content, options, where
):
    assert_refused(refused_sweep(tmp_path, content, *options), where, "delete the folders of the runs to train anew")


# ---- an Indexed Job where an index fails for good ------------------------------------------------------------------


def failing_sweep(folder: Path) -> Path:
    """Two variations: seed-1 trains on the small MNIST set, the second on data that is not there (exit code 2)."""
    settings = {"data": str(SMALL_MNIST), "steps": 60, "checkpoint-every": 30, "log-every": 30, "quality": False}
    runs = [{"seed": 1}, {"seed": 2, "data": str(folder / "missing.npz")}]
    return sweep_file(folder, yaml.safe_dump({"settings": settings, "runs": runs}))


def finished_run(root: Path, trained: Path) -> bytes:
    """A finished run's folder (a copy of `trained`); returns its model's bytes."""
    shutil.copytree(trained, root)
    return (root / "generator.onnx").read_bytes()


def test_the_last_pod_compares_the_runs_that_finished_though_its_own_failed_and_names_it(tmp_path, caplog, trained_run):
    finished, failing = load_sweep(failing_sweep(tmp_path), train_command)
    out = tmp_path / "sweep"
    model = finished_run(out / finished.name, trained_run[0])

    with caplog.at_level(logging.INFO, logger="job.analysis.sweep"):
        code = run_index([finished, failing], 1, out, train_command)  # a real `gan-job train`: no data, exit 2

    assert code == 2
    assert (out / FAILED / failing.name).read_text() == "exit code 2\n"
    assert (out / "report.html").is_file()
    assert (out / "best" / "generator.onnx").read_bytes() == model
    assert (out / "best" / "run.txt").read_text().startswith(finished.name + "\n")
    assert f"runs that failed: {failing.name} (exit code 2)" in caplog.text


def test_a_pod_that_fails_before_the_others_end_leaves_the_comparison_to_the_last(tmp_path):
    unfinished, failing = load_sweep(failing_sweep(tmp_path), train_command)
    out = tmp_path / "sweep"
    assert run_index([unfinished, failing], 1, out, train_command) == 2
    assert (out / FAILED / failing.name).is_file()
    assert not (out / "report.html").exists() and not (out / "best").exists()


def test_a_variation_that_finishes_on_a_retry_is_no_longer_counted_failed(tmp_path):
    record_outcome(tmp_path, "seed-1", 1)
    assert (tmp_path / FAILED / "seed-1").read_text() == "exit code 1\n"
    record_outcome(tmp_path, "seed-1", 75)  # interrupted (a preemption): no outcome yet, the record stays
    record_outcome(tmp_path, "seed-1", -signal.SIGKILL)
    assert (tmp_path / FAILED / "seed-1").read_text() == "killed by SIGKILL\n"
    record_outcome(tmp_path, "seed-1", 0)
    assert not (tmp_path / FAILED / "seed-1").exists()


def test_the_indexed_job_manifest_says_the_last_pod_compares_whatever_ended():
    text = (K8S / "sweep-job.yaml").read_text()
    assert "failed/" in text and "finished or failed" in text


@pytest.mark.slow
def test_an_index_that_fails_for_good_still_gets_a_comparison_from_the_last_pod(tmp_path):
    container = yaml.safe_load((K8S / "sweep-job.yaml").read_text())["spec"]["template"]["spec"]["containers"][0]
    path = failing_sweep(tmp_path)
    runs = tmp_path / "runs"

    def pod(index: int) -> subprocess.CompletedProcess:
        """One pod of the Job on this machine: the ConfigMap's file, the volume, the completion index."""
        here = {"/sweep/sweep.yaml": str(path), "$(SWEEP_INDEX)": str(index)}
        args = [here.get(arg, arg.replace("/runs", str(runs), 1)) for arg in container["args"]]
        return subprocess.run([*TRAIN[:-1], *args], capture_output=True, text=True, timeout=600)

    finished, failing = load_sweep(path, train_command)
    out = runs / "sweep"
    first = pod(0)
    assert first.returncode == 0, first.stderr
    assert not (out / "report.html").exists()  # index 1 has not ended yet
    last = pod(1)
    assert last.returncode == 2, last.stderr  # the index fails for good (podFailurePolicy: FailIndex)
    assert (out / "report.html").is_file()
    assert (out / "best" / "generator.onnx").read_bytes() == (out / finished.name / "generator.onnx").read_bytes()
    assert f"runs that failed: {failing.name} (exit code 2)" in last.stderr
    assert f"<th>{finished.name}</th>" in (out / "report.html").read_text()


# ---- the trainings die with their sweep ------------------------------------------------------------------------------


def stat_fields(pid: int) -> list[str] | None:
    """/proc/PID/stat after the command name: [state, ppid, ...]; None once the process is gone."""
    try:
        return (Path("/proc") / str(pid) / "stat").read_text().rsplit(")", 1)[1].split()
    except (FileNotFoundError, ProcessLookupError):
        return None


def children_of(pid: int) -> list[int]:
    found = []
    for entry in Path("/proc").iterdir():
        fields = stat_fields(int(entry.name)) if entry.name.isdigit() else None
        if fields and int(fields[1]) == pid:
            found.append(int(entry.name))
    return found


def start_time(pid: int) -> str | None:
    fields = stat_fields(pid)
    return fields[19] if fields else None


def running(pid: int, started: str | None) -> bool:
    """Whether the process `pid` that started at `started` (not a later one of the same number) still runs; a
    zombie has ended, whoever reaps it."""
    fields = stat_fields(pid)
    return fields is not None and fields[19] == started and fields[0] not in "ZX"


def ends_within(pid: int, started: str | None, timeout: float) -> bool:
    deadline = time.monotonic() + timeout
    while running(pid, started):
        if time.monotonic() > deadline:
            return False
        time.sleep(0.2)
    return True


def kill_if_running(pid: int, started: str | None) -> None:
    if running(pid, started):
        os.kill(pid, signal.SIGKILL)


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="prctl(PR_SET_PDEATHSIG) is Linux's")
def test_a_process_started_for_a_training_ends_when_the_process_starting_it_is_killed(tmp_path):
    starter = subprocess.Popen(
        [
            sys.executable,
            "-c",
            "import subprocess, sys, time; from job.analysis.sweep import _dying_with_this_thread\n"
            "child = subprocess.Popen([sys.executable, '-c', 'import time; time.sleep(600)'], "
            "preexec_fn=_dying_with_this_thread())\n"
            "print(child.pid, flush=True); time.sleep(600)",
        ],
        stdout=subprocess.PIPE,
        text=True,
    )
    child = int(starter.stdout.readline())
    started = start_time(child)
    try:
        assert child in children_of(starter.pid)
        starter.kill()
        starter.wait(timeout=60)
        assert ends_within(child, started, timeout=60), "the child outlived the process that started it"
    finally:
        if starter.poll() is None:
            starter.kill()
        kill_if_running(child, started)


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="prctl(PR_SET_PDEATHSIG) is Linux's")
def test_a_training_whose_sweep_died_before_it_was_set_up_ends_at_once(monkeypatch):
    monkeypatch.setattr(os, "getpid", lambda: 1)  # as if the sweep that started it were gone already
    set_up = sweep_module._dying_with_this_thread()
    monkeypatch.undo()
    child = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(600)"], preexec_fn=set_up)
    try:
        assert child.wait(timeout=60) == 75
    finally:
        if child.poll() is None:
            child.kill()


@pytest.mark.slow
@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="prctl(PR_SET_PDEATHSIG) is Linux's")
def test_a_sigkilled_sweep_leaves_no_training_behind_and_the_training_checkpoints(tmp_path):
    path = sweep_file(
        tmp_path,
        f"settings: {{data: {SMALL_MNIST}, steps: 1000000, checkpoint-every: 1000000, log-every: 50, quality: false}}"
        "\nvary: {seed: [1]}\n",
    )
    out = tmp_path / "sweep"
    sweep = subprocess.Popen([*TRAIN[:-1], "sweep", str(path), "--out", str(out)], stderr=subprocess.DEVNULL)
    log = out / "logs" / "seed-1.log"
    trainings: dict[int, str | None] = {}
    try:
        deadline = time.monotonic() + 300
        while not (log.exists() and "step 50/" in log.read_text()):
            assert time.monotonic() < deadline and sweep.poll() is None, "the training did not start"
            time.sleep(1)
        trainings = {pid: start_time(pid) for pid in children_of(sweep.pid)}
        assert len(trainings) == 1
        sweep.kill()
        sweep.wait(timeout=60)
        for pid, started in trainings.items():
            assert ends_within(pid, started, timeout=180), "the training lives on after its sweep"
        assert "SIGTERM: stopping after the steps under way" in log.read_text()
        assert list((out / "seed-1" / "checkpoints").glob("ckpt-*.index")), "no checkpoint written"
    finally:
        if sweep.poll() is None:
            sweep.kill()
        for pid, started in trainings.items():
            kill_if_running(pid, started)
