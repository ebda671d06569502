"""The light install (no extras) generates digits on a machine without TensorFlow."""

import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).parents[1]

pytestmark = pytest.mark.slow


def test_light_install_generates_digits_without_tensorflow(trained_run, tmp_path):
    venv = tmp_path / "light"
    subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True)
    install = subprocess.run(
        [str(venv / "bin" / "pip"), "install", "--quiet", str(REPO)], capture_output=True, text=True, timeout=900
    )
    assert install.returncode == 0, install.stderr

    installed = subprocess.run(
        [str(venv / "bin" / "pip"), "list", "--format=freeze"], capture_output=True, text=True, check=True
    ).stdout.lower()
    assert "onnxruntime==" in installed and "click==" in installed
    assert "tensorflow" not in installed and "keras" not in installed and "tf2onnx" not in installed

    grid = tmp_path / "grid.png"
    result = subprocess.run(
        [
            str(venv / "bin" / "gan-digits"),
            "generate",
            "--model",
            str(trained_run[0] / "generator.onnx"),
            "-n",
            "9",
            "--out",
            str(grid),
        ],
        capture_output=True,
        text=True,
        timeout=120,
        cwd=tmp_path,
    )
    assert result.returncode == 0, result.stderr
    assert grid.stat().st_size > 0
