"""The models are the tutorial's, parameter for parameter."""

import keras
import numpy as np

from job.networks.models import build_discriminator, build_generator, conditioning_layers
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


def test_the_dcgan_on_mnist_has_the_widths_of_tensorflows_dcgan_tutorial():
    generator = build_generator("dcgan", 100, MNIST[0])
    widths = [getattr(layer, "units", None) or layer.filters for layer in generator.layers if hasattr(layer, "kernel")]
    assert widths == [7 * 7 * 256, 128, 64, 1]  # a 7x7 map of 256 channels, 14x14x128, 28x28x64, then the image
    assert generator(np.zeros((2, 100), "float32")).shape == (2, 28, 28, 1)
    discriminator = build_discriminator("dcgan", MNIST[0])
    kinds = [type(layer).__name__ for layer in discriminator.layers]
    assert kinds == ["Conv2D", "LeakyReLU", "Dropout"] * 2 + ["Flatten", "Dense"]
    assert [layer.filters for layer in discriminator.layers if hasattr(layer, "filters")] == [64, 128]
    assert all(layer.rate == 0.3 for layer in discriminator.layers if hasattr(layer, "rate"))


def test_only_the_conditional_dcgans_discriminator_is_spectrally_normalised_and_never_its_label_projection():
    # Without it each class collapsed to one image; unconditional, it made the images worse; on the label's
    # projection, the label was ignored (docs/decisions/projection-discriminator.md).
    def normalised(model) -> list[str]:
        return [
            type(layer.layer).__name__
            for layer in model.layers
            if isinstance(layer, keras.layers.SpectralNormalization)
        ]

    assert normalised(build_discriminator("dcgan", MNIST[0])) == []
    assert normalised(build_discriminator("mlp", MNIST[0], num_classes=10)) == []
    conditional = build_discriminator("dcgan", MNIST[0], num_classes=10)
    assert normalised(conditional) == ["Conv2D", "Conv2D", "Dense"]
    assert isinstance(conditional.get_layer("label_projection"), keras.layers.Embedding)


def test_the_conditional_dcgan_has_the_same_widths_and_dropout():
    generator = build_generator("dcgan", 100, MNIST[0], num_classes=10).get_layer("generator_dcgan")
    widths = [getattr(layer, "units", None) or layer.filters for layer in generator.layers if hasattr(layer, "kernel")]
    assert widths == [7 * 7 * 256, 128, 64, 1]
    discriminator = build_discriminator("dcgan", MNIST[0], num_classes=10)
    assert [layer.rate for layer in discriminator.layers if isinstance(layer, keras.layers.Dropout)] == [0.3, 0.3]
    convolutions = [
        layer.layer for layer in discriminator.layers if isinstance(layer, keras.layers.SpectralNormalization)
    ]
    assert [layer.filters for layer in convolutions if hasattr(layer, "filters")] == [64, 128]


def test_the_conditional_dcgan_starts_blind_to_the_label_and_the_conditional_mlp_does_not():
    # Conditional from the first step, the DCGAN drew each class of a small data set one way
    # (docs/decisions/label-ramp.md).
    generator = build_generator("dcgan", 100, MNIST[0], num_classes=10)
    discriminator = build_discriminator("dcgan", MNIST[0], num_classes=10)
    latents = np.random.default_rng(0).normal(size=(2, 100)).astype("float32")
    images = np.zeros((2, *MNIST[0]), "float32")

    def by_label(model, inputs, label: int) -> np.ndarray:
        return model([inputs, np.full(2, label, "int32")]).numpy()

    assert np.array_equal(by_label(generator, latents, 0), by_label(generator, latents, 7))
    assert np.array_equal(by_label(discriminator, images, 0), by_label(discriminator, images, 7))
    for model in (generator, discriminator):
        [conditioning] = conditioning_layers(model)
        conditioning.strength.assign(1.0)  # as the training step sets it at the end of its ramp
    assert not np.array_equal(by_label(generator, latents, 0), by_label(generator, latents, 7))
    assert conditioning_layers(build_generator("mlp", 100, MNIST[0], num_classes=10)) == []
    assert conditioning_layers(build_discriminator("mlp", MNIST[0], num_classes=10)) == []
