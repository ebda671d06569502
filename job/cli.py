"""`gan-job`: the batch job's command line. Every option can also come from a GAN_<OPTION> variable."""

from __future__ import annotations

import importlib.util
import json
import logging
import os
import sys
from pathlib import Path

import click

from job import signals
from job.analysis.sweep import MAX_VARIATIONS
from job.config import MAX_SAMPLES, REQUIRED, Option, TrainConfig, default_of, flag_of, option_type, options
from job.errors import (
    EXIT_BAD_INPUT,
    EXIT_FAILED,
    EXIT_INTERRUPTED,
    BadInput,
    ConfigError,
    ExportError,
    Interrupted,
)
from job.native_logs import filter_native_stderr
from serving.cli import SEED
from serving.files import RUN_MODEL, OutputPath, step_model
from serving.oneline import OneLineErrors, plural

ENV_PREFIX = "GAN_"
LOADS_TENSORFLOW = {"train", "export", "evaluate"}  # the commands whose native start-up lines are filtered

log = logging.getLogger(__name__)
# How each log line reads: its time to the second, its level, its message.
LOG_FORMAT = "%(asctime)s %(levelname)s %(message)s"
LOG_TIME_FORMAT = "%Y-%m-%dT%H:%M:%S"


def _option(name: str, **kwargs):
    """An option that also reads GAN_<NAME> from the environment, shown in --help."""
    envvar = ENV_PREFIX + name.split("/")[0].lstrip("-").replace("-", "_").upper()  # --ema/--no-ema: GAN_EMA
    kwargs.setdefault("show_default", True)
    return click.option(name, envvar=envvar, show_envvar=True, **kwargs)


def _config_option(name: str, declared: Option):
    """The click option of one TrainConfig field, from its declaration in job/config.py."""
    kind, default, flag = option_type(name), default_of(name), flag_of(name)
    kwargs = {"help": declared.help} | ({"metavar": declared.metavar} if declared.metavar else {})
    if default is REQUIRED:
        kwargs |= {"required": True, "show_default": False}
    else:
        kwargs |= {"default": default, "show_default": declared.default_text or True}
    if kind is bool:  # --conditional, or --ema/--no-ema where the default is on or undecided
        if default is False:
            return _option(flag, is_flag=True, **kwargs)
        return _option(f"{flag}/--no-{flag[2:]}", **kwargs)
    if declared.choices:
        return _option(flag, type=click.Choice(declared.choices), **kwargs)
    if kind is int:
        return _option(flag, type=click.IntRange(declared.min, declared.max), **kwargs)
    if kind is float:
        return _option(flag, type=click.FloatRange(declared.min, declared.max), **kwargs)
    if kind is str:
        return _option(flag, type=str, **kwargs)
    if declared.folder:  # where the run writes (--out, --quality-cache): never onto another run's state
        return _option(flag, type=OutputPath(file_okay=False), **kwargs)
    return _option(flag, type=click.Path(path_type=Path), **kwargs)


def train_options(command):
    """Every training option (job/config.py declares them) on a click command."""
    for name, declared in reversed(options().items()):
        command = _config_option(name, declared)(command)
    return command


@click.group(cls=OneLineErrors, context_settings={"help_option_names": ["-h", "--help"], "max_content_width": 100})
@click.version_option(package_name="mnist-gan")
@click.option("-v", "--verbose", is_flag=True, help="Debug logging, TensorFlow's included.")
def main(verbose: bool) -> None:
    """Train the classic Keras MNIST GAN as a resumable batch job, and export its generator."""
    _setup_logging(verbose, click.get_current_context().invoked_subcommand in LOADS_TENSORFLOW)


@main.command()
@train_options
@click.option("--force", is_flag=True, help="Start a new run in an --out that holds a run of another configuration.")
def train(force: bool, **values) -> None:
    """Train to completion (resuming when --out holds a run), then save the generator."""
    from click.core import ParameterSource

    context = click.get_current_context()
    not_given = {name for name in values if context.get_parameter_source(name) is ParameterSource.DEFAULT}
    data_unknown = None  # the run's recorded data cannot be found: said only if the run has work left
    try:
        if not force:
            recorded, data_unknown = _resumed_values(values["out"], not_given)
            values |= recorded
        config = TrainConfig(**values)
    except ConfigError as error:
        raise click.UsageError(str(error)) from error
    _run(lambda: _train(config, force, data_unknown))


def _resumed_values(out, not_given: set[str]) -> tuple[dict, ConfigError | None]:
    """What a start in a run's folder takes from its config.json where neither the command line nor a GAN_ variable
    says otherwise: every option that defines the run (its architecture, seed, ...), so that a resume or an extension
    needs only --out (and --steps), and its data (recorded_data). Options a resume may change keep their defaults.
    Also why the recorded data cannot be found, if it cannot. Nothing for a new folder, or one whose config.json
    does not read (the start then says why)."""
    from job.rundir.claim import RunDir, recorded_data

    run = RunDir(out)
    try:
        saved = run.saved_config()
    except ConfigError:
        return {}, None
    if saved is None:
        return {}, None
    defining = {name for name, declared in options().items() if not declared.resumable}
    values = {name: saved[name] for name in not_given & defining if name in saved and name != "out"}
    if "data" not in not_given:
        return values, None
    try:
        return values | {"data": recorded_data(run, saved, "train on")}, None
    except ConfigError as error:
        return values | {"data": saved.get("data")}, error


def _train(config: TrainConfig, force: bool, data_unknown: ConfigError | None = None) -> None:
    from job.loop.train import train  # imports no TensorFlow until the run folder is claimed
    from job.rundir.claim import finished_already

    step = None if force else finished_already(config)
    if step is not None:  # answered without TensorFlow, and nothing in the run written
        log.info("run in %s already finished at step %d: nothing to do", config.out, step)
        return
    if data_unknown is not None:
        raise data_unknown
    if not sys.stderr.isatty():  # container logs: plain lines from the training loop
        train(config, force)
        return
    from job.loop.progress_bar import ProgressBar

    with ProgressBar(config.steps, sys.stderr) as bar:
        train(config, force, on_progress=bar.logged, on_advance=bar.advanced)


def _run(work) -> None:
    """Run `work`, turning the user's mistakes into one line and exit code 2 instead of a traceback; SIGTERM and
    SIGINT into exit code 75, also where a library turned the signal into an error of its own."""
    if importlib.util.find_spec("tensorflow") is None:
        _fail("gan-job needs the training stack: pip install 'mnist-gan[train]'", EXIT_BAD_INPUT)
    try:
        with signals.handled():
            work()
    except Interrupted as error:
        # The message's own first line, should a library have told its story around it
        lines = [line.strip() for line in str(error).splitlines()]
        _fail(next((line for line in lines if line.startswith("interrupted")), signals.message()), EXIT_INTERRUPTED)
    except Exception as error:
        if signals.requested.is_set():  # e.g. a restore or a read cut short by the signal, reported as a failure
            _fail(signals.message(), EXIT_INTERRUPTED)
        if isinstance(error, BadInput):
            _fail(str(error), EXIT_BAD_INPUT)
        if isinstance(error, OSError):  # an output volume that is read-only, full or gone
            _fail(_describe(error), EXIT_BAD_INPUT)
        if isinstance(error, ExportError):
            _fail(str(error), EXIT_FAILED)
        raise


def _fail(message: str, code: int) -> None:
    click.echo(f"Error: {message}", err=True)
    sys.exit(code)


def _describe(error: OSError) -> str:
    if error.filename and error.strerror:
        return f"cannot write {error.filename}: {error.strerror}"
    return str(error)


def _setup_logging(verbose: bool, loads_tensorflow: bool) -> None:
    # A SIGTERM may land while a line is being written: logging must not print that as a "Logging error" with a
    # traceback (job/signals.py notices the swallowed signal and stops the job all the same).
    logging.raiseExceptions = False
    if not verbose:
        os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")  # TensorFlow's C++ start-up chatter
        if loads_tensorflow:
            filter_native_stderr()  # what TF_CPP_MIN_LOG_LEVEL does not silence
    logging.basicConfig(
        level=logging.DEBUG if verbose else logging.INFO,
        format=LOG_FORMAT,
        datefmt=LOG_TIME_FORMAT,
        stream=sys.stderr,
    )
    if not verbose:
        for noisy in ("tensorflow", "absl", "h5py", "tf2onnx"):
            logging.getLogger(noisy).setLevel(logging.WARNING)


@main.command()
@click.option(
    "--run",
    "run_path",
    envvar=ENV_PREFIX + "OUT",  # the run `gan-job train` wrote: inside the train image export needs no option
    show_envvar=True,
    type=click.Path(exists=True, file_okay=False, path_type=Path),
    required=True,
    help="A run directory written by gan-job train.",
)
@click.option(
    "--step", type=click.IntRange(min=1), default=None, help="A kept checkpoint's step [default: the newest]."
)
@click.option(
    "--out",
    type=OutputPath(dir_okay=False),
    default=None,
    help="The ONNX file to write [default: RUN/generator.onnx; with --step, RUN/generator-step-STEP.onnx, so that "
    "the run's own final model stays as it is].",
)
def export(run_path: Path, step: int | None, out: Path | None) -> None:
    """Export the generator of a run's checkpoint to ONNX (checked against Keras, written atomically)."""
    _run(lambda: _export(run_path, step, out))


def _export(run_path: Path, step: int | None, out: Path | None) -> None:
    from job.export import export_onnx, metadata
    from job.rundir.restore import load_run

    config, data_set, gan, restored = load_run(run_path, step)
    out = out or run_path / (RUN_MODEL if step is None else step_model(restored))
    export_onnx(gan.sampler, out, metadata(config, data_set, restored, gan.clusters))  # it logs what it wrote


@main.command()
@click.option(
    "--model",
    type=click.Path(exists=True, dir_okay=False, path_type=Path),
    required=True,
    help="An exported generator (.onnx).",
)
@_option(
    "--data",
    metavar="NAME|PATH",
    default=None,
    show_default="the data its run recorded, where config.json sits beside the model; else its Keras data set",
    help="The data the model is measured against (as gan-job train's --data; made to the model's image shape).",
)
@click.option(
    "--samples", type=click.IntRange(10, MAX_SAMPLES), default=10_000, show_default=True, help="Samples to measure."
)
@click.option("--seed", type=SEED, default=0, show_default=True, help="Seed of the samples' latents.")
@_option(
    "--quality-cache",
    type=OutputPath(file_okay=False),
    default=None,
    show_default="its run's, where config.json sits beside the model; else as gan-job train's",
    help="Where the quality classifier is cached (once per data set).",
)
@click.option("--json", "as_json", is_flag=True, help="Print one JSON object.")
def evaluate(model: Path, data: str | None, samples: int, seed: int, quality_cache: Path | None, as_json: bool) -> None:
    """Measure an exported generator against its data: Fréchet distance, share of each class, and how often a
    conditional model draws the class asked for."""
    from job.rundir.claim import classifier_cache_of

    _run(lambda: _evaluate(model, data, samples, seed, quality_cache or classifier_cache_of(model), as_json))


def _evaluate(model_path: Path, data: str | None, samples: int, seed: int, cache: Path, as_json: bool) -> None:
    from job.data.memory import check_room_for_samples
    from job.rundir.claim import data_of
    from serving.model import Generator, ModelError

    try:  # refused before TensorFlow loads: a file that is no generator, more samples than fit, its run's data gone
        generator = Generator(model_path)
        check_room_for_samples(samples, generator.latent_dim, generator.image_shape, "--samples")
        data = data or data_of(model_path)
        from job.analysis.quality import evaluate_model

        report = evaluate_model(model_path, data, samples, seed, cache)
    except ModelError as error:
        raise click.UsageError(str(error)) from error
    if as_json:
        record = {"model": str(model_path), "samples": samples, **report.record()}
        click.echo(json.dumps({**record, "class_names": list(report.class_names)}))
        return
    click.echo(f"model:             {model_path}  ({samples} samples, seed {seed})")
    click.echo(
        f"Fréchet distance:  {report.frechet_distance:.2f}  (classifier features, against the data's real test images)"
    )
    classes = len(report.class_shares)
    click.echo(f"classes covered:   {report.classes_covered} of {classes} (at least 5% of the samples each)")
    names = [report.class_name(label) for label in range(classes)]
    shares = zip(names, report.class_shares, strict=True)
    click.echo("share per class:   " + "  ".join(f"{name}:{share:.1%}" for name, share in shares))
    varieties = zip(names, report.class_variety, strict=True)
    click.echo(
        "variety per class: "
        + "  ".join(f"{name}:{'-' if variety is None else f'{variety:.2f}'}" for name, variety in varieties)
        + "  (1: as varied as its real images)"
    )
    if report.label_accuracy is not None:
        click.echo(f"class asked for:   {report.label_accuracy:.1%} of the samples are classified as it")
    warning = report.look_alike()
    if warning:
        click.echo(f"Warning: {warning}", err=True)


@main.command()
@click.argument("folders", nargs=-1, required=True, type=click.Path(exists=True, file_okay=False, path_type=Path))
@click.option(
    "--out",
    type=OutputPath(dir_okay=False),
    required=True,
    help="The page to write (.html); plotly.min.js goes beside it.",
)
def report(folders: tuple[Path, ...], out: Path) -> None:
    """Compare every run in or below FOLDERS (run folders, folders of runs, sweeps) on one page: curves overlaid,
    newest grids side by side, ranked by the final Fréchet distance."""
    if out.suffix.lower() not in (".html", ".htm"):
        raise click.BadParameter(f"{out} is no page name: end it in .html", param_hint="'--out'")
    _run(lambda: _report(list(folders), out))


def _report(folders: list[Path], out: Path) -> None:
    from job.analysis.report import compare

    runs = compare(folders, out)
    click.echo(f"compared {plural(len(runs), 'run')} in {out}", err=True)


@main.command(
    context_settings={"ignore_unknown_options": True},
    help=f"""Train every variation of SWEEP_FILE into OUT/<name>, then compare them and keep the best.

    SWEEP_FILE: YAML (UTF-8) of at most {MAX_VARIATIONS:,} variations. TRAIN_OPTIONS: any option of gan-job train but
    --force; it overrides the sweep file's shared settings. The same command again resumes the runs that stopped and
    leaves finished ones alone; --force (or force in the file) is refused: to train a run anew, delete its folder.
    """,
)
@click.argument("sweep_file", type=click.Path(exists=True, dir_okay=False, path_type=Path))
@click.option(
    "--out",
    type=OutputPath(file_okay=False),
    required=True,
    help="Sweep directory: a run directory per variation, report.html, best/generator.onnx. Same --out resumes.",
)
@click.option("--parallel", type=click.IntRange(min=1), default=1, show_default=True, help="Runs trained at once.")
@click.option(
    "--gpus",
    default=None,
    help="Comma-separated GPU ids (e.g. 0,1,2,3): each run sees one of them alone (CUDA_VISIBLE_DEVICES).",
)
@click.option(
    "--index",
    type=click.IntRange(min=0),
    default=None,
    help="Train only this variation (a Kubernetes Indexed Job's completion index); the last to finish compares.",
)
@click.option("--list", "list_only", is_flag=True, help="Print the variations (index, name, train options) and stop.")
@click.argument("train_options", nargs=-1, type=click.UNPROCESSED)
def sweep(
    sweep_file: Path,
    out: Path,
    parallel: int,
    gpus: str | None,
    index: int | None,
    list_only: bool,
    train_options: tuple[str, ...],
) -> None:
    _run(lambda: _sweep(sweep_file, out, parallel, gpus.split(",") if gpus else None, index, list_only, train_options))


def _sweep(sweep_file, out, parallel, gpus, index, list_only, train_options) -> None:
    from click.core import ParameterSource

    from job.analysis.sweep import SweepError, check_steps_done, describe, load_sweep, run_index, run_sweep

    given = train.make_context("gan-job train", ["--out", str(out), *train_options])
    overrides = {
        name: value
        for name, value in given.params.items()
        if name != "out" and given.get_parameter_source(name) is ParameterSource.COMMANDLINE
    }
    variations = load_sweep(sweep_file, train, overrides)
    if list_only:
        for number, variation in enumerate(variations):
            click.echo(f"{number}\t{variation.name}\t{' '.join(variation.arguments(train))}")
        return
    if index is not None and index >= len(variations):
        count = plural(len(variations), "variation")
        raise SweepError(f"--index {index}: {sweep_file} has {count} (0..{len(variations) - 1})")
    check_steps_done(variations if index is None else [variations[index]], train, out)
    with signals.deferred() as stop:  # a signal is passed on to the trainings, which checkpoint and exit
        if index is not None:
            codes = {variations[index].name: run_index(variations, index, out, train, stop)}
        else:
            codes = run_sweep(variations, out, train, parallel, stop, gpus)
        if stop.is_set() or EXIT_INTERRUPTED in codes.values():
            raise Interrupted("interrupted: run the same command again to resume")
    failed = {name: code for name, code in codes.items() if code != 0}
    if failed:
        _fail(
            "runs that failed: " + ", ".join(f"{name} ({describe(code)})" for name, code in failed.items()),
            EXIT_BAD_INPUT if set(failed.values()) == {EXIT_BAD_INPUT} else 1,
        )
