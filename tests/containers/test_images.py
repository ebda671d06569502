"""The images for real: run by a Docker engine the way users run them, with `docker compose` and as the Kubernetes
Jobs in k8s/ say (translated from the YAML into `docker run`, not copied by hand).

These tests need the engine and the images that `bash docker/ci-stage.sh` starts and builds; it runs them with
GAN_CONTAINER_STAGE=1. Elsewhere (a plain `pytest`) they are skipped.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
import threading
import uuid
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest
import yaml

from tests.conftest import SMALL_MNIST

if os.environ.get("GAN_CONTAINER_STAGE") != "1":
    pytest.skip(
        "container stage: run `bash docker/ci-stage.sh` (starts dockerd, builds the images)", allow_module_level=True
    )

REPO = Path(__file__).parents[2]
COMPOSE_FILES = [REPO / "docker/compose.yaml", REPO / "docker/compose.cpu.yaml"]
COMPOSE_BIN = Path(sys.executable).parent / "docker-compose"
# The manifests name the images as built here; k8s/kustomization.yaml maps them to a registry for a cluster.
LOCAL_IMAGES = {"mnist-gan-train": "mnist-gan-train:latest", "mnist-gan-serve": "mnist-gan-serve:latest"}
TRAIN_IMAGE, SERVE_IMAGE = LOCAL_IMAGES["mnist-gan-train"], LOCAL_IMAGES["mnist-gan-serve"]
SERVER_IMAGE = "mnist-gan-server:latest"  # gan-digits serve (docker/server.Dockerfile); k8s/serving/ names it
COMPLETION_INDEX = "metadata.annotations['batch.kubernetes.io/job-completion-index']"
# TensorFlow start-up lines that read as errors although nothing is wrong (issue 9).
NOISE = re.compile(r"cuInit|E0000|absl::InitializeLog|oneDNN|telemetry", re.IGNORECASE)
EXIT_BAD_INPUT, EXIT_INTERRUPTED = 2, 75


def docker(*args: str, timeout: float = 900) -> subprocess.CompletedProcess:
    return subprocess.run(["docker", *args], capture_output=True, text=True, timeout=timeout)


def lines(text: str) -> list[str]:
    return [line for line in text.splitlines() if line.strip()]


def mnist_volume(root: Path, owner: tuple[int, int]) -> tuple[Path, Path]:
    """runs/ owned by `owner` and data/ holding the small MNIST, as a user (or a volume provisioner) prepares them."""
    runs, data = root / "runs", root / "data"
    runs.mkdir(parents=True)
    data.mkdir()
    shutil.copy(SMALL_MNIST, data / "mnist.npz")
    os.chown(runs, *owner)
    return runs, data


# ---- docker compose ------------------------------------------------------------------------------------------------


class Compose:
    """docker compose (v2) with the repository's files, in a project folder whose runs/ and data/ are temporary."""

    def __init__(self, root: Path, env: dict[str, str]) -> None:
        (root / "docker").mkdir()  # the files' ../runs and ../data resolve from here
        self.root, self.env = root, env
        self.name = f"gan-{uuid.uuid4().hex[:8]}"

    def __call__(self, *args: str, env: dict | None = None, timeout: float = 900) -> subprocess.CompletedProcess:
        return subprocess.run(self._argv(*args), capture_output=True, text=True, env=self._shell(env), timeout=timeout)

    def _argv(self, *args: str) -> list[str]:
        files = [a for f in COMPOSE_FILES for a in ("-f", str(f))]
        return [str(COMPOSE_BIN), *files, "--project-directory", str(self.root / "docker"), "-p", self.name, *args]

    def _shell(self, env: dict | None = None) -> dict[str, str]:
        return {k: v for k, v in os.environ.items() if not k.startswith("GAN_")} | self.env | (env or {})

    def exit_code(self, service: str) -> int:
        states = [json.loads(line) for line in lines(self("ps", "-a", "--format", "json").stdout)]
        return next(s["ExitCode"] for s in states if s["Service"] == service)

    def logs(self, service: str) -> str:
        return self("logs", "--no-color", "--no-log-prefix", service).stdout

    def wait_for_log(self, service: str, pattern: str) -> None:
        follow = subprocess.Popen(
            self._argv("logs", "-f", "--no-color", "--no-log-prefix", service),
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
            env=self._shell(),
        )
        timer = threading.Timer(600, follow.kill)  # a guard against a hang, not a measurement
        timer.start()
        try:
            assert any(re.search(pattern, line) for line in follow.stdout), f"{service} never logged {pattern!r}"
        finally:
            timer.cancel()
            follow.kill()
            follow.wait()

    def down(self) -> None:
        self("down", "--remove-orphans", timeout=120)


HOST_USER = (2345, 2345)  # not the images' uid 1000: the files must belong to HOST_UID/HOST_GID


@pytest.fixture(scope="module")
def compose_stack(tmp_path_factory):
    """`docker compose ... up` of the CPU stack, once, as README tells a user on an offline host."""
    root = tmp_path_factory.mktemp("compose")
    runs, _ = mnist_volume(root, HOST_USER)
    env = {"HOST_UID": str(HOST_USER[0]), "HOST_GID": str(HOST_USER[1]), "GAN_DATA": "/data/mnist.npz"}
    stack = Compose(root, env | {"GAN_STEPS": "60", "GAN_CHECKPOINT_EVERY": "30"})
    up = stack("up")
    yield stack, runs / "mnist", up
    stack.down()


def test_compose_trains_on_the_cpu_then_draws_digits_into_files_of_the_host_user(compose_stack):
    stack, run, up = compose_stack
    assert stack.exit_code("train") == 0, up.stdout + up.stderr
    assert stack.exit_code("generate") == 0, stack.logs("generate")
    assert (run / "generator.onnx").is_file() and (run / "digits.png").is_file()
    assert "on CPU" in stack.logs("train")
    owners = {(p.stat().st_uid, p.stat().st_gid) for p in [run, *run.rglob("*")]}
    assert owners == {HOST_USER}


def test_a_healthy_training_log_has_no_line_that_reads_as_an_error(compose_stack):
    stack, _, _ = compose_stack
    noise = [line for line in lines(stack.logs("train")) if NOISE.search(line)]
    assert noise == []


def test_a_healthy_generate_log_has_no_telemetry_or_startup_noise(compose_stack):
    stack, _, _ = compose_stack
    assert [line for line in lines(stack.logs("generate")) if NOISE.search(line)] == []


def test_export_works_inside_the_train_image_with_its_environment_as_it_is(compose_stack):
    _, run, _ = compose_stack
    user = "{}:{}".format(*HOST_USER)
    result = docker(
        "run", "--rm", "-u", user, "-v", f"{run.parent}:/runs", TRAIN_IMAGE, "export", "--run", "/runs/mnist"
    )
    assert result.returncode == 0, result.stderr


def onnx_weights(path: Path) -> dict:
    import onnx
    from onnx import numpy_helper

    return {t.name: numpy_helper.to_array(t) for t in onnx.load(path).graph.initializer}


def test_compose_stop_checkpoints_and_exits_75_and_up_again_resumes_to_the_uninterrupted_result(tmp_path):
    runs, _ = mnist_volume(tmp_path, HOST_USER)
    env = {"HOST_UID": str(HOST_USER[0]), "HOST_GID": str(HOST_USER[1]), "GAN_DATA": "/data/mnist.npz"}
    stack = Compose(tmp_path, env | {"GAN_STEPS": "1500", "GAN_CHECKPOINT_EVERY": "500", "RUN": "stopped"})
    try:
        assert stack("up", "-d", "train").returncode == 0
        stack.wait_for_log("train", r"step \d+/1500")  # training is under way
        stack("stop", "train")
        assert stack.exit_code("train") == EXIT_INTERRUPTED  # not 137: it finished inside the grace period
        step = int(re.search(r"checkpoint written at step (\d+)", stack.logs("train"))[1])
        assert step < 1500 and (runs / "stopped" / "checkpoints" / f"ckpt-{step}.index").is_file()

        again = stack("up")
        assert stack.exit_code("train") == 0 and stack.exit_code("generate") == 0, again.stdout + again.stderr
        assert f"resuming from the checkpoint of step {step}" in stack.logs("train")

        straight = stack("up", "train", env={"RUN": "straight"})
        assert stack.exit_code("train") == 0, straight.stdout + straight.stderr
    finally:
        stack.down()
    resumed, uninterrupted = (
        onnx_weights(runs / "stopped/generator.onnx"),
        onnx_weights(runs / "straight/generator.onnx"),
    )
    assert resumed.keys() == uninterrupted.keys()
    assert all((resumed[name] == uninterrupted[name]).all() for name in resumed)


# ---- the Kubernetes Jobs, as `docker run` ---------------------------------------------------------------------------


def k8s_jobs() -> dict[str, dict]:
    kustomization = yaml.safe_load((REPO / "k8s/kustomization.yaml").read_text())
    documents = [doc for name in kustomization["resources"] for doc in yaml.safe_load_all((REPO / "k8s" / name).open())]
    return {doc["metadata"]["name"]: doc for doc in documents if doc["kind"] == "Job"}


def container_env(container: dict, index: int | None) -> dict[str, str]:
    """The container's environment as the kubelet makes it: $(VAR) expands to variables defined before it."""
    env = {}
    for var in container.get("env", []):
        if "value" in var:
            env[var["name"]] = re.sub(r"\$\((\w+)\)", lambda m: env.get(m[1], m[0]), var["value"])
        else:  # the only downward-API field the manifests use: the Indexed Job's completion index
            assert var["valueFrom"]["fieldRef"]["fieldPath"] == COMPLETION_INDEX, var
            env[var["name"]] = str(index)
    if index is not None:
        env["JOB_COMPLETION_INDEX"] = str(index)  # the Job controller appends it
    return env


def memory(quantity: str) -> str:
    return quantity.replace("Gi", "g").replace("Mi", "m")


def config_map_folders(root: Path) -> dict[str, Path]:
    """Each ConfigMap that k8s/kustomization.yaml generates, as the folder the kubelet would mount: its files."""
    kustomization = yaml.safe_load((REPO / "k8s/kustomization.yaml").read_text())
    folders = {}
    for generator in kustomization.get("configMapGenerator", []):
        folder = root / "configmaps" / generator["name"]
        folder.mkdir(parents=True)
        for entry in generator["files"]:
            key, _, source = entry.partition("=")
            shutil.copy(REPO / "k8s" / (source or key), folder / key)
        folders[generator["name"]] = folder
    return folders


def docker_run_args(job: dict, container: dict, claim: Path, index: int | None = None, patch: dict | None = None):
    """`docker run` arguments for one container of the Job's pod: what its manifest says, plus `patch` (a smaller
    configuration and the data, as a kustomize patch would add them; `args` appended to the container's)."""
    pod = job["spec"]["template"]["spec"]
    security = pod.get("securityContext", {}) | container.get("securityContext", {})
    args = ["--user", f"{security['runAsUser']}:{security['runAsGroup']}"]
    if "fsGroup" in security:
        args += ["--group-add", str(security["fsGroup"])]
    if security.get("readOnlyRootFilesystem"):
        args.append("--read-only")
    if "ALL" in security.get("capabilities", {}).get("drop", []):
        args += ["--cap-drop", "ALL"]
    if security.get("allowPrivilegeEscalation") is False:
        args += ["--security-opt", "no-new-privileges"]
    if "memory" in container.get("resources", {}).get("limits", {}):
        args += ["--memory", memory(container["resources"]["limits"]["memory"])]
    volumes = {volume["name"]: volume for volume in pod["volumes"]}
    for mount in container["volumeMounts"]:
        volume = volumes[mount["name"]]
        if "emptyDir" in volume:
            args += ["--tmpfs", mount["mountPath"]]
        elif "configMap" in volume:
            folder = config_map_folders(claim.parent / f"cm-{uuid.uuid4().hex[:8]}")[volume["configMap"]["name"]]
            args += ["-v", f"{folder}:{mount['mountPath']}:ro"]
        else:
            assert volume["persistentVolumeClaim"]["claimName"] == "mnist-gan-runs", volume
            args += ["-v", f"{claim}:{mount['mountPath']}"]
    patch = patch or {}
    env = container_env(container, index) | patch.get("env", {})
    for name, value in env.items():
        args += ["-e", f"{name}={value}"]
    args += [a for host, inside in patch.get("mounts", {}).items() for a in ("-v", f"{host}:{inside}:ro")]
    command = container.get("command", [])
    if command:
        args += ["--entrypoint", command[0]]
    # The kubelet expands $(VAR) in a container's args from its environment.
    container_args = [re.sub(r"\$\((\w+)\)", lambda m: env.get(m[1], m[0]), arg) for arg in container.get("args", [])]
    return [*args, LOCAL_IMAGES[container["image"]], *command[1:], *container_args, *patch.get("args", [])]


def claim_for(job: dict, root: Path) -> tuple[Path, Path]:
    """The claim as a folder prepared as the kubelet does with fsGroup: group-owned by it, group-writable, setgid."""
    runs, data = mnist_volume(root, (0, job["spec"]["template"]["spec"]["securityContext"]["fsGroup"]))
    runs.chmod(0o2775)
    return runs, data


def run_pod(job: dict, claim: Path, index: int | None = None, patch: dict | None = None) -> list[tuple]:
    """Init containers one after another, then the containers: [(name, exit code, log)], stopping at a failure."""
    pod = job["spec"]["template"]["spec"]
    results = []
    for container in pod.get("initContainers", []) + pod["containers"]:
        name = f"gan-{container['name']}-{uuid.uuid4().hex[:8]}"
        started = docker("run", "-d", "--name", name, *docker_run_args(job, container, claim, index, patch))
        assert started.returncode == 0, started.stderr
        results.append(finish(container["name"], name))
        if results[-1][1] != 0:
            break
    return results


def finish(container: str, name: str) -> tuple[str, int, str]:
    code = int(docker("wait", name).stdout.strip())
    log = docker("logs", name)
    docker("rm", name)
    return container, code, log.stdout + log.stderr


TRAIN_PATCH = {"env": {"GAN_STEPS": "60", "GAN_CHECKPOINT_EVERY": "30", "GAN_DATA": "/data/mnist.npz"}}


def test_the_training_job_then_the_generate_job_with_its_init_container_run_as_their_manifests_say(tmp_path):
    jobs = k8s_jobs()
    claim, data = claim_for(jobs["mnist-gan-train"], tmp_path)
    patch = TRAIN_PATCH | {"mounts": {data: "/data"}}

    trained = run_pod(jobs["mnist-gan-train"], claim, patch=patch)
    assert [(name, code) for name, code, _ in trained] == [("train", 0)], trained
    generated = run_pod(jobs["mnist-gan-generate"], claim)
    assert [(name, code) for name, code, _ in generated] == [("wait-for-model", 0), ("generate", 0)], generated
    assert (claim / "mnist" / "digits.png").is_file()


def test_two_per_digit_pods_at_once_on_one_cold_volume_twice_all_succeed_with_one_valid_classifier(tmp_path):
    import keras

    # Two rounds, each a cold volume: two processes sharing one cache folder are also tested outside the images
    # (tests/test_quality_cache.py); here the images, the shared volume and the downward API's digit are.
    job = k8s_jobs()["mnist-gan-train-per-digit"]
    for first in (0, 2):
        claim, data = claim_for(job, tmp_path / f"round-{first}")
        patch = TRAIN_PATCH | {"mounts": {data: "/data"}}
        indexes = (first, first + 1)
        with ThreadPoolExecutor(len(indexes)) as pool:  # the two pods at once, as with the Job's parallelism 2
            pods = {index: pool.submit(run_pod, job, claim, index, patch) for index in indexes}
        outcomes = {index: pod.result() for index, pod in pods.items()}
        for index, results in outcomes.items():
            assert [(name, code) for name, code, _ in results] == [("train", 0)], results
            assert onnx_digit(claim / f"digit-{index}" / "generator.onnx") == index  # the downward-API digit
        cached = sorted(p.name for p in (claim / ".quality-cache").iterdir())
        assert len(cached) == 1 and re.fullmatch(r"classifier-\w+\.keras", cached[0]), cached
        assert keras.models.load_model(claim / ".quality-cache" / cached[0]).name == "classifier"


def test_the_sweep_jobs_pods_two_at_once_train_every_variation_and_the_last_compares_them(tmp_path):
    job = k8s_jobs()["mnist-gan-train-sweep"]
    claim, data = claim_for(job, tmp_path)
    short = ["--steps", "60", "--checkpoint-every", "30", "--data", "/data/mnist.npz", "--quality-samples", "100"]
    patch = {"args": short, "mounts": {data: "/data"}}
    indexes = list(range(job["spec"]["completions"]))
    for pair in (indexes[i : i + 2] for i in range(0, len(indexes), 2)):  # the Job's parallelism: 2
        with ThreadPoolExecutor(len(pair)) as pool:
            pods = {index: pool.submit(run_pod, job, claim, index, patch) for index in pair}
        for index, pod in pods.items():
            results = pod.result()
            assert [(name, code) for name, code, _ in results] == [("train", 0)], (index, results)
    sweep = claim / "sweep"
    trained = [run for run in sweep.iterdir() if run.name != "best" and (run / "generator.onnx").is_file()]
    assert len(trained) == len(indexes)
    assert (sweep / "report.html").is_file() and (sweep / "best" / "generator.onnx").is_file()


def onnx_digit(path: Path) -> int:
    import onnx

    return int({p.key: p.value for p in onnx.load(path).metadata_props}["digit"])


# ---- bad input -------------------------------------------------------------------------------------------------------


def test_a_digit_out_of_range_through_the_train_image_is_exit_2_and_one_error_line():
    result = docker("run", "--rm", "--read-only", "--tmpfs", "/tmp", "-e", "GAN_DIGIT=1000", TRAIN_IMAGE)
    assert result.returncode == EXIT_BAD_INPUT
    output = lines(result.stdout + result.stderr)
    assert len(output) == 1 and output[0].startswith("Error:") and "GAN_DIGIT" in output[0], result.stderr


def test_a_corrupt_model_through_the_serve_image_is_exit_2_and_one_line(tmp_path):
    tmp_path.chmod(0o755)  # readable by the image's user
    (tmp_path / "generator.onnx").write_bytes(b"\x08\x07 a truncated model")
    mount = f"{tmp_path}:/runs"
    result = docker(
        "run",
        "--rm",
        "--read-only",
        "-v",
        mount,
        SERVE_IMAGE,
        "generate",
        "--model",
        "/runs/generator.onnx",
        "--out",
        "/runs/digits.png",
    )
    assert result.returncode == EXIT_BAD_INPUT
    assert len(lines(result.stdout + result.stderr)) == 1, result.stdout + result.stderr


# ---- the server image: gan-digits serve ---------------------------------------------------------------------------


def test_the_server_image_answers_an_inference_request_and_stops_on_sigterm(tmp_path):
    import numpy as np
    import onnxruntime
    import tritonclient.http as httpclient

    from tests.test_server import free_port, request
    from tests.test_serving_shapes import build_model, shapes_metadata

    # A run folder as the image's default command expects it: /runs/mnist/generator.onnx, read-only.
    (tmp_path / "mnist").mkdir()
    model = build_model(tmp_path / "mnist" / "generator.onnx", metadata=shapes_metadata(), conditional=True)
    for folder in (tmp_path, model.parent):
        folder.chmod(0o755)
    port, name = free_port(), f"gan-server-{uuid.uuid4().hex[:8]}"
    locked_down = ["--read-only", "--cap-drop", "ALL", "--security-opt", "no-new-privileges"]
    published = ["-p", f"127.0.0.1:{port}:8080", "-v", f"{tmp_path}:/runs:ro"]
    started = docker("run", "-d", "--name", name, *locked_down, *published, SERVER_IMAGE)
    assert started.returncode == 0, started.stderr
    try:
        client = httpclient.InferenceServerClient(f"127.0.0.1:{port}")
        wait_until_ready(client, name, model.stem)  # served under its file's name, as the Triton repository names it
        z, labels = np.random.default_rng(0).standard_normal((3, 4), dtype=np.float32), np.array([0, 1, 2])
        images = client.infer(model.stem, request(httpclient, z, labels)).as_numpy("image")
        session = onnxruntime.InferenceSession(str(model), providers=["CPUExecutionProvider"])
        np.testing.assert_array_equal(images, session.run(["image"], {"z": z, "label": labels})[0])
        assert docker("stop", "--time", "30", name).returncode == 0  # SIGTERM, then SIGKILL after 30 s
        assert docker("inspect", "-f", "{{.State.ExitCode}}", name).stdout.strip() == "0", docker("logs", name).stderr
        log = docker("logs", name)
        assert "gRPC server shutdown complete" in log.stdout + log.stderr
    finally:
        docker("rm", "-f", name)


SERVER_LAYER_LIMIT = 150_000_000  # bytes the server image may add to the serve image it is built on


def test_the_server_image_adds_at_most_150_mb_to_the_serve_image():
    server, serve = (
        int(docker("image", "inspect", "-f", "{{.Size}}", image).stdout) for image in (SERVER_IMAGE, SERVE_IMAGE)
    )
    assert 0 < server - serve <= SERVER_LAYER_LIMIT, f"{(server - serve) / 1e6:.1f} MB"


def wait_until_ready(client, container: str, model: str) -> None:
    import time

    deadline = time.monotonic() + 120  # a guard against a hang, not a measurement
    while time.monotonic() < deadline:
        try:
            if client.is_model_ready(model):
                return
        except Exception:  # not listening yet
            pass
        running = docker("inspect", "-f", "{{.State.Running}}", container).stdout.strip()
        assert running == "true", docker("logs", container).stderr
        time.sleep(0.5)
    raise AssertionError(f"the server never became ready: {docker('logs', container).stderr}")


# ---- what the images hold ------------------------------------------------------------------------------------------

INSTALLED = "import importlib.metadata as m, json; print(json.dumps({d.name: d.version for d in m.distributions()}))"


@pytest.mark.parametrize(
    ("image", "lock"), [(SERVE_IMAGE, "serve.txt"), (SERVER_IMAGE, "server.txt"), (TRAIN_IMAGE, "train-cpu.txt")]
)
def test_each_image_holds_exactly_the_versions_of_its_lock_and_the_package(image, lock):
    from tests.test_locks import PYPROJECT, canonical, read_lock

    result = docker("run", "--rm", "--entrypoint", "python", image, "-c", INSTALLED)
    assert result.returncode == 0, result.stderr
    installed = {canonical(name): version for name, version in json.loads(result.stdout).items()}
    locked = {name: version for name, (version, _, _) in read_lock(REPO / "docker/locks" / lock).items()}
    assert installed == locked | {"mnist-gan": PYPROJECT["version"]}
