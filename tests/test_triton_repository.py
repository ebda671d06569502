"""A Triton model repository (NAME/config.pbtxt, NAME/1/model.onnx) is written for any exported generator, by
`gan-digits triton` and beside a run's generator.onnx by the export; Triton's own protobuf (tritonclient's
ModelConfig) reads its configuration, and what it says matches the ONNX graph as the onnx package reads it.

The models are the small graphs of test_serving_shapes.py (no training); one slow test reads the repository that a
real run's export wrote.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path
from types import SimpleNamespace

import onnx
import pytest
from google.protobuf import text_format
from tritonclient.grpc import model_config_pb2

from serving import triton
from tests.test_serving_shapes import LATENT_DIM, RGB, build_model, shapes_metadata

# onnx's element types as Triton's configuration names them
TRITON_TYPES = {onnx.TensorProto.FLOAT: "TYPE_FP32", onnx.TensorProto.INT64: "TYPE_INT64"}
NO_TENSORFLOW = (
    "import sys; [sys.modules.__setitem__(m, None) for m in ('tensorflow', 'keras', 'tf2onnx', 'job')]; "
    "from serving.cli import main; sys.exit(main())"
)


def gan_digits(*args) -> subprocess.CompletedProcess:
    """`gan-digits` in a fresh process where TensorFlow and the job cannot be imported."""
    command = [sys.executable, "-c", NO_TENSORFLOW, *map(str, args)]
    return subprocess.run(command, capture_output=True, text=True, timeout=120)


def read_config(folder: Path) -> model_config_pb2.ModelConfig:
    return text_format.Parse((folder / "config.pbtxt").read_text(encoding="utf-8"), model_config_pb2.ModelConfig())


def graph_tensors(model: Path) -> dict[str, tuple[str, list]]:
    """{name: (Triton data type, shape)} of the graph's inputs and outputs, the batch dimension as None."""
    graph = onnx.load(model).graph
    return {
        value.name: (
            TRITON_TYPES[value.type.tensor_type.elem_type],
            [dim.dim_value if dim.HasField("dim_value") else None for dim in value.type.tensor_type.shape.dim],
        )
        for value in [*graph.input, *graph.output]
    }


def config_tensors(config: model_config_pb2.ModelConfig) -> dict[str, tuple[str, list]]:
    """The same from the configuration: the batch dimension put back in front, a reshape applied."""
    tensors = {}
    for tensor in [*config.input, *config.output]:
        dims = list(tensor.reshape.shape) if tensor.HasField("reshape") else list(tensor.dims)
        tensors[tensor.name] = (model_config_pb2.DataType.Name(tensor.data_type), [None, *dims])
    return tensors


@pytest.fixture
def conditional(tmp_path) -> Path:
    return build_model(tmp_path / "rgb.onnx", metadata=shapes_metadata(), conditional=True)


@pytest.fixture
def unconditional(tmp_path) -> Path:
    return build_model(tmp_path / "grey.onnx", (16, 16, 1), shapes_metadata((16, 16, 1), None, "faces"))


def test_gan_digits_triton_writes_a_repository_that_tritons_protobuf_reads_as_the_graph(conditional, tmp_path):
    result = gan_digits("triton", "--model", conditional, "--out", tmp_path / "repository")
    assert result.returncode == 0, result.stderr
    folder = tmp_path / "repository" / "rgb"
    assert f"wrote {folder / 'config.pbtxt'}" in result.stderr
    config = read_config(folder)
    assert config.name == "rgb" and config.platform == "onnxruntime_onnx"
    assert config.max_batch_size > 0 and config.HasField("dynamic_batching")
    assert config_tensors(config) == graph_tensors(conditional)
    assert (folder / "1" / "model.onnx").read_bytes() == conditional.read_bytes()


def test_the_label_is_one_value_per_image_for_triton_and_a_scalar_for_the_model(conditional, tmp_path):
    config = read_config(triton.write_repository(conditional, tmp_path))
    (label,) = [tensor for tensor in config.input if tensor.name == "label"]
    assert list(label.dims) == [1] and label.HasField("reshape") and list(label.reshape.shape) == []
    (z,) = [tensor for tensor in config.input if tensor.name == "z"]
    assert list(z.dims) == [LATENT_DIM] and not z.HasField("reshape")


def test_an_unconditional_model_has_one_input(unconditional, tmp_path):
    config = read_config(triton.write_repository(unconditional, tmp_path))
    assert [tensor.name for tensor in config.input] == ["z"]
    assert config_tensors(config) == graph_tensors(unconditional)


def test_the_parameters_say_what_the_model_draws_and_round_trip_any_class_name(tmp_path):
    names = ['say "hi"', "back\\slash", "été", "雪"]
    model = build_model(tmp_path / "odd.onnx", metadata=shapes_metadata(classes=names), conditional=True, num_labels=4)
    parameters = {
        key: value.string_value
        for key, value in read_config(triton.write_repository(model, tmp_path)).parameters.items()
    }
    assert json.loads(parameters["class_names"]) == names
    assert json.loads(parameters["image_shape"]) == list(RGB)
    assert parameters["latent_dim"] == str(LATENT_DIM) and parameters["conditional"] == "true"
    assert parameters["trained_class"] == "-1" and parameters["data"] == "colours"


def test_the_name_is_the_files_by_default_and_any_name_on_request(conditional, tmp_path):
    assert read_config(triton.write_repository(conditional, tmp_path)).name == "rgb"
    result = gan_digits("triton", "--model", conditional, "--out", tmp_path, "--name", "colours-v2")
    assert result.returncode == 0, result.stderr
    assert read_config(tmp_path / "colours-v2").name == "colours-v2"
    assert triton.model_name(Path("runs/a b/step 3.onnx")) == "step_3"


def test_a_name_that_is_no_folder_or_url_path_is_refused_in_one_line(conditional, tmp_path):
    result = gan_digits("triton", "--model", conditional, "--out", tmp_path / "r", "--name", "../up")
    assert result.returncode == 2
    assert result.stderr.count("\n") == 1 and result.stderr.startswith("Error:") and "'../up'" in result.stderr
    assert not (tmp_path / "r").exists() and not (tmp_path / "up").exists()


def test_the_batch_limit_is_chosen_by_image_size_or_given(conditional, tmp_path):
    assert triton.max_batch_size(SimpleNamespace(image_shape=(28, 28, 1))) == triton.MAX_BATCH_SIZE
    assert triton.max_batch_size(SimpleNamespace(image_shape=(1024, 1024, 3))) == 5  # 12.6 MB of float32 each
    result = gan_digits("triton", "--model", conditional, "--out", tmp_path, "--max-batch-size", "8")
    assert result.returncode == 0, result.stderr
    assert read_config(tmp_path / "rgb").max_batch_size == 8


def test_a_file_that_is_no_generator_gets_no_repository(tmp_path):
    (tmp_path / "bad.onnx").write_bytes(b"\x08\x07 a truncated model")
    result = gan_digits("triton", "--model", tmp_path / "bad.onnx", "--out", tmp_path / "r")
    assert result.returncode == 2 and result.stderr.startswith("Error:") and result.stderr.count("\n") == 1
    assert not (tmp_path / "r").exists()


def test_only_a_runs_own_model_gets_a_repository_beside_it(conditional, tmp_path):
    assert triton.write_beside(conditional) is None and not (tmp_path / "triton").exists()
    run_model = tmp_path / "run" / "generator.onnx"
    run_model.parent.mkdir()
    run_model.write_bytes(conditional.read_bytes())
    assert triton.write_beside(run_model) == tmp_path / "run" / "triton" / "generator"


@pytest.mark.slow
def test_a_runs_export_writes_the_repository_beside_generator_onnx(trained_run):
    run = trained_run[0]
    folder = run / "triton" / "generator"
    config = read_config(folder)
    assert config_tensors(config) == graph_tensors(run / "generator.onnx")
    assert json.loads(config.parameters["image_shape"].string_value) == [28, 28, 1]
    assert (folder / "1" / "model.onnx").read_bytes() == (run / "generator.onnx").read_bytes()
