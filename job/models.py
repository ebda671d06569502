"""The tutorial's two MLPs, as plain keras.Sequential blocks; conditional variants put the digit label in front."""

from __future__ import annotations

import math

import keras
from keras import layers

from serving.model import IMAGE_SHAPE, NUM_CLASSES

LABEL_EMBEDDING = 50  # size of the learned vector each digit label becomes in conditional models


def build_generator(latent_dim: int = 100, conditional: bool = False) -> keras.Model:
    """Latent vector (and digit label) -> an IMAGE_SHAPE image in [-1, 1]."""
    if not conditional:
        return _generator_mlp(latent_dim, name="generator")
    z = keras.Input(shape=(latent_dim,), name="z")
    label = keras.Input(shape=(), dtype="int32", name="label")
    inputs = layers.Concatenate()([z, layers.Embedding(NUM_CLASSES, LABEL_EMBEDDING, name="label_embedding")(label)])
    images = _generator_mlp(latent_dim + LABEL_EMBEDDING, name="generator_mlp")(inputs)
    return keras.Model([z, label], images, name="generator")


def build_discriminator(conditional: bool = False) -> keras.Model:
    """An IMAGE_SHAPE image (and digit label) -> probability that it is real."""
    if not conditional:
        return keras.Sequential(
            [keras.Input(shape=IMAGE_SHAPE, name="image"), layers.Flatten(), *_discriminator_layers()],
            name="discriminator",
        )
    # A projection discriminator (Miyato & Koyama 2018): the logit is a function of the image's features plus
    # their dot product with the label's embedding, so every judgement is "is this a real image OF THIS DIGIT".
    image = keras.Input(shape=IMAGE_SHAPE, name="image")
    label = keras.Input(shape=(), dtype="int32", name="label")
    features = layers.Flatten()(image)
    for layer in _discriminator_layers()[:-1]:
        features = layer(features)
    projection = layers.Dot(axes=1)([layers.Embedding(NUM_CLASSES, 392, name="label_projection")(label), features])
    logit = layers.Add()([layers.Dense(1)(features), projection])
    return keras.Model([image, label], layers.Activation("sigmoid")(logit), name="discriminator")


def _generator_mlp(input_dim: int, name: str) -> keras.Sequential:
    """Dense 128-256-512-1024, each with LeakyReLU(0.2) and BatchNorm(momentum 0.8), then Dense 784 tanh."""
    blocks = []
    for units in (128, 256, 512, 1024):
        blocks += [layers.Dense(units), layers.LeakyReLU(negative_slope=0.2), layers.BatchNormalization(momentum=0.8)]
    return keras.Sequential(
        [
            keras.Input(shape=(input_dim,), name="z"),
            *blocks,
            layers.Dense(math.prod(IMAGE_SHAPE), activation="tanh"),
            layers.Reshape(IMAGE_SHAPE),
        ],
        name=name,
    )


def _discriminator_layers() -> list[layers.Layer]:
    """Dense 784-392 with LeakyReLU(0.2), then a sigmoid unit (conditional models project instead)."""
    return [
        layers.Dense(784),
        layers.LeakyReLU(negative_slope=0.2),
        layers.Dense(392),
        layers.LeakyReLU(negative_slope=0.2),
        layers.Dense(1, activation="sigmoid"),
    ]
