"""The networks, sized from the data's image shape: the tutorial's two MLPs (`mlp`) or a DCGAN (`dcgan`).

Conditional variants take the class label too: the generator concatenates a learned embedding of it to the latent
vector; the discriminator is a projection discriminator (Miyato & Koyama 2018): its logit is a function of the
image's features plus their dot product with the label's embedding, so every judgement is "is this a real image OF
THIS CLASS". `num_classes` 0 builds the unconditional networks.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Callable
from dataclasses import dataclass

import keras
from keras import layers

from job.config import ARCH_SETTINGS, ArchitectureSettings
from job.data.memory import FLOAT

LABEL_EMBEDDING = 50  # size of the learned vector each class label becomes in conditional generators
DRAWN_CLUSTER = "drawn_cluster"  # the layer of a self-conditioned sampler that draws the cluster (DrawnCluster)
Shape = tuple[int, int, int]  # height, width, channels


@dataclass(frozen=True)
class Architecture:
    """How to build one architecture's networks, and how its training step must treat them."""

    # (input size, image shape, settings, name) -> images in [-1, 1]
    generator_body: Callable[..., keras.Model]
    # (image shape, conditional, settings) -> the layers of the features the discriminator's logit is made from
    discriminator_features: Callable[[Shape, bool, ArchitectureSettings], list[layers.Layer]]
    # The discriminator's fakes: the tutorial draws them in inference mode (generator.predict). With convolutions and
    # BatchNorm's moving statistics lagging, those fakes are unlike the ones the generator learns from: draw them in
    # training mode (batch statistics) instead.
    fakes_in_training_mode: bool
    # Compile the step with XLA: on a CPU it speeds up the MLP's step and slows the DCGAN's many times over
    # (docs/decisions/dcgan-without-xla.md).
    jit_compile: bool
    # The widths, dropout, label ramp, learning rates' fall, self-conditioning and moving average's cadence: data that
    # a run's config.json records (job/config.py). By default this version's; a resumed run's are the ones it records.
    settings: ArchitectureSettings

    @property
    def conditioning_ramp(self) -> int:
        return self.settings.conditioning_ramp

    @property
    def decay_from(self) -> float:
        return self.settings.decay_from

    @property
    def self_conditioning(self) -> int:
        return self.settings.self_conditioning

    @property
    def ema_every(self) -> int:
        return self.settings.ema_every

    def with_settings(self, settings: ArchitectureSettings | None) -> Architecture:
        """This architecture built to `settings` (None: its own)."""
        return self if settings is None else dataclasses.replace(self, settings=settings)


def build_generator(
    arch: str, latent_dim: int, image_shape: Shape, num_classes: int = 0, settings: ArchitectureSettings | None = None
) -> keras.Model:
    """Latent vector (and class label) -> an image of `image_shape` in [-1, 1], to `settings` (by default this
    version's)."""
    architecture = ARCHITECTURES[arch].with_settings(settings)
    settings = architecture.settings
    if not num_classes:
        return architecture.generator_body(latent_dim, image_shape, settings, name="generator")
    z = keras.Input(shape=(latent_dim,), name="z")
    label = keras.Input(shape=(), dtype="int32", name="label")
    embedded = layers.Embedding(num_classes, LABEL_EMBEDDING, name="label_embedding")(label)
    if architecture.conditioning_ramp:
        embedded = Conditioning(name="label_conditioning")(embedded)
    images = architecture.generator_body(latent_dim + LABEL_EMBEDDING, image_shape, settings, name=f"generator_{arch}")(
        layers.Concatenate()([z, embedded])
    )
    return keras.Model([z, label], images, name="generator")


def build_discriminator(
    arch: str, image_shape: Shape, num_classes: int = 0, settings: ArchitectureSettings | None = None
) -> keras.Model:
    """An image (and class label) -> probability that it is real, to `settings` (by default this version's)."""
    architecture = ARCHITECTURES[arch].with_settings(settings)
    feature_layers = architecture.discriminator_features(image_shape, num_classes > 0, architecture.settings)
    if not num_classes:
        return keras.Sequential(
            [
                keras.Input(shape=image_shape, name="image"),
                *feature_layers,
                _normalised_like(feature_layers, layers.Dense(1, activation="sigmoid")),
            ],
            name="discriminator",
        )
    image = keras.Input(shape=image_shape, name="image")
    label = keras.Input(shape=(), dtype="int32", name="label")
    features = image
    for layer in feature_layers:
        features = layer(features)
    width = features.shape[-1]
    # The label's projection is never spectrally normalised: so bounded, it is too weak to matter and the generator
    # ignores the label (docs/decisions/spectral-normalisation.md).
    projection = layers.Dot(axes=1)([layers.Embedding(num_classes, width, name="label_projection")(label), features])
    if architecture.conditioning_ramp:
        projection = Conditioning(name="label_conditioning")(projection)
    logit = layers.Add()([_normalised_like(feature_layers, layers.Dense(1))(features), projection])
    return keras.Model([image, label], layers.Activation("sigmoid")(logit), name="discriminator")


@keras.saving.register_keras_serializable(package="gan_job")
class Conditioning(layers.Layer):
    """The label's part of a conditional network, times a strength the training step raises from 0 to 1 over the
    architecture's `conditioning_ramp` steps: the networks start unconditional and the label comes in gradually.

    Shahbazi et al. 2022 ("Collapse by Conditioning"): class-conditional GANs collapse on small data sets where
    unconditional ones do not, and this transition prevents it (docs/decisions/label-ramp.md)."""

    def build(self, input_shape) -> None:
        self.strength = self.add_weight(shape=(), initializer="zeros", trainable=False, name="strength")

    def call(self, inputs):
        return inputs * self.strength


def build_self_conditioned_sampler(generator: keras.Model, clusters: int) -> keras.Model:
    """A conditional `generator` of `clusters` classes as an unconditional one: latent vector -> image, the cluster
    drawn from the latent vector (DrawnCluster)."""
    z = keras.Input(shape=generator.inputs[0].shape[1:], name="z")
    cluster = DrawnCluster(clusters, name=DRAWN_CLUSTER)(z)
    return keras.Model(z, generator([z, cluster]), name="generator")


@keras.saving.register_keras_serializable(package="gan_job")
class DrawnCluster(layers.Layer):
    """The cluster a self-conditioned generator draws for a latent vector z, each cluster with its share of the
    training images (the `shares` weight, set when the images are clustered).

    In training the cluster is drawn apart from z; here it must come from z (the exported model takes z alone), yet
    depend on it as little as can be: the fractional part of 1000 times z's first entry, uniform in [0, 1) for a
    normal z (the density hardly changes within a thousandth) whatever the entry's size, so that each cluster sees
    the entry over its whole range, as in training. Only a product and a floor: Keras and onnxruntime draw the same
    cluster to the bit (a transcendental function such as the normal CDF may differ by an ulp between them, and
    near a share's bound that is another cluster, another image)."""

    def __init__(self, clusters: int, **kwargs) -> None:
        super().__init__(**kwargs)
        self.clusters = clusters

    def build(self, input_shape) -> None:
        self.shares = self.add_weight(shape=(self.clusters,), initializer="ones", trainable=False, name="shares")

    def call(self, z):
        spread = 1000.0 * z[:, 0]
        fraction = spread - keras.ops.floor(spread)
        bounds = keras.ops.cumsum(self.shares / keras.ops.sum(self.shares))[:-1]
        # The number of cumulative shares below the fraction: the cluster whose share holds it (no argmax, whose
        # Keras form exports to an ONNX op that does not exist).
        below = keras.ops.cast(fraction[:, None] >= bounds[None, :], "int32")
        return keras.ops.sum(below, axis=1)

    def compute_output_shape(self, input_shape):
        return (input_shape[0],)

    def get_config(self) -> dict:
        return super().get_config() | {"clusters": self.clusters}


def conditioning_strength(steps_done, ramp: int):
    """The label's strength in the step that follows `steps_done` steps (a number or a tensor): from 0 in the first
    to 1 after `ramp` steps."""
    return keras.ops.minimum(1.0, keras.ops.cast(steps_done, "float32") / ramp)


def conditioning_layers(model: keras.Model) -> list[Conditioning]:
    return [layer for layer in model.layers if isinstance(layer, Conditioning)]


def _normalised_like(feature_layers: list[layers.Layer], layer: layers.Layer) -> layers.Layer:
    """`layer`, spectrally normalised where the discriminator's feature layers are."""
    if any(isinstance(feature, layers.SpectralNormalization) for feature in feature_layers):
        return layers.SpectralNormalization(layer)
    return layer


def _mlp_generator(input_dim: int, image_shape: Shape, settings: ArchitectureSettings, name: str) -> keras.Sequential:
    """Dense layers of the settings' widths (the tutorial's 128-256-512-1024), each with LeakyReLU(0.2) and
    BatchNorm(momentum 0.8), then Dense H*W*C tanh (the same whether conditional or not)."""
    blocks = []
    for units in settings.widths:
        blocks += [layers.Dense(units), layers.LeakyReLU(negative_slope=0.2), layers.BatchNormalization(momentum=0.8)]
    return keras.Sequential(
        [
            keras.Input(shape=(input_dim,), name="z"),
            *blocks,
            layers.Dense(math.prod(image_shape), activation="tanh"),
            layers.Reshape(image_shape),
        ],
        name=name,
    )


def _mlp_discriminator_features(
    image_shape: Shape, conditional: bool, settings: ArchitectureSettings
) -> list[layers.Layer]:
    """Flatten, then Dense H*W*C and H*W*C/2 with LeakyReLU(0.2), as the tutorial's CAPACITY (784-392 for MNIST),
    each followed by the settings' dropout where there is one (the tutorial has none)."""
    capacity = math.prod(image_shape)
    features: list[layers.Layer] = [layers.Flatten()]
    for units in (capacity, capacity // 2):
        features += [layers.Dense(units), layers.LeakyReLU(negative_slope=0.2), *_dropout(settings)]
    return features


def _dropout(settings: ArchitectureSettings) -> list[layers.Layer]:
    return [layers.Dropout(settings.dropout)] if settings.dropout else []


def upsamplings(image_shape: Shape) -> int:
    """How many times the DCGAN doubles its feature maps: from about 4 to 8 pixels on the shorter side (28 -> 7x7
    and 2 doublings, 32 -> 4x4 and 3), at least once and at most 4 times."""
    return min(4, max(1, int(math.log2(min(image_shape[:2]) / 4))))


def _dcgan_filters(level: int, settings: ArchitectureSettings) -> int:
    """Filters of the DCGAN generator's feature maps `level` doublings from the smallest: the settings' widest,
    halved at each doubling, but never fewer than their narrowest."""
    widest, narrowest = settings.widths
    return max(narrowest, widest // 2**level)


def _dcgan_generator(input_dim: int, image_shape: Shape, settings: ArchitectureSettings, name: str) -> keras.Sequential:
    """Dense -> a small feature map -> strided transposed convolutions (BatchNorm, LeakyReLU), each doubling its
    size -> a 3x3 convolution to the image's channels, tanh; cropped to the image where the doublings overshoot."""
    height, width, channels = image_shape
    doublings = upsamplings(image_shape)
    base = (math.ceil(height / 2**doublings), math.ceil(width / 2**doublings))
    blocks = [
        layers.Dense(base[0] * base[1] * _dcgan_filters(0, settings), use_bias=False),
        layers.BatchNormalization(momentum=0.9),
        layers.LeakyReLU(negative_slope=0.2),
        layers.Reshape((*base, _dcgan_filters(0, settings))),
    ]
    for level in range(1, doublings + 1):
        blocks += [
            layers.Conv2DTranspose(_dcgan_filters(level, settings), 4, strides=2, padding="same", use_bias=False),
            layers.BatchNormalization(momentum=0.9),
            layers.LeakyReLU(negative_slope=0.2),
        ]
    blocks.append(layers.Conv2D(channels, 3, padding="same", activation="tanh"))
    overshoot = (base[0] * 2**doublings - height, base[1] * 2**doublings - width)
    if any(overshoot):
        blocks.append(layers.Cropping2D(((0, overshoot[0]), (0, overshoot[1]))))
    return keras.Sequential([keras.Input(shape=(input_dim,), name="z"), *blocks], name=name)


def _dcgan_discriminator_features(
    image_shape: Shape, conditional: bool, settings: ArchitectureSettings
) -> list[layers.Layer]:
    """Strided 4x4 convolutions with LeakyReLU(0.2) and dropout, halving the image as often as the generator doubles
    it (the generator's widths in reverse, at least twice its narrowest), then flattened. The dropout is active in
    the discriminator's own step only (the generator's step calls it in inference mode).

    Conditional, the convolutions (and the logit's layer after them) are spectrally normalised (Miyato et al. 2018):
    divided by their largest singular value at each of the discriminator's steps, which bounds how sharply it tells
    images apart. Without it a class's samples collapse to one stroke; unconditional, it makes the images worse
    (docs/decisions/spectral-normalisation.md)."""
    convolutions = []
    for level in range(upsamplings(image_shape)):
        filters = _dcgan_filters(upsamplings(image_shape) - level, settings)
        convolution = layers.Conv2D(max(2 * settings.widths[-1], filters), 4, strides=2, padding="same")
        convolutions += [
            layers.SpectralNormalization(convolution) if conditional else convolution,
            layers.LeakyReLU(negative_slope=0.2),
            *_dropout(settings),
        ]
    return [*convolutions, layers.Flatten()]


ARCHITECTURES: dict[str, Architecture] = {
    "mlp": Architecture(
        _mlp_generator,
        _mlp_discriminator_features,
        fakes_in_training_mode=False,
        jit_compile=True,
        settings=ARCH_SETTINGS["mlp"],
    ),
    "dcgan": Architecture(
        _dcgan_generator,
        _dcgan_discriminator_features,
        fakes_in_training_mode=True,
        jit_compile=False,
        settings=ARCH_SETTINGS["dcgan"],
    ),
}


def training_bytes(generator: keras.Model, discriminator: keras.Model, batch: int) -> dict[str, int]:
    """What training the two networks holds in memory, in bytes: their variables with a gradient and two Adam slots
    each (and the generator's moving average), and a batch's layer outputs (forward, gradient, and a spare)."""
    variables = generator.count_params() * 5 + discriminator.count_params() * 4
    activations = (layer_outputs(generator) + layer_outputs(discriminator)) * batch * 3
    return {"variables": variables * FLOAT, "activations": activations * FLOAT}


def layer_outputs(model: keras.Model) -> int:
    """Values of one image's layer outputs through `model` (nested models included)."""
    total = 0
    for layer in model.layers:
        if isinstance(layer, keras.Model):
            total += layer_outputs(layer)
        elif not isinstance(layer, keras.layers.InputLayer):
            total += sum(math.prod(output.shape[1:]) for output in keras.tree.flatten(layer.output))
    return total
