"""Refresh the images' dependency locks from pyproject.toml, and refuse them if they hold a known vulnerability that
has a fixed version.

    .venv/bin/python docker/locks/refresh.py          # from the repository root, with the dev extra installed

One lock per image and variant, with every file's hash (uv pip compile --generate-hashes), for Linux x86_64 and
Python 3.11 (the base image), whatever machine runs this. The new locks replace the old ones only when pip-audit
finds no vulnerability with a fix; one without a fix is printed and kept. Where pip-audit cannot reach its
vulnerability service (or it knows none of the packages), the refresh refuses too, unless --allow-unaudited.
"""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

LOCKS = Path(__file__).parent
BIN = Path(sys.executable).parent
COMMAND = ".venv/bin/python docker/locks/refresh.py"
TARGET = ["--python-version", "3.11", "--python-platform", "x86_64-manylinux_2_28"]
# What KServe requires that `gan-digits serve` never imports: measured on a server that started, answered REST and
# gRPC, refused a request and stopped; tests/containers/test_images.py runs the image built without them.
SERVER_UNUSED = (
    "uvloop",  # KServe runs its servers on asyncio's own loop
    "aiohttp", "aiohttp-retry", "aiohappyeyeballs", "aiosignal", "frozenlist", "multidict", "propcache", "yarl",
    "attrs",
    "cryptography", "cffi", "pycparser", "pyjwt", "pyasn1",
    "python-dotenv", "setuptools", "tzdata",
)  # fmt: skip
# Each lock: what it is compiled from besides pyproject.toml's dependencies.
SOURCES = {
    "serve.txt": [],
    # gan-digits serve (docker/server.Dockerfile, over the serve image): KServe's dependencies that the server never
    # imports (an event loop, cloud storage, credentials and build tools) are left out, so that the image stays lean.
    "server.txt": ["--extra", "server", *(arg for name in SERVER_UNUSED for arg in ("--no-emit-package", name))],
    # tensorflow-cpu provides the modules of the `tensorflow` the package requires, and has the same dependencies:
    # `tensorflow` is resolved at the same version, then left out of the lock.
    "train-cpu.txt": ["--extra", "train", "docker/locks/train-cpu.in", "--no-emit-package", "tensorflow"],
    "train-cuda.txt": ["--extra", "train", "docker/locks/train-cuda.in"],
}


def compile_lock(name: str, out: Path) -> None:
    subprocess.run(
        [str(BIN / "uv"), "pip", "compile", "--quiet", "pyproject.toml", *SOURCES[name], "--generate-hashes"]
        + [*TARGET, "--custom-compile-command", COMMAND, "-o", str(out)],
        check=True,
    )


class AuditUnavailable(RuntimeError):
    """pip-audit could not check (some of) a lock: its vulnerability service is out of reach or does not know them."""


def audit(lock: Path) -> list[dict]:
    """pip-audit's findings for a lock: [{name, version, id, fix_versions}]. Raises AuditUnavailable when pip-audit
    cannot run or could not look up a package (it then says "No known vulnerabilities found" all the same)."""
    result = subprocess.run(
        [str(BIN / "pip-audit"), "-r", str(lock), "--require-hashes", "--disable-pip", "--format", "json"],
        capture_output=True,
        text=True,
    )
    if result.returncode not in (0, 1):  # 1: vulnerabilities found
        raise AuditUnavailable(f"pip-audit failed on {lock.name}: {result.stderr.strip().splitlines()[-1:]}")
    dependencies = json.loads(result.stdout)["dependencies"]
    skipped = [f"{dep['name']}: {dep['skip_reason']}" for dep in dependencies if "skip_reason" in dep]
    if skipped:
        raise AuditUnavailable(
            f"pip-audit could not audit {len(skipped)} of {len(dependencies)} packages of "
            f"{lock.name}, e.g. {skipped[0]}"
        )
    return [
        {"name": dep["name"], "version": dep["version"], "id": vuln["id"], "fix_versions": vuln["fix_versions"]}
        for dep in dependencies
        for vuln in dep.get("vulns", [])
    ]


def main(allow_unaudited: bool) -> int:
    started = time.monotonic()
    with tempfile.TemporaryDirectory() as folder:
        fresh = {name: Path(folder) / name for name in SOURCES}
        for name, path in fresh.items():
            compile_lock(name, path)
        print(f"locks compiled in {time.monotonic() - started:.1f} s")
        try:
            findings = {name: audit(path) for name, path in fresh.items()}
        except AuditUnavailable as error:
            print(f"NOT AUDITED: {error}")
            if not allow_unaudited:
                print("refused: the locks are unchanged (--allow-unaudited writes them all the same)")
                return 1
            findings = {}
        fixable = [
            f"{name}: {f['name']} {f['version']} {f['id']}, fixed in {', '.join(f['fix_versions'])}"
            for name, found in findings.items()
            for f in found
            if f["fix_versions"]
        ]
        for name, found in findings.items():
            for f in found:
                print(f"{name}: {f['name']} {f['version']}: {f['id']}, fix: {', '.join(f['fix_versions']) or 'none'}")
        if fixable:
            print(f"refused: {len(fixable)} known vulnerabilities have a fixed version; the locks are unchanged")
            return 1
        for name, path in fresh.items():
            shutil.copy(path, LOCKS / name)
    print(f"locks written in {time.monotonic() - started:.1f} s: {', '.join(SOURCES)}")
    return 0


if __name__ == "__main__":
    sys.exit(main(allow_unaudited="--allow-unaudited" in sys.argv[1:]))
