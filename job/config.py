"""One typed configuration object for a training run, validated once at the start."""

from __future__ import annotations

import dataclasses
import json
from dataclasses import dataclass
from pathlib import Path


class ConfigError(ValueError):
    """A configuration the job refuses to run with (exit code 2)."""


@dataclass(frozen=True)
class Hyperparameters:
    learning_rate: float
    beta_1: float
    beta_2: float
    ema_decay: float  # exponential moving average of the generator's weights, for samples and export; 0 = off


# `seed` is the original Keras tutorial, exactly: Adam(2e-4) with Keras' default betas, no EMA.
# `default` is where measured improvements go; see README.md for what differs and why.
PRESETS: dict[str, Hyperparameters] = {
    "seed": Hyperparameters(learning_rate=2e-4, beta_1=0.9, beta_2=0.999, ema_decay=0.0),
    "default": Hyperparameters(learning_rate=2e-4, beta_1=0.5, beta_2=0.999, ema_decay=0.999),
}

# Fields that may change between two starts of the same run: where the data and output live, how long to train
# and how often to report or measure. Everything else defines the run; a resume with other values would mix runs.
RESUMABLE_CHANGES = frozenset(
    {
        "out",
        "data",
        "steps",
        "checkpoint_every",
        "log_every",
        "keep_checkpoints",
        "quality",
        "quality_samples",
        "quality_cache",
    }
)


@dataclass(frozen=True)
class TrainConfig:
    out: Path
    data: Path | None = None
    digit: int = -1
    steps: int = 50_000
    batch: int = 32
    latent_dim: int = 100
    checkpoint_every: int = 500
    log_every: int = 100
    keep_checkpoints: int = 3
    seed: int = 0
    preset: str = "default"
    conditional: bool = False  # generator and discriminator both receive the digit label
    ema: bool | None = None  # None: as the preset says
    quality: bool = True  # measure sample quality at every checkpoint
    quality_samples: int = 1000
    quality_cache: Path | None = None  # where the quality classifier is cached; None: beside --out

    def __post_init__(self) -> None:
        if not -1 <= self.digit <= 9:
            raise ConfigError(f"--digit must be -1 (all digits) or 0..9, got {self.digit}")
        for name in ("steps", "batch", "latent_dim", "checkpoint_every", "log_every", "keep_checkpoints"):
            if getattr(self, name) <= 0:
                raise ConfigError(f"--{name.replace('_', '-')} must be positive, got {getattr(self, name)}")
        if self.batch % 2:
            raise ConfigError(f"--batch must be even (half real, half generated images), got {self.batch}")
        if self.preset not in PRESETS:
            raise ConfigError(f"--preset must be one of {', '.join(PRESETS)}, got {self.preset!r}")
        if self.conditional and self.digit != -1:
            raise ConfigError("--conditional trains on every digit with its label: leave --digit at -1")
        if self.quality_samples < 10:
            raise ConfigError(f"--quality-samples must be at least 10, got {self.quality_samples}")

    @property
    def ema_decay(self) -> float:
        """The EMA decay in use: the preset's, or switched on (0.999) or off by --ema/--no-ema."""
        if self.ema is None:
            return self.hyper.ema_decay
        return (self.hyper.ema_decay or 0.999) if self.ema else 0.0

    @property
    def classifier_cache(self) -> Path:
        return self.quality_cache or self.out.parent / ".quality-cache"

    @property
    def hyper(self) -> Hyperparameters:
        return PRESETS[self.preset]

    def to_dict(self) -> dict:
        values = dataclasses.asdict(self)
        values["out"] = str(self.out)
        values["data"] = None if self.data is None else str(self.data)
        values["quality_cache"] = str(self.classifier_cache)
        values["ema"] = self.ema_decay > 0
        values["hyperparameters"] = dataclasses.asdict(self.hyper) | {"ema_decay": self.ema_decay}
        return values

    @classmethod
    def from_dict(cls, values: dict) -> TrainConfig:
        """The configuration a run directory's config.json holds."""
        fields = {field.name for field in dataclasses.fields(cls)}
        known = {key: value for key, value in values.items() if key in fields}
        known["out"] = Path(known["out"])
        for key in ("data", "quality_cache"):
            known[key] = None if known.get(key) is None else Path(known[key])
        return cls(**known)

    def to_json(self) -> str:
        return json.dumps(self.to_dict(), indent=2, sort_keys=True) + "\n"

    def differences(self, saved: dict) -> list[str]:
        """The defining fields on which a saved run's config.json disagrees with this one."""
        mine = self.to_dict()
        return sorted(
            f"{key}: run has {saved.get(key)!r}, asked for {mine[key]!r}"
            for key in mine
            if key not in RESUMABLE_CHANGES and saved.get(key) != mine[key]
        )
