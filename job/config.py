"""One typed configuration object for a training run, validated once at the start.

Each training option is declared once, here, as a field of `TrainConfig` with its type, default, range and help;
`gan-job train`'s options, their GAN_* environment variables, `--help` and the validation all derive from it.
"""

from __future__ import annotations

import contextlib
import dataclasses
import math
import numbers
import os
import typing
from dataclasses import dataclass
from pathlib import Path

import yaml

from job.data.load import MAX_CLASSES, MAX_SIDE, MIN_SIDE, parse_image_size
from job.errors import ConfigError
from serving.model import CHANNELS, MAX_LATENT_DIM

__all__ = ["ConfigError", "TrainConfig", "options"]


@dataclass(frozen=True)
class Hyperparameters:
    learning_rate: float
    beta_1: float
    beta_2: float
    ema_decay: float  # exponential moving average of the generator's weights, for samples and export; 0 = off


KINDS = {int: "a whole number", float: "a number", str: "text", bool: "true or false", Path: "a path"}


def _of_type(value, kind: type) -> bool:
    if kind is bool or isinstance(value, bool):  # JSON's true is no number, nor 1 a switch
        return kind is bool and isinstance(value, bool)
    if kind is int:
        return isinstance(value, numbers.Integral)
    if kind is float:
        return isinstance(value, numbers.Real) and not math.isnan(value)
    if kind is Path:
        return isinstance(value, str | os.PathLike)
    return isinstance(value, kind)


EMA_DECAY = 0.999  # the moving average's decay wherever it is switched on
PRESET_VALUES = {"learning_rate": float, "beta_1": float, "beta_2": float, "ema": bool}  # what every preset sets


PRESETS_FILE = Path(__file__).with_name("presets.yaml")


def load_presets(path: Path = PRESETS_FILE) -> dict[str, Hyperparameters]:
    """The named presets of presets.yaml (`seed`: the Keras tutorial exactly; `default`: measured improvements), each
    checked to set exactly PRESET_VALUES, of their types."""
    presets = yaml.safe_load(path.read_text(encoding="utf-8"))
    if not isinstance(presets, dict) or not presets:
        raise ValueError(f"{path} holds no presets")
    checked = {}
    for name, values in presets.items():
        if not isinstance(values, dict) or set(values) != set(PRESET_VALUES):
            raise ValueError(f"{path}: preset {name!r} must set exactly {', '.join(PRESET_VALUES)}")
        for key, kind in PRESET_VALUES.items():
            if not _of_type(values[key], kind):
                raise ValueError(f"{path}: preset {name!r} sets {key} to {values[key]!r}, not {KINDS[kind]}")
        optimizer = {key: float(values[key]) for key in ("learning_rate", "beta_1", "beta_2")}
        checked[str(name)] = Hyperparameters(**optimizer, ema_decay=EMA_DECAY if values["ema"] else 0.0)
    return checked


PRESETS: dict[str, Hyperparameters] = load_presets()

SAMPLE_IMAGES = 16  # the fixed latents drawn into every sample grid: a 4x4 grid

EMA_EVERY = 10  # steps between updates of the generator's moving average (each applies the decay of all of them)
ARCHITECTURE = "architecture"  # config.json's section of the ArchitectureSettings a run was begun with


@dataclass(frozen=True)
class ArchitectureSettings:
    """What an architecture's networks and training step are, beyond the options. config.json records them as its
    `architecture` section, and a resumed run goes on with the ones it records: the networks it began with, whatever
    a later version would choose. job/networks/models.py builds the networks from them."""

    # mlp: the generator's hidden layers' units; dcgan: the filters of its smallest feature map, halved at each
    # doubling, and the fewest it halves to (the discriminator has at least twice these)
    widths: tuple[int, ...]
    dropout: float  # after each of the discriminator's hidden layers; 0: none
    conditioning_ramp: int  # conditional runs: steps over which the label's part grows from nothing to full; 0: full
    decay_from: float  # the fraction of a run after which both learning rates fall linearly to 0; 1: constant
    self_conditioning: int  # unconditional runs: at most this many clusters to learn as classes; 0: none
    ema_every: int = EMA_EVERY

    def record(self) -> dict:
        """The config.json section, in JSON's types."""
        return dataclasses.asdict(self) | {"widths": list(self.widths)}

    @classmethod
    def from_record(cls, section, arch: str) -> ArchitectureSettings:
        """The settings a config.json section of an `arch` run records; ValueError naming what is missing, of the
        wrong type or out of its range."""
        if not isinstance(section, dict):
            raise ValueError(f"it is {_shown(section)}, not a section of settings")
        kinds = {"widths": list, "dropout": float, "conditioning_ramp": int, "decay_from": float}
        kinds |= {"self_conditioning": int, "ema_every": int}
        for name, kind in kinds.items():
            value = section.get(name)
            whole_numbers = kind is list and isinstance(value, list) and all(_of_type(v, int) for v in value)
            if not (whole_numbers or (kind is not list and _of_type(value, kind))):
                raise ValueError(f"{name} is {_shown(value)}")
        settings = cls(**{name: section[name] for name in kinds} | {"widths": tuple(section["widths"])})
        settings.check(arch)
        return settings

    def check(self, arch: str) -> None:
        """ValueError naming the first setting out of its range for `arch`."""
        widths = self.widths
        if arch == "dcgan" and not (len(widths) == 2 and widths[0] >= widths[1] > 0):
            raise ValueError(f"widths {list(widths)} are not the widest and the narrowest filters, widest first")
        if not widths or min(widths) < 1:
            raise ValueError(f"widths {list(widths)} are not positive whole numbers")
        ranges = {
            "dropout": (0 <= self.dropout < 1, "in [0, 1)"),
            "conditioning_ramp": (self.conditioning_ramp >= 0, "at least 0"),
            "decay_from": (0 < self.decay_from <= 1, "in (0, 1]"),
            "self_conditioning": (self.self_conditioning >= 0, "at least 0"),
            "ema_every": (1 <= self.ema_every <= 1000, "in 1..1000"),
        }
        for name, (within, wanted) in ranges.items():
            if not within:
                raise ValueError(f"{name} is {getattr(self, name)}, not {wanted}")


# The widths: the tutorial's (mlp) and TensorFlow's DCGAN tutorial's (dcgan, docs/decisions/dcgan-size.md).
ARCH_SETTINGS: dict[str, ArchitectureSettings] = {
    "mlp": ArchitectureSettings(
        widths=(128, 256, 512, 1024), dropout=0.0, conditioning_ramp=0, decay_from=1.0, self_conditioning=0
    ),
    "dcgan": ArchitectureSettings(
        widths=(256, 32), dropout=0.3, conditioning_ramp=2000, decay_from=0.5, self_conditioning=30
    ),
}
ARCH_NAMES = tuple(ARCH_SETTINGS)  # job/networks/models.py builds each (a test checks they agree)
# A run begun before config.json recorded its `architecture` section was built with these: that version's settings,
# written out, as no later change of ARCH_SETTINGS may change what such a run is.
ARCHITECTURES_BEFORE_RECORDED: dict[str, ArchitectureSettings] = {
    "mlp": ArchitectureSettings(
        widths=(128, 256, 512, 1024),
        dropout=0.0,
        conditioning_ramp=0,
        decay_from=1.0,
        self_conditioning=0,
        ema_every=10,
    ),
    "dcgan": ArchitectureSettings(
        widths=(256, 32), dropout=0.3, conditioning_ramp=2000, decay_from=0.5, self_conditioning=30, ema_every=10
    ),
}

SEED_RANGE = (0, 2**32 - 1)  # what numpy and TensorFlow accept as a seed
# Samples a quality measurement draws at most (training's --quality-samples, gan-job evaluate's --samples): they are
# held at once, as latents, images and features. FID is commonly measured on 50,000.
MAX_SAMPLES = 100_000


def user_cache() -> Path:
    """The quality classifiers' default folder, one per user, shared by all their runs, sweeps and evaluations: the
    XDG base directory specification's cache folder ($XDG_CACHE_HOME when it is an absolute path, else ~/.cache)."""
    xdg = os.environ.get("XDG_CACHE_HOME", "")
    root = Path(xdg) if os.path.isabs(xdg) else Path.home() / ".cache"
    return root / "mnist-gan" / "quality"


@dataclass(frozen=True)
class Option:
    """How a TrainConfig field appears to users: its help, its range or choices, and whether a resumed run may
    change it (where the data and outputs live, how long to train, how often to report or measure) or it defines
    the run (a resume with another value would mix two runs)."""

    help: str
    min: float | None = None
    max: float | None = None
    choices: tuple[str, ...] = ()
    resumable: bool = False
    default_text: str | None = None  # what --help shows as the default, where the value itself would mislead
    folder: bool = False  # a path option that names a folder, never a file
    metavar: str | None = None  # what --help and the docs show for the value, where the type alone would mislead


def option(default=dataclasses.MISSING, **kwargs) -> typing.Any:
    """A TrainConfig field with its Option."""
    return dataclasses.field(default=default, metadata={"option": Option(**kwargs)})


@dataclass(frozen=True)
class TrainConfig:
    out: Path = option(
        help="Run directory: checkpoints, samples, metrics, the final models. Same --out again resumes.",
        resumable=True,
        folder=True,
    )
    data: str = option(
        "mnist",
        help="The images: a Keras data set's name (mnist, fashion_mnist, cifar10: downloaded once), a Keras-style "
        ".npz (x_train (N,H,W[,C]) uint8, y_train optional), a folder of IDX files, or a folder of PNG/JPEG images "
        "(flat: unlabelled; one subfolder per class: labelled).",
        resumable=True,
        metavar="NAME|PATH",
    )
    image_size: str | None = option(
        None,
        help="Resize every image to HxW (e.g. 32x32; one number for a square).",
        default_text="as the data",
        metavar="HxW",
    )
    channels: int | None = option(
        None, min=1, max=3, help="1 (grey) or 3 (RGB): convert every image.", default_text="as the data", metavar="1|3"
    )
    arch: str = option(
        "mlp",
        choices=ARCH_NAMES,
        help="mlp: the tutorial's networks, sized to the images; dcgan: convolutional networks (docs: Architectures).",
    )
    digit: int = option(
        -1, min=-1, max=MAX_CLASSES - 1, help="Train on one class only (its label: the digit, for MNIST); -1 for all."
    )
    steps: int = option(50_000, min=1, help="Training steps in all.", resumable=True)
    batch: int = option(
        32,
        min=1,
        help="Images per step, an even number: half real and half generated for the discriminator, all for the "
        "generator.",
    )
    latent_dim: int = option(100, min=1, max=MAX_LATENT_DIM, help="Size of the generator's input.")
    checkpoint_minutes: float = option(
        5.0,
        min=0,
        help="Wall time between checkpoints (one is always written after the last step and on SIGTERM); 0: none "
        "by time.",
        resumable=True,
    )
    checkpoint_every: int = option(
        0, min=0, help="Steps between checkpoints, besides those by time; 0: none.", resumable=True
    )
    sample_every: int = option(
        5000,
        min=1,
        help="Steps between sample grids and quality measurements (and after the last step).",
        resumable=True,
    )
    log_every: int = option(100, min=1, help="Steps between metrics lines.", resumable=True)
    keep_checkpoints: int = option(3, min=1, help="How many checkpoints to keep.", resumable=True)
    seed: int = option(
        0, min=SEED_RANGE[0], max=SEED_RANGE[1], help="Random seed: the same seed gives the same run, bit for bit."
    )
    preset: str = option(
        "default",
        choices=tuple(PRESETS),
        help="'seed' is the original tutorial exactly; 'default' adds measured improvements (job/presets.yaml).",
    )
    conditional: bool = option(
        False, help="Give both networks the class label (one model for every class; the data needs labels)."
    )
    ema: bool | None = option(
        None,
        help="Sample and export a moving average of the generator's weights.",
        default_text="as the preset: on for default, off for seed",
    )
    quality: bool = option(
        True,
        help="Measure sample quality (Fréchet distance, classes covered) with every sample grid (--sample-every).",
        resumable=True,
    )
    quality_samples: int = option(
        1000, min=10, max=MAX_SAMPLES, help="Samples per quality measurement.", resumable=True
    )
    quality_cache: Path | None = option(
        None,
        help="Where the quality classifier is cached (once per data set, shared by every run that names it).",
        default_text="$XDG_CACHE_HOME/mnist-gan/quality, else ~/.cache/mnist-gan/quality",
        resumable=True,
        folder=True,
    )

    def __post_init__(self) -> None:
        if isinstance(self.data, os.PathLike):
            object.__setattr__(self, "data", str(self.data))  # a path or a data set's name, recorded as given
        for name in options():
            _check_declared(name, getattr(self, name))
        for name in ("out", "quality_cache"):  # config.json records paths as text
            if isinstance(getattr(self, name), str):
                object.__setattr__(self, name, Path(getattr(self, name)))
        if self.batch % 2:
            raise ConfigError(f"--batch must be even (half real, half generated images), got {self.batch}")
        if self.conditional and self.digit != -1:
            raise ConfigError("--conditional trains on every class with its label: leave --digit at -1")
        if self.channels not in (None, *CHANNELS):
            raise ConfigError(f"--channels must be 1 (grey) or 3 (RGB), got {self.channels}")
        if self.image_size is not None:
            try:
                size = parse_image_size(self.image_size)
            except ValueError as error:
                raise ConfigError(f"--image-size: {error}") from error
            if min(size) < MIN_SIDE or max(size) > MAX_SIDE:
                raise ConfigError(
                    f"--image-size must be at least {MIN_SIDE}x{MIN_SIDE} and at most {MAX_SIDE}x{MAX_SIDE}, "
                    f"got {self.image_size}"
                )
            object.__setattr__(self, "image_size", size_text(size))  # 32, 32x32 and 32X32 are one size

    @property
    def image_hw(self) -> tuple[int, int] | None:
        """--image-size as (height, width), None: as the data."""
        return None if self.image_size is None else parse_image_size(self.image_size)

    @property
    def ema_decay(self) -> float:
        """The EMA decay in use: the preset's, or switched on or off by --ema/--no-ema."""
        if self.ema is None:
            return self.hyper.ema_decay
        return EMA_DECAY if self.ema else 0.0

    @property
    def classifier_cache(self) -> Path:
        return self.quality_cache or user_cache()

    @property
    def hyper(self) -> Hyperparameters:
        return PRESETS[self.preset]

    @property
    def architecture(self) -> ArchitectureSettings:
        """This version's settings of --arch: a new run's (a resumed run goes on with the ones it records)."""
        return ARCH_SETTINGS[self.arch]

    def to_dict(self) -> dict:
        values = dataclasses.asdict(self)
        values["out"] = str(self.out)
        values["quality_cache"] = str(self.classifier_cache)
        values["ema"] = self.ema_decay > 0
        values["hyperparameters"] = dataclasses.asdict(self.hyper) | {"ema_decay": self.ema_decay}
        values[ARCHITECTURE] = self.architecture.record()
        return values

    @classmethod
    def from_dict(cls, values: dict) -> TrainConfig:
        """The configuration a run directory's config.json holds; ConfigError when it holds none (no `out`), or
        a value of the wrong type or out of range."""
        if "out" not in values:
            raise ConfigError("it records no out")
        return cls(**_recorded(values))

    def differences(self, saved: dict) -> list[str]:
        """The defining fields on which a saved run's config.json disagrees with this one. Its architecture section
        is the run's own: a resume goes on with it."""
        mine = self.to_dict()
        resumable = {name for name, declared in options().items() if declared.resumable}
        # An option a run's config.json lacks is one added since that run began: it ran on the option's default.
        defaults = {name: default_of(name) for name in options() if name not in saved}
        saved = defaults | saved
        with contextlib.suppress(ValueError, TypeError, AttributeError):  # runs that recorded a size as it was given
            saved["image_size"] = size_text(parse_image_size(saved["image_size"]))
        return sorted(
            f"{key}: run has {saved.get(key)!r}, asked for {mine[key]!r}"
            for key in mine
            if key not in resumable | {ARCHITECTURE} and saved.get(key) != mine[key]
        )


def check_recorded(values: dict) -> None:
    """ConfigError naming the first option a run's config.json records with the wrong type or out of range. Options
    it does not record are fine: a run from before they existed ran on their defaults."""
    for name, value in _recorded(values).items():
        _check_declared(name, value)


def _recorded(values: dict) -> dict:
    """The training options among a config.json's values."""
    known = {key: value for key, value in values.items() if key in options()}
    if "data" in known:
        known["data"] = known["data"] or "mnist"  # runs from before data sets had names: Keras' MNIST
    return known


def size_text(size: tuple[int, int]) -> str:
    """(height, width) as --image-size writes it: 'HxW'."""
    return f"{size[0]}x{size[1]}"


def options() -> dict[str, Option]:
    """Every training option, by field name, in declaration order."""
    return {field.name: field.metadata["option"] for field in dataclasses.fields(TrainConfig)}


def option_type(name: str) -> type:
    """The type a field holds, `X | None` read as X: int, float, str, bool or Path."""
    hint = typing.get_type_hints(TrainConfig)[name]
    return next((arg for arg in typing.get_args(hint) if arg is not type(None)), hint)


def _optional(name: str) -> bool:
    """Whether a field may be None ("as the data", "as the preset")."""
    return type(None) in typing.get_args(typing.get_type_hints(TrainConfig)[name])


REQUIRED = dataclasses.MISSING  # the default of an option that has none


def default_of(name: str):
    """A field's default, or REQUIRED."""
    return next(field.default for field in dataclasses.fields(TrainConfig) if field.name == name)


def flag_of(name: str) -> str:
    """The command-line flag of a field: latent_dim -> --latent-dim."""
    return "--" + name.replace("_", "-")


def _check_declared(name: str, value) -> None:
    """ConfigError when a field's value is not of its type, not among its choices or out of its range."""
    declared, flag = options()[name], flag_of(name)
    if value is None and _optional(name):
        return
    kind = option_type(name)
    if not _of_type(value, kind):
        raise ConfigError(f"{flag} must be {KINDS[kind]}, got {_shown(value)}")
    if declared.choices and value not in declared.choices:
        raise ConfigError(f"{flag} must be one of {', '.join(declared.choices)}, got {value!r}")
    if declared.min is not None and value < declared.min:
        raise ConfigError(f"{flag} must be {_range_text(declared)}, got {value}")
    if declared.max is not None and value > declared.max:
        raise ConfigError(f"{flag} must be {_range_text(declared)}, got {value}")


def _shown(value, limit: int = 40) -> str:
    """A value for a one-line message: repr, cut short."""
    text = repr(value)
    return text if len(text) <= limit else text[: limit - 1] + "…"


def _range_text(declared: Option) -> str:
    if declared.max is not None and declared.min == 1:
        return f"positive, at most {declared.max}"
    if declared.max is not None:
        return f"in {declared.min}..{declared.max}"
    return "positive" if declared.min == 1 else f"at least {declared.min}"
