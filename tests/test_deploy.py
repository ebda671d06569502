"""docker/ and k8s/ are right by construction: linted, validated offline, and their contract with the CLIs tested by
running the images' exact entrypoint commands here, with the compose file's environment and a temporary /runs."""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from job.cli import EXIT_BAD_INPUT
from job.cli import main as gan_job

REPO = Path(__file__).parents[1]
BIN = Path(sys.executable).parent
DOCKERFILES = {"train": REPO / "docker/train.Dockerfile", "serve": REPO / "docker/serve.Dockerfile"}
COMPOSE = REPO / "docker/compose.yaml"
COMPOSE_CPU = REPO / "docker/compose.cpu.yaml"
MANIFESTS = sorted((REPO / "k8s").glob("*.yaml"))
RESOURCES = [m for m in MANIFESTS if m.name != "kustomization.yaml"]
KUBERNETES_VERSIONS = ["1.29.0", "1.34.0"]  # the oldest this needs (see README), and a current one


# ---- reading the files the way Docker, Compose and Kubernetes do -------------------------------------------------


def dockerfile_instructions(path: Path) -> list[tuple[str, str]]:
    """(INSTRUCTION, arguments) of the final stage, continuation lines joined, comments dropped."""
    text = re.sub(
        r"\\\n\s*", " ", "\n".join(line for line in path.read_text().splitlines() if not line.lstrip().startswith("#"))
    )
    instructions = [tuple(line.strip().split(None, 1)) for line in text.splitlines() if line.strip()]
    last_from = max(i for i, (name, _) in enumerate(instructions) if name == "FROM")
    return [(name, args) for name, args in instructions[last_from:]]


def dockerfile_exec(path: Path, instruction: str) -> list[str]:
    values = [json.loads(args) for name, args in dockerfile_instructions(path) if name == instruction]
    return values[-1]


def dockerfile_env(path: Path) -> dict[str, str]:
    """The final stage's ENV, less PATH (the image's own folders, which mean nothing on this machine)."""
    env = {}
    for name, args in dockerfile_instructions(path):
        if name == "ENV":
            env.update(dict(pair.split("=", 1) for pair in args.split()))
    env.pop("PATH", None)
    return env


def compose_config(*files: Path, env: dict | None = None) -> dict:
    """`docker-compose config` (Compose v2) of these files, as JSON, with the given shell environment (GAN_* only
    from `env`, never from the shell that runs the tests)."""
    args = [str(BIN / "docker-compose")] + [a for f in files for a in ("-f", str(f))] + ["config", "--format", "json"]
    shell = {k: v for k, v in os.environ.items() if not k.startswith("GAN_")} | (env or {})
    result = subprocess.run(args, capture_output=True, text=True, env=shell, timeout=60)
    assert result.returncode == 0, result.stderr
    return json.loads(result.stdout)


def compose_environment(service: dict) -> dict[str, str]:
    """The variables a service's container gets: a variable without a value passes from the shell only when set."""
    return {name: value for name, value in service.get("environment", {}).items() if value is not None}


def k8s_documents() -> dict[str, dict]:
    return {doc["metadata"]["name"]: doc for path in RESOURCES for doc in yaml.safe_load_all(path.read_text())}


def k8s_jobs() -> list[dict]:
    return [doc for doc in k8s_documents().values() if doc["kind"] == "Job"]


def containers(job: dict) -> list[dict]:
    spec = job["spec"]["template"]["spec"]
    return spec.get("initContainers", []) + spec["containers"]


def train_envvars() -> set[str]:
    return set(train_defaults())


def train_defaults() -> dict[str, object]:
    """Each GAN_* variable of `gan-job train` and its default (None: the option has none)."""
    return {param.envvar: param.default for param in gan_job.commands["train"].params if param.envvar}


# ---- static validation ------------------------------------------------------------------------------------------


@pytest.mark.parametrize("name", DOCKERFILES)
def test_dockerfiles_are_hadolint_clean(name):
    result = subprocess.run([str(BIN / "hadolint"), str(DOCKERFILES[name])], capture_output=True, text=True)
    assert result.returncode == 0, result.stdout + result.stderr


def test_every_ignored_hadolint_rule_is_justified_on_the_line_before():
    for path in DOCKERFILES.values():
        lines = path.read_text().splitlines()
        for number, line in enumerate(lines):
            if "hadolint ignore=" in line:
                rules = line.split("=", 1)[1].split(",")
                assert all(rule in lines[number - 1] or rule in lines[number - 2] for rule in rules), line


def test_compose_file_validates_with_compose_v2_gpu_and_cpu():
    gpu = compose_config(COMPOSE)["services"]["train"]
    assert gpu["deploy"]["resources"]["reservations"]["devices"][0]["capabilities"] == ["gpu"]
    cpu = compose_config(COMPOSE, COMPOSE_CPU)["services"]["train"]
    assert "deploy" not in cpu
    assert cpu["environment"] == gpu["environment"]


@pytest.mark.skipif(
    not Path("/usr/bin/docker-compose").exists(),
    reason="Debian's docker-compose is not installed (.ci/run installs it: apt-get install docker-compose)",
)
def test_compose_file_validates_with_debians_docker_compose():
    result = subprocess.run(["/usr/bin/docker-compose", "-f", str(COMPOSE), "config"], capture_output=True, text=True)
    assert result.returncode == 0, result.stderr


@pytest.mark.parametrize("version", KUBERNETES_VERSIONS)
def test_manifests_validate_against_the_kubernetes_schemas(version):
    result = subprocess.run(
        [str(BIN / "kubernetes-validate"), "--strict", "-k", version, *map(str, RESOURCES)],
        capture_output=True,
        text=True,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    assert result.stdout.count("passed") == len(RESOURCES)


def test_kustomization_ties_every_manifest_together_with_images_and_namespace_in_one_place():
    kustomization = yaml.safe_load((REPO / "k8s/kustomization.yaml").read_text())
    assert sorted(kustomization["resources"]) == sorted(p.name for p in RESOURCES)
    assert kustomization["namespace"] == "mnist-gan"
    used = {c["image"] for job in k8s_jobs() for c in containers(job)}
    assert used == {image["name"] for image in kustomization["images"]}
    assert not any("namespace" in doc["metadata"] for doc in k8s_documents().values() if doc["kind"] != "Namespace")


# ---- the contract between the files and the CLIs --------------------------------------------------------------------


def test_image_entrypoints_are_the_packages_console_scripts():
    assert dockerfile_exec(DOCKERFILES["train"], "ENTRYPOINT") == ["/usr/bin/tini", "--", "gan-job"]
    assert dockerfile_exec(DOCKERFILES["train"], "CMD") == ["train"]
    assert dockerfile_exec(DOCKERFILES["serve"], "ENTRYPOINT") == ["gan-digits"]
    scripts = (REPO / "pyproject.toml").read_text()
    assert 'gan-job = "job.cli:main"' in scripts and 'gan-digits = "serving.cli:main"' in scripts


def test_serve_image_has_no_tensorflow_in_it():
    text = DOCKERFILES["serve"].read_text()
    assert "[train]" not in text and "tensorflow" not in text.replace("no TensorFlow", "").lower()


def test_every_gan_variable_set_anywhere_is_an_option_of_gan_job_train():
    accepted = train_envvars()
    set_in = {"train.Dockerfile": set(dockerfile_env(DOCKERFILES["train"]))}
    set_in["compose.yaml"] = set(compose_config(COMPOSE)["services"]["train"]["environment"])
    for job in k8s_jobs():
        set_in[job["metadata"]["name"]] = {e["name"] for c in containers(job) for e in c.get("env", [])}
    for where, names in set_in.items():
        gan = {n for n in names if n.startswith("GAN_")}
        assert gan <= accepted, f"{where} sets {gan - accepted}, which gan-job train does not read"


# Values the manifests set that differ from the job's defaults on purpose; every other value must equal the default.
DIFFERS_ON_PURPOSE = {
    "GAN_OUT": "each Job's folder on the volume",
    ("mnist-gan-train-per-digit", "GAN_STEPS"): "a one-digit model needs fewer steps",
}


def test_compose_sets_only_the_output_folder_and_passes_the_other_variables_from_the_shell():
    environment = compose_config(COMPOSE)["services"]["train"]["environment"]
    assert {name for name, value in environment.items() if value is not None} == {"GAN_OUT"}
    shell = compose_config(COMPOSE, env={"GAN_STEPS": "123"})["services"]["train"]["environment"]
    assert shell["GAN_STEPS"] == "123"


def test_every_value_the_manifests_set_equals_the_jobs_default_unless_it_differs_on_purpose():
    defaults = train_defaults()
    for job in k8s_jobs():
        name = job["metadata"]["name"]
        for container in containers(job):
            for var in container.get("env", []):
                if var["name"] not in defaults or "value" not in var:
                    continue  # not an option of gan-job train, or the completion index (the downward API)
                if var["name"] in DIFFERS_ON_PURPOSE or (name, var["name"]) in DIFFERS_ON_PURPOSE:
                    assert var["value"] != str(defaults[var["name"]]), f"{name}: {var['name']} now repeats the default"
                else:
                    assert var["value"] == str(defaults[var["name"]]), f"{name} sets {var['name']}={var['value']}"


def test_nothing_that_shares_the_volume_starts_beside_training():
    # On ReadWriteOnce storage a pod that holds the volume on another node would keep training from mounting it.
    started = [job["metadata"]["name"] for job in k8s_jobs() if not job["spec"].get("suspend")]
    assert started == ["mnist-gan-train"]


def test_per_digit_pods_are_placed_on_one_node_where_the_volume_is_attached():
    pod = k8s_documents()["mnist-gan-train-per-digit"]["spec"]["template"]
    (term,) = pod["spec"]["affinity"]["podAffinity"]["requiredDuringSchedulingIgnoredDuringExecution"]
    assert term["topologyKey"] == "kubernetes.io/hostname"
    assert term["labelSelector"]["matchLabels"].items() <= pod["metadata"]["labels"].items()


def test_runs_volume_is_mounted_at_the_same_path_everywhere_and_outputs_go_there():
    assert ("VOLUME", '["/runs"]') in dockerfile_instructions(DOCKERFILES["train"])
    services = compose_config(COMPOSE)["services"]
    for service in services.values():
        assert any(v["target"] == "/runs" for v in service["volumes"])
    assert services["train"]["environment"]["GAN_OUT"].startswith("/runs/")
    for job in k8s_jobs():
        for container in containers(job):
            assert {"name": "runs", "mountPath": "/runs"} in container["volumeMounts"]
            out = {e["name"]: e.get("value") for e in container.get("env", [])}.get("GAN_OUT")
            assert out is None or out.startswith("/runs/")


def test_pod_failure_policies_use_the_jobs_exit_codes_and_container_names():
    for job in k8s_jobs():
        spec = job["spec"]
        assert spec["template"]["spec"]["restartPolicy"] == "Never"
        names = {c["name"] for c in spec["template"]["spec"]["containers"]}
        for rule in spec["podFailurePolicy"]["rules"]:
            if "onExitCodes" in rule:
                assert rule["onExitCodes"]["containerName"] in names
                assert rule["onExitCodes"]["values"] == [EXIT_BAD_INPUT]
                assert rule["action"] in ("FailJob", "FailIndex")
        if job["metadata"]["name"].startswith("mnist-gan-train"):
            assert spec["podReplacementPolicy"] == "Failed"
            assert {"action": "Ignore", "onPodConditions": [{"type": "DisruptionTarget", "status": "True"}]} in spec[
                "podFailurePolicy"
            ]["rules"]


def test_training_jobs_are_non_root_with_a_gpu_and_limits():
    for job in k8s_jobs():
        pod = job["spec"]["template"]["spec"]
        assert pod["securityContext"]["runAsNonRoot"] is True
        for container in containers(job):
            assert container["securityContext"]["allowPrivilegeEscalation"] is False
            assert "memory" in container["resources"]["limits"]
        if job["metadata"]["name"].startswith("mnist-gan-train"):
            assert pod["containers"][0]["resources"]["limits"]["nvidia.com/gpu"] == 1
            for field in ("backoffLimit", "activeDeadlineSeconds", "ttlSecondsAfterFinished"):
                assert field in job["spec"] or field == "backoffLimit" and "backoffLimitPerIndex" in job["spec"]


def test_per_digit_job_takes_the_digit_from_the_completion_index():
    job = k8s_documents()["mnist-gan-train-per-digit"]
    assert job["spec"]["completionMode"] == "Indexed" and job["spec"]["completions"] == 10
    env = {e["name"]: e for e in job["spec"]["template"]["spec"]["containers"][0]["env"]}
    assert env["GAN_DIGIT"]["valueFrom"]["fieldRef"]["fieldPath"] == (
        "metadata.annotations['batch.kubernetes.io/job-completion-index']"
    )
    assert env["GAN_OUT"]["value"] == "/runs/digit-$(GAN_DIGIT)"
    names = list(env)
    assert names.index("GAN_DIGIT") < names.index("GAN_OUT")  # $(GAN_DIGIT) expands only if defined before


# ---- running the containers' commands here ---------------------------------------------------------------------


def on_this_machine(value: str, mounts: dict[str, Path]) -> str:
    """A container path as the same file on this machine: /runs and /data stand for temporary folders."""
    for inside, outside in mounts.items():
        if value == inside or value.startswith(inside + "/"):
            return str(outside) + value[len(inside) :]
    return value


def run_container(entrypoint: list[str], command: list[str], env: dict[str, str], mounts: dict[str, Path]):
    """The image's entrypoint + command with the container's environment; tini (PID 1 in the image) is left out."""
    if entrypoint[:2] == ["/usr/bin/tini", "--"]:
        entrypoint = entrypoint[2:]
    argv = [str(BIN / entrypoint[0]), *entrypoint[1:], *command]
    env = {name: on_this_machine(value, mounts) for name, value in env.items()}
    argv = [on_this_machine(arg, mounts) for arg in argv]
    clean = {k: v for k, v in os.environ.items() if not k.startswith("GAN_")}
    return subprocess.run(argv, capture_output=True, text=True, env={**clean, **env}, timeout=600)


@pytest.fixture
def mounts(tmp_path, small_mnist, small_mnist_classifier) -> dict[str, Path]:
    """The volumes: a data folder, and a runs volume whose classifier cache (the image's GAN_QUALITY_CACHE) already
    holds the data's classifier, as after a first run; the container stage starts from a cold volume."""
    shutil.copytree(small_mnist_classifier, tmp_path / "runs" / ".quality-cache")
    (tmp_path / "data").mkdir()
    shutil.copy(small_mnist, tmp_path / "data" / "mnist.npz")
    return {"/runs": tmp_path / "runs", "/data": tmp_path / "data"}


@pytest.mark.slow
def test_compose_train_then_generate_run_here_as_in_the_containers(mounts):
    # What a user on an offline host does: GAN_* in the shell, MNIST in ./data.
    shell = {"GAN_STEPS": "60", "GAN_CHECKPOINT_EVERY": "30", "GAN_DATA": "/data/mnist.npz", "RUN": "smoke"}
    services = compose_config(COMPOSE, COMPOSE_CPU, env=shell)["services"]

    train_env = dockerfile_env(DOCKERFILES["train"]) | compose_environment(services["train"])
    trained = run_container(
        dockerfile_exec(DOCKERFILES["train"], "ENTRYPOINT"),
        services["train"].get("command") or dockerfile_exec(DOCKERFILES["train"], "CMD"),
        train_env,
        mounts,
    )
    assert trained.returncode == 0, trained.stderr
    run = mounts["/runs"] / "smoke"
    assert (run / "generator.onnx").is_file() and (run / "checkpoints" / "ckpt-60.index").is_file()
    assert "on CPU" in trained.stderr

    generated = run_container(
        dockerfile_exec(DOCKERFILES["serve"], "ENTRYPOINT"),
        services["generate"]["command"],
        compose_environment(services["generate"]),
        mounts,
    )
    assert generated.returncode == 0, generated.stderr
    assert (run / "digits.png").is_file()


@pytest.mark.slow
def test_a_retried_pod_resumes_and_bad_configuration_exits_with_the_code_the_policy_fails_on(mounts):
    job = k8s_documents()["mnist-gan-train"]
    container = job["spec"]["template"]["spec"]["containers"][0]
    env = dockerfile_env(DOCKERFILES["train"]) | {e["name"]: e["value"] for e in container["env"]}
    env |= {"GAN_STEPS": "40", "GAN_CHECKPOINT_EVERY": "20", "GAN_DATA": "/data/mnist.npz"}
    entrypoint = dockerfile_exec(DOCKERFILES["train"], "ENTRYPOINT")

    first = run_container(entrypoint, container["args"], env | {"GAN_STEPS": "20"}, mounts)
    assert first.returncode == 0, first.stderr
    retried = run_container(entrypoint, container["args"], env, mounts)
    assert retried.returncode == 0 and "resuming from the checkpoint of step 20" in retried.stderr

    bad = run_container(entrypoint, container["args"], env | {"GAN_DIGIT": "12"}, mounts)
    assert bad.returncode == EXIT_BAD_INPUT
    assert job["spec"]["podFailurePolicy"]["rules"][1]["onExitCodes"]["values"] == [bad.returncode]

    generate = k8s_documents()["mnist-gan-generate"]["spec"]["template"]["spec"]["containers"][0]
    made = run_container(dockerfile_exec(DOCKERFILES["serve"], "ENTRYPOINT"), generate["args"], {}, mounts)
    assert made.returncode == 0, made.stderr
    assert (mounts["/runs"] / "mnist" / "digits.png").is_file()
