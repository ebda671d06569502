"""The tutorial's two MLPs, as plain keras.Sequential blocks."""

from __future__ import annotations

import keras
from keras import layers

IMAGE_SHAPE = (28, 28, 1)


def build_generator(latent_dim: int = 100) -> keras.Sequential:
    """Latent vector -> 28x28x1 image in [-1, 1]: Dense 128-256-512-1024, each with LeakyReLU and BatchNorm."""
    blocks = []
    for units in (128, 256, 512, 1024):
        blocks += [layers.Dense(units), layers.LeakyReLU(negative_slope=0.2), layers.BatchNormalization(momentum=0.8)]
    return keras.Sequential(
        [
            keras.Input(shape=(latent_dim,), name="z"),
            *blocks,
            layers.Dense(28 * 28 * 1, activation="tanh"),
            layers.Reshape(IMAGE_SHAPE),
        ],
        name="generator",
    )


def build_discriminator() -> keras.Sequential:
    """28x28x1 image -> probability that it is real: Dense 784-392 with LeakyReLU, then a sigmoid unit."""
    return keras.Sequential(
        [
            keras.Input(shape=IMAGE_SHAPE, name="image"),
            layers.Flatten(),
            layers.Dense(784),
            layers.LeakyReLU(negative_slope=0.2),
            layers.Dense(392),
            layers.LeakyReLU(negative_slope=0.2),
            layers.Dense(1, activation="sigmoid"),
        ],
        name="discriminator",
    )
