"""`gan-digits serve` is an Open Inference Protocol server: tritonclient's HTTP and gRPC clients get from it the
images onnxruntime draws for the same latents and labels, 200 requests at once all succeed, a bad request is a 400
with a message while the server carries on, and SIGTERM stops it gracefully.

One server for the module, started as a user starts it (a fresh process, TensorFlow and the job unimportable) on
free loopback ports, serving a small conditional RGB model of test_serving_shapes.py (no training). Its last test
stops it.
"""

from __future__ import annotations

import functools
import http.client
import importlib.metadata
import json
import re
import signal
import socket
import subprocess
import sys
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from datetime import datetime
from pathlib import Path

import numpy as np
import onnxruntime
import pytest
import tritonclient.grpc as grpcclient
import tritonclient.http as httpclient
import yaml
from tritonclient.utils import InferenceServerException

from tests.test_serving_shapes import COLOURS, LATENT_DIM, RGB, build_model, shapes_metadata

# One pytest-xdist worker runs the whole module: one server for the module.
pytestmark = pytest.mark.xdist_group("test_server")

MAX_BATCH = 8  # the server's --max-batch-size: small, so that a batch over it is cheap to send
NO_TENSORFLOW = (
    "import sys; [sys.modules.__setitem__(m, None) for m in ('tensorflow', 'keras', 'tf2onnx', 'job')]; "
    "from serving.cli import main; sys.exit(main())"
)
STARTUP_GUARD_S = 120  # how long a server may take to answer at all before the tests give up (a hang, not a measure)


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


class Server:
    """`gan-digits serve --model MODEL` in a process of its own, its output in a log file."""

    def __init__(self, model: Path, log: Path) -> None:
        self.model, self.name = model, model.stem
        self.http_port, self.grpc_port = free_port(), free_port()
        self.log_path = log
        command = [sys.executable, "-c", NO_TENSORFLOW, "serve", "--model", str(model)]
        command += ["--http-port", str(self.http_port), "--grpc-port", str(self.grpc_port)]
        with log.open("w") as output:
            self.process = subprocess.Popen(
                [*command, "--max-batch-size", str(MAX_BATCH)], stdout=output, stderr=subprocess.STDOUT
            )
        self.http = httpclient.InferenceServerClient(f"127.0.0.1:{self.http_port}")
        self.grpc = grpcclient.InferenceServerClient(f"127.0.0.1:{self.grpc_port}")

    def wait_until_ready(self) -> None:
        deadline = time.monotonic() + STARTUP_GUARD_S
        while time.monotonic() < deadline and self.process.poll() is None:
            try:
                if self.http.is_server_ready():
                    return
            except (ConnectionError, InferenceServerException, OSError):
                pass  # not listening yet
            time.sleep(0.2)
        raise AssertionError(f"the server never became ready:\n{self.log()}")

    def log(self) -> str:
        return self.log_path.read_text()

    def post(self, body: bytes, content_type: str = "application/json") -> tuple[int, dict]:
        """A raw POST to the model's infer endpoint: (status, the JSON answer)."""
        connection = http.client.HTTPConnection("127.0.0.1", self.http_port, timeout=60)
        try:
            connection.request("POST", f"/v2/models/{self.name}/infer", body, {"Content-Type": content_type})
            answer = connection.getresponse()
            return answer.status, json.loads(answer.read())
        finally:
            connection.close()


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    folder = tmp_path_factory.mktemp("server")
    model = build_model(folder / "rgb.onnx", metadata=shapes_metadata(), conditional=True)
    running = Server(model, folder / "server.log")
    try:
        running.wait_until_ready()
        yield running
    finally:
        if running.process.poll() is None:
            running.process.kill()
        running.process.wait()


@pytest.fixture(scope="module")
def session(server):
    return onnxruntime.InferenceSession(str(server.model), providers=["CPUExecutionProvider"])


def latents(count: int, seed: int = 0) -> np.ndarray:
    return np.random.default_rng(seed).standard_normal((count, LATENT_DIM), dtype=np.float32)


def request(client, z: np.ndarray, labels: np.ndarray, binary: bool = True) -> list:
    """The inputs as a Triton client sends them: the label [batch, 1], as the configuration's dims [1] say."""
    inputs = [client.InferInput("z", list(z.shape), "FP32"), client.InferInput("label", [len(labels), 1], "INT64")]
    options = {"binary_data": binary} if client is httpclient else {}
    inputs[0].set_data_from_numpy(z, **options)
    inputs[1].set_data_from_numpy(labels.reshape(-1, 1), **options)
    return inputs


# ---- what the server says about itself -----------------------------------------------------------------------------


def test_health_readiness_and_metadata_over_http_and_grpc(server):
    for client in (server.http, server.grpc):
        assert client.is_server_live() and client.is_server_ready() and client.is_model_ready(server.name)
    metadata = server.http.get_model_metadata(server.name)
    assert {(t["name"], t["datatype"], tuple(t["shape"])) for t in metadata["inputs"]} == {
        ("z", "FP32", (-1, LATENT_DIM)),
        ("label", "INT64", (-1, 1)),
    }
    assert [(t["name"], t["datatype"], t["shape"]) for t in metadata["outputs"]] == [("image", "FP32", [-1, *RGB])]
    grpc_metadata = server.grpc.get_model_metadata(server.name, as_json=True)
    assert [int(d) for d in grpc_metadata["outputs"][0]["shape"]] == [-1, *RGB]


def test_the_configuration_gives_latent_size_image_shape_and_class_names(server):
    config = server.http.get_model_config(server.name)
    parameters = {key: value["string_value"] for key, value in config["parameters"].items()}
    assert int(parameters["latent_dim"]) == LATENT_DIM
    assert json.loads(parameters["image_shape"]) == list(RGB)
    assert json.loads(parameters["class_names"]) == COLOURS
    assert config["max_batch_size"] == MAX_BATCH and config["platform"] == "onnxruntime_onnx"


# ---- images ------------------------------------------------------------------------------------------------------


@pytest.mark.parametrize(("protocol", "binary"), [("http", True), ("http", False), ("grpc", True)])
def test_clients_get_the_images_onnxruntime_draws_for_the_same_z_and_label(server, session, protocol, binary):
    client, module = (server.http, httpclient) if protocol == "http" else (server.grpc, grpcclient)
    z, labels = latents(MAX_BATCH, seed=3), np.arange(MAX_BATCH, dtype=np.int64) % len(COLOURS)
    options = {"binary_data": binary} if protocol == "http" else {}
    result = client.infer(
        server.name, request(module, z, labels, binary), outputs=[module.InferRequestedOutput("image", **options)]
    )
    (expected,) = session.run(["image"], {"z": z, "label": labels})
    np.testing.assert_array_equal(result.as_numpy("image"), expected)


def test_200_requests_at_once_all_succeed_with_their_own_images(server, session):
    count = 200
    started = threading.Barrier(count)

    def one(index: int) -> bool:
        # Each request its own client (tritonclient's are not thread-safe), half over each protocol.
        module = httpclient if index % 2 else grpcclient
        port = server.http_port if index % 2 else server.grpc_port
        client = module.InferenceServerClient(f"127.0.0.1:{port}")
        z, label = latents(1, seed=100 + index), np.array([index % len(COLOURS)], np.int64)
        started.wait()  # all 200 under way together
        image = client.infer(server.name, request(module, z, label)).as_numpy("image")
        return np.array_equal(image, session.run(["image"], {"z": z, "label": label})[0])

    with ThreadPoolExecutor(count) as pool:
        assert all(pool.map(one, range(count)))


# ---- bad requests: a 400 with a message, and the server carries on ----------------------------------------------


def body(z_shape=(2, LATENT_DIM), z_type="FP32", labels=(0, 1), label_type="INT64", z_data=None) -> bytes:
    z_data = z_data if z_data is not None else [0.5] * int(np.prod(z_shape))
    inputs = [{"name": "z", "datatype": z_type, "shape": list(z_shape), "data": z_data}]
    if labels is not None:
        inputs.append({"name": "label", "datatype": label_type, "shape": [len(labels), 1], "data": list(labels)})
    return json.dumps({"inputs": inputs}).encode()


BAD_REQUESTS = {
    "wrong shape": (body(z_shape=(2, LATENT_DIM + 1)), f"must have the shape [batch, {LATENT_DIM}], got [2, 5]"),
    "wrong dtype": (body(z_type="FP64"), "input 'z' must be FP32, got FP64"),
    "label out of range": (body(labels=(0, 3)), "label 3 is out of range: model 'rgb' has 3 classes, 0..2"),
    "batch over the limit": (
        body(z_shape=(MAX_BATCH + 1, LATENT_DIM), labels=[0] * (MAX_BATCH + 1)),
        f"a batch of {MAX_BATCH + 1} is over the limit of {MAX_BATCH}",
    ),
    "not JSON": (b"z=1,2,3", "the body is not an inference request: JSON decode error"),
    "no label": (body(labels=None), "takes the inputs 'z', 'label', each once; the request has 'z'"),
    "data short of its shape": (body(z_data=[0.5, 0.5]), "input 'z' cannot be read as [2, 4] FP32"),
    "text for numbers": (body(z_data=["a"] * 8), "input 'z' cannot be read as [2, 4] FP32"),
    "not finite": (body(z_data=["NaN"] * 8), "input 'z' holds values that are not finite numbers"),
}


@pytest.mark.parametrize("case", BAD_REQUESTS)
def test_a_bad_request_is_a_400_with_a_message_and_the_server_carries_on(server, session, case):
    sent, message = BAD_REQUESTS[case]
    status, answer = server.post(sent, content_type="text/plain" if case == "not JSON" else "application/json")
    assert status == 400 and message in answer["error"], answer
    status, answer = server.post(body())
    assert status == 200 and answer["outputs"][0]["shape"] == [2, *RGB]


def test_a_bad_grpc_request_is_invalid_argument_with_the_same_message(server):
    z, labels = latents(2), np.array([0, 7], np.int64)
    with pytest.raises(InferenceServerException, match="label 7 is out of range") as refused:
        server.grpc.infer(server.name, request(grpcclient, z, labels))
    assert refused.value.status() == "StatusCode.INVALID_ARGUMENT"
    assert server.grpc.is_server_ready()


def test_a_bad_request_is_one_warning_line_in_the_log_not_a_traceback(server):
    server.post(body(labels=(0, 9)))
    log = server.log()
    assert "bad request: label 9 is out of range" in log
    assert "Traceback" not in log


def test_the_log_leaves_out_kserves_lines_about_its_own_machinery(server):
    log = server.log()
    assert "not registered" not in log and "max asyncio worker threads" not in log


# ---- refused before anything starts: one line, exit code 2 -----------------------------------------------------


def gan_digits_serve(*args: str, blocked: str = "") -> subprocess.CompletedProcess:
    code = NO_TENSORFLOW.replace("'job')", f"'job', {blocked!r})") if blocked else NO_TENSORFLOW
    command = [sys.executable, "-c", code, "serve", *args]
    return subprocess.run(command, capture_output=True, text=True, timeout=STARTUP_GUARD_S)


def assert_one_line_refusal(result: subprocess.CompletedProcess, *fragments: str) -> None:
    assert result.returncode == 2, result.stderr
    assert result.stderr.count("\n") == 1 and result.stderr.startswith("Error:"), result.stderr
    assert all(fragment in result.stderr for fragment in fragments), result.stderr


def test_a_port_in_use_is_refused_in_one_line(server):
    result = gan_digits_serve("--model", str(server.model), "--http-port", str(server.http_port))
    assert_one_line_refusal(result, f"port {server.http_port} cannot be listened on")


def test_without_the_server_extra_serve_says_how_to_install_it(server):
    result = gan_digits_serve("--model", str(server.model), blocked="kserve")
    assert_one_line_refusal(result, "pip install 'mnist-gan[server]'")


def test_a_file_that_is_no_generator_is_refused_before_the_server_loads(tmp_path):
    (tmp_path / "bad.onnx").write_bytes(b"\x08\x07 a truncated model")
    assert_one_line_refusal(gan_digits_serve("--model", str(tmp_path / "bad.onnx"), blocked="kserve"), "bad.onnx")


# ---- deployment: the server image and the InferenceServices of k8s/serving/ ---------------------------------------

REPO = Path(__file__).parents[1]
SERVING = REPO / "k8s" / "serving"
INFERENCE_SERVICES = {
    "triton": SERVING / "triton-inferenceservice.yaml",
    "own-server": SERVING / "own-server" / "inferenceservice.yaml",
}
DOCKERFILE = REPO / "docker" / "server.Dockerfile"
INFERENCE_SERVICE = "V1beta1InferenceService"  # KServe's generated model of the resource: its name says version, kind
# The fields of every model reachable from one, {model: {field: declared type}}, and KServe's API group, as the kserve
# package has them (its models refer to the Kubernetes client's: V1ObjectMeta, V1Container, ...). Read in a process of
# their own: importing kserve registers Open Inference Protocol protobufs that clash with tritonclient's.
READ_MODELS = r"""
import json, re, sys
import kserve.models, kubernetes.client
from kserve.constants.constants import KSERVE_GROUP

models, pending = {}, [sys.argv[1]]
while pending:
    name = pending.pop()
    described = getattr(kserve.models, name, None) or getattr(kubernetes.client, name, None)
    if name not in models and described is not None:
        models[name] = {key: described.openapi_types[field] for field, key in described.attribute_map.items()}
        pending += re.findall(r"\b(?!List\b|Dict\b)[A-Z]\w*", " ".join(models[name].values()))
print(json.dumps({"group": KSERVE_GROUP, "models": models}))
"""
LIST = re.compile(r"(?:list|List)\[(.+)\]")  # the models' spellings of their container types: KServe's, Kubernetes'
DICT = re.compile(r"dict\(str, (.+)\)|Dict\[str, (.+)\]")
PRIMITIVES = {"str": (str,), "int": (int,), "bool": (bool,), "float": (int, float), "datetime": (str, datetime)}


def model_packages() -> str:
    """The packages whose models the manifests are checked against, with their installed versions."""
    return ", ".join(f"{package} {importlib.metadata.version(package)}" for package in ("kserve", "kubernetes"))


@functools.cache
def kserve_models() -> tuple[str, dict[str, dict[str, str]]]:
    """KServe's API group, and the fields of the InferenceService's model and of every model it refers to."""
    result = subprocess.run(
        [sys.executable, "-c", READ_MODELS, INFERENCE_SERVICE], capture_output=True, text=True, check=True
    )
    answer = json.loads(result.stdout.splitlines()[-1])
    return answer["group"], answer["models"]


def type_errors(value: object, declared: str, path: str) -> list[str]:
    """What is wrong with `value` as a `declared` of the models' openapi_types: list[X], dict(str, X), a primitive,
    `object` (anything: Kubernetes' int-or-string) or a model. A type no model describes is an error: unchecked."""
    if value is None or declared == "object":  # null: a field left unset, as the API server reads it
        return []
    if item := LIST.fullmatch(declared):
        if not isinstance(value, list):
            return [f"{path}: {declared} expected, not {value!r}"]
        return [error for i, v in enumerate(value) for error in type_errors(v, item[1], f"{path}[{i}]")]
    if entry := DICT.fullmatch(declared):
        if not isinstance(value, dict) or not all(isinstance(key, str) for key in value):
            return [f"{path}: {declared} expected, not {value!r}"]
        return [error for k, v in value.items() for error in type_errors(v, entry[1] or entry[2], f"{path}.{k}")]
    if declared in PRIMITIVES:  # exactly: YAML's `true` is no int, nor its `1` a string
        return [] if type(value) in PRIMITIVES[declared] else [f"{path}: {declared} expected, not {value!r}"]
    if declared not in kserve_models()[1]:
        return [f"{path}: {declared} has no model in {model_packages()}: not checked"]
    return model_errors(value, declared, path)


def model_errors(document: object, name: str, path: str) -> list[str]:
    """Unknown fields (refused, as `kubectl apply --validate=strict` refuses them) and values of the wrong type."""
    if not isinstance(document, dict):
        return [f"{path}: {name} expected, not {document!r}"]
    fields = kserve_models()[1][name]
    errors = []
    for key, value in document.items():
        where = f"{path}.{key}" if path else key
        errors += type_errors(value, fields[key], where) if key in fields else [f"{where}: unknown field of {name}"]
    return errors


def inference_service_errors(document: dict) -> list[str]:
    """What the models of the kserve package (V1beta1InferenceService, down to the Kubernetes client's V1PodSpec,
    V1Container, ...) find wrong: the apiVersion and kind the model's name says, unknown fields, wrong types."""
    version, kind = re.fullmatch(r"(V\d+(?:(?:alpha|beta)\d+)?)([A-Z]\w*)", INFERENCE_SERVICE).groups()
    expected = {"apiVersion": f"{kserve_models()[0]}/{version.lower()}", "kind": kind}
    errors = [
        f"{key}: {value} expected, not {document.get(key)!r}"
        for key, value in expected.items()
        if document.get(key) != value
    ]
    return errors + model_errors(document, INFERENCE_SERVICE, "")


def manifest(name: str) -> dict:
    return yaml.safe_load(INFERENCE_SERVICES[name].read_text())


KSERVE = f"kserve-{importlib.metadata.version('kserve')}"  # in the tests' ids: the models they were checked against


@pytest.mark.parametrize("name", INFERENCE_SERVICES, ids=lambda name: f"{name}-{KSERVE}")
def test_the_inference_services_validate_against_kserves_models_with_unknown_fields_refused(name):
    assert inference_service_errors(manifest(name)) == [], f"checked against the models of {model_packages()}"


def test_kserves_models_refuse_a_misspelt_field_by_its_path():
    document = manifest("triton")
    document["spec"]["predictor"]["model"]["storageURI"] = document["spec"]["predictor"]["model"].pop("storageUri")
    document["metadata"]["label"] = {"a": "b"}
    assert inference_service_errors(document) == [
        "metadata.label: unknown field of V1ObjectMeta",
        "spec.predictor.model.storageURI: unknown field of V1beta1ModelSpec",
    ]


def first_container(document: dict) -> dict:
    return document["spec"]["predictor"]["containers"][0]


@pytest.mark.parametrize(
    ("change", "error"),
    [
        (lambda d: d.update(apiVersion="serving.kserve.io/v1alpha1"), "apiVersion: serving.kserve.io/v1beta1 expected"),
        (lambda d: d.update(kind="Deployment"), "kind: InferenceService expected"),
        (lambda d: d["spec"]["predictor"].update(minReplicas="1"), "spec.predictor.minReplicas: int expected"),
        (lambda d: d["spec"]["predictor"].update(minReplicas=True), "spec.predictor.minReplicas: int expected"),
        (lambda d: d["metadata"]["labels"].update(tier=1), "metadata.labels.tier: str expected"),
        (
            lambda d: first_container(d)["ports"][0].update(containerPort="8080"),
            ".ports[0].containerPort: int expected",
        ),
        (lambda d: first_container(d).update(args="serve"), "spec.predictor.containers[0].args: List[str] expected"),
        (lambda d: d["spec"].update(predictor=[]), "spec.predictor: V1beta1PredictorSpec expected"),
        (lambda d: d["spec"]["predictor"].update(overhead={"cpu": "1"}), "ResourceQuantity has no model in kserve"),
    ],
    ids=["version", "kind", "string", "bool", "label", "port", "args", "model", "unmodelled"],
)
def test_kserves_models_refuse_a_value_of_the_wrong_type_or_one_they_cannot_check(change, error):
    document = manifest("own-server")
    change(document)
    (found,) = inference_service_errors(document)
    assert error in found


def test_both_serve_the_runs_model_under_the_name_of_its_triton_repository():
    from serving.triton import REPOSITORY, RUN_MODEL, model_name

    documents = {name: yaml.safe_load((REPO / "k8s" / f"{name}.yaml").read_text()) for name in ("pvc", "train-job")}
    claim = documents["pvc"]["metadata"]["name"]
    (train,) = documents["train-job"]["spec"]["template"]["spec"]["containers"]
    run = {e["name"]: e.get("value") for e in train["env"]}["GAN_OUT"].removeprefix("/runs/")
    name = model_name(Path(RUN_MODEL))

    model = manifest("triton")["spec"]["predictor"]["model"]
    assert model["storageUri"] == f"pvc://{claim}/{run}/{REPOSITORY}"  # holding NAME/config.pbtxt, NAME/1/model.onnx
    assert model["protocolVersion"] == "v2" and model["runtime"] == "kserve-tritonserver"

    (container,) = manifest("own-server")["spec"]["predictor"]["containers"]
    assert {"name": "STORAGE_URI", "value": f"pvc://{claim}/{run}"} in container["env"]  # mounted at /mnt/models
    assert (
        container["args"][:3] == ["serve", "--model", f"/mnt/models/{RUN_MODEL}"] and "--name" not in container["args"]
    )
    assert container["readinessProbe"]["httpGet"]["path"] == f"/v2/models/{name}/ready"
    assert container["ports"][0]["containerPort"] == int(container["args"][container["args"].index("--http-port") + 1])


def test_the_serving_kustomizations_share_the_trainings_namespace_but_are_not_applied_with_it():
    training = yaml.safe_load((REPO / "k8s" / "kustomization.yaml").read_text())
    assert not any("serving" in resource for resource in training["resources"])
    for folder in (SERVING, SERVING / "own-server"):
        kustomization = yaml.safe_load((folder / "kustomization.yaml").read_text())
        assert kustomization["namespace"] == training["namespace"]
        assert all((folder / resource).is_file() for resource in kustomization["resources"])
    images = yaml.safe_load((SERVING / "own-server" / "kustomization.yaml").read_text())["images"]
    (container,) = manifest("own-server")["spec"]["predictor"]["containers"]
    assert [image["name"] for image in images] == [container["image"]]


def test_the_server_image_is_hadolint_clean_and_serves_the_runs_model_on_the_commands_default_ports():
    from serving.cli import main as gan_digits
    from serving.triton import RUN_MODEL
    from tests.test_deploy import BIN, dockerfile_exec, dockerfile_instructions

    result = subprocess.run([str(BIN / "hadolint"), str(DOCKERFILE)], capture_output=True, text=True)
    assert result.returncode == 0, result.stdout + result.stderr
    assert dockerfile_exec(DOCKERFILE, "ENTRYPOINT") == ["gan-digits"]
    assert dockerfile_exec(DOCKERFILE, "CMD") == ["serve", "--model", f"/runs/mnist/{RUN_MODEL}"]
    defaults = {param.name: param.default for param in gan_digits.commands["serve"].params}
    assert ("EXPOSE", f"{defaults['http_port']} {defaults['grpc_port']}") in dockerfile_instructions(DOCKERFILE)
    assert "tensorflow" not in DOCKERFILE.read_text().replace("No TensorFlow", "").lower()


def test_the_server_lock_holds_the_server_extra_with_hashes_and_none_of_what_the_server_never_imports():
    import importlib.util

    from packaging.requirements import Requirement

    from tests.test_locks import LOCKS, PYPROJECT, canonical, read_lock

    spec = importlib.util.spec_from_file_location("refresh", LOCKS / "refresh.py")
    refresh = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(refresh)
    locked = read_lock(LOCKS / "server.txt")
    for requirement in map(Requirement, PYPROJECT["dependencies"] + PYPROJECT["optional-dependencies"]["server"]):
        name = canonical(requirement.name)
        assert name in locked and requirement.specifier.contains(locked[name][0]), name
    assert not {canonical(name) for name in refresh.SERVER_UNUSED} & set(locked)
    assert all(hashes > 0 for _, _, hashes in locked.values())


# ---- stopping: the last test of the module -------------------------------------------------------------------------


def test_sigterm_finishes_the_request_under_way_and_exits_0(server):
    # A request whose body is only half sent when SIGTERM comes: the server stops listening, answers it, then exits.
    full = body(labels=(2, 1))
    connection = socket.create_connection(("127.0.0.1", server.http_port))
    head = f"POST /v2/models/{server.name}/infer HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
    connection.sendall(f"{head}Content-Length: {len(full)}\r\n\r\n".encode() + full[:10])
    assert server.http.is_server_live()  # the half request has reached the server before the signal
    server.process.send_signal(signal.SIGTERM)
    while "Shutting down" not in server.log():  # uvicorn has taken the signal
        assert server.process.poll() is None, server.log()
        time.sleep(0.05)
    connection.sendall(full[10:])
    answer = b""
    while chunk := connection.recv(65536):
        answer += chunk
    connection.close()
    assert answer.startswith(b"HTTP/1.1 200 OK"), answer[:200]
    assert json.loads(answer.split(b"\r\n\r\n", 1)[1])["outputs"][0]["shape"] == [2, *RGB]
    assert server.process.wait(timeout=STARTUP_GUARD_S) == 0
    assert "gRPC server shutdown complete" in server.log()
