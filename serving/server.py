"""`gan-digits serve`: the generator behind the Open Inference Protocol (KServe's "v2": REST and gRPC), on KServe's
ModelServer.

It serves the model as Triton serves the repository that serving/triton.py writes: the same model name, tensors,
limits and configuration (GET /v2/models/NAME/config), so that a client of one is a client of the other. A request
is checked against that configuration before the model runs: a wrong name, datatype or shape, a batch over
max_batch_size or a label the model does not have is a 400 with a message, and the server carries on.

Needs the `server` extra (pip install 'mnist-gan[server]'); no TensorFlow.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import sys
import uuid
import warnings
from collections.abc import Iterator

import numpy as np

from serving.model import IMAGE_OUTPUT, LABEL_INPUT, LATENT_INPUT, Generator, ModelError
from serving.triton import protocol_datatype


@contextlib.contextmanager
def _own_command_line() -> Iterator[None]:
    # kserve.model_server reads options of its own from sys.argv when imported (and would take gan-digits' --model
    # for its --model_name): it is shown an empty command line.
    argv, sys.argv = sys.argv, sys.argv[:1]
    try:
        yield
    finally:
        sys.argv = argv


with _own_command_line():
    import kserve
    from fastapi.exceptions import RequestValidationError
    from fastapi.responses import JSONResponse
    from kserve import model_server
    from kserve.errors import InvalidInput, ModelNotFound
    from kserve.protocol.infer_type import InferInput, InferOutput, InferRequest, InferResponse


def metadata_tensor(spec: dict) -> dict:
    """A tensor of the configuration as the protocol's model metadata shows it: the batch dimension first, as -1."""
    return {"name": spec["name"], "datatype": protocol_datatype(spec["data_type"]), "shape": [-1, *spec["dims"]]}


class GeneratorModel(kserve.Model):
    """The generator as a KServe model: requests checked against its Triton configuration, images drawn by
    onnxruntime in a worker thread (the event loop keeps answering meanwhile)."""

    def __init__(self, generator: Generator, config: dict) -> None:
        super().__init__(config["name"])
        self.generator, self.config = generator, config
        self.inputs = {spec["name"]: spec for spec in config["input"]}
        self.outputs = {spec["name"]: spec for spec in config["output"]}
        self.ready = True

    def get_input_types(self) -> list[dict]:
        return [metadata_tensor(spec) for spec in self.config["input"]]

    def get_output_types(self) -> list[dict]:
        return [metadata_tensor(spec) for spec in self.config["output"]]

    async def predict(self, payload: InferRequest, headers: dict | None = None, response_headers=None) -> InferResponse:
        arrays = self.arrays(payload)
        loop = asyncio.get_running_loop()
        images = await loop.run_in_executor(None, self._images, arrays)
        output = InferOutput(
            IMAGE_OUTPUT, list(images.shape), protocol_datatype(self.outputs[IMAGE_OUTPUT]["data_type"])
        )
        if payload.from_grpc:
            output.set_data_from_numpy(images, binary_data=True)  # gRPC answers in raw_output_contents
        else:
            output.data = images  # REST: in the JSON, or after it as the request asks (the binary extension)
        return InferResponse(
            response_id=payload.id or str(uuid.uuid4()),
            model_name=self.name,
            infer_outputs=[output],
            use_binary_outputs=payload.use_binary_outputs,  # gRPC: raw outputs for raw inputs, or clients read none
            requested_outputs=payload.request_outputs,
        )

    def _images(self, arrays: dict[str, np.ndarray]) -> np.ndarray:
        try:
            return self.generator.images(arrays[LATENT_INPUT], arrays.get(LABEL_INPUT))
        except ModelError as error:  # the model failed on inputs that passed every check: the server's fault
            raise kserve.errors.InferenceError(str(error)) from error

    def arrays(self, request: InferRequest) -> dict[str, np.ndarray]:
        """The request's inputs as the model's arrays, once each is checked against the configuration; InvalidInput
        (a 400) for the first thing wrong."""
        given = {tensor.name: tensor for tensor in request.inputs}
        if sorted(given) != sorted(self.inputs) or len(given) != len(request.inputs):
            raise InvalidInput(
                f"model '{self.name}' takes the inputs {_listing(self.inputs)}, each once; the request has "
                f"{_listing(tensor.name for tensor in request.inputs) or 'none'}"
            )
        unknown = [output.name for output in request.request_outputs or [] if output.name not in self.outputs]
        if unknown:
            raise InvalidInput(
                f"model '{self.name}' has no output {_listing(unknown)}; its outputs: {_listing(self.outputs)}"
            )
        sizes = {name: self._batch_size(given[name]) for name in self.inputs}
        if len(set(sizes.values())) > 1:
            raise InvalidInput(f"the inputs' batch sizes differ: {', '.join(f'{n} {s}' for n, s in sizes.items())}")
        arrays = {name: self._array(given[name]) for name in self.inputs}
        if not np.isfinite(arrays[LATENT_INPUT]).all():
            raise InvalidInput(f"input '{LATENT_INPUT}' holds values that are not finite numbers (NaN or Inf)")
        if LABEL_INPUT in arrays:
            self._check_labels(arrays[LABEL_INPUT])
        return arrays

    def _batch_size(self, tensor: InferInput) -> int:
        spec = self.inputs[tensor.name]
        expected = protocol_datatype(spec["data_type"])
        if tensor.datatype != expected:
            raise InvalidInput(f"input '{tensor.name}' must be {expected}, got {tensor.datatype}")
        shape = list(tensor.shape)
        if len(shape) != 1 + len(spec["dims"]) or shape[1:] != spec["dims"] or shape[0] < 1:
            dims = ", ".join(map(str, spec["dims"]))
            raise InvalidInput(f"input '{tensor.name}' must have the shape [batch, {dims}], got {shape}")
        if shape[0] > self.config["max_batch_size"]:
            raise InvalidInput(
                f"a batch of {shape[0]} is over the limit of {self.config['max_batch_size']} (max_batch_size): "
                "send fewer at once"
            )
        return shape[0]

    def _array(self, tensor: InferInput) -> np.ndarray:
        spec = self.inputs[tensor.name]
        try:
            array = tensor.as_numpy()
        except (ValueError, TypeError) as error:  # data of the wrong count or type for the shape and datatype
            raise InvalidInput(
                f"input '{tensor.name}' cannot be read as {list(tensor.shape)} {tensor.datatype}: {error}"
            ) from error
        if "reshape" in spec:  # the label: [batch, 1] on the wire, [batch] for the model
            array = array.reshape(len(array), *spec["reshape"]["shape"])
        return array

    def _check_labels(self, labels: np.ndarray) -> None:
        bad = labels[(labels < 0) | (labels >= self.generator.num_classes)]
        if bad.size:
            raise InvalidInput(
                f"label {bad[0]} is out of range: model '{self.name}' has {self.generator.num_classes} classes, "
                f"0..{self.generator.num_classes - 1}"
            )


def _listing(names) -> str:
    return ", ".join(f"'{name}'" for name in names)


def serve(generator: Generator, config: dict, http_port: int, grpc_port: int) -> None:
    """Serve until SIGTERM or SIGINT, which finish the requests under way and stop (KServe's grace period)."""
    model = GeneratorModel(generator, config)
    server = model_server.ModelServer(http_port=http_port, grpc_port=grpc_port, workers=1, enable_latency_logging=False)
    _quiet_logs()
    app = model_server.app
    app.add_api_route("/v2/models/{model_name}/config", _configuration(config), methods=["GET"])
    app.add_exception_handler(RequestValidationError, _unreadable_request)
    app.add_middleware(_JsonUnlessBinary)
    server.start([model])


def _configuration(config: dict):
    """Triton's model configuration extension: GET /v2/models/NAME/config answers the configuration as JSON."""

    async def configuration(model_name: str) -> dict:
        if model_name != config["name"]:
            raise ModelNotFound(model_name)
        return config

    return configuration


async def _unreadable_request(_, error: RequestValidationError) -> JSONResponse:
    """A body that is no inference request (not JSON, or JSON of another form): a 400 in the protocol's form,
    {"error": "..."}, where FastAPI would answer a 422 of its own."""
    # The body may be an inference request or bytes (the binary extension): the first tells what is wrong.
    problem = next((p for p in error.errors() if "bytes" not in p["loc"]), error.errors()[0])
    where = ".".join(str(part) for part in problem["loc"][1:] if part != "InferenceRequest")
    detail = problem.get("ctx", {}).get("error")
    reason = f"the body is not an inference request: {problem['msg']}" + (f" ({detail})" if detail else "")
    message = reason + (f" at {where}" if where else "")
    logging.getLogger(kserve.logging.KSERVE_LOGGER_NAME).warning("bad request: %s", message)
    return JSONResponse(status_code=400, content={"error": message})


class _JsonUnlessBinary:
    """Triton's rule for an inference request's body: JSON alone, unless an Inference-Header-Content-Length header
    says where the JSON ends and binary tensors begin. KServe takes a body without a JSON content type for the binary
    form (and refuses it for the missing header), so such a body is marked JSON here."""

    BINARY_HEADER = b"inference-header-content-length"

    def __init__(self, app) -> None:
        self.app = app

    async def __call__(self, scope, receive, send) -> None:
        if scope["type"] == "http" and scope["method"] == "POST" and scope["path"].endswith("/infer"):
            headers = scope["headers"]
            if not any(name == self.BINARY_HEADER for name, _ in headers):
                marked = [(name, value) for name, value in headers if name != b"content-type"]
                scope = dict(scope, headers=[*marked, (b"content-type", b"application/json")])
        await self.app(scope, receive, send)


class _BadRequestsInOneLine(logging.Filter):
    """KServe logs a refused request (InvalidInput, a 400) as an error with its traceback: one warning line instead."""

    def filter(self, record: logging.LogRecord) -> bool:
        if record.exc_info and isinstance(record.exc_info[1], InvalidInput):
            record.msg, record.args = "bad request: %s", (record.exc_info[1],)
            record.levelno, record.levelname, record.exc_info, record.exc_text = logging.WARNING, "WARNING", None, None
        return True


class _NoInternals(logging.Filter):
    """KServe's start-up lines about its own machinery (endpoints this server does not offer, its thread pool) mean
    nothing to the user of one model: left out."""

    INTERNALS = ("OpenAI endpoints not registered", "Time series endpoints not registered", "Setting max asyncio")

    def filter(self, record: logging.LogRecord) -> bool:
        return record.levelno > logging.INFO or not str(record.msg).startswith(self.INTERNALS)


def _quiet_logs() -> None:
    # After ModelServer configured KServe's logging: no timing lines per request, no traceback for a bad request, no
    # start-up lines about KServe's internals, no FastAPI deprecation warning about KServe's own response class.
    logging.getLogger(kserve.logging.KSERVE_TRACE_LOGGER_NAME).setLevel(logging.WARNING)
    logging.getLogger(kserve.logging.KSERVE_LOGGER_NAME).addFilter(_BadRequestsInOneLine())
    logging.getLogger(kserve.logging.KSERVE_LOGGER_NAME).addFilter(_NoInternals())
    warnings.filterwarnings("ignore", message="ORJSONResponse is deprecated")
