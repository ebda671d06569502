"""The configuration is validated once, with messages that name the option."""

from pathlib import Path

import pytest

from job.config import ConfigError, TrainConfig


@pytest.mark.parametrize(
    ("options", "message"),
    [
        ({"digit": 10}, "--digit"),
        ({"digit": -2}, "--digit"),
        ({"steps": 0}, "--steps must be positive"),
        ({"batch": -2}, "--batch must be positive"),
        ({"batch": 31}, "--batch must be even"),
        ({"latent_dim": 0}, "--latent-dim must be positive"),
        ({"checkpoint_every": 0}, "--checkpoint-every must be positive"),
        ({"preset": "fancy"}, "--preset must be one of"),
    ],
)
def test_bad_values_are_refused_with_the_option_named(options, message):
    with pytest.raises(ConfigError, match=message):
        TrainConfig(out=Path("x"), **options)


def test_seed_preset_is_the_tutorials_adam():
    hyper = TrainConfig(out=Path("x"), preset="seed").hyper
    assert (hyper.learning_rate, hyper.beta_1, hyper.beta_2) == (2e-4, 0.9, 0.999)


def test_only_defining_fields_count_as_a_different_run():
    saved = TrainConfig(out=Path("a"), steps=100).to_dict()
    assert TrainConfig(out=Path("b"), steps=900, log_every=7, data=Path("d")).differences(saved) == []
    assert TrainConfig(out=Path("a"), steps=100, digit=3).differences(saved) == ["digit: run has -1, asked for 3"]
