"""Steps per second of the architectures, side by side in one run: the job's training step (default preset, moving
average included) with `--arch mlp` (XLA, as the job compiles it) and `--arch dcgan` without XLA (as the job runs
it) and with XLA (what the job does not do, measured to show why), unconditional, on the same images.

The loops take turns in rounds, so that other programs on the machine slow them alike; each is reported by its best
round (medians in the JSON too). Beside the speeds, each architecture's work per step, counted from its layers:
multiply-adds per generated and per judged image, and the step's GFLOP (backward passes counted as twice their
forward pass, the discriminator's weight gradients left out of the generator's half), for the estimate of what a
GPU would do with it.

    python bench/arch_speed.py --data ../shared/data/mnist.npz

Last line: one JSON object with all the figures.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import statistics
import time
from pathlib import Path

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import keras  # noqa: E402
import tensorflow as tf  # noqa: E402

from job.config import TrainConfig  # noqa: E402
from job.data.load import load_data, training_images  # noqa: E402
from job.networks.gan import TrainStep, build_gan, make_deterministic  # noqa: E402

STEPS_PER_CALL = 50  # the job ends a call at a log line (100 steps) or after about two seconds, whichever is first


def multiply_adds(model: keras.Model) -> int:
    """Multiply-adds of one image through `model`'s Dense and convolution layers (nested models included)."""
    total = 0
    for layer in model.layers:
        if isinstance(layer, keras.Model):
            total += multiply_adds(layer)
        elif isinstance(layer, keras.layers.Dense):
            total += layer.input.shape[-1] * layer.units
        elif isinstance(layer, keras.layers.Conv2DTranspose):  # each input pixel spreads a kernel over the output
            total += math.prod(layer.input.shape[1:]) * math.prod(layer.kernel_size) * layer.filters
        elif isinstance(layer, keras.layers.Conv2D):
            total += math.prod(layer.output.shape[1:]) * math.prod(layer.kernel_size) * layer.input.shape[-1]
    return total


def step_work(images, arch: str) -> dict[str, float]:
    """One training step's work: the discriminator's half runs the generator forward on batch/2 latents and the
    discriminator forward and backward on batch images; the generator's half both forward and backward on batch
    latents, without the discriminator's weight gradients."""
    config = TrainConfig(out=Path("unused"), arch=arch)
    gan = build_gan(config, images.shape[1:], 0)
    generator, discriminator = multiply_adds(gan.generator), multiply_adds(gan.discriminator)
    batch = config.batch
    step = batch // 2 * generator + 3 * batch * discriminator + 3 * batch * generator + 2 * batch * discriminator
    return {
        f"{arch}_generator_madds_per_image": generator,
        f"{arch}_discriminator_madds_per_image": discriminator,
        f"{arch}_step_gflop": round(2 * step / 1e9, 3),
    }


def loop(images, arch: str, jit_compile: bool):
    config = TrainConfig(out=Path("unused"), arch=arch)
    train_steps = TrainStep(build_gan(config, images.shape[1:], 0), images, config.batch).compiled(jit_compile)

    def run(steps: int) -> None:
        for _ in range(steps // STEPS_PER_CALL):
            {name: float(value) for name, value in train_steps(tf.constant(STEPS_PER_CALL)).items()}  # as the job

    return run


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data", default=str(Path(__file__).parents[1] / "tests/data/mnist_small.npz"))
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--seconds", type=float, default=8.0, help="about how long each loop runs per round")
    args = parser.parse_args()
    make_deterministic()  # as the job does
    images = training_images(load_data(args.data), -1)
    loops = {
        "mlp_xla": loop(images, "mlp", True),
        "dcgan": loop(images, "dcgan", False),
        "dcgan_xla": loop(images, "dcgan", True),
    }
    steps = {}
    for name, run in loops.items():  # compile, warm up, and size each loop's round to about --seconds
        run(STEPS_PER_CALL)
        began = time.perf_counter()
        run(STEPS_PER_CALL)
        rate = STEPS_PER_CALL / (time.perf_counter() - began)
        steps[name] = max(STEPS_PER_CALL, int(rate * args.seconds) // STEPS_PER_CALL * STEPS_PER_CALL)
    rates: dict[str, list[float]] = {name: [] for name in loops}
    for _ in range(args.rounds):
        for name, run in loops.items():
            began = time.perf_counter()
            run(steps[name])
            rates[name].append(steps[name] / (time.perf_counter() - began))
    best = {name: max(values) for name, values in rates.items()}
    for name, value in best.items():
        print(f"{name:10s} {value:8.1f} steps/s (median {statistics.median(rates[name]):.1f})")
    figures = {f"{name}_steps_per_s": round(value, 1) for name, value in best.items()}
    figures |= {f"{name}_median_steps_per_s": round(statistics.median(v), 1) for name, v in rates.items()}
    figures |= step_work(images, "mlp") | step_work(images, "dcgan")
    figures |= {
        "mlp_over_dcgan": round(best["mlp_xla"] / best["dcgan"], 2),
        "dcgan_without_over_with_xla": round(best["dcgan"] / best["dcgan_xla"], 2),
        "images": len(images),
        "rounds": args.rounds,
        "load_average": round(os.getloadavg()[0], 1),
    }
    print(json.dumps(figures))


if __name__ == "__main__":
    main()
