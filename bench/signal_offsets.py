"""SIGTERM at many moments of every gan-job command: each one must end interrupted (exit 75) with nothing half-written,
or done (exit 0) when its work was done before the signal; never 0 with other work done, never 1 or 143, never a
traceback, never a checkpoint called unreadable.

Commands, on small data: `train` (a new run), `resume` (a run of 50 steps taken on to 100: it restores a checkpoint
and loads the cached quality classifier), `export`, `evaluate`, `sweep` (two short runs) and `report`. Each first runs
once without a signal, for its duration D; then, on a fresh copy of its inputs each time, SIGTERM is sent at offsets
spread from 0.1 s to D after the start (D shrinks to a start that ended before its signal: the machine is shared).
With --phases, resume is also signalled just after the lines that precede the phases a signal used to be mistaken
in: the cached quality classifier's load and the checkpoint's restore. After each, its outputs are checked:

- train, resume: the run folder is absent (stopped before its first checkpoint), resumable (every checkpoint on disk
  reads back, no partial write left) or finished (exported at the last step); with --rerun, the same command again
  must finish (exit 0) without calling a checkpoint unreadable;
- export, report: the output file is absent, or complete (the ONNX model of the newest step; a page that ends);
  nothing else left in its folder;
- evaluate: stdout is empty, or one complete JSON object;
- sweep: every run folder as for train, no partial file in the sweep folder; exit 0 means report.html and best/.

    python bench/signal_offsets.py [--offsets 6] [--rerun] [--phases] [--data tests/data/mnist_small.npz]

Last line: one JSON object (cases, violations, and per command the outcomes by offset).
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import onnx  # noqa: E402
import tensorflow as tf  # noqa: E402

from job.errors import EXIT_INTERRUPTED  # noqa: E402
from job.rundir.claim import steps_on_disk  # noqa: E402

REPO = Path(__file__).parents[1]
CODE = "import sys; from job.cli import main; sys.exit(main())"
BASE_STEPS, STEPS = 50, 100  # the run resumed from, and the steps every training here goes to
TRAIN = ["--checkpoint-every", "25", "--checkpoint-minutes", "0", "--log-every", "25", "--sample-every", "50"]
TRAIN += ["--quality-samples", "100", "--seed", "1"]
SWEEP = """settings: {{data: {data}, steps: 40, checkpoint-every: 20, checkpoint-minutes: 0, log-every: 20,
           sample-every: 40, quality: false}}
vary: {{seed: [1, 2]}}
"""


@dataclass
class Outcome:
    command: str
    offset: float  # seconds after the start, or after the line `after`
    after: str | None
    code: int  # the exit code; a process killed by a signal as the shell shows it (143 for SIGTERM)
    signalled: bool  # False: the command ended before the offset
    seconds_to_exit: float | None  # from the signal to the exit
    traceback: bool
    unreadable: bool  # a checkpoint called unreadable, or none reading back
    output: str  # what the command left: absent, resumable, complete, finished, or what is wrong with it
    resumes: bool | None = None  # with --rerun: the same command again finished without complaint
    problems: list[str] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return not self.problems


@dataclass
class Command:
    """One gan-job command: how to prepare its inputs afresh, its arguments, and how to judge what it left."""

    name: str
    prepare: Callable[[Path], list[str]]  # a fresh folder -> the command's arguments
    judge: Callable[[Path, int, str], str]  # folder, exit code, stdout -> output (see Outcome.output)
    done: tuple[str, ...]  # the outputs that mean its work is done (exit 0)
    interrupted: tuple[str, ...]  # the outputs an exit 75 may leave
    rerunnable: bool = False


@dataclass
class Ran:
    result: subprocess.CompletedProcess
    seconds: float  # from the start to the exit
    signalled: bool  # False: it ended before the signal was due
    seconds_to_exit: float | None  # from the signal to the exit


def job(args: list[str], offset: float | None = None, after: str | None = None) -> Ran:
    """Run gan-job; send SIGTERM `offset` s after its start, or after it logs a line containing `after`, unless it
    ended before."""
    began = time.monotonic()
    process = subprocess.Popen(
        [sys.executable, "-c", CODE, *args], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
    )
    seen = []
    if after is not None:
        for line in process.stderr:
            seen.append(line)
            if after in line:
                break
    sent = None
    if offset is not None:
        try:
            process.wait(timeout=offset)
        except subprocess.TimeoutExpired:
            process.send_signal(signal.SIGTERM)
            sent = time.monotonic()
    stdout, stderr = process.communicate(timeout=900)
    ended = time.monotonic()
    code = process.returncode if process.returncode >= 0 else 128 - process.returncode
    result = subprocess.CompletedProcess(process.args, code, stdout, "".join(seen) + stderr)
    return Ran(result, ended - began, sent is not None, None if sent is None else round(ended - sent, 2))


def leftovers(folder: Path) -> list[str]:
    """Half-written things: checkpoint folders being written, temporary files of atomic writes."""
    return [
        str(path.relative_to(folder))
        for path in folder.rglob("*")
        if path.name.startswith(".partial-") or path.name.endswith(".tmp")
    ]


def reads_back(prefix: Path) -> bool:
    try:
        reader = tf.train.load_checkpoint(str(prefix))
        for name in reader.get_variable_to_shape_map():
            reader.get_tensor(name)
    except Exception:
        return False
    return True


def onnx_step(path: Path) -> int | None:
    try:
        model = onnx.load(str(path))
    except Exception:
        return None
    return int({prop.key: prop.value for prop in model.metadata_props}.get("step", -1))


def run_state(run: Path, steps: int) -> str:
    """absent, resumable or finished; else what is wrong."""
    if not run.exists():
        return "absent"
    if found := leftovers(run):
        return f"partial writes left: {', '.join(found)}"
    if (run / "config.json").exists():
        try:
            json.loads((run / "config.json").read_text())
        except ValueError:
            return "config.json torn"
    checkpoints = steps_on_disk(run / "checkpoints")
    unreadable = [step for step in checkpoints if not reads_back(run / "checkpoints" / f"ckpt-{step}")]
    if unreadable:
        return f"checkpoints that do not read back: {unreadable}"
    if not checkpoints:
        return "a folder without a checkpoint"
    exported = onnx_step(run / "generator.onnx") if (run / "generator.onnx").exists() else None
    if checkpoints[-1] == steps and exported == steps:
        return "finished"
    return "resumable"


def train_command(data: Path, cache: Path, base: Path | None) -> Command:
    def prepare(folder: Path) -> list[str]:
        run = folder / "run"
        if base is not None:
            shutil.copytree(base, run)
        return [
            "train",
            "--data",
            str(data),
            "--out",
            str(run),
            "--steps",
            str(STEPS),
            "--quality-cache",
            str(cache),
        ] + TRAIN

    return Command(
        "resume" if base else "train",
        prepare,
        lambda folder, code, stdout: run_state(folder / "run", STEPS),
        done=("finished",),
        interrupted=("resumable", "finished") + (() if base else ("absent",)),
        rerunnable=True,
    )


def file_command(name: str, arguments: Callable[[Path], list[str]], complete: Callable[[Path], bool]) -> Command:
    """A command whose work is one file, `out/...` in a folder of its own."""

    def judge(folder: Path, code: int, stdout: str) -> str:
        out_folder = folder / "out"
        found = [path.name for path in out_folder.iterdir()] if out_folder.exists() else []
        if not found:
            return "absent"
        if len(found) > 1 or not complete(out_folder / found[0]):
            return f"partial: {found}"
        return "complete"

    def prepare(folder: Path) -> list[str]:
        (folder / "out").mkdir()
        return arguments(folder / "out")

    return Command(name, prepare, judge, done=("complete",), interrupted=("absent", "complete"))


def evaluate_command(model: Path, data: Path) -> Command:
    def judge(folder: Path, code: int, stdout: str) -> str:
        if not stdout.strip():
            return "absent"
        try:
            record = json.loads(stdout)
        except ValueError:
            return f"partial: {stdout[:60]!r}"
        return "complete" if "frechet_distance" in record else f"partial: {stdout[:60]!r}"

    arguments = ["evaluate", "--model", str(model), "--data", str(data), "--samples", "200", "--json"]
    return Command("evaluate", lambda folder: arguments, judge, done=("complete",), interrupted=("absent", "complete"))


def sweep_command(data: Path) -> Command:
    def prepare(folder: Path) -> list[str]:
        (folder / "sweep.yaml").write_text(SWEEP.format(data=data))
        return ["sweep", str(folder / "sweep.yaml"), "--out", str(folder / "sweep")]

    def judge(folder: Path, code: int, stdout: str) -> str:
        sweep = folder / "sweep"
        if not sweep.exists():
            return "absent"
        if found := leftovers(sweep):
            return f"partial writes left: {', '.join(found)}"
        states = {run.name: run_state(run, 40) for run in sweep.iterdir() if (run / "config.json").exists()}
        wrong = {name: state for name, state in states.items() if state not in ("resumable", "finished", "absent")}
        if wrong:
            return f"runs: {wrong}"
        if len(states) == 2 and set(states.values()) == {"finished"} and (sweep / "best" / "generator.onnx").exists():
            return "finished"
        return "resumable"

    return Command("sweep", prepare, judge, ("finished",), ("absent", "resumable", "finished"))


def judged(
    command: Command, folder: Path, ran: Ran, offset: float, after: str | None, rerun: list[str] | None
) -> Outcome:
    """What `ran` (the command in `folder`, signalled `offset` s after its start or its line `after`) left; `rerun`:
    the arguments to run it with again, to see it finish."""
    result = ran.result
    output = command.judge(folder, result.returncode, result.stdout)
    outcome = Outcome(
        command.name,
        offset,
        after,
        result.returncode,
        ran.signalled,
        ran.seconds_to_exit,
        "Traceback" in result.stderr or "Exception ignored" in result.stderr,
        "unreadable" in result.stderr or "reads back" in result.stderr,
        output,
    )
    expected = command.done if result.returncode == 0 else command.interrupted
    if result.returncode not in (0, EXIT_INTERRUPTED):
        outcome.problems.append(f"exit {result.returncode}")
    if outcome.traceback:
        outcome.problems.append("traceback")
    if outcome.unreadable:
        outcome.problems.append("checkpoint called unreadable")
    if output not in expected:
        outcome.problems.append(f"left {output} on exit {result.returncode}")
    last_line = (result.stderr.strip().splitlines() or [""])[-1]
    if result.returncode == EXIT_INTERRUPTED and not last_line.startswith("Error: interrupted"):
        outcome.problems.append("the last line does not say it was interrupted")
    if outcome.problems:
        outcome.problems.append("stderr tail: " + " | ".join(result.stderr.strip().splitlines()[-4:]))
    if rerun and command.rerunnable and output != command.done[0]:
        again = job(rerun).result
        outcome.resumes = (
            again.returncode == 0
            and "unreadable" not in again.stderr
            and "Traceback" not in again.stderr
            and command.judge(folder, 0, again.stdout) in command.done
        )
        if not outcome.resumes:
            outcome.problems.append(f"the same command again: exit {again.returncode}: {again.stderr[-300:]}")
    return outcome


def offset(index: int, count: int, duration: float) -> float:
    """Of `count` offsets: 0.1 s first, then evenly spread up to `duration`."""
    return 0.1 if index == 0 else round(duration * index / (count - 1), 2)


# Resume's phases that the issue found signals mistaken in: the quality classifier's load (after "training on"), and
# the checkpoint's restore (after the cached classifier's line: the quality meter's set-up, then the restore).
PHASES = [("training on", delay) for delay in (0.3, 1.0, 2.0)]
PHASES += [("using the cached classifier", delay) for delay in (0.0, 0.05, 0.1, 0.2, 0.4, 0.8)]


def setup(scratch: Path, data: Path) -> tuple[Path, Path, Path]:
    """A run of BASE_STEPS steps (with the quality classifier cached), and one taken on to STEPS from a copy."""
    cache, base, finished = scratch / "cache", scratch / "base", scratch / "finished"
    train = ["train", "--data", str(data), "--quality-cache", str(cache), *TRAIN]
    for run, steps in ((base, BASE_STEPS), (finished, STEPS)):
        if run == finished:
            shutil.copytree(base, finished)
        result = job([*train, "--out", str(run), "--steps", str(steps)]).result
        if result.returncode != 0:
            sys.exit(f"setup failed: {result.stderr}")
    return cache, base, finished


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data", type=Path, default=REPO / "tests/data/mnist_small.npz")
    parser.add_argument("--offsets", type=int, default=6, help="Offsets per command (the first at 0.1 s).")
    parser.add_argument(
        "--rerun", action="store_true", help="After each interrupted train or resume, run it again to the end."
    )
    parser.add_argument("--commands", default="train,resume,export,evaluate,sweep,report")
    parser.add_argument("--phases", action="store_true", help="Also signal resume just after the lines of PHASES.")
    args = parser.parse_args()
    data = args.data.resolve()
    scratch = Path(tempfile.mkdtemp(prefix="signal-offsets-"))
    cache, base, finished = setup(scratch, data)

    commands = {
        "train": train_command(data, cache, None),
        "resume": train_command(data, cache, base),
        "export": file_command(
            "export",
            lambda out: ["export", "--run", str(finished), "--out", str(out / "g.onnx")],
            lambda path: onnx_step(path) == STEPS,
        ),
        "evaluate": evaluate_command(finished / "generator.onnx", data),
        "sweep": sweep_command(data),
        "report": file_command(
            "report",
            lambda out: ["report", str(base), str(finished), "--out", str(out / "report.html")],
            lambda path: path.read_text(encoding="utf-8", errors="replace").rstrip().endswith("</html>"),
        ),
    }
    outcomes: list[Outcome] = []
    durations = {}

    def case(command: Command, offset: float | None, after: str | None = None) -> Ran:
        folder = Path(tempfile.mkdtemp(prefix=f"{command.name}-", dir=scratch))
        arguments = command.prepare(folder)
        ran = job(arguments, offset, after)
        if offset is None:
            output = command.judge(folder, ran.result.returncode, ran.result.stdout)
            if ran.result.returncode != 0 or output not in command.done:
                sys.exit(
                    f"{command.name} fails without a signal: {ran.result.returncode}, {output}: {ran.result.stderr}"
                )
            return ran
        rerun = arguments if args.rerun and after is None else None
        outcomes.append(judged(command, folder, ran, offset, after, rerun))
        print(progress_line(outcomes[-1]), flush=True)
        return ran

    for name in args.commands.split(","):
        command = commands[name]
        durations[name] = round(case(command, None).seconds, 1)
        for index in range(args.offsets):
            ran = case(command, offset(index, args.offsets, durations[name]))
            if not ran.signalled:  # the machine got faster: spread the rest over what a start takes now
                durations[name] = round(min(durations[name], ran.seconds), 1)
        if name == "resume" and args.phases:
            for after, delay in PHASES:
                case(command, delay, after)
    shutil.rmtree(scratch, ignore_errors=True)
    print_table(outcomes, durations)
    summary = {
        "cases": len(outcomes),
        "signalled": sum(outcome.signalled for outcome in outcomes),
        "violations": sum(not outcome.ok for outcome in outcomes),
        "durations_s": durations,
        "by_command": {
            name: [
                {
                    "offset_s": outcome.offset,
                    "after": outcome.after,
                    "exit": outcome.code,
                    "signalled": outcome.signalled,
                    "s_to_exit": outcome.seconds_to_exit,
                    "traceback": outcome.traceback,
                    "unreadable": outcome.unreadable,
                    "output": outcome.output,
                    "resumes": outcome.resumes,
                }
                for outcome in outcomes
                if outcome.command == name
            ]
            for name in durations
        },
    }
    print(json.dumps(summary))


def yes(value: bool | None) -> str:
    return "-" if value is None else "yes" if value else "no"


def progress_line(outcome: Outcome) -> str:
    verdict = "ok" if outcome.ok else "VIOLATION: " + "; ".join(outcome.problems)
    signalled = "signalled" if outcome.signalled else "ended first"
    where = f"{outcome.command:8} {outcome.offset:6.2f}s" + (f" after {outcome.after!r}" if outcome.after else "")
    return f"{where}  exit {outcome.code:3}  {signalled:11}  {outcome.output[:40]:40}  {verdict}"


def print_table(outcomes: list[Outcome], durations: dict[str, float]) -> None:
    """Markdown: a row per command and offset."""
    columns = ["command", "D (s)", "offset (s)", "signalled", "exit", "s to exit", "traceback", "unreadable", "left"]
    print("\n| " + " | ".join([*columns, "resumes", "ok"]) + " |")
    print("|---" * (len(columns) + 2) + "|")
    for outcome in outcomes:
        offset = f"{outcome.offset} after '{outcome.after}'" if outcome.after else outcome.offset
        cells = [outcome.command, durations[outcome.command], offset, yes(outcome.signalled), outcome.code]
        cells += ["-" if outcome.seconds_to_exit is None else outcome.seconds_to_exit, yes(outcome.traceback)]
        cells += [yes(outcome.unreadable), outcome.output, yes(outcome.resumes), yes(outcome.ok)]
        print("| " + " | ".join(map(str, cells)) + " |")


if __name__ == "__main__":
    main()
