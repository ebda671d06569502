"""The models are the tutorial's, parameter for parameter."""

import numpy as np

from job.models import build_discriminator, build_generator
from tests.conftest import MNIST


def trainable(model) -> int:
    return sum(int(np.prod(v.shape)) for v in model.trainable_weights)


def test_generator_has_the_tutorials_parameter_counts():
    generator = build_generator("mlp", 100, MNIST[0])
    # Dense 100-128-256-512-1024-784 plus four BatchNorms (gamma, beta trainable; moving mean, variance not).
    assert generator.count_params() == 1_514_128
    assert trainable(generator) == 1_510_288


def test_discriminator_has_the_tutorials_parameter_counts():
    discriminator = build_discriminator("mlp", MNIST[0])
    assert discriminator.count_params() == 923_553  # Dense 784-784-392-1
    assert trainable(discriminator) == 923_553


def test_generator_maps_latents_to_images_in_minus_one_to_one():
    images = build_generator("mlp", 100, MNIST[0])(
        np.random.default_rng(0).normal(size=(5, 100)).astype("float32")
    ).numpy()
    assert images.shape == (5, 28, 28, 1)
    assert images.min() >= -1 and images.max() <= 1


def test_discriminator_outputs_one_probability_per_image():
    out = build_discriminator("mlp", MNIST[0])(np.zeros((3, 28, 28, 1), "float32")).numpy()
    assert out.shape == (3, 1)
    assert ((out > 0) & (out < 1)).all()


def test_layer_recipe_is_dense_leakyrelu_batchnorm():
    generator = build_generator("mlp", 100, MNIST[0])
    kinds = [type(layer).__name__ for layer in generator.layers]
    assert kinds == ["Dense", "LeakyReLU", "BatchNormalization"] * 4 + ["Dense", "Reshape"]
    assert all(layer.momentum == 0.8 for layer in generator.layers if hasattr(layer, "momentum"))
    assert all(layer.negative_slope == 0.2 for layer in generator.layers if hasattr(layer, "negative_slope"))
    assert generator.layers[-2].activation.__name__ == "tanh"
    assert build_discriminator("mlp", MNIST[0]).layers[-1].activation.__name__ == "sigmoid"
