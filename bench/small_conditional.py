"""The conditional DCGAN on a small data set, with its label coming in gradually over the first steps (as the
job trains it: `conditioning_ramp` in job/config.py) and with the label at full strength from the first
step, side by side in one run, same data, same seed.

The data is what a user's own small image set looks like: a folder of PNGs in one subfolder per class, here
`--per-class` of MNIST's 0s, 1s and 2s padded to 32x32 and drawn in orange on blue. Each run is a real
`gan-job train --arch dcgan --conditional`; its quality is what the job logs (Fréchet distance against the training
images, the share drawn as the class asked for). Beside it, how varied each class's samples are: the mean pixel
distance between two of 200 samples of a class, over the same between two of the class's real images (about 1 when
a class is drawn as variedly as the data; near 0 when it is drawn one way).

    python bench/small_conditional.py --data ../shared/data/mnist.npz [--per-class 80] [--steps 3000]

`--per-class 100 20 5` makes the classes unbalanced, as a user's folder was (README, "Architectures").

Last line: one JSON object with each run's figures.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
from pathlib import Path

import numpy as np
from PIL import Image

CLASSES = {"zero": 0, "one": 1, "two": 2}
ORANGE, BLUE = np.array([255, 140, 0]), np.array([0, 0, 255])
SAMPLES_PER_CLASS = 200  # for the variety measure
# The job's own entry point, with the ramp of the DCGAN replaced by RAMP (0: the label at full strength throughout).
TRAIN = """
import dataclasses, sys
from job import config
config.ARCH_SETTINGS["dcgan"] = dataclasses.replace(config.ARCH_SETTINGS["dcgan"], conditioning_ramp={ramp})
from job.cli import main
main()
"""


def write_image_folder(mnist: Path, per_class: list[int], folder: Path) -> dict[str, np.ndarray]:
    """The small data set as PNGs in class subfolders, `per_class` images of each (one count: of every class);
    returns each class's images, as written."""
    with np.load(mnist) as arrays:
        x, y = arrays["x_train"], arrays["y_train"]
    counts = per_class * len(CLASSES) if len(per_class) == 1 else per_class
    written = {}
    for (name, digit), count in zip(CLASSES.items(), counts, strict=True):
        ink = np.pad(x[y == digit][:count], ((0, 0), (2, 2), (2, 2)))[..., np.newaxis] / 255.0
        images = np.rint(BLUE + (ORANGE - BLUE) * ink).astype(np.uint8)
        (folder / name).mkdir(parents=True)
        for index, image in enumerate(images):
            Image.fromarray(image).save(folder / name / f"{index}.png")
        written[name] = images
    return written


def variety(model: Path, reals: dict[str, np.ndarray], seed: int) -> dict[str, float]:
    """Per class: how far apart its samples are, relative to its real images (both in [-1, 1])."""
    from job.analysis.quality import mean_pairwise_distance
    from serving.model import Generator

    generator = Generator(model)
    rng = np.random.default_rng(seed)
    ratios = {}
    for name, images in reals.items():
        label = generator.class_names.index(name)
        latents = rng.standard_normal((SAMPLES_PER_CLASS, generator.latent_dim)).astype(np.float32)
        samples = generator.images(latents, np.full(SAMPLES_PER_CLASS, label))
        ratio = mean_pairwise_distance(samples) / mean_pairwise_distance(images / 127.5 - 1.0)
        ratios[name] = round(ratio, 3)
    return ratios


def train(ramp: int, folder: Path, out: Path, args) -> list[dict]:
    """One run; its quality at each measurement."""
    every = str(args.steps // args.points)
    command = [sys.executable, "-c", TRAIN.format(ramp=ramp), "train", "--data", str(folder), "--out", str(out),
               "--arch", "dcgan", "--conditional", "--steps", str(args.steps), "--seed", str(args.seed),
               "--sample-every", every, "--log-every", every, "--quality-cache", str(out.parent / "cache")]  # fmt: skip
    print(f"training with a ramp of {ramp} steps: {out}", file=sys.stderr)
    subprocess.run(command, check=True, capture_output=True)
    records = [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines()]
    return [
        {"step": r["step"], "frechet_distance": round(r["frechet_distance"], 3), "as_asked": r["label_accuracy"]}
        for r in records
        if "frechet_distance" in r
    ]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data", type=Path, required=True, help="MNIST as a Keras-style .npz")
    parser.add_argument(
        "--per-class", type=int, nargs="+", default=[80], help="images of each class, or of zero, one and two"
    )
    parser.add_argument("--steps", type=int, default=3000)
    parser.add_argument("--points", type=int, default=6, help="quality measurements per run")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--keep", type=Path, default=None, help="keep the data and the runs in this folder")
    args = parser.parse_args()
    if len(args.per_class) not in (1, len(CLASSES)):
        parser.error(f"--per-class takes one count or {len(CLASSES)}")
    scratch = args.keep or Path(tempfile.mkdtemp(prefix="small-conditional-"))
    folder = scratch / "images"
    reals = write_image_folder(args.data, args.per_class, folder)

    from job.networks.models import ARCHITECTURES

    ramps = {"gradual": ARCHITECTURES["dcgan"].conditioning_ramp, "at_once": 0}
    runs = {}
    for name, ramp in ramps.items():
        points = train(ramp, folder, scratch / name, args)
        runs[name] = {"ramp": ramp, "points": points, "variety": variety(scratch / name / "generator.onnx", reals, 0)}
    for name, run in runs.items():
        for p in run["points"]:
            print(f"{name:8s} step {p['step']:5d}: Fréchet distance {p['frechet_distance']:.3f}, "
                  f"{p['as_asked']:.1%} as asked")  # fmt: skip
        print(f"{name:8s} variety (samples' distance over the reals'): {run['variety']}")
    print(json.dumps({"steps": args.steps, "per_class": args.per_class, "seed": args.seed, "runs": runs}))


if __name__ == "__main__":
    main()
