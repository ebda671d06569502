"""The documentation cannot rot: the site builds with no broken link or anchor, the commands of the tutorial and of
README's quick start run as written, and the reference pages name what a real run writes."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

from tests.conftest import SMALL_MNIST

# One pytest-xdist worker runs the whole module: the site and the tutorial folder, built once.
pytestmark = pytest.mark.xdist_group("test_docs")

REPO = Path(__file__).parents[1]
DOCS = REPO / "docs"
README = REPO / "README.md"
TUTORIAL = DOCS / "tutorial.md"
BIN = Path(sys.executable).parent  # the virtual environment the tests run in: its gan-job, gan-digits and mkdocs
TESTED_BLOCK = re.compile(r"^<!-- test: run -->\n```bash\n(.*?)^```", re.M | re.S)
SHORT_STEPS = "40"  # what GAN_STEPS makes of every training the tested commands start

# Only the page for the project's developers (CONTRIBUTING.md) may name its build machines.
BUILD_MACHINE = re.compile(r"\.\./shared|this machine|this project's machines|on this CPU", re.I)
FIRST_PERSON = re.compile(r"\b(I|we|We|our|Our|us)\b")
COMMIT = re.compile(r"\bcommit [0-9a-f]{7,40}\b")


def user_pages() -> list[Path]:
    return [README, *sorted(DOCS.rglob("*.md"))]


def marked_blocks(page: Path) -> list[str]:
    """The fenced bash blocks that follow a `<!-- test: run -->` line."""
    return TESTED_BLOCK.findall(page.read_text(encoding="utf-8"))


def table_keys(page: Path, heading: str) -> set[str]:
    """The `code` names in the first column of the tables under a heading of a page (up to the next heading)."""
    section = re.search(rf"^#+ {re.escape(heading)}\n(.*?)(?=^#+ |\Z)", page.read_text(encoding="utf-8"), re.M | re.S)
    assert section, f"{page.name} has no section {heading!r}"
    return set(re.findall(r"^\| `([\w.]+)`", section.group(1), re.M))


# ---- the site ----------------------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def site(tmp_path_factory) -> Path:
    """The site, built as CI builds it: strict, so that a broken link, a missing anchor or a page left out of the
    navigation fails the build."""
    out = tmp_path_factory.mktemp("site")
    build = subprocess.run(
        [str(BIN / "mkdocs"), "build", "--strict", "--site-dir", str(out)],
        cwd=REPO,
        capture_output=True,
        text=True,
        env={**os.environ, "NO_MKDOCS_2_WARNING": "1"},
        timeout=300,
    )
    assert build.returncode == 0, build.stdout + build.stderr
    return out


def test_the_site_builds_strict_with_no_broken_link_or_anchor(site):
    assert (site / "index.html").exists()
    assert (site / "tutorial" / "index.html").exists()


def test_the_command_line_reference_is_generated_from_both_programs(site):
    from job.cli import main as job_main
    from serving.cli import main as digits_main

    page = (site / "reference" / "cli" / "index.html").read_text(encoding="utf-8")
    for program, group in (("gan-job", job_main), ("gan-digits", digits_main)):
        for name, command in group.commands.items():
            assert f'id="{program}-{name}"' in page, f"{program} {name}"
            for param in command.params:
                assert all(opt in page for opt in param.opts if opt.startswith("--")), (program, name, param.opts)


def test_the_variables_page_lists_every_training_option(site):
    from job.config import options

    page = (site / "reference" / "environment" / "index.html").read_text(encoding="utf-8")
    for name in options():
        assert f"GAN_{name.upper()}" in page


# ---- what the pages say ------------------------------------------------------------------------------------------


@pytest.mark.parametrize("page", user_pages(), ids=lambda page: str(page.relative_to(REPO)))
def test_a_users_page_names_no_build_machine_and_speaks_to_the_reader(page):
    text = page.read_text(encoding="utf-8")
    assert not BUILD_MACHINE.findall(text), BUILD_MACHINE.findall(text)
    assert not FIRST_PERSON.findall(text), FIRST_PERSON.findall(text)
    assert not COMMIT.findall(text)


def test_the_exit_codes_page_lists_every_exit_code_of_the_job():
    from job import errors

    codes = {0} | {value for name, value in vars(errors).items() if name.startswith("EXIT_")}
    listed = {
        int(code) for code in re.findall(r"^\| (\d+) \|", (DOCS / "reference" / "exit-codes.md").read_text(), re.M)
    }
    assert listed == codes


def test_the_pages_with_tested_commands_have_some():
    assert any("gan-job train" in block for block in marked_blocks(TUTORIAL))
    assert any("gan-job train" in block for block in marked_blocks(README))


# ---- the commands, run as written --------------------------------------------------------------------------------


def run_as_written(page: Path, folder: Path) -> subprocess.CompletedProcess:
    """Run a page's tested blocks, in order, in a fresh folder, as a reader who set up the virtual environment there
    would: `.venv/bin/…` and the programs on PATH both work. The environment shortens the trainings and points them
    at the small data set; the quality classifier comes from the session's user cache (tests/conftest.py)."""
    (folder / ".venv").symlink_to(BIN.parent, target_is_directory=True)
    script = "set -euo pipefail\n" + "\n".join(marked_blocks(page))
    env = {key: value for key, value in os.environ.items() if not key.startswith("GAN_")} | {
        "PATH": f"{BIN}{os.pathsep}{os.environ['PATH']}",
        "GAN_STEPS": SHORT_STEPS,
        "GAN_DATA": str(SMALL_MNIST),
    }
    return subprocess.run(
        ["bash", "-c", script],
        cwd=folder,
        capture_output=True,
        text=True,
        env=env,
        timeout=1200,
        stdin=subprocess.DEVNULL,
    )


@pytest.fixture(scope="module")
def tutorial_folder(tmp_path_factory, small_mnist_classifier) -> Path:
    folder = tmp_path_factory.mktemp("tutorial")
    done = run_as_written(TUTORIAL, folder)
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    return folder


@pytest.mark.slow
def test_the_tutorials_commands_run_as_written(tutorial_folder):
    assert (tutorial_folder / "digits.png").stat().st_size > 0
    assert (tutorial_folder / "runs" / "first" / "generator.onnx").exists()


@pytest.mark.slow
def test_readmes_quick_start_runs_as_written(tmp_path, small_mnist_classifier):
    done = run_as_written(README, tmp_path)
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    assert (tmp_path / "digits.png").stat().st_size > 0


# ---- the reference against what a real run writes ----------------------------------------------------------------


@pytest.mark.slow
def test_the_model_reference_names_every_metadata_key_an_exported_model_has(tutorial_folder):
    import onnxruntime

    session = onnxruntime.InferenceSession(str(tutorial_folder / "runs" / "first" / "generator.onnx"))
    metadata = set(session.get_modelmeta().custom_metadata_map)
    documented = table_keys(DOCS / "reference" / "model.md", "Metadata")
    assert metadata <= documented
    assert documented - metadata <= {"clusters"}  # a self-conditioned model's only


@pytest.mark.slow
def test_the_metrics_reference_names_every_key_a_run_writes(tutorial_folder):
    page = DOCS / "reference" / "metrics.md"
    documented = set().union(
        *(table_keys(page, heading) for heading in ("Progress lines", "Quality keys", "The timings line"))
    )
    records = [
        json.loads(line) for line in (tutorial_folder / "runs" / "first" / "metrics.jsonl").read_text().splitlines()
    ]
    written = {key for record in records for key in record if key != "timings"}
    written |= {key for record in records for key in record.get("timings", {})}
    assert "frechet_distance" in written  # the quality keys are among them
    assert written <= documented


@pytest.mark.slow
def test_the_run_folder_reference_names_every_file_and_config_key_a_run_writes(tutorial_folder):
    from job.config import options

    page = DOCS / "reference" / "run-folder.md"
    tree = re.search(r"```text\n(.*?)```", page.read_text(encoding="utf-8"), re.S).group(1)
    shown = set(re.findall(r"^\s*([\w.-]+)/?", tree, re.M))
    run = tutorial_folder / "runs" / "first"
    assert {path.name for path in run.iterdir()} <= shown
    saved = json.loads((run / "config.json").read_text())
    assert set(saved) - set(options()) <= table_keys(page, "config.json")


def test_every_benchmark_has_its_measurements_page():
    # bench/minimal_gan.py is the yardstick bench/train_speed.py measures against, not a benchmark of its own
    benchmarks = {path.name for path in (REPO / "bench").glob("*.py")} - {"minimal_gan.py"}
    pages = {
        match
        for page in (DOCS / "measurements").glob("*.md")
        for match in re.findall(r"^# bench/(\w+\.py)$", page.read_text(encoding="utf-8"), re.M)
    }
    assert benchmarks <= pages


def test_readmes_links_lead_to_pages_and_headings_that_exist():
    links = re.findall(r"\]\(([^)#\s]+)(?:#([\w-]+))?\)|src=\"([^\"]+)\"", README.read_text(encoding="utf-8"))
    assert links
    for target, anchor, image in links:
        path = REPO / (target or image)
        assert path.exists(), target or image
        if anchor:
            headings = re.findall(r"^#+ (.+)$", path.read_text(encoding="utf-8"), re.M)
            slugs = {re.sub(r"[\s]+", "-", re.sub(r"[^\w\s-]", "", heading).strip().lower()) for heading in headings}
            assert anchor in slugs, f"{target}#{anchor}"


def test_ci_runs_readmes_set_up_and_test_command_word_for_word():
    first_block = re.search(r"^```bash\n(.*?)^```", README.read_text(encoding="utf-8"), re.M | re.S).group(1)
    test_command = first_block.split("# 2. run the tests\n")[1].splitlines()[0]
    assert test_command in (REPO / ".ci" / "run").read_text(encoding="utf-8")
