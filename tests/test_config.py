"""The configuration is validated once, with messages that name the option."""

import re
from pathlib import Path

import click
import pytest

from job.config import PRESETS, REQUIRED, ConfigError, TrainConfig, default_of, flag_of, options

README = Path(__file__).parents[1] / "README.md"


@pytest.mark.parametrize(
    ("options", "message"),
    [
        ({"digit": 1000}, "--digit"),
        ({"image_size": "32y32"}, "--image-size"),
        ({"image_size": "4"}, "--image-size must be at least 8x8"),
        ({"channels": 2}, "--channels must be 1"),
        ({"arch": "resnet"}, "--arch must be one of"),
        ({"digit": -2}, "--digit"),
        ({"steps": 0}, "--steps must be positive"),
        ({"batch": -2}, "--batch must be positive"),
        ({"batch": 31}, "--batch must be even"),
        ({"latent_dim": 0}, "--latent-dim must be positive"),
        ({"checkpoint_every": -1}, "--checkpoint-every must be at least 0"),
        ({"checkpoint_minutes": -0.5}, "--checkpoint-minutes must be at least 0"),
        ({"sample_every": 0}, "--sample-every must be positive"),
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


def test_an_image_size_is_the_same_size_however_it_is_written():
    assert TrainConfig(out=Path("a"), image_size="32").image_size == "32x32"
    saved = TrainConfig(out=Path("a"), image_size="32x32").to_dict() | {"image_size": "32X32"}  # as given before
    assert TrainConfig(out=Path("a"), image_size="32").differences(saved) == []
    assert TrainConfig(out=Path("a"), image_size="32x48").differences(saved) == [
        "image_size: run has '32x32', asked for '32x48'"
    ]


# ---- each training option is declared once (job/config.py); the CLI, --help and README follow ------------------

DECLARED = options()


def train_parameters() -> dict:
    from job.cli import main

    return {param.name: param for param in main.commands["train"].params}


@pytest.mark.parametrize("name", DECLARED)
def test_the_cli_option_is_the_declared_one(name):
    declared, param = DECLARED[name], train_parameters()[name]
    assert param.envvar == "GAN_" + name.upper()
    assert param.help == declared.help
    if default_of(name) is REQUIRED:
        assert param.required
    else:
        assert param.default == default_of(name)
    if declared.choices:
        assert tuple(param.type.choices) == declared.choices
    if declared.min is not None or declared.max is not None:
        assert (param.type.min, param.type.max) == (declared.min, declared.max)


@pytest.mark.parametrize("name", [name for name, declared in DECLARED.items() if declared.min is not None])
def test_the_config_refuses_what_the_declared_range_refuses(name):
    declared = DECLARED[name]
    with pytest.raises(ConfigError, match=flag_of(name)):
        TrainConfig(out=Path("x"), **{name: declared.min - 1})
    if declared.max is not None:
        with pytest.raises(ConfigError, match=flag_of(name)):
            TrainConfig(out=Path("x"), **{name: declared.max + 1})


def test_preset_choices_are_the_presets():
    assert DECLARED["preset"].choices == tuple(PRESETS)


def test_readme_lists_every_train_option_with_its_default():
    usage = re.search(r"^gan-job train --out DIR (.*?)```", README.read_text(), re.S | re.M).group(1)
    listed = dict(re.findall(r"\[(--[\w/-]+)(?: ([^\]]+))?\]", usage))
    parameters = train_parameters()
    assert {flag.split("/")[0] for flag in listed} | {"--out"} == {p.opts[0] for p in parameters.values()}
    for flag, shown in listed.items():
        param = next(p for p in parameters.values() if p.opts[0] == flag.split("/")[0])
        if param.name in DECLARED and DECLARED[param.name].metavar:
            assert shown == DECLARED[param.name].metavar, flag
        elif isinstance(param.type, click.Choice):
            assert shown == "|".join(param.type.choices), flag
        elif isinstance(param.type, click.IntRange) and param.type.max is not None and param.type.max < 100:
            assert shown == f"{param.type.min}..{param.type.max}", flag
        elif isinstance(param.type, click.IntRange):
            assert shown == str(param.default), flag


def test_presets_are_data_each_setting_exactly_the_optimizers_values_and_the_moving_average(tmp_path):
    from job.config import EMA_DECAY, PRESETS_FILE, Hyperparameters, load_presets

    assert load_presets(PRESETS_FILE) == PRESETS
    assert PRESETS["seed"] == Hyperparameters(learning_rate=2e-4, beta_1=0.9, beta_2=0.999, ema_decay=0.0)  # Keras'
    assert PRESETS["default"].ema_decay == EMA_DECAY
    custom = tmp_path / "presets.yaml"
    custom.write_text("fast: {learning_rate: 4.0e-4, beta_1: 0.5, beta_2: 0.99, ema: true}\n")
    assert load_presets(custom) == {"fast": Hyperparameters(4e-4, 0.5, 0.99, EMA_DECAY)}
    for broken, message in [
        ("fast: {learning_rate: 4.0e-4, beta_1: 0.5, beta_2: 0.99}\n", "must set exactly"),
        ("fast: {learning_rate: fast, beta_1: 0.5, beta_2: 0.99, ema: true}\n", "sets learning_rate to 'fast'"),
        ("fast: {learning_rate: 4.0e-4, beta_1: 0.5, beta_2: 0.99, ema: 1}\n", "sets ema to 1"),
        ("[]\n", "holds no presets"),
    ]:
        custom.write_text(broken)
        with pytest.raises(ValueError, match=message):
            load_presets(custom)


@pytest.mark.parametrize(
    ("arch", "change", "message"),
    [
        ("mlp", {"widths": [0]}, "not positive whole numbers"),
        ("mlp", {"widths": []}, "not positive whole numbers"),
        ("mlp", {"widths": [128.5]}, "widths is"),
        ("dcgan", {"widths": [256]}, "widest and the narrowest"),
        ("dcgan", {"widths": [32, 256]}, "widest and the narrowest"),
        ("dcgan", {"widths": [256, 0]}, "widest and the narrowest"),
        ("mlp", {"dropout": 1.5}, "dropout is 1.5"),
        ("mlp", {"decay_from": 0}, "decay_from is 0"),
        ("mlp", {"conditioning_ramp": -5}, "conditioning_ramp is -5"),
        ("mlp", {"self_conditioning": -1}, "self_conditioning is -1"),
        ("mlp", {"ema_every": 0}, "ema_every is 0"),
        ("mlp", {"ema_every": 10**9}, "ema_every is 1000000000"),
        ("mlp", {"ema_every": None}, "ema_every is None"),
    ],
)
def test_an_architecture_section_out_of_its_ranges_is_refused(arch, change, message):
    from job.config import ARCH_SETTINGS, ArchitectureSettings

    with pytest.raises(ValueError, match=message):
        ArchitectureSettings.from_record(ARCH_SETTINGS[arch].record() | change, arch)
