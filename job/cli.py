"""`gan-job`: the batch job's command line. Every option can also come from a GAN_<OPTION> variable."""

from __future__ import annotations

import contextlib
import importlib.util
import json
import logging
import os
import signal
import sys
import threading
from pathlib import Path

import click

from job.config import REQUIRED, ConfigError, Option, TrainConfig, default_of, flag_of, option_type, options
from job.native_logs import filter_native_stderr

# Exit codes (README.md, "Exit codes"; the Kubernetes podFailurePolicy relies on them).
EXIT_BAD_INPUT = 2  # bad configuration, data or output volume, or training diverged: retrying cannot help
EXIT_INTERRUPTED = 75  # SIGTERM or SIGINT: a checkpoint was written, starting again resumes (EX_TEMPFAIL)

ENV_PREFIX = "GAN_"


def _option(name: str, **kwargs):
    """An option that also reads GAN_<NAME> from the environment, shown in --help."""
    envvar = ENV_PREFIX + name.split("/")[0].lstrip("-").replace("-", "_").upper()  # --ema/--no-ema: GAN_EMA
    kwargs.setdefault("show_default", True)
    return click.option(name, envvar=envvar, show_envvar=True, **kwargs)


def _config_option(name: str, declared: Option):
    """The click option of one TrainConfig field, from its declaration in job/config.py."""
    kind, default, flag = option_type(name), default_of(name), flag_of(name)
    kwargs = {"help": declared.help}
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
    return _option(flag, type=click.Path(file_okay=not declared.folder, path_type=Path), **kwargs)


def train_options(command):
    """Every training option (job/config.py declares them) on a click command."""
    for name, declared in reversed(options().items()):
        command = _config_option(name, declared)(command)
    return command


data_option = _config_option("data", options()["data"])


@click.group(context_settings={"help_option_names": ["-h", "--help"], "max_content_width": 100})
@click.version_option(package_name="mnist-gan")
@click.option("-v", "--verbose", is_flag=True, help="Debug logging, TensorFlow's included.")
def main(verbose: bool) -> None:
    """Train the classic Keras MNIST GAN as a resumable batch job, and export its generator."""
    _setup_logging(verbose)


@main.command()
@train_options
@click.option("--force", is_flag=True, help="Start a new run in an --out that holds a run of another configuration.")
def train(force: bool, **values) -> None:
    """Train to completion (resuming when --out holds a run), then save the generator."""
    try:
        config = TrainConfig(**values)
    except ConfigError as error:
        raise click.UsageError(str(error)) from error
    _run(lambda: _train(config, force))


def _train(config, force: bool) -> None:
    from job.train import train

    logging.getLogger("job").info("configuration: %s", json.dumps(config.to_dict(), sort_keys=True))
    with _stop_on_signals() as stop:
        train(config, force=force, on_progress=_progress_reporter(config.steps), stop=stop)


@contextlib.contextmanager
def _stop_on_signals():
    """SIGTERM or SIGINT set an event the training loop checks between compiled calls; a second one aborts."""
    stop = threading.Event()

    def handle(signum, _frame) -> None:
        if stop.is_set():  # asked twice: stop now, without a checkpoint
            signal.signal(signum, signal.SIG_DFL)
            os.kill(os.getpid(), signum)
            return
        stop.set()
        logging.getLogger("job").warning(
            "%s: stopping after the steps under way, writing a checkpoint (send it again to abort at once)",
            signal.Signals(signum).name,
        )

    previous = {signum: signal.signal(signum, handle) for signum in (signal.SIGTERM, signal.SIGINT)}
    try:
        yield stop
    finally:
        for signum, handler in previous.items():
            signal.signal(signum, handler)


def _progress_reporter(total: int):
    """A progress bar on a terminal; plain log lines (from the training loop) in container logs."""
    if not sys.stderr.isatty():
        return None
    bar = click.progressbar(
        length=total, file=sys.stderr, show_pos=True, show_eta=True, item_show_func=lambda text: text, width=24
    )

    def report(progress) -> None:
        text = (
            f"d_loss {progress.d_loss:.3f}  g_loss {progress.g_loss:.3f}  "
            f"d_acc {progress.d_accuracy:.2f}  {progress.steps_per_s:.0f} steps/s"
        )
        bar.update(progress.step - bar.pos, text)  # a resumed run's first update jumps to where it stands
        if progress.step >= total:
            bar.render_finish()

    return report


def _run(work) -> None:
    """Run `work`, turning the user's mistakes into one line and exit code 2 instead of a traceback."""
    if importlib.util.find_spec("tensorflow") is None:
        click.echo("Error: gan-job needs the training stack: pip install 'mnist-gan[train]'", err=True)
        sys.exit(EXIT_BAD_INPUT)
    from job.data import DataError
    from job.export import ExportError
    from job.train import Interrupted, TrainingDiverged

    try:
        work()
    except (ConfigError, DataError, TrainingDiverged) as error:
        _fail(str(error), EXIT_BAD_INPUT)
    except OSError as error:  # an output volume that is read-only, full or gone
        _fail(_describe(error), EXIT_BAD_INPUT)
    except Interrupted as error:
        _fail(str(error), EXIT_INTERRUPTED)
    except ExportError as error:
        _fail(str(error), 1)


def _fail(message: str, code: int) -> None:
    click.echo(f"Error: {message}", err=True)
    sys.exit(code)


def _describe(error: OSError) -> str:
    if error.filename and error.strerror:
        return f"cannot write {error.filename}: {error.strerror}"
    return str(error)


def _setup_logging(verbose: bool) -> None:
    if not verbose:
        os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")  # TensorFlow's C++ start-up chatter
        filter_native_stderr()  # what TF_CPP_MIN_LOG_LEVEL does not silence
    logging.basicConfig(
        level=logging.DEBUG if verbose else logging.INFO,
        format="%(asctime)s %(levelname)s %(message)s",
        datefmt="%Y-%m-%dT%H:%M:%S",
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
    type=click.Path(dir_okay=False, path_type=Path),
    default=None,
    help="The ONNX file to write [default: RUN/generator.onnx].",
)
def export(run_path: Path, step: int | None, out: Path | None) -> None:
    """Export the generator of a run's checkpoint to ONNX (checked against Keras, written atomically)."""
    _run(lambda: _export(run_path, step, out))


def _export(run_path: Path, step: int | None, out: Path | None) -> None:
    from job.export import export_onnx, metadata
    from job.run import load_run

    config, gan, restored = load_run(run_path, step)
    out = out or run_path / "generator.onnx"
    export_onnx(gan.sampler, out, metadata(config, restored))
    click.echo(f"exported step {restored} of {run_path} to {out}", err=True)


@main.command()
@click.option(
    "--model",
    type=click.Path(exists=True, dir_okay=False, path_type=Path),
    required=True,
    help="An exported generator (.onnx).",
)
@data_option
@click.option("--samples", type=click.IntRange(min=10), default=10_000, show_default=True, help="Samples to measure.")
@click.option("--seed", type=int, default=0, show_default=True, help="Seed of the samples' latents.")
@_option(
    "--quality-cache",
    type=click.Path(file_okay=False, path_type=Path),
    default=None,
    show_default="beside the model",
    help="Where the quality classifier is cached (once per data set).",
)
@click.option("--json", "as_json", is_flag=True, help="Print one JSON object.")
def evaluate(
    model: Path, data: Path | None, samples: int, seed: int, quality_cache: Path | None, as_json: bool
) -> None:
    """Measure an exported generator: Fréchet distance, share of each digit, digit accuracy if conditional."""
    _run(lambda: _evaluate(model, data, samples, seed, quality_cache or model.parent / ".quality-cache", as_json))


def _evaluate(model_path: Path, data: Path | None, samples: int, seed: int, cache: Path, as_json: bool) -> None:
    from job.data import load_mnist
    from job.quality import evaluate_model
    from serving.model import ModelError

    try:
        report = evaluate_model(model_path, load_mnist(data), samples, seed, cache)
    except ModelError as error:
        raise click.UsageError(str(error)) from error
    if as_json:
        click.echo(json.dumps({"model": str(model_path), "samples": samples, **report.record()}))
        return
    click.echo(f"model:             {model_path}  ({samples} samples, seed {seed})")
    click.echo(f"Fréchet distance:  {report.frechet_distance:.3f}  (classifier features, against the test set)")
    click.echo(f"digits covered:    {report.classes_covered} of 10 (at least 5% of the samples each)")
    click.echo("share per digit:   " + "  ".join(f"{d}:{s:.1%}" for d, s in enumerate(report.class_shares)))
    if report.label_accuracy is not None:
        click.echo(f"digit asked for:   {report.label_accuracy:.2%} of the samples are classified as it")
