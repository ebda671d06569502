"""gan-digits against the alternatives, side by side in one run, each in a fresh process.

- cold start: `gan-digits generate -n 16` (onnxruntime) against the same grid through TensorFlow (load
  generator.keras, predict, save): wall time and peak memory (max RSS) of the whole process.
- bulk: `gan-digits generate -n 100000 --format npy` against a bare onnxruntime `session.run` loop over the same
  latents and batch size, keeping nothing: digits per second of the whole process.

    python bench/serve_speed.py [--run RUN_DIR]   # a run with generator.keras and generator.onnx

Without --run it first trains a 200-step run on the test fixture (the model's quality does not matter here).
Last line: one JSON object with cold_ratio, memory_ratio and bulk_ratio.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).parents[1]
BIN = Path(sys.executable).parent

TENSORFLOW_GRID = """
import sys, numpy as np, keras
from serving.images import grid, to_uint8
model = keras.models.load_model(sys.argv[1])
z = np.random.default_rng(0).standard_normal((16, model.input_shape[-1]), dtype=np.float32)
grid(to_uint8(model.predict(z, verbose=0)), scale=2).save(sys.argv[2])
"""

BARE_LOOP = """
import sys, numpy as np, onnxruntime
session = onnxruntime.InferenceSession(sys.argv[1], providers=["CPUExecutionProvider"])
count, batch = int(sys.argv[2]), int(sys.argv[3])
rng = np.random.default_rng(0)
for start in range(0, count, batch):
    session.run(["image"], {"z": rng.standard_normal((min(batch, count - start), 100), dtype=np.float32)})
"""


def measure(command: list[str]) -> tuple[float, float]:
    """Wall seconds and peak resident memory (MiB) of one fresh process."""
    env = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "2"}
    began = time.perf_counter()
    process = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, env=env)
    _, status, usage = os.wait4(process.pid, 0)
    wall = time.perf_counter() - began
    if status != 0:
        raise SystemExit(f"failed: {' '.join(command)}\n{process.stderr.read().decode()}")
    return wall, usage.ru_maxrss / 1024


def ensure_run(run: Path | None, scratch: Path) -> Path:
    if run is not None:
        return run
    run = scratch / "run"
    print("training a 200-step run to serve from ...", file=sys.stderr)
    subprocess.run(
        [BIN / "gan-job", "train", "--data", REPO / "tests/data/mnist_small.npz", "--steps", "200", "--out", run],
        check=True,
        capture_output=True,
    )
    return run


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--run", type=Path, default=None)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--bulk", type=int, default=100_000)
    parser.add_argument("--batch-size", type=int, default=1024)
    args = parser.parse_args()
    scratch = Path(tempfile.mkdtemp(prefix="serve-speed-"))
    run = ensure_run(args.run, scratch)
    onnx_model, keras_model = str(run / "generator.onnx"), str(run / "generator.keras")

    digits = [str(BIN / "gan-digits"), "generate", "--model", onnx_model]
    commands = {
        "onnx": [*digits, "-n", "16", "--out", str(scratch / "onnx.png")],
        "tensorflow": [sys.executable, "-c", TENSORFLOW_GRID, keras_model, str(scratch / "tf.png")],
        "gan_digits": [
            *digits,
            "-n",
            str(args.bulk),
            "--format",
            "npy",
            "--batch-size",
            str(args.batch_size),
            "--out",
            str(scratch / "bulk.npy"),
        ],
        "bare_loop": [sys.executable, "-c", BARE_LOOP, onnx_model, str(args.bulk), str(args.batch_size)],
    }
    samples = {name: [] for name in commands}
    for _ in range(args.repeats):  # interleaved, so that all see the same machine load
        for name, command in commands.items():
            samples[name].append(measure(command))
    cold = {name: samples[name] for name in ("onnx", "tensorflow")}
    bulk = {name: samples[name] for name in ("gan_digits", "bare_loop")}

    def wall(samples):
        return statistics.median(s[0] for s in samples)

    def peak(samples):
        return max(s[1] for s in samples)

    figures = {
        "cold_onnx_s": round(wall(cold["onnx"]), 3),
        "cold_tensorflow_s": round(wall(cold["tensorflow"]), 3),
        "cold_ratio": round(wall(cold["onnx"]) / wall(cold["tensorflow"]), 3),
        "onnx_peak_mib": round(peak(cold["onnx"]), 1),
        "tensorflow_peak_mib": round(peak(cold["tensorflow"]), 1),
        "memory_ratio": round(peak(cold["onnx"]) / peak(cold["tensorflow"]), 3),
        "bulk_gan_digits_per_s": round(args.bulk / wall(bulk["gan_digits"])),
        "bulk_bare_loop_per_s": round(args.bulk / wall(bulk["bare_loop"])),
        "bulk_ratio": round(wall(bulk["bare_loop"]) / wall(bulk["gan_digits"]), 3),
        "bulk_gan_digits_peak_mib": round(peak(bulk["gan_digits"]), 1),
        "repeats": args.repeats,
    }
    print(
        f"cold start, 16 digits: gan-digits {figures['cold_onnx_s']} s / {figures['onnx_peak_mib']} MiB, "
        f"TensorFlow {figures['cold_tensorflow_s']} s / {figures['tensorflow_peak_mib']} MiB"
    )
    print(
        f"bulk, {args.bulk} digits: gan-digits {figures['bulk_gan_digits_per_s']}/s, "
        f"bare session.run loop {figures['bulk_bare_loop_per_s']}/s"
    )
    print(json.dumps(figures))


if __name__ == "__main__":
    main()
