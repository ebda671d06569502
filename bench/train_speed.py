"""Steps per second of the job's compiled loop, side by side in one run with the tutorial's loop, a minimal XLA loop of
the same math, and what the machine's float32 matmuls can do.

- tutorial: per step, generator.predict() on 16 latents, discriminator.train_on_batch() on 16 real + 16 generated
  images, then combined.train_on_batch() on 32 latents labelled real: three host round trips a step.
- job_seed: the job's TrainStep on the tutorial's math (`--preset seed`), one XLA call per log interval (as the job
  calls it at --log-every 100: its two-second bound on a call does not bind at these speeds).
- job_default: the same with the default preset (its moving average of the generator's weights included).
- minimal: bench/minimal_gan.py, the same math as bare variables and bare ops, one XLA call of many steps: the
  yardstick for "no overhead".
- matmul peak: GFLOP/s of a chain of float32 1024x1024 matmuls in one XLA call; the job's share of it is the
  step's FLOP count (the matmuls in the compiled step's optimized HLO) times steps/s.

Other programs on the machine slow every loop alike; the loops are therefore measured in interleaved rounds and
each is reported by its best round (the median is in the JSON too). Op determinism is on, as in the job.

    python bench/train_speed.py --data ../shared/data/mnist.npz

Last line: one JSON object with all the figures.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import statistics
import time
from collections.abc import Callable
from pathlib import Path

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import keras  # noqa: E402
import numpy as np  # noqa: E402
import tensorflow as tf  # noqa: E402
from minimal_gan import MinimalGan  # noqa: E402  (bench/minimal_gan.py, beside this file)

from job.config import TrainConfig  # noqa: E402
from job.data.load import load_data, to_unit_range, training_images  # noqa: E402
from job.networks.gan import TrainStep, build_gan, make_deterministic  # noqa: E402
from job.networks.models import build_discriminator, build_generator  # noqa: E402

MNIST = ((28, 28, 1), 10)  # image shape, classes

STEPS_PER_CALL = 100  # the job's default log interval: one compiled call per log line (under two seconds here)


def job_loop(images: np.ndarray, preset: str) -> tuple[Callable[[int], None], tf.types.experimental.Function]:
    config = TrainConfig(out=Path("unused"), preset=preset)
    train_steps = TrainStep(build_gan(config, images.shape[1:], 10), images, config.batch).compiled()

    def run(steps: int) -> None:
        for _ in range(steps // STEPS_PER_CALL):
            {name: float(value) for name, value in train_steps(tf.constant(STEPS_PER_CALL)).items()}  # as the job

    return run, train_steps


def minimal_loop(images: np.ndarray) -> Callable[[int], None]:
    gan = MinimalGan(images)

    def run(steps: int) -> None:
        for _ in range(steps // STEPS_PER_CALL):
            float(gan.train(tf.constant(STEPS_PER_CALL)))

    return run


def tutorial_loop(images: np.ndarray) -> Callable[[int], None]:
    generator, discriminator = build_generator("mlp", 100, MNIST[0]), build_discriminator("mlp", MNIST[0])
    discriminator.compile(loss="binary_crossentropy", optimizer=keras.optimizers.Adam(2e-4))
    discriminator.trainable = False
    combined = keras.Sequential([generator, discriminator])
    combined.compile(loss="binary_crossentropy", optimizer=keras.optimizers.Adam(2e-4))
    rng = np.random.default_rng(0)
    labels = np.concatenate([np.ones((16, 1)), np.zeros((16, 1))]).astype("float32")

    def run(steps: int) -> None:
        for _ in range(steps):
            fake = generator.predict(rng.normal(size=(16, 100)).astype("float32"), verbose=0)
            real = images[rng.integers(0, len(images), 16)]
            discriminator.train_on_batch(np.concatenate([real, fake]), labels)
            combined.train_on_batch(rng.normal(size=(32, 100)).astype("float32"), np.ones((32, 1), "float32"))

    return run


def matmul_gflops(size: int = 1024, chain: int = 40, rounds: int = 5) -> float:
    """Best GFLOP/s of `chain` dependent float32 size x size matmuls in one XLA call."""
    w = tf.Variable(tf.random.normal([size, size]) / size**0.5)

    @tf.function(jit_compile=True)
    def chained(x):
        for _ in tf.range(chain):
            x = x @ w
        return tf.reduce_sum(x)

    x = tf.random.normal([size, size])
    float(chained(x))  # compile
    best = 0.0
    for _ in range(rounds):
        began = time.perf_counter()
        float(chained(x))
        best = max(best, 2 * size**3 * chain / (time.perf_counter() - began) / 1e9)
    return best


def step_flop(train_steps: tf.types.experimental.Function) -> int:
    """Floating-point operations of one step's matmuls, read from the compiled step's optimized HLO.

    XLA drops what the step does not need (the discriminator's weight gradients in the generator's half, the
    gradient with respect to each network's input), so this is the work actually done.
    """
    hlo = train_steps.experimental_get_compiler_ir(tf.constant(1))(stage="optimized_hlo")
    shapes = {
        match[1]: [int(d) for d in match[2].split(",") if d]
        for match in re.finditer(r"%([\w.\-]+) = \w+\[([\d,]*)\]", hlo)
    }
    total = 0
    for line in hlo.splitlines():
        dot = re.search(r"= f32\[([\d,]*)\]\S* dot\(%([\w.\-]+), ", line)
        if dot:
            out = [int(d) for d in dot[1].split(",") if d]
            lhs = shapes[dot[2]]
            contracted = [int(d) for d in re.search(r"lhs_contracting_dims=\{([\d,]*)\}", line)[1].split(",")]
            total += 2 * int(np.prod(out)) * int(np.prod([lhs[d] for d in contracted]))
    return total


def interleaved(loops: dict[str, tuple[Callable[[int], None], int]], rounds: int) -> dict[str, list[float]]:
    """Steps/s of each loop in each round; the loops take turns so that a busy machine slows them alike."""
    for run, steps in loops.values():
        run(min(steps, STEPS_PER_CALL))  # compile, warm up
    rates: dict[str, list[float]] = {name: [] for name in loops}
    for _ in range(rounds):
        for name, (run, steps) in loops.items():
            began = time.perf_counter()
            run(steps)
            rates[name].append(steps / (time.perf_counter() - began))
    return rates


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data", type=Path, default=Path(__file__).parents[1] / "tests/data/mnist_small.npz")
    parser.add_argument("--job-steps", type=int, default=1000, help="steps of each compiled loop per round")
    parser.add_argument("--tutorial-steps", type=int, default=60, help="steps of the tutorial loop per round")
    parser.add_argument("--rounds", type=int, default=7)
    args = parser.parse_args()
    make_deterministic()  # as the job does
    images = training_images(load_data(args.data), -1)  # uint8, as the job keeps them
    scaled = to_unit_range(images)  # in [-1, 1], as the tutorial and the minimal loop keep them

    seed_run, seed_steps = job_loop(images, "seed")
    default_run, _ = job_loop(images, "default")
    loops = {
        "tutorial": (tutorial_loop(scaled), args.tutorial_steps),
        "job_seed": (seed_run, args.job_steps),
        "job_default": (default_run, args.job_steps),
        "minimal_xla": (minimal_loop(scaled), args.job_steps),
    }
    rates = interleaved(loops, args.rounds)
    best = {name: max(values) for name, values in rates.items()}
    peak = matmul_gflops()
    flop = step_flop(seed_steps)
    share = flop * best["job_seed"] / 1e9 / peak

    print(f"tutorial loop (predict + 2 train_on_batch):    {best['tutorial']:8.1f} steps/s")
    print(f"job loop, tutorial math (--preset seed):       {best['job_seed']:8.1f} steps/s")
    print(f"job loop, default preset (moving average):     {best['job_default']:8.1f} steps/s")
    print(f"minimal XLA loop, same math, {STEPS_PER_CALL} steps a call:  {best['minimal_xla']:8.1f} steps/s")
    print(f"float32 XLA matmul peak:                       {peak:8.1f} GFLOP/s")
    print(
        f"one step: {flop / 1e9:.3f} GFLOP of matmuls; the job's seed loop does {flop * best['job_seed'] / 1e9:.1f} "
        f"GFLOP/s, {share:.0%} of the peak"
    )
    figures = {f"{name}_steps_per_s": round(value, 1) for name, value in best.items()}
    figures |= {f"{name}_median_steps_per_s": round(statistics.median(v), 1) for name, v in rates.items()}
    figures |= {
        "job_over_tutorial": round(best["job_seed"] / best["tutorial"], 2),
        "job_over_minimal": round(best["job_seed"] / best["minimal_xla"], 3),
        "default_over_seed": round(best["job_default"] / best["job_seed"], 3),
        "matmul_peak_gflops": round(peak, 1),
        "step_gflop": round(flop / 1e9, 4),
        "job_gflops": round(flop * best["job_seed"] / 1e9, 1),
        "job_share_of_peak": round(share, 3),
        "images": len(images),
        "rounds": args.rounds,
        "load_average": round(os.getloadavg()[0], 1),
    }
    print(json.dumps(figures))


if __name__ == "__main__":
    main()
