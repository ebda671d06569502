"""The explicit training step: each half updates its own network and nothing else."""

from pathlib import Path

import numpy as np
import pytest

from job.config import TrainConfig
from job.data import load_mnist, training_images
from job.gan import TrainStep, build_gan


def snapshot(model) -> list[np.ndarray]:
    return [v.numpy().copy() for v in model.weights]


def same(a, b) -> bool:
    return all(np.array_equal(x, y) for x, y in zip(a, b, strict=True))


@pytest.fixture
def step(small_mnist):
    config = TrainConfig(out=Path("unused"), seed=1)
    gan = build_gan(config)
    return TrainStep(gan, training_images(load_mnist(small_mnist), -1), config.batch)


def test_discriminator_step_changes_the_discriminator_only(step):
    d_before, g_before = snapshot(step.gan.discriminator), snapshot(step.gan.generator)
    step.discriminator_step()
    assert not same(snapshot(step.gan.discriminator), d_before)
    # The generator only drew fakes (inference mode): its weights and BatchNorm statistics are untouched.
    assert same(snapshot(step.gan.generator), g_before)


def test_generator_step_changes_the_generator_but_not_the_discriminator(step):
    d_before, g_before = snapshot(step.gan.discriminator), snapshot(step.gan.generator)
    step.generator_step()
    assert same(snapshot(step.gan.discriminator), d_before)
    assert not same(snapshot(step.gan.generator), g_before)


def test_compiled_steps_count_steps_and_return_finite_means(step):
    means = {k: float(v) for k, v in step.compiled()(np.int32(5)).items()}
    assert int(step.gan.step.numpy()) == 5
    assert set(means) == {"d_loss", "g_loss", "d_accuracy"}
    assert all(np.isfinite(list(means.values())))
    assert 0 <= means["d_accuracy"] <= 1
