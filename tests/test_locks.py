"""The images install from locks (docker/locks/*.txt, made by docker/locks/refresh.py from pyproject.toml): these tests
fail when pyproject.toml and the locks disagree, so that a changed dependency comes with refreshed locks."""

from __future__ import annotations

import re
import runpy
from pathlib import Path

import pytest
from packaging.requirements import Requirement

tomllib = pytest.importorskip("tomllib")  # Python 3.11 on: the locks are for the images' Python 3.11

REPO = Path(__file__).parents[1]
LOCKS = REPO / "docker/locks"
PYPROJECT = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]
FROM_PYPROJECT = "mnist-gan (pyproject.toml)"


def read_lock(path: Path) -> dict[str, tuple[str, set[str], int]]:
    """{name: (version, what it is required by, how many hashes)} of a uv/pip-compile lock."""
    packages, name = {}, None
    for line in path.read_text().splitlines():
        if pin := re.match(r"([A-Za-z0-9._-]+)(?:\[[^\]]*\])?==(\S+)", line):
            name = canonical(pin[1])
            packages[name] = (pin[2], set(), 0)
        elif name and (hash_ := re.match(r"\s+--hash=sha256:[0-9a-f]{64}", line)):
            version, via, hashes = packages[name]
            packages[name] = (version, via, hashes + bool(hash_))
        elif name and (via := re.match(r"\s+#\s+(?:via\s+)?(\S.*)$", line)) and via[1] != "via":
            packages[name][1].add(via[1].strip())
    return packages


def canonical(name: str) -> str:
    return re.sub(r"[-_.]+", "-", name).lower()


def requirements(*extras: str) -> list[Requirement]:
    listed = PYPROJECT["dependencies"] + [r for extra in extras for r in PYPROJECT["optional-dependencies"][extra]]
    return [Requirement(r) for r in listed]


# lock: (pyproject's requirements it must hold, the lock's own input file, names left out on purpose)
EXPECTED = {
    "serve.txt": (requirements(), None, set()),
    "server.txt": (requirements("server"), None, set()),
    "train-cpu.txt": (requirements("train"), "train-cpu.in", {"tensorflow"}),
    "train-cuda.txt": (requirements("train"), "train-cuda.in", set()),
}


@pytest.mark.parametrize("lock", EXPECTED)
def test_every_requirement_of_pyproject_is_locked_at_a_version_it_allows(lock):
    locked = read_lock(LOCKS / lock)
    wanted, _, left_out = EXPECTED[lock]
    for requirement in wanted:
        name = canonical(requirement.name)
        if name in left_out:
            continue
        assert name in locked, f"{lock} lacks {name}: run .venv/bin/python docker/locks/refresh.py"
        assert requirement.specifier.contains(locked[name][0], prereleases=True), f"{lock}: {name} {locked[name][0]}"


@pytest.mark.parametrize("lock", EXPECTED)
def test_what_the_lock_says_comes_from_pyproject_is_exactly_what_pyproject_requires(lock):
    # A dependency dropped from pyproject.toml must leave the lock too.
    wanted, _, left_out = EXPECTED[lock]
    from_pyproject = {name for name, (_, via, _) in read_lock(LOCKS / lock).items() if FROM_PYPROJECT in via}
    assert from_pyproject == {canonical(r.name) for r in wanted} - left_out


@pytest.mark.parametrize("lock", EXPECTED)
def test_every_locked_package_has_hashes(lock):
    assert all(hashes > 0 for _, _, hashes in read_lock(LOCKS / lock).values())


def test_both_training_locks_hold_the_same_tensorflow_and_the_cpu_one_no_cuda():
    cpu, cuda = read_lock(LOCKS / "train-cpu.txt"), read_lock(LOCKS / "train-cuda.txt")
    assert cpu["tensorflow-cpu"][0] == cuda["tensorflow"][0]
    assert "tensorflow" not in cpu and not any(name.startswith("nvidia-") for name in cpu)
    assert any(name.startswith("nvidia-cudnn") for name in cuda)
    for lock, package in (("train-cpu", "tensorflow-cpu"), ("train-cuda", "tensorflow")):
        assert f"=={cpu['tensorflow-cpu'][0]}" in (LOCKS / f"{lock}.in").read_text(), package


@pytest.mark.parametrize("lock", ["serve.txt", "server.txt"])
def test_the_serving_locks_hold_no_training_stack(lock):
    assert not {"tensorflow", "tensorflow-cpu", "keras", "tf2onnx"} & set(read_lock(LOCKS / lock))


def test_the_server_lock_holds_kserve_without_what_the_server_never_imports():
    unused = runpy.run_path(str(LOCKS / "refresh.py"))["SERVER_UNUSED"]  # its main() runs only as a script
    locked = read_lock(LOCKS / "server.txt")
    assert "kserve" in locked
    assert not {canonical(name) for name in unused} & set(locked)
