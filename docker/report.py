"""What the container stage of CI prints about the images (docker/ci-stage.sh runs it with the dev extra's Python).

    python docker/report.py sbom IMAGE OUT.cdx.json    # CycloneDX SBOM of the image's Python packages, made inside it
    python docker/report.py audit LOCK...              # pip-audit of the locks; says so when it cannot audit

The SBOM is made by cyclonedx-py (CycloneDX's own generator) run inside the image on its virtual environment, from a
copy installed beside this script's Python and mounted read-only: nothing is added to the image.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parent / "locks"))
from refresh import AuditUnavailable, audit  # noqa: E402  (the lock refresh's audit, one definition)

VENV_PYTHON = "/opt/venv/bin/python"
# cyclonedx-py, run by the image's Python with the tool on sys.path (not on PYTHONPATH: the environment it inspects
# must not see it).
RUN_TOOL = (
    "import runpy, sys; sys.path.insert(0, '/sbom-tool'); "
    "sys.argv = ['cyclonedx-py', 'environment', '--of', 'JSON', '--output-reproducible', sys.argv[1]]; "
    "runpy.run_module('cyclonedx_py', run_name='__main__')"
)


def tool_folder() -> str:
    """Where cyclonedx-py is installed, for Python 3.11 like the images: this Python's site-packages."""
    import cyclonedx_py

    return str(Path(cyclonedx_py.__file__).parents[1])


def sbom(image: str, out: Path) -> None:
    mount = f"{tool_folder()}:/sbom-tool:ro"
    argv = ["docker", "run", "--rm", "-v", mount, "--entrypoint", VENV_PYTHON, image, "-c", RUN_TOOL, VENV_PYTHON]
    result = subprocess.run(argv, capture_output=True, text=True, check=True)
    out.write_text(result.stdout)
    document = json.loads(result.stdout)
    components = sorted(f"{c['name']}=={c.get('version', '?')}" for c in document.get("components", []))
    print(f"SBOM of {image}: CycloneDX {document['specVersion']}, {len(components)} components, written to {out}")
    print("  " + " ".join(components))


def audit_locks(locks: list[Path]) -> None:
    for lock in locks:
        try:
            findings = audit(lock)
        except AuditUnavailable as error:
            print(f"pip-audit of {lock}: NOT AUDITED: {error}")
            continue
        print(f"pip-audit of {lock}: {len(findings)} known vulnerabilities")
        for f in findings:
            print(f"  {f['name']} {f['version']}: {f['id']}, fix: {', '.join(f['fix_versions']) or 'none'}")


if __name__ == "__main__":
    command, *args = sys.argv[1:]
    if command == "sbom":
        sbom(args[0], Path(args[1]))
    else:
        audit_locks([Path(a) for a in args])
