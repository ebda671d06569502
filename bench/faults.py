"""Fault injection at scale: a real training run killed (SIGKILL) or terminated (SIGTERM) at many random points,
its state damaged after some of the kills, restarted after each, then compared with an uninterrupted run of the
same configuration.

After every kill the run directory is checked the way a restart would trust it: config.json parses, every sample
PNG opens, every checkpoint on disk reads back whole. Then, after about half of the kills, one damage of the kinds
a crash, a bad disk or a careless operator leaves: the newest checkpoint truncated, a torn metrics line, a
half-written checkpoint folder, TensorFlow's `checkpoint` bookkeeping file lost. A restart must resume from the
newest checkpoint that is still whole. Steps lost = the last step a killed process logged minus the step the next
start resumed from. Last, a copy of a run with every checkpoint unreadable must be refused (exit 2) and left as it
was.

    python bench/faults.py [--kills 12] [--steps 2000] [--data tests/data/mnist_small.npz]

Last line: one JSON object (kills, damages, resumes_ok, steps_lost_total, steps_lost_max, corrupt_files,
identical_to_uninterrupted, unreadable_refused_untouched).
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import random
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import numpy as np  # noqa: E402
import tensorflow as tf  # noqa: E402
from PIL import Image  # noqa: E402

from job.rundir.claim import steps_on_disk  # noqa: E402

REPO = Path(__file__).parents[1]
CODE = "import sys; from job.cli import main; sys.exit(main())"


def job_command(out: Path, args) -> list[str]:
    return [
        sys.executable,
        "-c",
        CODE,
        "train",
        "--data",
        str(args.data),
        "--out",
        str(out),
        "--steps",
        str(args.steps),
        "--checkpoint-every",
        str(args.checkpoint_every),
        "--log-every",
        "10",
        "--seed",
        "3",
    ]


def run_with_fault(out: Path, args, signum: int, target_step: int, delay: float) -> dict:
    """Start the job; `delay` s after it logs `target_step` (or later), send `signum`. What happened."""
    process = subprocess.Popen(job_command(out, args), stderr=subprocess.PIPE, text=True)
    resumed_from, last_step, sent = 0, 0, False
    for line in process.stderr:
        if match := re.search(r"resuming from the checkpoint of step (\d+)", line):
            resumed_from = int(match[1])
        if match := re.search(r" INFO step (\d+)/", line):
            last_step = int(match[1])
            if last_step >= target_step and not sent:
                time.sleep(delay)
                process.send_signal(signum)
                sent = True
    code = process.wait()
    return {"signal": signal.Signals(signum).name, "code": code, "resumed_from": resumed_from, "last_step": last_step}


def corrupt_files(out: Path) -> list[str]:
    bad = []
    config = out / "config.json"
    if config.exists():
        try:
            json.loads(config.read_text())
        except ValueError:
            bad.append(str(config))
    for png in (out / "samples").glob("*.png"):
        try:
            Image.open(png).load()
        except Exception:
            bad.append(str(png))
    bad += [f"checkpoint {step}" for step in steps_on_disk(out / "checkpoints") if not readable(out, step)]
    return bad


def readable(out: Path, step: int) -> bool:
    try:
        reader = tf.train.load_checkpoint(str(out / "checkpoints" / f"ckpt-{step}"))
        for key in reader.get_variable_to_shape_map():
            reader.get_tensor(key)
    except Exception:
        return False
    return True


def newest_checkpoint(out: Path) -> int:
    """The newest checkpoint that reads back whole: where a restart must resume."""
    return next((step for step in reversed(steps_on_disk(out / "checkpoints")) if readable(out, step)), 0)


def truncate_newest_checkpoint(out: Path) -> None:
    steps = steps_on_disk(out / "checkpoints")
    if len(steps) > 1:  # keep one to resume from: with none readable the job refuses (checked apart)
        for data in (out / "checkpoints").glob(f"ckpt-{steps[-1]}.data-*"):
            data.write_bytes(data.read_bytes()[: data.stat().st_size // 2])


def tear_metrics_line(out: Path) -> None:
    with open(out / "metrics.jsonl", "a") as metrics:
        metrics.write('{"step": 99999, "d_lo')


def leave_partial_write(out: Path) -> None:
    partial = out / "checkpoints" / ".partial-99999"
    partial.mkdir(parents=True, exist_ok=True)
    (partial / "ckpt-99999.data-00000-of-00001").write_bytes(b"half a checkpoint")


def lose_bookkeeping_file(out: Path) -> None:
    (out / "checkpoints" / "checkpoint").write_text('model_checkpoint_path: "ckpt-1"\n')  # stale and wrong


DAMAGES = {
    "truncated newest checkpoint": truncate_newest_checkpoint,
    "torn metrics line": tear_metrics_line,
    "half-written checkpoint folder": leave_partial_write,
    "wrong bookkeeping file": lose_bookkeeping_file,
}


def unreadable_is_refused_untouched(run: Path, scratch: Path, args) -> bool:
    """A copy of `run` with every checkpoint truncated: the job must exit 2 and change no file."""
    copy = scratch / "unreadable"
    shutil.copytree(run, copy)
    (copy / "generator.onnx").unlink(missing_ok=True)
    for data in (copy / "checkpoints").glob("*.data-*"):
        data.write_bytes(data.read_bytes()[:1000])
    before = files_and_hashes(copy)
    result = subprocess.run(job_command(copy, args), capture_output=True, text=True)
    return result.returncode == 2 and files_and_hashes(copy) == before


def files_and_hashes(folder: Path) -> dict[str, str]:
    return {
        str(p.relative_to(folder)): hashlib.sha256(p.read_bytes()).hexdigest()
        for p in folder.rglob("*")
        if p.is_file() and p.name != ".lock"
    }


def final_state(out: Path, step: int) -> dict[str, np.ndarray]:
    reader = tf.train.load_checkpoint(str(out / "checkpoints" / f"ckpt-{step}"))
    skip = ("save_counter", "train_seconds", "_CHECKPOINTABLE_OBJECT_GRAPH")
    return {k: reader.get_tensor(k) for k in reader.get_variable_to_shape_map() if not k.startswith(skip)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data", type=Path, default=REPO / "tests/data/mnist_small.npz")
    parser.add_argument("--steps", type=int, default=2000)
    parser.add_argument("--checkpoint-every", type=int, default=100)
    parser.add_argument("--kills", type=int, default=12)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    rng = random.Random(args.seed)
    scratch = Path(tempfile.mkdtemp(prefix="faults-"))

    reference = scratch / "reference"
    subprocess.run(job_command(reference, args), check=True, capture_output=True)

    events, corrupt, identical, rounds = [], [], True, 0
    while len(events) < args.kills:  # a round: one run killed again and again until it is near its end
        out, round_events, rounds = scratch / f"round-{rounds}", [], rounds + 1
        finished_from = None  # where a start that finished before its signal landed had resumed from
        while len(events) + len(round_events) < args.kills:
            start = round_events[-1]["last_step"] if round_events else 0
            if start >= args.steps - 30:
                break
            signum = rng.choice([signal.SIGKILL, signal.SIGTERM])
            event = run_with_fault(out, args, signum, rng.randint(start + 10, args.steps - 20), rng.uniform(0, 0.3))
            if event["code"] == 0:
                finished_from = event["resumed_from"]
                break  # finished before the signal landed: not a kill
            corrupt += corrupt_files(out)
            event["damage"] = rng.choice([None, *DAMAGES]) if len(round_events) % 2 else None
            if event["damage"]:
                DAMAGES[event["damage"]](out)
            event["newest_checkpoint"] = newest_checkpoint(out)
            round_events.append(event)
            print(
                f"kill {len(events) + len(round_events):2d}: {event['signal']:7s} at step ~{event['last_step']:4d} "
                f"(this start resumed from {event['resumed_from']:4d}) -> exit {event['code']}"
                + (f", then: {event['damage']}" if event["damage"] else ""),
                file=sys.stderr,
            )
        last = subprocess.run(job_command(out, args), capture_output=True, text=True)
        resumed = [int(m) for m in re.findall(r"resuming from the checkpoint of step (\d+)", last.stderr)]
        after_last = finished_from if finished_from is not None else (resumed[:1] or [0])[0]
        next_starts = [e["resumed_from"] for e in round_events[1:]] + [after_last]
        for event, next_start in zip(round_events, next_starts, strict=True):
            event["next_start"] = next_start
        events += round_events
        identical = (
            identical
            and last.returncode == 0
            and all(
                np.array_equal(a, b)
                for a, b in zip(
                    final_state(reference, args.steps).values(), final_state(out, args.steps).values(), strict=True
                )
            )
        )

    lost = [max(0, e["last_step"] - e["next_start"]) for e in events]
    for e in events:
        print(
            f"  {e['signal']} at ~{e['last_step']}: newest checkpoint {e['newest_checkpoint']}, "
            f"next start resumed from "
            f"{e['next_start']}",
            file=sys.stderr,
        )
    figures = {
        "kills": len(events),
        "damages": sum(e["damage"] is not None for e in events),
        "sigkill": sum(e["signal"] == "SIGKILL" for e in events),
        "sigterm": sum(e["signal"] == "SIGTERM" for e in events),
        "sigterm_exit_75": sum(e["signal"] == "SIGTERM" and e["code"] == 75 for e in events),
        # a restart succeeded when it resumed from the newest checkpoint the killed process left
        "resumes_ok": sum(e["next_start"] == e["newest_checkpoint"] for e in events),
        "steps_lost_total": sum(lost),
        "steps_lost_max": max(lost, default=0),
        "steps_lost_after_sigterm": sum(n for n, e in zip(lost, events, strict=True) if e["signal"] == "SIGTERM"),
        "corrupt_files": len(corrupt),
        "identical_to_uninterrupted": identical,
        "unreadable_refused_untouched": unreadable_is_refused_untouched(reference, scratch, args),
        "rounds": rounds,
        "steps": args.steps,
        "checkpoint_every": args.checkpoint_every,
    }
    print(json.dumps(figures))


if __name__ == "__main__":
    main()
