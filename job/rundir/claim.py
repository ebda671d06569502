"""The run directory: the names of everything in it, one writer at a time, and whether a start may use it.

Nothing here needs TensorFlow, so a start that must be refused (another job writing there, a run of another
configuration or other data) is refused in a second, before TensorFlow loads.
"""

from __future__ import annotations

import contextlib
import json
import logging
import math
import re
import shutil
from collections.abc import Iterator
from pathlib import Path

import filelock

from job.config import (
    ARCHITECTURE,
    ARCHITECTURES_BEFORE_RECORDED,
    ArchitectureSettings,
    ConfigError,
    TrainConfig,
    check_recorded,
    default_of,
    user_cache,
)
from job.data.load import KERAS_SETS, MIN_SIDE, ImageData, class_mask, load_data, reference_set
from job.data.memory import check_room_for_samples
from serving.files import (
    BEST_FOLDER,
    BEST_SUMMARY,
    CHECKPOINTS_FOLDER,
    CLUSTERS_FILE,
    CONFIG_FILE,
    LOCK_FILE,
    METRICS_FILE,
    RUN_MODEL,
)
from serving.model import CHANNELS, MAX_CLASSES, MAX_SIDE, class_listing, first_line

log = logging.getLogger(__name__)

DATA_FINGERPRINT = "data_fingerprint"  # the key in config.json: which data the run trains on
MAX_MLP_VALUES = 64 * 64 * 3  # pixels x channels: the MLP discriminator's first layer holds their square (151 M)
DATA_SET = "data_set"  # and what it is: its name, image shape and class names
CLUSTERS = "clusters"  # and, self-conditioned, how many clusters its images were cut into (job/networks/clusters.py)
PREFIX = "ckpt"  # checkpoint N is checkpoints/ckpt-N.index and its data files
INDEX = re.compile(rf"^{PREFIX}-(\d+)\.index$")
FORCE_ADVICE = "; --force starts a new run there"  # ends the refusals of a config.json that a start cannot read
SAMPLE_GRID = "step_{:06d}.png"  # the sample grid of a step, in samples/
SAMPLE_GRIDS = re.compile(r"^step_(\d+)\.png$")


class RunDir:
    """The names of everything in a run directory, in one place."""

    def __init__(self, root: Path) -> None:
        self.root = Path(root)
        self.config = self.root / CONFIG_FILE
        self.lock = self.root / LOCK_FILE
        self.checkpoints = self.root / CHECKPOINTS_FOLDER
        self.samples = self.root / "samples"
        self.metrics = self.root / METRICS_FILE
        self.tensorboard = self.root / "tensorboard"
        self.generator = self.root / "generator.keras"
        self.onnx = self.root / RUN_MODEL
        self.model_txt = self.root / "model.txt"
        self.clusters = self.root / CLUSTERS_FILE  # a self-conditioned run's cluster of each training image

    def outputs(self) -> list[Path]:
        """Everything a run writes besides config.json and the lock."""
        return [
            self.checkpoints,
            self.samples,
            self.metrics,
            self.tensorboard,
            self.generator,
            self.onnx,
            self.model_txt,
            self.clusters,
            self.root / "generator.png",
            self.root / "discriminator.png",
        ]

    def has_checkpoints(self) -> bool:
        return bool(steps_on_disk(self.checkpoints))

    def finished(self) -> bool:
        """The run wrote its final models."""
        return self.generator.exists() or self.onnx.exists()

    def finished_at(self) -> int | None:
        """The step the run finished at: every step its config.json asks for trained (a checkpoint of that step) and
        the models of that step saved (generator.keras, and generator.onnx saying that step). None while a start
        would find work left there (steps to train, an export to write) or no run; ConfigError when config.json or
        the checkpoints cannot be read. Reads only, without TensorFlow."""
        saved = self.saved_config()
        if saved is None:
            return None
        steps = saved.get("steps", default_of("steps"))
        done = steps_on_disk(self.checkpoints)
        if not done or done[-1] != steps or not self.generator.exists() or exported_step(self.onnx) != steps:
            return None
        return steps

    def sample(self, step: int) -> Path:
        return self.samples / SAMPLE_GRID.format(step)

    def sample_grids(self) -> list[tuple[int, Path]]:
        """(step, grid) of the sample grids on disk, oldest first; none where the folder cannot be listed."""
        try:
            names = [path.name for path in self.samples.iterdir()] if self.samples.is_dir() else []
        except OSError as error:
            log.warning("cannot list the sample grids in %s (%s)", self.samples, reason(error))
            return []
        found = (SAMPLE_GRIDS.match(name) for name in names)
        return sorted((int(match.group(1)), self.samples / match.group(0)) for match in found if match)

    def saved_config(self) -> dict | None:
        """config.json as the run wrote it, None when there is none; ConfigError when it is not one (recorded_config,
        and it records where the run lives)."""
        saved = self.recorded_config()
        if saved is not None and "out" not in saved:
            raise ConfigError(f"{self.config} is not a run configuration{FORCE_ADVICE}")
        return saved

    def recorded_config(self) -> dict | None:
        """config.json's values, checked to be what a run records: every training option it holds of its type and in
        its range, its data set and clusters of their shape. None when there is none; ConfigError naming the file
        and its first problem when it is unreadable, not JSON or not of that shape."""
        try:
            saved = _json(self.config.read_text(encoding="utf-8"))
        except FileNotFoundError:
            return None
        except (OSError, ValueError) as error:
            raise ConfigError(f"{self.config} is unreadable ({reason(error)}){FORCE_ADVICE}") from error
        if not isinstance(saved, dict):
            raise ConfigError(f"{self.config} is not a run configuration{FORCE_ADVICE}")
        try:
            check_recorded(saved)
        except ConfigError as error:
            raise ConfigError(f"{self.config} is not a valid run configuration ({error}){FORCE_ADVICE}") from error
        _check_data_set(saved, self.config)
        clusters_of(saved, self.config)
        architecture_of(saved, self.config)
        return saved

    def records(self) -> list[dict]:
        """metrics.jsonl's lines that read back as JSON objects, oldest first: a line torn by a kill, or one that is
        not an object, is skipped (a resume drops it). [] before the first line; ConfigError when the file cannot be
        read."""
        try:
            text = self.metrics.read_text(encoding="utf-8", errors="replace")
        except FileNotFoundError:
            return []
        except OSError as error:
            raise ConfigError(f"{self.metrics} is unreadable ({reason(error)})") from error
        return [record for record in map(_json_object, text.splitlines()) if record is not None]

    def remove_outputs(self) -> None:
        for path in self.outputs():
            if path.is_dir():
                shutil.rmtree(path)
            else:
                path.unlink(missing_ok=True)


def steps_on_disk(folder: Path) -> list[int]:
    """The steps of the complete checkpoints in `folder` (those with an index file), oldest first; ConfigError when
    the folder cannot be listed."""
    if not Path(folder).is_dir():
        return []
    try:
        names = [path.name for path in Path(folder).iterdir()]
    except OSError as error:
        raise ConfigError(f"cannot list the checkpoints in {folder} ({reason(error)})") from error
    found = (INDEX.match(name) for name in names)
    return sorted(int(match.group(1)) for match in found if match)


def exported_step(path: Path) -> int | None:
    """The training step of the model exported at `path`, from its metadata; None when there is none, or no model
    that says."""
    import onnx  # here: only a start that may have nothing to do reads a model

    try:
        props = {prop.key: prop.value for prop in onnx.load(str(path), load_external_data=False).metadata_props}
        return int(props["step"])
    except Exception:  # missing, truncated or foreign: onnx and int() raise several kinds
        return None


def finished_already(config: TrainConfig) -> int | None:
    """The step the run in config.out finished at, when a start of `config` (not forced) has nothing to do there: the
    run is of config's defining settings and steps, and finished (RunDir.finished_at). The options a resume may
    change besides --steps (how often to sample, ...) play no part: no step is left for them to act on. Data given
    from another place must be the run's own, as for a resume (check_same_data). None otherwise; ConfigError for a
    config.json that cannot be read, or other data. Reads only, without TensorFlow."""
    run = RunDir(config.out)
    saved = run.saved_config()
    if saved is None or saved.get("steps", default_of("steps")) != config.steps or config.differences(saved):
        return None
    done = run.finished_at()
    if done is not None and not _same_place(config.data, run, saved):
        check_same_data(run, config, load_data(config.data, config.image_hw, config.channels))
    return done


def _same_place(data: str, run: RunDir, saved: dict) -> bool:
    """Whether --data names the data where the run recorded it (then it is the run's: a resume checked it)."""
    if data == saved.get("data"):
        return True
    recorded = _recorded_path(run.root, saved, "data")
    return recorded is not None and Path(data).resolve() == recorded.resolve()


@contextlib.contextmanager
def claimed(config: TrainConfig, force: bool) -> Iterator[tuple[RunDir, ImageData]]:
    """The run folder of `config`, locked for this start and checked to hold no other run (other settings, other
    data) unless `force`, and the data: all before TensorFlow loads, so a refusal comes at once. A new folder whose
    run fails or is stopped before its first checkpoint is removed again."""
    run = RunDir(config.out)
    new_folder = not run.root.exists()
    with one_writer(run), _removed_on_failure(run, new_folder):
        if not force:
            check_resumable(run, config)
        data = load_data(config.data, config.image_hw, config.channels)
        check_trainable(config, data)  # data that cannot train this run is refused here too, at once
        if not force:
            check_same_data(run, config, data)
        yield run, data


@contextlib.contextmanager
def _removed_on_failure(run: RunDir, new_folder: bool) -> Iterator[None]:
    try:
        yield
    except BaseException:
        if new_folder and not run.has_checkpoints():
            shutil.rmtree(run.root, ignore_errors=True)
        raise


@contextlib.contextmanager
def one_writer(run: RunDir) -> Iterator[None]:
    """Hold the run's lock while training: a second start on the same folder is refused at once. The kernel
    releases the lock (flock) when its process dies, so a restarted pod is never locked out by its predecessor."""
    run.root.mkdir(parents=True, exist_ok=True)
    lock = filelock.FileLock(run.lock, timeout=0, fallback_to_soft=False, preserve_lock_file=True)
    try:
        lock.acquire()
    except filelock.Timeout as error:
        raise ConfigError(
            f"another gan-job is training in {run.root}: wait for it to finish, or stop it first"
        ) from error
    try:
        yield
    finally:
        lock.release()


def check_resumable(run: RunDir, config: TrainConfig) -> None:
    """Refuse a folder that holds a run of other settings (a resume would mix two runs), or a run whose state is
    damaged in a way a start would make worse."""
    if run.checkpoints.exists() and not run.checkpoints.is_dir():
        raise ConfigError(f"{run.checkpoints} is not a folder: move it away, or --force a new run there")
    saved = run.saved_config()
    if saved is None and (run.has_checkpoints() or run.finished()):
        raise ConfigError(
            f"{run.root} holds a run but no config.json, so nothing says how it was trained: restore config.json, "
            "or --force a new run there"
        )
    if saved is not None and run.finished() and not run.has_checkpoints():
        raise ConfigError(
            f"{run.root} holds a finished run whose checkpoints are gone: restore {run.checkpoints}, or --force a "
            "new run there"
        )
    differences = [] if saved is None else config.differences(saved)
    if differences:
        raise ConfigError(
            f"{run.root} holds a run with another configuration ({'; '.join(differences)}); "
            "choose another --out, or --force to start a new run there"
        )
    try:
        check_steps(run, config)
    except ConfigError as error:
        raise ConfigError(f"{error}, or --force to start a new run there") from error


def check_steps(run: RunDir, config: TrainConfig) -> None:
    """Refuse --steps fewer than the run in `run` has trained: it would end where it is, on a configuration that
    says otherwise. Reads only, without TensorFlow."""
    done = steps_on_disk(run.checkpoints) if run.checkpoints.is_dir() else []
    if done and done[-1] > config.steps:
        raise ConfigError(
            f"{run.root} holds a run at step {done[-1]:,}: --steps {config.steps:,} is fewer; give --steps "
            f"{done[-1]} or more"
        )


def check_trainable(config: TrainConfig, data: ImageData) -> None:
    """Refuse data this run cannot train on: no images of the class asked for, no labels for a conditional model,
    too few images to measure quality with."""
    class_mask(data, config.digit)
    values = math.prod(data.image_shape)
    if config.arch == "mlp" and values > MAX_MLP_VALUES:
        raise ConfigError(
            f"--arch mlp on {'x'.join(map(str, data.image_shape))} images: its discriminator's first layer would "
            f"hold {values**2 / 1e9:.1f} G weights; use --arch dcgan, or --image-size to make them smaller"
        )
    if config.conditional and data.num_classes < 2:
        raise ConfigError(f"--conditional needs data of two classes or more, {data.name} has {data.num_classes}")
    if config.quality and data.measurable:
        reference_set(data)
        check_room_for_samples(config.quality_samples, config.latent_dim, data.image_shape, "--quality-samples")


def check_same_data(run: RunDir, config: TrainConfig, data: ImageData) -> None:
    """Refuse a folder that holds a run trained on other data (the same data at another path is fine), or on the
    same images and labels under other class names: the run's records and its model would name its classes two
    ways."""
    saved = run.saved_config() or {}
    data_fingerprint = data.fingerprint()
    if saved.get(DATA_FINGERPRINT, data_fingerprint) != data_fingerprint:
        raise ConfigError(
            f"{run.root} holds a run trained on other data (fingerprint {saved[DATA_FINGERPRINT]}, "
            f"--data {config.data} has {data_fingerprint}); choose another --out, or --force"
        )
    saved_names = data_set_of(saved)["class_names"] if saved else list(data.class_names)
    if saved_names != list(data.class_names):
        raise ConfigError(
            f"{run.root} holds a run whose classes are named {class_listing(saved_names)}; --data {config.data} "
            f"names them {class_listing(list(data.class_names)) or 'not at all'}: give them their old names, or --force"
        )


def data_set_of(saved: dict) -> dict:
    """What a run's config.json says its data is (ImageData.description); runs from before it said: MNIST."""
    mnist = {"name": "mnist", "image_shape": [28, 28, 1], "class_names": list(KERAS_SETS["mnist"])}
    return saved.get(DATA_SET, mnist)


def _check_data_set(saved: dict, path: Path) -> None:
    """ConfigError unless config.json's data set (where it records one) is what ImageData.description writes, of
    an image shape and classes a run can train on."""
    data_set = saved.get(DATA_SET, data_set_of({}))
    fields = {"": (data_set, isinstance(data_set, dict), "an object")}
    if isinstance(data_set, dict):
        fields = {f".{key}": (data_set.get(key), valid(data_set.get(key)), text) for key, (valid, text) in DATA.items()}
    for key, (value, valid, expected) in fields.items():
        if not valid:
            raise ConfigError(
                f"{path} records {DATA_SET}{key} {_shown(value)}, expected {expected}: restore the run's "
                "config.json, or --force to start a new run there"
            )
    names, digit = data_set["class_names"], saved.get("digit", -1)
    if (saved.get("conditional") is True and len(names) < 2) or (digit != -1 and digit >= len(names)):
        raise ConfigError(
            f"{path} records a run of class {digit} (-1: all), conditional {json.dumps(saved.get('conditional'))}, "
            f"on data of {len(names)} classes: restore the run's config.json"
        )


def _are_class_names(names: object) -> bool:
    return isinstance(names, list) and len(names) <= MAX_CLASSES and all(isinstance(name, str) for name in names)


def _is_image_shape(shape: object) -> bool:
    return (
        isinstance(shape, list)
        and len(shape) == 3
        and all(type(side) is int and MIN_SIDE <= side <= MAX_SIDE for side in shape[:2])  # bool is an int too
        and type(shape[2]) is int
        and shape[2] in CHANNELS
    )


# What config.json records of its data set (ImageData.description): each field's check, and what it expects.
DATA = {
    "name": (lambda name: isinstance(name, str), "text"),
    "image_shape": (
        _is_image_shape,
        f"[height, width, channels]: sides {MIN_SIDE} to {MAX_SIDE}, channels {' or '.join(map(str, CHANNELS))}",
    ),
    "class_names": (_are_class_names, f"a list of at most {MAX_CLASSES} names"),
}


MAX_NESTING = 32  # what a run writes nests two levels deep: deeper JSON is no run's, and printing it could recurse


def _json(text: str) -> object:
    """The value JSON text holds; ValueError when it is not JSON, or nests deeper than MAX_NESTING."""
    try:
        value = json.loads(text)
    except RecursionError as error:
        raise ValueError("JSON nested beyond reason") from error
    level, depth = [value], 0
    while level:
        depth += 1
        if depth > MAX_NESTING:
            raise ValueError(f"JSON nested more than {MAX_NESTING} levels deep")
        level = [item for value in level for item in _children(value)]
    return value


def _children(value: object) -> list:
    return list(value.values()) if isinstance(value, dict) else value if isinstance(value, list) else []


def _json_object(text: str) -> dict | None:
    """A line of JSON as the object it holds; None for anything else (torn, not JSON, nested beyond reason)."""
    try:
        value = _json(text)
    except ValueError:
        return None
    return value if isinstance(value, dict) else None


def _shown(value: object, limit: int = 60) -> str:
    """A recorded value for a one-line message: as JSON, cut short."""
    text = json.dumps(value)
    return text if len(text) <= limit else text[: limit - 1] + "…"


def reason(error: OSError | ValueError | RecursionError) -> str:
    """Why a file could not be read, in a few words (an OSError's message repeats the path)."""
    return getattr(error, "strerror", None) or first_line(error)


def architecture_of(saved: dict, path: Path) -> ArchitectureSettings:
    """The architecture settings a run's config.json (`saved`, read from `path`) records: the ones the run was begun
    with; for a run begun before they were recorded, that version's. ConfigError when its section is damaged."""
    if ARCHITECTURE not in saved:
        return ARCHITECTURES_BEFORE_RECORDED[saved.get("arch", default_of("arch"))]
    try:
        return ArchitectureSettings.from_record(saved[ARCHITECTURE], saved.get("arch", default_of("arch")))
    except ValueError as error:
        raise ConfigError(
            f"{path} records no usable {ARCHITECTURE} section ({error}): restore the run's config.json, or --force "
            "to start a new run there"
        ) from error


def clusters_of(saved: dict, path: Path) -> int:
    """How many clusters a self-conditioned run's config.json (`saved`, read from `path`) records; 0 for the others
    and for runs from before self-conditioning. ConfigError when it records no count."""
    recorded = saved.get(CLUSTERS, 0)
    if type(recorded) is not int or recorded < 0:  # bool is an int too
        raise ConfigError(
            f"{path} records {CLUSTERS} {json.dumps(recorded)}, expected a whole number of clusters (0: none): "
            "restore the run's config.json, or --force to start a new run there"
        )
    return recorded


def _run_of(model: Path) -> tuple[RunDir, dict] | None:
    """The run an exported model belongs to (config.json beside it, wherever it is looked at from; for a sweep's
    best/ copy, the run its summary names beside best/) and its config.json; None for a model without its run, and
    (said) for one whose config.json cannot be read."""
    folder = model.parent.resolve()
    run = RunDir(_best_run_of(folder) or folder)
    try:
        saved = run.saved_config()
    except ConfigError as error:
        log.warning("%s; taking the model as one without its run", error)
        return None
    return None if saved is None else (run, saved)


def _best_run_of(folder: Path) -> Path | None:
    """The run folder a sweep's best/ names (its summary's first line, a folder beside best/); None elsewhere."""
    if folder.name != BEST_FOLDER or (folder / CONFIG_FILE).exists():
        return None
    try:
        name = (folder / BEST_SUMMARY).read_text(encoding="utf-8").partition("\n")[0].strip()
    except (OSError, UnicodeDecodeError):
        return None
    return folder.parent / name if name and Path(name).name == name else None


def classifier_cache_of(model: Path) -> Path:
    """Where `gan-job evaluate` caches the quality classifier for `model` when not told. A run's model (config.json
    beside it): the cache the run recorded, if it is still there (a relative one taken from the folder the run was
    started in, which its recorded --out tells); else, and for a model without its run, the user's cache."""
    found, default = _run_of(model), user_cache()
    if found is None:
        return default
    run, saved = found
    recorded = _recorded_path(run.root, saved, "quality_cache")
    if recorded is not None and recorded.is_dir():
        return recorded
    if recorded is not None and recorded != default:
        log.warning("the quality classifier cache the run recorded, %s, is not there: using %s", recorded, default)
    return default


def data_of(model: Path) -> str | None:
    """The data `gan-job evaluate` measures `model` against when not told: for a run's model, the data its run
    recorded (recorded_data); None for a model without its run."""
    found = _run_of(model)
    return None if found is None else recorded_data(*found, "measure against")


def recorded_data(run: RunDir, saved: dict, purpose: str) -> str:
    """The --data a run recorded in config.json (`saved`): a Keras data set's name, or a path that is still there (a
    relative one taken from the folder the run was started in, which its recorded --out tells). ConfigError, naming
    the recorded path and asking for --data (the data to `purpose`), when that path is gone or cannot be placed."""
    recorded = saved.get("data") or "mnist"  # runs from before data sets had names: Keras' MNIST
    if recorded in KERAS_SETS:
        return recorded
    path = _recorded_path(run.root, saved, "data")
    if path is None:  # relative to the folder the run was started in, which its recorded --out does not tell
        raise ConfigError(
            f"{run.config} records --data {recorded} relative to the folder the run was started in, which its "
            f"--out {saved.get('out')} does not tell: pass the data to {purpose} with --data"
        )
    if not path.exists():
        where = "" if str(path) == recorded else f" ({path})"
        raise ConfigError(
            f"{run.config} records --data {recorded}, which is not there{where}: pass the data to {purpose} with --data"
        )
    return str(path)


def _recorded_path(root: Path, saved: dict, key: str) -> Path | None:
    """A path config.json records (under `key`), absolute; None where it cannot be placed (a relative path of a run
    whose recorded --out does not end its folder's path: moved since)."""
    recorded, out = saved.get(key), saved.get("out")
    if not isinstance(recorded, str) or not isinstance(out, str):
        return None
    if Path(recorded).is_absolute():
        return Path(recorded)
    out_parts = Path(out).parts
    if Path(out).is_absolute() or ".." in out_parts or root.parts[-len(out_parts) :] != out_parts:
        return None
    return Path(*root.parts[: -len(out_parts)], recorded)


def config_json(
    config: TrainConfig, data: ImageData, clusters: int = 0, architecture: ArchitectureSettings | None = None
) -> str:
    """What config.json holds: the resolved configuration with the run's architecture settings (by default this
    version's), the data's fingerprint, what the data is and, for a self-conditioned run, its number of clusters."""
    values = config.to_dict() | {DATA_FINGERPRINT: data.fingerprint(), DATA_SET: data.description()}
    values |= {ARCHITECTURE: architecture.record()} if architecture else {}
    values |= {CLUSTERS: clusters} if clusters else {}
    return json.dumps(values, indent=2, sort_keys=True) + "\n"
