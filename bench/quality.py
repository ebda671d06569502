"""Sample quality of the presets and architectures, side by side in one run: `--preset seed` (the tutorial),
`--preset default`, `--preset default --conditional`, `--preset default --no-ema` (the same training as default:
what the moving average adds), and `--arch dcgan` with and without `--conditional`, trained for the same steps on the
same data with the same seed.

Each variant is a real `gan-job train` run; its quality is what the job itself logs every `--sample-every` steps: the
Fréchet distance between classifier features of 2,000 samples and of the real test images, how many digits cover
at least 5% of the samples, the smallest digit share, the variety of the least varied digit, and for the conditional
model the share classified as the digit asked for. Beside it, each run's wall time, the time inside its compiled
training calls and its steps/s there (the run's `timings` record; for a run resumed with `--keep`, the training time
of all its starts and the wall time of the last): the figures for an equal-wall-time comparison.
And the metric's floor: the Fréchet distance of 2,000 real training images against the same test images (three
draws), what a perfect generator would measure at this sample count.

    python bench/quality.py --data ../shared/data/mnist.npz [--steps 10000] [--seed 0] [--variants default seed]

Last line: one JSON object with the figures of each variant at each checkpoint, and the ratio of Fréchet distances
(seed / default) at the last step.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
from pathlib import Path

BIN = Path(sys.executable).parent
SAMPLES = 2000  # quality samples per measurement: each run's, and the real images of the floor
VARIANTS = {
    "seed": ["--preset", "seed"],
    "default": ["--preset", "default"],
    "default_no_ema": ["--preset", "default", "--no-ema"],
    "conditional": ["--preset", "default", "--conditional"],
    "dcgan": ["--preset", "default", "--arch", "dcgan"],
    "dcgan_conditional": ["--preset", "default", "--arch", "dcgan", "--conditional"],
}


def train(name: str, extra: list[str], args, scratch: Path) -> dict:
    """One variant's run: its quality at each measurement, and its times."""
    out = scratch / name
    command = [
        str(BIN / "gan-job"),
        "train",
        "--data",
        str(args.data),
        "--out",
        str(out),
        "--steps",
        str(args.steps),
        "--sample-every",
        str(args.steps // args.points),
        "--log-every",
        str(args.steps // args.points),
        "--seed",
        str(args.seed),
        "--quality-samples",
        str(SAMPLES),
        "--quality-cache",
        str(scratch / "cache"),
        *extra,
    ]
    print(f"training {name}: {' '.join(command[1:])}", file=sys.stderr)
    result = subprocess.run(command, capture_output=True, text=True)  # a finished run kept with --keep is not retrained
    if result.returncode:  # 75: stopped by a signal, checkpointed; the same command with --keep resumes it
        sys.exit(f"training {name} exited {result.returncode}:\n{result.stderr[-2000:]}")
    records = [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines()]
    # The run's own account of its time: the last start's parts, and the training time summed over all its starts
    # (a run kept with --keep may have been stopped and resumed).
    timings = [r["timings"] for r in records if "timings" in r][-1]
    training_s = [r["elapsed_s"] for r in records if "elapsed_s" in r][-1]
    points = [
        {
            "step": r["step"],
            "frechet_distance": round(r["frechet_distance"], 3),
            "classes_covered": r["classes_covered"],
            "min_share": min(r["class_shares"]),
            "least_variety": r.get("least_variety"),
            **({"label_accuracy": r["label_accuracy"]} if "label_accuracy" in r else {}),
        }
        for r in records
        if "frechet_distance" in r
    ]
    return {
        "points": points,
        "wall_s": timings["total_s"],
        "classifier_s": timings["quality_classifier_s"],
        "training_s": round(training_s, 2),
        "steps_per_s": round(args.steps / training_s, 1),
    }


def real_floor(args, scratch: Path, draws: int = 3) -> list[float]:
    """The Fréchet distance of SAMPLES real training images against the reference, `draws` times: the finite-sample
    distance a generator that draws the training distribution exactly would measure."""
    import numpy as np

    from job.analysis.quality import QualityMeter, load_or_train_classifier
    from job.data.load import load_data, reference_images, to_unit_range

    data = load_data(args.data)
    meter = QualityMeter(load_or_train_classifier(data, scratch / "cache", seed=args.seed), reference_images(data))
    rng = np.random.default_rng(args.seed)
    picks = (rng.choice(len(data.x_train), SAMPLES, replace=False) for _ in range(draws))
    return [round(meter.measure(to_unit_range(data.x_train[p])).frechet_distance, 3) for p in picks]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data", type=Path, required=True)
    parser.add_argument("--steps", type=int, default=10_000)
    parser.add_argument("--points", type=int, default=4, help="checkpoints (quality measurements) per run")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--keep", type=Path, default=None, help="keep the runs in this folder")
    parser.add_argument("--variants", nargs="+", choices=tuple(VARIANTS), default=tuple(VARIANTS))
    args = parser.parse_args()
    scratch = args.keep or Path(tempfile.mkdtemp(prefix="quality-"))

    runs = {name: train(name, VARIANTS[name], args, scratch) for name in args.variants}
    results = {name: run["points"] for name, run in runs.items()}
    for name, run in runs.items():
        print(
            f"{name:17s} {run['wall_s']:.0f} s in all ({run['classifier_s']:.0f} s of it the quality classifier), "
            f"{run['training_s']:.0f} s training: {run['steps_per_s']} steps/s"
        )
        for p in run["points"]:
            line = (
                f"{name:17s} step {p['step']:6d}: Fréchet distance {p['frechet_distance']:8.3f}, "
                f"{p['classes_covered']:2d} digits covered (smallest share {p['min_share']:.1%}, least variety "
                f"{p['least_variety']})"
            )
            if "label_accuracy" in p:
                line += f", {p['label_accuracy']:.1%} as asked"
            print(line)
    floor = real_floor(args, scratch)
    print(f"floor: {SAMPLES} real training images measure a Fréchet distance of {', '.join(map(str, floor))}")
    last = {name: points[-1] for name, points in results.items()}
    figures = {"steps": args.steps, "seed": args.seed, "runs": str(scratch), "real_floor": floor, "variants": runs}
    if {"seed", "default"} <= last.keys():
        figures["fd_ratio_seed_over_default"] = round(
            last["seed"]["frechet_distance"] / last["default"]["frechet_distance"], 2
        )
    if "default" in last:
        figures["default_min_share"] = last["default"]["min_share"]
    if "conditional" in last:
        figures["conditional_label_accuracy"] = last["conditional"].get("label_accuracy")
    if {"dcgan", "default"} <= last.keys():
        figures["fd_ratio_dcgan_over_mlp"] = round(
            last["dcgan"]["frechet_distance"] / last["default"]["frechet_distance"], 2
        )
        figures["speed_ratio_dcgan_over_mlp"] = round(runs["dcgan"]["steps_per_s"] / runs["default"]["steps_per_s"], 3)
    if "dcgan_conditional" in last:
        figures["dcgan_conditional_label_accuracy"] = last["dcgan_conditional"].get("label_accuracy")
    print(json.dumps(figures))


if __name__ == "__main__":
    main()
