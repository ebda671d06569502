"""A Triton model repository for an exported generator: NAME/config.pbtxt and NAME/1/model.onnx, the layout NVIDIA
Triton (and so KServe's Triton runtime) serves an ONNX model from.

The configuration is a dictionary in the form of Triton's ModelConfig message (as Triton's own JSON shows it), built
from the graph's inputs and output as onnxruntime reads them: written as config.pbtxt here, and served as the model's
configuration by `gan-digits serve` (serving/server.py), which checks requests against it. No TensorFlow, no protobuf.
"""

from __future__ import annotations

import json
import logging
import re
from pathlib import Path

from serving.files import RUN_MODEL, atomic_write_bytes, atomic_write_text
from serving.model import Generator, ModelError, Tensor

log = logging.getLogger(__name__)

REPOSITORY = "triton"  # the folder beside a run's model that the export writes the repository into
VERSION = "1"  # the one version a repository written here holds
MODEL_FILE = "model.onnx"  # what Triton's onnxruntime backend loads from a version folder
CONFIG_FILE = "config.pbtxt"
PLATFORM = "onnxruntime_onnx"
MAX_BATCH_SIZE = 256  # images one request (or one dynamic batch) may hold at most ...
BATCH_BYTES = 64_000_000  # ... fewer for large images: a batch's float32 images in at most this many bytes
NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.-]*")  # a model name that is a folder name and a URL path segment
# onnxruntime's element types -> Triton's data types; the Open Inference Protocol's datatype is the part after TYPE_.
DATA_TYPES = {
    "tensor(float)": "TYPE_FP32",
    "tensor(double)": "TYPE_FP64",
    "tensor(float16)": "TYPE_FP16",
    "tensor(int64)": "TYPE_INT64",
    "tensor(int32)": "TYPE_INT32",
    "tensor(uint8)": "TYPE_UINT8",
    "tensor(bool)": "TYPE_BOOL",
}


class Enum(str):
    """A protobuf enum value: bare in the text format (TYPE_FP32), a string in JSON."""


def model_name(model: Path) -> str:
    """The name a model is served under unless one is given: its file's name less .onnx ('generator' for a run's
    model), with characters a folder or a URL path could not hold replaced by '_'."""
    name = re.sub(r"[^A-Za-z0-9_.-]", "_", model.stem).lstrip("._-")
    return name or "generator"


def check_name(name: str) -> str:
    if not NAME.fullmatch(name):
        raise ModelError(
            f"model name {name!r} is not usable as a folder and URL path: letters, digits, '_', '.' and '-', "
            "beginning with a letter or digit"
        )
    return name


def max_batch_size(generator: Generator) -> int:
    """The default largest batch: MAX_BATCH_SIZE images, fewer where their float32 pixels would pass BATCH_BYTES."""
    height, width, channels = generator.image_shape
    return max(1, min(MAX_BATCH_SIZE, BATCH_BYTES // (height * width * channels * 4)))


def model_config(generator: Generator, name: str, batch_size: int | None = None) -> dict:
    """Triton's ModelConfig for the generator, as a dictionary: tensors from the graph, what the model draws (latent
    size, image shape, classes) as string parameters."""
    return {
        "name": check_name(name),
        "platform": PLATFORM,
        "max_batch_size": batch_size or max_batch_size(generator),
        "input": [_tensor_config(generator, tensor) for tensor in generator.inputs],
        "output": [_tensor_config(generator, tensor) for tensor in generator.outputs],
        "dynamic_batching": {},
        "parameters": {key: {"string_value": value} for key, value in model_parameters(generator).items()},
    }


def model_parameters(generator: Generator) -> dict[str, str]:
    """What a client needs to know to draw from the model, each a string (JSON for the lists)."""
    return {
        "latent_dim": str(generator.latent_dim),
        "image_shape": json.dumps(list(generator.image_shape)),
        "class_names": json.dumps(generator.class_names, ensure_ascii=False),  # index = label; [] for unlabelled data
        "conditional": json.dumps(generator.conditional),
        "trained_class": str(generator.trained_class),  # -1: all classes
        "data": generator.data_name,
    }


def _tensor_config(generator: Generator, tensor: Tensor) -> dict:
    """A tensor of the graph as Triton sees it: the batch dimension left out of dims; a tensor of the batch dimension
    alone (the label) as dims [1], reshaped to [] for the model."""
    batch, *dims = tensor.shape
    if isinstance(batch, int) or not all(isinstance(d, int) and d > 0 for d in dims):
        raise ModelError(
            f"{generator.path}: tensor {tensor} cannot be served by Triton: expected a variable batch dimension "
            "followed by fixed ones"
        )
    if tensor.type not in DATA_TYPES:
        raise ModelError(f"{generator.path}: tensor {tensor} has a type Triton's ONNX backend is not given here")
    config = {"name": tensor.name, "data_type": Enum(DATA_TYPES[tensor.type]), "dims": dims or [1]}
    if not dims:
        config["reshape"] = {"shape": []}
    return config


def protocol_datatype(data_type: str) -> str:
    """Triton's TYPE_FP32 as the Open Inference Protocol names it: FP32."""
    return data_type.removeprefix("TYPE_")


def to_pbtxt(message: dict, indent: int = 0) -> str:
    """A ModelConfig dictionary in protobuf's text format. Maps (parameters) are dictionaries of messages; repeated
    messages are lists of dictionaries."""
    pad = "  " * indent
    lines = []
    for key, value in message.items():
        if key == "parameters":
            for name, entry in value.items():
                lines.append(f"{pad}{key} {{ key: {_scalar(name)} value {{ {to_pbtxt(entry).strip()} }} }}")
        elif isinstance(value, dict):
            body = to_pbtxt(value, indent + 1)
            lines.append(f"{pad}{key} {{\n{body}{pad}}}" if body else f"{pad}{key} {{ }}")
        elif isinstance(value, list) and value and isinstance(value[0], dict):
            items = ",\n".join(f"{pad}  {{\n{to_pbtxt(item, indent + 2)}{pad}  }}" for item in value)
            lines.append(f"{pad}{key} [\n{items}\n{pad}]")
        elif isinstance(value, list):
            lines.append(f"{pad}{key}: [ {', '.join(map(_scalar, value))} ]" if value else f"{pad}{key}: [ ]")
        else:
            lines.append(f"{pad}{key}: {_scalar(value)}")
    return "".join(line + "\n" for line in lines)


def _scalar(value: object) -> str:
    if isinstance(value, Enum):
        return str(value)
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, str):
        # JSON's escapes of a printable string (\" and \\) are the text format's; other characters stay UTF-8.
        return json.dumps(value, ensure_ascii=False)
    return str(value)


def write_repository(model: Path, repository: Path, name: str | None = None, batch_size: int | None = None) -> Path:
    """Write REPOSITORY/NAME/config.pbtxt and REPOSITORY/NAME/1/model.onnx for the model (each file atomically);
    returns REPOSITORY/NAME."""
    generator = Generator(model)
    config = model_config(generator, name or model_name(model), batch_size)
    folder = repository / config["name"]
    atomic_write_bytes(folder / VERSION / MODEL_FILE, Path(model).read_bytes())
    atomic_write_text(folder / CONFIG_FILE, to_pbtxt(config))
    return folder


def write_beside(model: Path) -> Path | None:
    """The export's repository: RUN/triton/generator for a run's generator.onnx; other exported files get theirs on
    request (`gan-digits triton`)."""
    if Path(model).name != RUN_MODEL:
        return None
    folder = write_repository(model, Path(model).parent / REPOSITORY)
    log.info("wrote the Triton model repository %s (model %s)", folder.parent, folder.name)
    return folder
