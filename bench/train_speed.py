"""Steps per second of the job's compiled loop against the tutorial's loop, side by side in one run.

The tutorial's loop, per step: generator.predict() on 16 latents, discriminator.train_on_batch() on 16 real +
16 generated images, then combined.train_on_batch() on 32 latents labelled real. The job's loop runs the same
math as one XLA-compiled call of many steps. Both train on the same images; each is warmed up (compiled) first.

    python bench/train_speed.py --data ../shared/data/mnist.npz

Last line: one JSON object with the steps/s of each and their ratio.
"""

from __future__ import annotations

import argparse
import json
import os
import time
from pathlib import Path

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import keras  # noqa: E402
import numpy as np  # noqa: E402

from job.config import TrainConfig  # noqa: E402
from job.data import load_mnist, training_images  # noqa: E402
from job.gan import TrainStep, build_gan  # noqa: E402
from job.models import build_discriminator, build_generator  # noqa: E402


def job_steps_per_s(images: np.ndarray, steps: int, jit_compile: bool) -> float:
    train_steps = TrainStep(build_gan(TrainConfig(out=Path("unused"), preset="seed")), images, 32).compiled(jit_compile)
    train_steps(np.int32(10))  # compile
    chunk = 500
    began = time.perf_counter()
    for _ in range(steps // chunk):
        {name: float(value) for name, value in train_steps(np.int32(chunk)).items()}  # wait for the results
    return (steps // chunk) * chunk / (time.perf_counter() - began)


def tutorial_steps_per_s(images: np.ndarray, steps: int) -> float:
    generator, discriminator = build_generator(100), build_discriminator()
    discriminator.compile(loss="binary_crossentropy", optimizer=keras.optimizers.Adam(2e-4))
    discriminator.trainable = False
    combined = keras.Sequential([generator, discriminator])
    combined.compile(loss="binary_crossentropy", optimizer=keras.optimizers.Adam(2e-4))
    rng = np.random.default_rng(0)
    labels = np.concatenate([np.ones((16, 1)), np.zeros((16, 1))]).astype("float32")

    def step() -> None:
        fake = generator.predict(rng.normal(size=(16, 100)).astype("float32"), verbose=0)
        real = images[rng.integers(0, len(images), 16)]
        discriminator.train_on_batch(np.concatenate([real, fake]), labels)
        combined.train_on_batch(rng.normal(size=(32, 100)).astype("float32"), np.ones((32, 1), "float32"))

    for _ in range(5):  # compile
        step()
    began = time.perf_counter()
    for _ in range(steps):
        step()
    return steps / (time.perf_counter() - began)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data", type=Path, default=Path(__file__).parents[1] / "tests/data/mnist_small.npz")
    parser.add_argument("--job-steps", type=int, default=5000)
    parser.add_argument("--tutorial-steps", type=int, default=300)
    args = parser.parse_args()
    images = training_images(load_mnist(args.data), -1)

    tutorial = tutorial_steps_per_s(images, args.tutorial_steps)
    job = job_steps_per_s(images, args.job_steps, jit_compile=True)
    job_no_xla = job_steps_per_s(images, args.job_steps, jit_compile=False)
    print(f"tutorial loop (predict + 2 train_on_batch): {tutorial:8.1f} steps/s")
    print(f"job loop, tf.function without XLA:          {job_no_xla:8.1f} steps/s")
    print(f"job loop, tf.function with XLA:             {job:8.1f} steps/s")
    figures = {
        "tutorial_steps_per_s": round(tutorial, 1),
        "job_steps_per_s": round(job, 1),
        "job_no_xla_steps_per_s": round(job_no_xla, 1),
        "ratio": round(job / tutorial, 2),
        "xla_ratio": round(job / job_no_xla, 2),
        "images": len(images),
    }
    print(json.dumps(figures))


if __name__ == "__main__":
    main()
