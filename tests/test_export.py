"""The generator leaves the job as an ONNX model that serving can rely on."""

import shutil

import numpy as np
import onnx
import onnxruntime
import pytest
from click.testing import CliRunner

from job import export as export_module
from job.cli import main
from job.export import ExportError, export_onnx, metadata
from job.rundir.claim import data_set_of
from tests.conftest import invoke_cli, short_run_config


def dims(value) -> list:
    return [d.dim_param or d.dim_value for d in value.type.tensor_type.shape.dim]


def test_model_has_named_inputs_outputs_and_a_dynamic_batch(trained_run):
    out, _ = trained_run
    model = onnx.load(out / "generator.onnx")
    assert [(i.name, dims(i)) for i in model.graph.input] == [("z", ["batch", 100])]
    assert [(o.name, dims(o)) for o in model.graph.output] == [("image", ["batch", 28, 28, 1])]
    assert model.graph.input[0].type.tensor_type.elem_type == onnx.TensorProto.FLOAT


def test_model_carries_its_metadata(trained_run):
    out, _ = trained_run
    props = {p.key: p.value for p in onnx.load(out / "generator.onnx").metadata_props}
    assert {k: props[k] for k in ("latent_dim", "digit", "step", "preset", "version")} == {
        "latent_dim": "100",
        "digit": "-1",
        "step": "300",
        "preset": "default",
        "version": "0.1.0",
    }
    assert props["created"].startswith("20")


@pytest.mark.parametrize("batch", [1, 7, 64])
def test_onnxruntime_reproduces_keras_within_1e_5(trained_run, batch):
    out, gan = trained_run
    session = onnxruntime.InferenceSession(str(out / "generator.onnx"))
    z = np.random.default_rng(batch).standard_normal((batch, 100)).astype(np.float32)
    (images,) = session.run(["image"], {"z": z})
    assert images.shape == (batch, 28, 28, 1)
    np.testing.assert_allclose(images, gan.sampler(z, training=False).numpy(), atol=1e-5)
    assert images.min() >= -1 and images.max() <= 1


def test_a_failing_self_check_writes_nothing(trained_run, tmp_path, monkeypatch):
    _, gan = trained_run
    monkeypatch.setattr(export_module, "TOLERANCE", -1.0)  # no model can pass: the check must refuse it
    with pytest.raises(ExportError, match="nothing written"):
        export_onnx(gan.generator, tmp_path / "g.onnx", metadata(short_run_config(tmp_path), data_set_of({}), 300))
    assert list(tmp_path.iterdir()) == []


@pytest.mark.slow
def test_export_command_re_exports_any_kept_checkpoint(trained_run, tmp_path):
    out, _ = trained_run
    result = invoke_cli("export", "--run", str(out), "--step", "200", "--out", str(tmp_path / "g200.onnx"))
    assert result.returncode == 0, result.stderr
    props = {p.key: p.value for p in onnx.load(tmp_path / "g200.onnx").metadata_props}
    assert props["step"] == "200"
    z = {"z": np.ones((2, 100), np.float32)}
    early = onnxruntime.InferenceSession(str(tmp_path / "g200.onnx")).run(None, z)[0]
    final = onnxruntime.InferenceSession(str(out / "generator.onnx")).run(None, z)[0]
    assert not np.allclose(early, final)


def test_an_earlier_checkpoint_exported_without_out_goes_beside_the_runs_own_model(trained_run, tmp_path):
    run = shutil.copytree(trained_run[0], tmp_path / "run")
    final = (run / "generator.onnx").read_bytes()
    result = CliRunner().invoke(main, ["export", "--run", str(run), "--step", "200"])
    assert result.exit_code == 0, result.output
    props = {p.key: p.value for p in onnx.load(run / "generator-step-200.onnx").metadata_props}
    assert props["step"] == "200"
    assert (run / "generator.onnx").read_bytes() == final  # the run's final model is left as it is


@pytest.mark.slow
def test_export_of_a_checkpoint_not_kept_is_one_line_and_exit_code_2(trained_run, tmp_path):
    out, _ = trained_run
    result = invoke_cli("export", "--run", str(out), "--step", "50", "--out", str(tmp_path / "g.onnx"))
    assert result.returncode == 2
    assert "keeps no checkpoint of step 50 (kept: 100, 200, 300)" in result.stderr
    assert "Traceback" not in result.stderr and not (tmp_path / "g.onnx").exists()


@pytest.mark.slow
def test_a_conditional_model_takes_z_and_an_int64_label(conditional_run):
    out, gan = conditional_run
    model = onnx.load(out / "generator.onnx")
    assert [(i.name, dims(i)) for i in model.graph.input] == [("z", ["batch", 100]), ("label", ["batch"])]
    assert model.graph.input[1].type.tensor_type.elem_type == onnx.TensorProto.INT64
    props = {p.key: p.value for p in model.metadata_props}
    assert props["conditional"] == "true" and props["ema_decay"] == "0.999"
    z = np.random.default_rng(0).standard_normal((10, 100)).astype(np.float32)
    labels = np.arange(10)
    (images,) = onnxruntime.InferenceSession(str(out / "generator.onnx")).run(None, {"z": z, "label": labels})
    # The exported generator is the moving average, the one the run's samples come from.
    expected = gan.ema_generator([z, labels.astype(np.int32)], training=False).numpy()
    np.testing.assert_allclose(images, expected, atol=1e-5)
