"""No command writes over a run's own state: an output path that lands on a run folder's config.json, metrics.jsonl,
checkpoints/, lock file or clusters.npy (symlinks and `..` resolved) is refused in one line, exit code 2, before any
work and before TensorFlow loads. A run's outputs (report.html, generator.onnx, ...) may still be written there.

The guard is one click type (serving.files.OutputPath); every option through which a command writes uses it."""

from __future__ import annotations

import hashlib
import json
import os
import subprocess
import sys
from pathlib import Path

import click
import pytest

from job.cli import main as gan_job
from serving.cli import main as gan_digits
from serving.files import RUN_STATE, OutputPath, run_state_at

# A fresh process in which loading TensorFlow (or Keras, tf2onnx) ends it with exit code 99: a refusal that needs
# them fails its test. The modules stay findable, so gan-job's "is the training stack installed" check still passes.
NO_TENSORFLOW = """
import importlib.machinery, os, sys
class Forbidden:
    def create_module(self, spec):
        sys.stderr.write("TensorFlow was loaded: " + spec.name + "\\n")
        os._exit(99)
    def exec_module(self, module):
        pass
class Finder:
    def find_spec(self, name, path=None, target=None):
        if name.split(".")[0] in ("tensorflow", "keras", "tf2onnx"):
            return importlib.machinery.ModuleSpec(name, Forbidden())
sys.meta_path.insert(0, Finder())
from {module}.cli import main
sys.exit(main())
"""


def without_tensorflow(cli: str, *args: str | Path) -> subprocess.CompletedProcess:
    """Run `gan-job ...` or `gan-digits ...` in a fresh process that must not load TensorFlow."""
    module = {"gan-job": "job", "gan-digits": "serving"}[cli]
    return subprocess.run(
        [sys.executable, "-c", NO_TENSORFLOW.format(module=module), *map(str, args)],
        capture_output=True,
        text=True,
        timeout=120,
    )


def assert_refused(result: subprocess.CompletedProcess, *words: str) -> None:
    lines = result.stderr.strip().splitlines()
    assert result.returncode == 2, result.stderr
    assert len(lines) == 1 and lines[0].startswith("Error: "), result.stderr
    assert all(word in lines[0] for word in words), lines[0]


def snapshot(folder: Path) -> dict[str, str]:
    return {
        str(path.relative_to(folder)): hashlib.sha256(path.read_bytes()).hexdigest()
        for path in sorted(folder.rglob("*"))
        if path.is_file()
    }


@pytest.fixture
def run(tmp_path) -> Path:
    """A run folder as training leaves it, as far as the guard can tell (no TensorFlow needed to make it)."""
    root = tmp_path / "run"
    (root / "checkpoints").mkdir(parents=True)
    (root / "samples").mkdir()
    (root / "config.json").write_text(json.dumps({"out": str(root), "steps": 300}))
    (root / ".lock").write_text("")
    (root / "metrics.jsonl").write_text('{"step": 100}\n')
    (root / "checkpoints" / "ckpt-100.index").write_bytes(b"index")
    (root / "checkpoints" / "ckpt-100.data-00000-of-00001").write_bytes(b"data")
    (root / "generator.onnx").write_bytes(b"onnx")
    return root


# ---- where a path lands --------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "relative",
    [
        "config.json",
        "metrics.jsonl",
        ".lock",
        "clusters.npy",  # a self-conditioned run resumes with it
        "checkpoints",
        "checkpoints/ckpt-100.index",
        "checkpoints/ckpt-999.index",  # not there yet: still inside the checkpoints
        "checkpoints/new-folder/file.png",
        "samples/../config.json",
        "./checkpoints/../checkpoints/ckpt-100.index",
    ],
)
def test_a_path_on_or_inside_a_runs_state_is_found(run, relative):
    assert run_state_at(run / relative) == run / Path(os.path.normpath(relative)).parts[0]


@pytest.mark.parametrize(
    "relative", ["report.html", "generator.onnx", "generator.keras", "samples/grid.png", "best/generator.onnx", "."]
)
def test_a_runs_outputs_and_the_run_folder_itself_are_not_its_state(run, relative):
    assert run_state_at(run / relative) is None


def test_symlinks_are_followed_to_where_they_land(run, tmp_path):
    (tmp_path / "link-to-run").symlink_to(run)
    (tmp_path / "model.onnx").symlink_to(run / "config.json")
    (tmp_path / "dangling.png").symlink_to(run / "checkpoints" / "not-yet.png")
    assert run_state_at(tmp_path / "link-to-run" / "metrics.jsonl") == run / "metrics.jsonl"
    assert run_state_at(tmp_path / "model.onnx") == run / "config.json"
    assert run_state_at(tmp_path / "dangling.png") == run / "checkpoints"


def test_a_relative_path_is_taken_from_the_working_folder(run, monkeypatch):
    monkeypatch.chdir(run / "samples")
    assert run_state_at("../checkpoints/x.onnx") == run / "checkpoints"
    assert run_state_at("x.png") is None


def test_a_folder_that_holds_no_run_has_no_state(tmp_path):
    (tmp_path / "checkpoints").mkdir()  # a folder of that name outside any run
    assert run_state_at(tmp_path / "checkpoints" / "g.onnx") is None
    assert run_state_at(tmp_path / "new-run" / "config.json") is None


def test_the_run_state_names_are_the_ones_the_job_uses():
    from job.rundir.claim import RunDir

    names = RunDir(Path("r"))
    assert {path.name for path in (names.config, names.metrics, names.checkpoints, names.lock, names.clusters)} == set(
        RUN_STATE
    )


# ---- every command's outputs go through the guard ------------------------------------------------------------------


def commands(group: click.Group) -> list[tuple[str, click.Command]]:
    return sorted(group.commands.items())


OUTPUT_OPTIONS = {"out", "quality_cache"}  # the options through which a command writes


@pytest.mark.parametrize(("cli", "name", "command"), [("gan-job", *c) for c in commands(gan_job)] + [
    ("gan-digits", *c) for c in commands(gan_digits)
])  # fmt: skip
def test_every_option_a_command_writes_through_is_guarded(cli, name, command):
    for param in command.params:
        if param.name in OUTPUT_OPTIONS:
            assert isinstance(param.type, OutputPath), f"{cli} {name} {param.opts[0]}"


def test_the_commands_that_write_have_guarded_outputs():
    guarded = {
        (cli, name, param.name)
        for cli, group in (("gan-job", gan_job), ("gan-digits", gan_digits))
        for name, command in commands(group)
        for param in command.params
        if isinstance(param.type, OutputPath)
    }
    assert guarded >= {
        ("gan-job", "train", "out"),
        ("gan-job", "train", "quality_cache"),
        ("gan-job", "export", "out"),
        ("gan-job", "report", "out"),
        ("gan-job", "sweep", "out"),
        ("gan-job", "evaluate", "quality_cache"),
        ("gan-digits", "generate", "out"),
        ("gan-digits", "interpolate", "out"),
    }


# ---- refused in one line, exit code 2, nothing touched, no TensorFlow ----------------------------------------------


@pytest.mark.parametrize(
    ("args", "state"),
    [
        (["export", "--run", "{run}", "--out", "{run}/config.json"], "config.json"),
        (["export", "--run", "{run}", "--out", "{run}/checkpoints/ckpt-100.index"], "checkpoints"),
        (["export", "--run", "{run}", "--out", "{run}/samples/../metrics.jsonl"], "metrics.jsonl"),
        (["report", "{run}", "--out", "{run}/config.json"], "config.json"),
        (["report", "{run}", "--out", "{link}/config.json"], "config.json"),
        (["train", "--out", "{run}/checkpoints/another-run", "--steps", "10"], "checkpoints"),
        (["train", "--out", "{run}/new", "--quality-cache", "{run}/checkpoints"], "checkpoints"),
        (["sweep", "{sweep_file}", "--out", "{run}/checkpoints"], "checkpoints"),
        (["evaluate", "--model", "{run}/generator.onnx", "--quality-cache", "{run}/checkpoints/cache"], "checkpoints"),
    ],
)
def test_gan_job_refuses_an_output_on_a_runs_state(run, tmp_path, args, state):
    (tmp_path / "link").symlink_to(run)
    (tmp_path / "sweep.yaml").write_text("vary: {seed: [1, 2]}\n")
    values = {"run": run, "link": tmp_path / "link", "sweep_file": tmp_path / "sweep.yaml"}
    before = snapshot(run)
    result = without_tensorflow("gan-job", *(arg.format(**values) for arg in args))
    assert_refused(result, "lands on", f"{state} of the run in {run}")
    assert snapshot(run) == before
    assert not (run / "checkpoints" / "another-run").exists() and not (run / "new").exists()


@pytest.mark.parametrize(
    "args",
    [
        ["generate", "--model", "{run}/generator.onnx", "--out", "{run}/config.json"],
        ["generate", "--model", "{run}/generator.onnx", "--format", "npy", "--out", "{run}/clusters.npy"],
        ["generate", "--model", "{run}/generator.onnx", "--format", "png", "--out", "{run}/checkpoints/pngs"],
        ["interpolate", "--model", "{run}/generator.onnx", "--from", "0", "--to", "1", "--out", "{run}/.lock"],
    ],
)
def test_gan_digits_refuses_an_output_on_a_runs_state(run, args):
    before = snapshot(run)
    result = without_tensorflow("gan-digits", *(arg.format(run=run) for arg in args))
    assert_refused(result, "--out", "lands on", str(run))
    assert snapshot(run) == before and not (run / "checkpoints" / "pngs").exists()


def test_the_refusal_comes_before_the_command_reads_anything(run):
    # The model is no ONNX file at all: had the command started, it would say so instead.
    result = without_tensorflow(
        "gan-digits", "generate", "--model", run / "generator.onnx", "--out", run / "config.json"
    )
    assert_refused(result, "config.json of the run in")
