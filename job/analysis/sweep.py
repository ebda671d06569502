"""Sweeps: many trainings from one YAML file, each a `gan-job train` of its own, then one comparison and the best.

A sweep file names `gan-job train`'s options (as `latent-dim` or `latent_dim`):

    settings: {steps: 20000, preset: default}     # shared by every run
    vary: {seed: [0, 1, 2], ema: [true, false]}   # the product of these lists (optional)
    runs: [{preset: seed}]                        # and/or explicit variations (optional)

Every value is checked by the train command's own option declarations before anything runs.
"""

from __future__ import annotations

import contextlib
import ctypes
import itertools
import logging
import math
import os
import queue
import re
import shutil
import signal
import subprocess
import sys
import threading
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import click
import yaml

from job.config import ConfigError, TrainConfig
from job.errors import EXIT_INTERRUPTED
from job.rundir.claim import RunDir, check_steps, finished_already
from serving.files import BEST_FOLDER, BEST_SUMMARY, RUN_MODEL, atomic_write, atomic_write_text
from serving.oneline import plural

if TYPE_CHECKING:
    from job.analysis.report import Run  # job.analysis.report loads Keras: a sweep file is checked without it

log = logging.getLogger(__name__)

SECTIONS = ("settings", "vary", "runs")
TRAIN = [sys.executable, "-c", "import sys; from job.cli import main; sys.exit(main())", "train"]
MAX_VARIATIONS = 1000  # a sweep's runs; counted before they are made, so a product of millions is refused at once
MAX_FILE_BYTES = 1_000_000  # a sweep file is a few lines: anything this large is not one
FAILED = "failed"  # OUT/failed/<name>: a variation whose last training failed, and how; removed once it finishes
FORCE_REFUSED = (
    "a sweep never starts its runs anew: every re-run of it (a retried pod's too) would throw finished work away; "
    "delete the folders of the runs to train anew, or choose another --out"
)


class SweepError(click.UsageError):
    """A sweep file (or sweep option) that cannot run; reported in one line before any training starts."""

    def __init__(self, message: str, ctx: click.Context | None = None) -> None:
        super().__init__(re.sub(r"\s*\n\s*", " ", message.strip()), ctx)


@dataclass(frozen=True)
class Variation:
    name: str  # the run's folder in the sweep directory, saying how it differs
    options: dict  # train option name -> value: the shared settings, command-line options, then this variation

    def arguments(self, command: click.Command) -> list[str]:
        """The variation as `gan-job train` arguments (without --out)."""
        params = {param.name: param for param in command.params}
        arguments = []
        for name, value in self.options.items():
            option = params[name]
            if option.is_flag:
                arguments += [option.opts[0]] if value else option.secondary_opts[:1]
            else:
                arguments += [option.opts[0], str(value)]
        return arguments


def load_sweep(path: Path, command: click.Command, overrides: dict | None = None) -> list[Variation]:
    """The runs a sweep file asks for, each checked by `command` (gan-job train); raises SweepError."""
    spec = _read(Path(path))
    if not isinstance(spec, dict) or set(spec) - set(SECTIONS):
        raise SweepError(f"{path}: a sweep file is a mapping of {', '.join(SECTIONS)}")
    if "force" in (overrides or {}):
        raise SweepError(f"--force: {FORCE_REFUSED}")
    settings = _options(spec.get("settings") or {}, command, "settings")
    vary = _options(spec.get("vary") or {}, command, "vary", lists=True)
    runs = spec.get("runs") or []
    if not isinstance(runs, list):
        raise SweepError("runs: must be a list of variations (mappings of train options)")
    _check_count(path, vary, runs)
    variations = [dict(zip(vary, values, strict=True)) for values in itertools.product(*vary.values())] if vary else []
    variations += [_options(run, command, f"runs[{index}]") for index, run in enumerate(runs)]
    result = [Variation(_name(variation), settings | (overrides or {}) | variation) for variation in variations or [{}]]
    names = [variation.name for variation in result]
    if len(set(names)) < len(names):
        raise SweepError(
            f"the sweep asks for the same run twice: {', '.join(sorted(set(n for n in names if names.count(n) > 1)))}"
        )
    for variation in result:
        check(variation, command)
    return result


def _read(path: Path) -> object:
    """The sweep file's YAML; SweepError, in one line, for a file that is no text or no YAML."""
    try:
        with open(path, "rb") as file:
            data = file.read(MAX_FILE_BYTES + 1)
    except OSError as error:
        raise SweepError(f"cannot read the sweep file {path}: {error.strerror or error}") from error
    if len(data) > MAX_FILE_BYTES:
        raise SweepError(f"{path} is larger than {MAX_FILE_BYTES:,} bytes: not a sweep file")
    try:
        text = data.decode("utf-8-sig")
    except UnicodeDecodeError as error:
        raise SweepError(f"{path} is not a text file (not UTF-8 at byte {error.start})") from error
    try:
        return yaml.safe_load(text)
    except yaml.reader.ReaderError as error:
        raise SweepError(f"{path} is not a text file (character #x{error.character:04x})") from error
    except yaml.MarkedYAMLError as error:
        mark = error.problem_mark or error.context_mark
        place = f" (line {mark.line + 1}, column {mark.column + 1})" if mark else ""
        what = ", ".join(part for part in (error.context, error.problem) if part)
        raise SweepError(f"{path} is not YAML: {what}{place}") from error
    except RecursionError as error:
        raise SweepError(f"{path} nests too deeply to be a sweep file") from error
    except yaml.YAMLError as error:
        raise SweepError(f"{path} is not YAML: {error}") from error


def _check_count(path: Path, vary: dict, runs: list) -> None:
    """Refuse more than MAX_VARIATIONS variations, counted without making them."""
    count = (math.prod(len(values) for values in vary.values()) if vary else 0) + len(runs)
    if count > MAX_VARIATIONS:
        sizes = " x ".join(f"{len(values)} {key.replace('_', '-')}" for key, values in vary.items())
        parts = [part for part in (sizes, plural(len(runs), "run") if runs else "") if part]
        raise SweepError(
            f"{path} makes {count:,} variations ({' + '.join(parts)}), more than a sweep's {MAX_VARIATIONS:,}: "
            "vary fewer settings, or split it into several sweeps"
        )


def check(variation: Variation, command: click.Command) -> None:
    """Parse the variation with the train command itself: types, ranges, choices and the configuration's rules."""
    config_of(variation, command, Path(variation.name))


def check_steps_done(variations: list[Variation], command: click.Command, out: Path) -> None:
    """Refuse, before any training starts, a sweep that asks a run in OUT for fewer steps than it has trained."""
    for variation in variations:
        try:
            check_steps(RunDir(out / variation.name), config_of(variation, command, out / variation.name))
        except ConfigError as error:
            raise SweepError(f"run {variation.name}: {error}") from error


def config_of(variation: Variation, command: click.Command, out: Path) -> TrainConfig:
    """The configuration `gan-job train --out OUT` of the variation runs with, parsed by the train command itself;
    SweepError naming the variation when it cannot run."""
    arguments = ["--out", str(out), *variation.arguments(command)]
    try:
        context = command.make_context("gan-job train", arguments)
        params = {key: value for key, value in context.params.items() if key != "force"}
        return TrainConfig(**params)
    except (click.ClickException, ConfigError) as error:
        message = error.format_message() if isinstance(error, click.ClickException) else str(error)
        raise SweepError(f"run {variation.name}: {message}") from error


def _options(values: object, command: click.Command, where: str, lists: bool = False) -> dict:
    """A section's keys as train option names; unknown keys, --out and values of the wrong shape are refused."""
    if not isinstance(values, dict):
        raise SweepError(f"{where}: must be a mapping of train options")
    params = {param.name: param for param in command.params if isinstance(param, click.Option)}
    options = {}
    for key, value in values.items():
        name = str(key).replace("-", "_")
        if name not in params:
            raise SweepError(f"{where}: {key!r} is not an option of gan-job train")
        if name == "out":
            raise SweepError(f"{where}: the sweep chooses each run's --out (DIR/<name>); leave 'out' out")
        if name == "force":
            raise SweepError(f"{where}: {key}: {FORCE_REFUSED}")
        if lists and (not isinstance(value, list) or not value):
            raise SweepError(f"{where}: {key} must be a list of values, one or more")
        for item in value if lists else [value]:
            if item is None or isinstance(item, dict | list):
                raise SweepError(f"{where}: {key} must be one value, got {item!r}")
            if params[name].is_flag and not isinstance(item, bool):
                raise SweepError(f"{where}: {key} is a switch: true or false, got {item!r}")
        options[name] = value
    return options


def _name(variation: dict) -> str:
    """A folder name that says the variation's settings: seed-1_ema-false."""
    if not variation:
        return "run"
    words = [f"{key.replace('_', '-')}-{str(value).lower()}" for key, value in variation.items()]
    return re.sub(r"[^A-Za-z0-9._-]+", "-", "_".join(words))


# --- running ------------------------------------------------------------------------------------------------------


class Trainings:
    """The `gan-job train` processes under way; stop() passes SIGTERM on, so each writes a checkpoint and exits."""

    def __init__(
        self, command: click.Command, out: Path, stop: threading.Event | None = None, gpus: list[str] | None = None
    ) -> None:
        self.command = command
        self.out = out
        self._gpus: queue.Queue[str] | None = None  # the GPUs no run is using now: one run per GPU
        if gpus:
            self._gpus = queue.Queue()
            for gpu in gpus:
                self._gpus.put(gpu)
        self._stopped = False
        self._processes: set[subprocess.Popen] = set()
        self._lock = threading.Lock()
        if stop is not None:
            threading.Thread(target=lambda: (stop.wait(), self.stop()), daemon=True).start()

    def run(self, variation: Variation, to_log_file: bool = True) -> int:
        """Train one variation into OUT/<name>; its output into OUT/logs/<name>.log or ours. Returns its exit code. A
        variation whose run has nothing left to do (finished with these settings) starts no process."""
        done = self.finished_at(variation)
        if done is not None:
            log.info("%s: already finished at step %d: nothing to do", variation.name, done)
            record_outcome(self.out, variation.name, 0)
            return 0
        arguments = [*TRAIN, "--out", str(self.out / variation.name), *variation.arguments(self.command)]
        log_path = self.out / "logs" / f"{variation.name}.log"
        if to_log_file:
            log_path.parent.mkdir(parents=True, exist_ok=True)
        gpu = self._gpus.get() if self._gpus else None
        environment = os.environ | ({"CUDA_VISIBLE_DEVICES": gpu} if gpu is not None else {})
        try:
            with self._lock:
                if self._stopped:
                    return NOT_STARTED
                with open(log_path, "ab") if to_log_file else contextlib.nullcontext() as output:
                    # A session of its own: a Ctrl-C on a terminal reaches the sweep only, which passes one SIGTERM on.
                    process = subprocess.Popen(
                        arguments,
                        stdout=output,
                        stderr=output,
                        env=environment,
                        start_new_session=True,
                        preexec_fn=_dying_with_this_thread(),
                    )
                self._processes.add(process)
            log.info("%s: training%s", variation.name, f" on GPU {gpu}" if gpu is not None else "")
            code = process.wait()  # this thread lives as long as the training: see _dying_with_this_thread
        finally:
            if gpu is not None:
                self._gpus.put(gpu)
        with self._lock:
            self._processes.discard(process)
        record_outcome(self.out, variation.name, code)
        log.info("%s: %s", variation.name, "done" if code == 0 else describe(code))
        return code

    def finished_at(self, variation: Variation) -> int | None:
        """The step the variation's run finished at, when its `gan-job train` would have nothing to do there
        (rundir.finished_already); None when it would, or when its folder cannot say (the training then tells why)."""
        try:
            return finished_already(config_of(variation, self.command, self.out / variation.name))
        except (ConfigError, SweepError):
            return None

    def stop(self) -> None:
        with self._lock:
            self._stopped = True
            for process in self._processes:
                process.send_signal(signal.SIGTERM)


NOT_STARTED = EXIT_INTERRUPTED  # a variation a stopped sweep did not start: the same command resumes it
PR_SET_PDEATHSIG = 1  # prctl(2): the signal a process gets when the thread that started it ends


def _dying_with_this_thread() -> Callable[[], None] | None:
    """What a training runs before it starts (Popen's preexec_fn), on Linux: SIGTERM it (it checkpoints and exits)
    when the thread starting it ends, as it does when the sweep is killed, even by SIGKILL, which passes nothing on.
    Should the sweep die before that is set up, the training ends at once instead of living on as an orphan."""
    if not sys.platform.startswith("linux"):
        return None
    prctl = ctypes.CDLL(None, use_errno=True).prctl  # looked up here: the child only calls it
    parent = os.getpid()

    def set_up() -> None:
        prctl(PR_SET_PDEATHSIG, signal.SIGTERM)
        if os.getppid() != parent:  # the sweep died before prctl: no signal will come
            os._exit(EXIT_INTERRUPTED)

    return set_up


def describe(code: int) -> str:
    """A training's exit code in words: `exit code 2`, `killed by SIGKILL`."""
    if code < 0:
        with contextlib.suppress(ValueError):
            return f"killed by {signal.Signals(-code).name}"
    if code == EXIT_INTERRUPTED:
        return "interrupted"
    return f"exit code {code}"


def record_outcome(out: Path, name: str, code: int) -> None:
    """OUT/failed/<name> says how a variation's training failed; it goes once the variation finishes. An
    interrupted training is no failure: the same command (or the Job's next pod) resumes it."""
    marker = out / FAILED / name
    if code == 0:
        marker.unlink(missing_ok=True)
    elif code != EXIT_INTERRUPTED:
        atomic_write_text(marker, describe(code) + "\n")


def failures(variations: list[Variation], out: Path) -> dict[str, str]:
    """The variations whose last training failed, and how."""
    markers = {variation.name: out / FAILED / variation.name for variation in variations}
    return {name: marker.read_text(encoding="utf-8").strip() for name, marker in markers.items() if marker.is_file()}


def run_sweep(
    variations: list[Variation],
    out: Path,
    command: click.Command,
    parallel: int = 1,
    stop: threading.Event | None = None,
    gpus: list[str] | None = None,
) -> dict[str, int]:
    """Train every variation, `parallel` at a time, then write the comparison and best/ unless they are current;
    returns each exit code.

    A run that finished before is not trained again (no process is started for it); one that stopped resumes.
    With `gpus`, each run sees one of them (CUDA_VISIBLE_DEVICES), and no two runs share one.
    """
    out.mkdir(parents=True, exist_ok=True)
    trainings = Trainings(command, out, stop, gpus)
    with ThreadPoolExecutor(max_workers=parallel) as pool:
        codes = list(pool.map(trainings.run, variations))
    if not comparison_current(variations, out):
        finish_sweep(variations, out)
    return dict(zip((variation.name for variation in variations), codes, strict=True))


def run_index(
    variations: list[Variation], index: int, out: Path, command: click.Command, stop: threading.Event | None = None
) -> int:
    """Train variation `index` alone (one pod of an Indexed Job), its output in ours. The last pod to end, its run
    finished or failed, writes the comparison and best/ from the runs that finished (should two end together, both
    write the same files, each atomically); a pod interrupted is retried, so it leaves that to a later one."""
    out.mkdir(parents=True, exist_ok=True)
    code = Trainings(command, out, stop).run(variations[index], to_log_file=False)
    if code != EXIT_INTERRUPTED and all_ended(variations, out) and not comparison_current(variations, out):
        finish_sweep(variations, out)
    return code


def finish_sweep(variations: list[Variation], out: Path) -> Run | None:
    """OUT/report.html comparing the runs so far, and OUT/best/ from the best finished run; returns that run. The
    variations that failed are named in the log (and each in OUT/failed/).

    Safe to call from several processes at once: each file is written whole under a temporary name and renamed.
    """
    from job.analysis.report import ranked, write_comparison

    runs = [run for run in (_readable_run(out / variation.name) for variation in variations) if run is not None]
    if runs:
        write_comparison([run.root for run in runs], out / "report.html")
        log.info("compared %s in %s", plural(len(runs), "run"), out / "report.html")
    failed = failures(variations, out)
    if failed:
        log.warning("runs that failed: %s", ", ".join(f"{name} ({how})" for name, how in failed.items()))
    finished = [run for run in runs if is_finished(run.root)]
    if not finished:
        return None
    best = ranked(finished)[0]
    with atomic_write(out / BEST_FOLDER / RUN_MODEL) as file, open(RunDir(best.root).onnx, "rb") as source:
        shutil.copyfileobj(source, file)
    with atomic_write(out / BEST_FOLDER / BEST_SUMMARY) as file:
        file.write(best_summary(best).encode("utf-8"))
    log.info("best run: %s (%s); its generator is in %s", best.name, _distance(best), out / BEST_FOLDER)
    return best


def best_summary(best: Run) -> str:
    """best/run.txt: the best run's name on the first line, then its folder, step and quality, rounded as shown."""
    quality = best.quality or {}
    lines = [best.name, f"folder: {best.root}", f"step: {best.step:,}", _distance(best)]
    if isinstance(quality.get("classes_covered"), int):
        lines.append(f"classes covered: {quality['classes_covered']} of {len(quality.get('class_shares') or [])}")
    return "\n".join(lines) + "\n"


def _distance(run: Run) -> str:
    distance = (run.quality or {}).get("frechet_distance")
    return (
        f"Fréchet distance: {distance:.2f}" if isinstance(distance, int | float) else "Fréchet distance: not measured"
    )


def _readable_run(root: Path) -> Run | None:
    """The run in `root`; None when there is none yet, or (said in one line) when it is damaged."""
    from job.analysis.report import read_run

    if not RunDir(root).config.exists():
        return None
    run = read_run(root)
    if run.problem:
        log.warning("leaving %s out of the comparison: %s", root, run.problem)
        return None
    return run


def is_finished(root: Path) -> bool:
    """The run in `root` finished (RunDir.finished_at); one whose folder cannot say has not."""
    try:
        return RunDir(root).finished_at() is not None
    except ConfigError:
        return False


def all_ended(variations: list[Variation], out: Path) -> bool:
    """Every variation's run finished or failed: nothing is left for a pod to do."""
    failed = failures(variations, out)
    return all(variation.name in failed or is_finished(out / variation.name) for variation in variations)


COMPARISON = ("report.html", f"{BEST_FOLDER}/{RUN_MODEL}", f"{BEST_FOLDER}/{BEST_SUMMARY}")  # what finish_sweep writes


def comparison_current(variations: list[Variation], out: Path) -> bool:
    """OUT's comparison and best/ were written after the last change to every run and failure they are made of: a
    re-run that changed nothing (its runs all finished before) leaves them as they are, and loads no TensorFlow."""
    try:
        written = min((out / name).stat().st_mtime_ns for name in COMPARISON)
    except OSError:  # not written yet, or not all of it
        return False
    runs = [RunDir(out / variation.name) for variation in variations]
    inputs = [path for run in runs for path in (run.config, run.metrics, run.onnx)]
    inputs += [out / FAILED / variation.name for variation in variations]
    current = all(_modified(path) <= written for path in inputs)
    if current:
        log.info("%s and %s are up to date: left as they are", out / "report.html", out / BEST_FOLDER)
    return current


def _modified(path: Path) -> int:
    """A file's modification time in ns; 0 for one that is not there."""
    try:
        return path.stat().st_mtime_ns
    except OSError:
        return 0
