"""Where the DCGAN's training step spends its time, and what makes it faster, side by side in one run.

First a profile: TensorFlow's profiler traces 100 steps of the job's compiled DCGAN step as the job runs it (no XLA,
oneDNN on, self-conditioned on up to 30 clusters) on MNIST's 28x28 images, and the trace's op time is summed by op
type and by layer. Then each variant's steps/s, every variant a fresh process, the variants taking turns in rounds
so that other programs on the machine slow them alike; each is reported by its best round:

- `job`: the step as the job runs it;
- `no_onednn`: TF_ENABLE_ONEDNN_OPTS=0, TensorFlow's own kernels;
- `bf16`: Keras' mixed_bfloat16 policy (bfloat16 compute, float32 variables), the generator's images cast back;
- `half_widths`: the generator's feature maps at half their filters (128-64-32) and the discriminator's at 64-64;
- `bf16_half_widths`: both.

Speed only: a variant that changes the networks or their precision must still be measured for quality
(bench/quality.py) before the job takes it.

    python bench/dcgan_speed.py --data mnist.npz [--rounds 3]

Last line: one JSON object with the profile's shares and each variant's steps/s and speed-up over `job`.
"""

from __future__ import annotations

import argparse
import collections
import glob
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

VARIANTS = ["job", "no_onednn", "bf16", "half_widths", "bf16_half_widths"]
STEPS = 60  # per timed call, as the job's calls of about two seconds
CALLS = 4  # timed calls per process; the best counts


def build(variant: str, data: str):
    """The job's compiled DCGAN step under `variant`; TensorFlow is imported here, after the variant's environment."""
    import dataclasses

    import keras
    import numpy as np
    import tensorflow as tf

    from job import config as job_config
    from job.config import TrainConfig
    from job.data.load import load_data, training_images
    from job.networks import gan as gan_module
    from job.networks.clusters import cluster_count

    if "bf16" in variant:
        keras.mixed_precision.set_global_policy("mixed_bfloat16")
        drawn = gan_module.call_generator
        gan_module.call_generator = lambda *args, **kwargs: tf.cast(drawn(*args, **kwargs), tf.float32)
    if "half_widths" in variant:
        settings = job_config.ARCH_SETTINGS["dcgan"]
        job_config.ARCH_SETTINGS["dcgan"] = dataclasses.replace(settings, widths=(128, 32))
    gan_module.make_deterministic()  # as the job does
    images = training_images(load_data(data), -1)
    config = TrainConfig(out=Path("unused"), arch="dcgan")
    # Self-conditioned, as the job trains MNIST: the networks learn as a conditional pair on the images' clusters
    # (random ones here: the speed does not depend on which).
    clusters = cluster_count(len(images), config.architecture.self_conditioning)
    labels = np.random.default_rng(0).integers(0, clusters, len(images)) if clusters else None
    gan = gan_module.build_gan(config, images.shape[1:], 0, clusters)
    if clusters:
        gan.set_cluster_shares(labels)
    return gan_module.TrainStep(gan, images, config.batch, labels).compiled(), tf


def speed(variant: str, data: str) -> float:
    """This process's best steps/s under `variant`."""
    train_steps, tf = build(variant, data)
    float(train_steps(tf.constant(20))["d_loss"])  # traces the step
    best = 0.0
    for _ in range(CALLS):
        began = time.perf_counter()
        float(train_steps(tf.constant(STEPS))["d_loss"])
        best = max(best, STEPS / (time.perf_counter() - began))
    return best


def profile(data: str) -> dict:
    """Shares of the traced op time, by op type and by layer, in 100 steps of the job's step."""
    from tensorflow.tsl.profiler.protobuf import xplane_pb2

    train_steps, tf = build("job", data)
    float(train_steps(tf.constant(20))["d_loss"])
    with tempfile.TemporaryDirectory() as logdir:
        tf.profiler.experimental.start(logdir)
        float(train_steps(tf.constant(100))["d_loss"])
        tf.profiler.experimental.stop()
        space = xplane_pb2.XSpace()
        space.ParseFromString(Path(sorted(glob.glob(f"{logdir}/**/*.xplane.pb", recursive=True))[-1]).read_bytes())
    by_type, by_layer = collections.Counter(), collections.Counter()
    for plane in space.planes:
        names = {key: value.name for key, value in plane.event_metadata.items()}
        for line in plane.lines:
            for event in line.events:
                name = names[event.metadata_id]
                if ":" not in name or not name.startswith("while/"):  # ops of the step, "<node>:<op type>"
                    continue
                node, op_type = name.rsplit(":", 1)
                seconds = event.duration_ps / 1e12
                by_type[op_type] += seconds
                by_layer[_layer_of(node)] += seconds
    total = sum(by_type.values())
    return {
        "op_types": {name: round(seconds / total, 3) for name, seconds in by_type.most_common(12)},
        "layers": {name: round(seconds / total, 3) for name, seconds in by_layer.most_common(12)},
    }


def _layer_of(node: str) -> str:
    """The network and layer a traced op belongs to ("generator_3/conv2d_transpose_1"), forward or backward."""
    parts = node.split("/")
    for index, part in enumerate(parts):
        if part.startswith(("generator", "discriminator")) and index + 1 < len(parts):
            return f"{part}/{parts[index + 1]}"
    return "other (optimizers, moving average, losses)"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data", default=str(Path(__file__).parents[1] / "tests/data/mnist_small.npz"))
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--variant", help=argparse.SUPPRESS)  # one variant's process
    parser.add_argument("--profile", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.variant:
        print(json.dumps({"steps_per_s": speed(args.variant, args.data)}))
        return
    if args.profile:
        print(json.dumps(profile(args.data)))
        return

    def child(*options: str, environment: dict | None = None) -> dict:
        command = [sys.executable, __file__, "--data", args.data, *options]
        env = os.environ | {"TF_CPP_MIN_LOG_LEVEL": "2"} | (environment or {})
        result = subprocess.run(command, capture_output=True, text=True, env=env, check=True)
        return json.loads(result.stdout.strip().splitlines()[-1])

    shares = child("--profile")
    for kind in ("op_types", "layers"):
        print(f"share of the step's op time by {kind.replace('_', ' ')}:")
        for name, share in shares[kind].items():
            print(f"  {share:6.1%}  {name}")
    rates: dict[str, list[float]] = {variant: [] for variant in VARIANTS}
    for _ in range(args.rounds):
        for variant in VARIANTS:
            environment = {"TF_ENABLE_ONEDNN_OPTS": "0"} if variant == "no_onednn" else {}
            rates[variant].append(child("--variant", variant, environment=environment)["steps_per_s"])
    best = {variant: max(values) for variant, values in rates.items()}
    for variant, value in best.items():
        print(f"{variant:18s} {value:6.1f} steps/s  {value / best['job']:.2f}x")
    figures = {"profile": shares, "steps_per_s": {v: round(r, 2) for v, r in best.items()}}
    figures["speedup_over_job"] = {v: round(r / best["job"], 2) for v, r in best.items()}
    figures |= {"rounds": args.rounds, "load_average": round(os.getloadavg()[0], 1)}
    print(json.dumps(figures))


if __name__ == "__main__":
    main()
