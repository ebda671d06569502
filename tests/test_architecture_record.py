"""config.json describes the whole run: the architecture's settings (widths, dropout, the label's ramp, the learning
rates' fall, self-conditioning, the moving average's cadence) are recorded as its `architecture` section, and a run
goes on with the ones it began with."""

import dataclasses
import json
import shutil

import keras
import pytest

from job import config as job_config
from job.config import ARCH_SETTINGS, ARCHITECTURE, ARCHITECTURES_BEFORE_RECORDED, ArchitectureSettings
from job.loop.train import train
from job.rundir.claim import architecture_of
from tests.conftest import short_run_config

pytestmark = pytest.mark.slow


def dense_units(model: keras.Model) -> list[int]:
    """The units of a model's Dense layers, nested models included, in order."""
    units = []
    for layer in model.layers:
        if isinstance(layer, keras.Model):
            units += dense_units(layer)
        elif isinstance(layer, keras.layers.Dense):
            units.append(layer.units)
    return units


def test_config_json_records_the_settings_the_networks_were_built_with(trained_run):
    out, gan = trained_run
    section = json.loads((out / "config.json").read_text())[ARCHITECTURE]
    assert section == ARCH_SETTINGS["mlp"].record()
    assert ArchitectureSettings.from_record(section, "mlp") == ARCH_SETTINGS["mlp"]
    assert dense_units(gan.generator)[:-1] == list(section["widths"])  # the last Dense draws the image


def test_a_run_begun_with_other_settings_resumes_and_exports_with_its_own(tmp_path, monkeypatch):
    # As if an earlier version had built narrower networks with a moving average every 5 steps: this version must
    # not guess, the run's config.json says what the run is.
    earlier = dataclasses.replace(ARCH_SETTINGS["mlp"], widths=(32, 64), ema_every=5)
    monkeypatch.setitem(job_config.ARCH_SETTINGS, "mlp", earlier)
    options = {"steps": 20, "checkpoint_every": 10, "sample_every": 10, "log_every": 10, "quality": False}
    train(short_run_config(tmp_path, **options))
    monkeypatch.undo()

    resumed = train(short_run_config(tmp_path, **options | {"steps": 40}))
    assert int(resumed.step.numpy()) == 40
    assert dense_units(resumed.generator)[:-1] == [32, 64]
    assert resumed.architecture.ema_every == 5
    saved = json.loads((tmp_path / "config.json").read_text())
    assert architecture_of(saved, tmp_path / "config.json") == earlier

    from job.rundir.restore import load_run

    _, _, exported, step = load_run(tmp_path)
    assert step == 40 and dense_units(exported.generator)[:-1] == [32, 64]


def test_a_run_from_before_the_section_was_recorded_reads_as_that_versions_settings(trained_run, tmp_path):
    run = shutil.copytree(trained_run[0], tmp_path / "run")
    saved = json.loads((run / "config.json").read_text())
    del saved[ARCHITECTURE]
    (run / "config.json").write_text(json.dumps(saved))
    assert architecture_of(saved, run / "config.json") == ARCHITECTURES_BEFORE_RECORDED["mlp"]

    from job.rundir.restore import load_run

    _, _, gan, step = load_run(run)
    assert step == 300 and dense_units(gan.generator) == dense_units(trained_run[1].generator)
