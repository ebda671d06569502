"""The GAN's full training state and its compiled training step (the tutorial's algorithm, made explicit)."""

from __future__ import annotations

import logging
from dataclasses import dataclass

import keras
import numpy as np
import tensorflow as tf

from job.config import SAMPLE_IMAGES, ArchitectureSettings, TrainConfig
from job.data.load import to_unit_range
from job.networks.models import (
    ARCHITECTURES,
    DRAWN_CLUSTER,
    Architecture,
    Shape,
    build_discriminator,
    build_generator,
    build_self_conditioned_sampler,
    conditioning_layers,
    conditioning_strength,
)
from serving.model import cycling_labels

log = logging.getLogger(__name__)


@dataclass
class Gan:
    """Everything a checkpoint must hold to resume bit for bit."""

    generator: keras.Model
    discriminator: keras.Model
    g_optimizer: keras.optimizers.Optimizer
    d_optimizer: keras.optimizers.Optimizer
    rng: tf.random.Generator  # all sampling in the training step; its state is checkpointed
    step: tf.Variable
    train_seconds: tf.Variable  # training time summed over every start of the run
    fixed_latents: tf.Variable  # the same grid of latents at every checkpoint, so samples compare over time
    architecture: Architecture
    num_classes: int = 0  # the labels the networks take: a conditional run's classes, or clusters; 0: none
    ema_decay: float = 0.0  # of the moving average of the generator's weights; 0: none
    ema_generator: keras.Model | None = None  # that moving average, when there is one
    # Self-conditioned runs (job/networks/clusters.py): the generator that draws the cluster from the latent vector
    # itself.
    cluster_sampler: keras.Model | None = None

    @property
    def conditional(self) -> bool:
        """The model draws the class it is asked for (a self-conditioned one is asked for none)."""
        return self.takes_labels and self.cluster_sampler is None

    @property
    def takes_labels(self) -> bool:
        """The networks learn from labels: the data's classes (conditional) or the images' clusters."""
        return self.num_classes > 0

    @property
    def clusters(self) -> int:
        """The clusters a self-conditioned model learnt its images as; 0 for the others."""
        return self.num_classes if self.cluster_sampler is not None else 0

    @property
    def sampler(self) -> keras.Model:
        """The generator that draws samples and is exported: the moving average when there is one, drawing its
        own cluster when self-conditioned."""
        return self.cluster_sampler or self.ema_generator or self.generator

    def set_cluster_shares(self, clusters: np.ndarray) -> None:
        """A self-conditioned sampler draws each cluster as often as `clusters` (each training image's) holds it."""
        shares = np.bincount(clusters, minlength=self.num_classes) / len(clusters)
        self.cluster_sampler.get_layer(DRAWN_CLUSTER).shares.assign(shares.astype(np.float32))

    def is_finite(self) -> bool:
        """No weight of the networks, their moving average or their optimisers is NaN or infinite. A call's losses
        do not tell: its last update may break the weights after they were computed."""
        models = [self.generator, self.discriminator] + ([self.ema_generator] if self.ema_generator is not None else [])
        variables = [weight for model in models for weight in model.weights]
        variables += [*self.g_optimizer.variables, *self.d_optimizer.variables]
        return all(np.isfinite(variable.numpy()).all() for variable in variables)

    def checkpoint(self) -> tf.train.Checkpoint:
        parts = {"ema_generator": self.ema_generator} if self.ema_generator is not None else {}
        seeds = seed_states(self.generator) + seed_states(self.discriminator)
        if seeds:  # only networks with dropout: the checkpoints of the others stay as they were
            parts["seed_states"] = seeds
        if self.cluster_sampler is not None:
            parts["drawn_cluster"] = self.cluster_sampler.get_layer(DRAWN_CLUSTER)
        return tf.train.Checkpoint(
            generator=self.generator,
            discriminator=self.discriminator,
            g_optimizer=self.g_optimizer,
            d_optimizer=self.d_optimizer,
            rng=self.rng,
            step=self.step,
            train_seconds=self.train_seconds,
            fixed_latents=self.fixed_latents,
            **parts,
        )


def make_deterministic() -> None:
    """Same settings, same weights, bit for bit, whether a run is resumed or not. Call before TensorFlow runs its
    first operation.

    Besides op determinism: one inter-op thread, so that no two ops run side by side (each op still uses every
    core), and Grappler's constant folding off, without which two identical DCGAN runs under load can differ in the
    last bits (docs/decisions/determinism.md)."""
    tf.config.experimental.enable_op_determinism()
    tf.config.optimizer.set_experimental_options({"constant_folding": False})
    if tf.config.threading.get_inter_op_parallelism_threads() == 1:
        return
    try:
        tf.config.threading.set_inter_op_parallelism_threads(1)
    except RuntimeError:  # TensorFlow already runs in this process: it keeps the threads it started with
        log.warning("TensorFlow started before the job: runs of large images may not repeat bit for bit")


def seed_states(model: keras.Model) -> list:
    """The random state of the model's layers that draw random numbers (dropout). Keras keeps it in variables of
    their own, outside `model.weights`, which a tf.train.Checkpoint of the model does not reach: without it a
    resumed run would draw other dropout masks than an uninterrupted one."""
    weights = {id(weight) for weight in model.weights}
    return [variable for variable in model.variables if id(variable) not in weights]


def build_gan(
    config: TrainConfig,
    image_shape: Shape,
    num_classes: int,
    clusters: int = 0,
    settings: ArchitectureSettings | None = None,
) -> Gan:
    """The networks for images of `image_shape`, to the architecture's `settings` (by default config's: a
    resumed run passes the ones it records); a conditional run's take labels of `num_classes` classes, a
    self-conditioned run's (`clusters` > 0, unconditional runs only) those of its images' clusters."""
    keras.utils.set_random_seed(config.seed)  # weight initialisers
    classes = num_classes if config.conditional else clusters
    architecture = ARCHITECTURES[config.arch].with_settings(settings or config.architecture)
    generator = build_generator(config.arch, config.latent_dim, image_shape, classes, architecture.settings)
    discriminator = build_discriminator(config.arch, image_shape, classes, architecture.settings)
    hyper = config.hyper
    g_optimizer, d_optimizer = (
        keras.optimizers.Adam(learning_rate=hyper.learning_rate, beta_1=hyper.beta_1, beta_2=hyper.beta_2)
        for _ in range(2)
    )
    # Build the optimizer slots now, so that a checkpoint restores into existing variables.
    g_optimizer.build(generator.trainable_variables)
    d_optimizer.build(discriminator.trainable_variables)
    ema_generator = None
    if config.ema_decay:
        ema_generator = keras.models.clone_model(generator)
        ema_generator.set_weights(generator.get_weights())
    cluster_sampler = None
    if classes and not config.conditional:
        cluster_sampler = build_self_conditioned_sampler(ema_generator or generator, clusters)
    fixed = tf.random.Generator.from_seed(config.seed + 1).normal([SAMPLE_IMAGES, config.latent_dim])
    return Gan(
        generator=generator,
        discriminator=discriminator,
        g_optimizer=g_optimizer,
        d_optimizer=d_optimizer,
        rng=tf.random.Generator.from_seed(config.seed),
        step=tf.Variable(0, dtype=tf.int64, trainable=False, name="step"),
        train_seconds=tf.Variable(0.0, dtype=tf.float64, trainable=False, name="train_seconds"),
        fixed_latents=tf.Variable(fixed, trainable=False, name="fixed_latents"),
        architecture=architecture,
        num_classes=classes,
        ema_decay=config.ema_decay,
        ema_generator=ema_generator,
        cluster_sampler=cluster_sampler,
    )


def call_generator(model: keras.Model, latents, labels=None, training: bool = False):
    """A generator's images; conditional generators take the class labels too."""
    return model(latents if labels is None else [latents, labels], training=training)


def learning_rate_scale(steps_done, steps: int, decay_from: float):
    """The factor on the learning rates in the step that follows `steps_done` (a number or a tensor) of a run of
    `steps`: 1 until the fraction `decay_from` of the run is done, then falling linearly to 1/k in its last step,
    k the steps of the decay. Why the DCGAN's rates fall: docs/decisions/learning-rate-decay.md."""
    decay_steps = steps * (1.0 - decay_from)
    if decay_steps <= 0:
        return keras.ops.ones(())
    remaining = keras.ops.cast(steps, "float32") - keras.ops.cast(steps_done, "float32")
    return keras.ops.clip(remaining / decay_steps, 0.0, 1.0)


class ClassSampler:
    """The classes of a conditional model's images, real and generated alike: each class as often as the others,
    however many images of it the data holds.

    Drawn as the data has them, the real images of a rare class would be few beside the generated ones labelled
    with it: the discriminator could learn that the label alone makes an image likely fake, and the generator would
    draw each rare class as one image repeated (docs/decisions/class-balance.md)."""

    def __init__(self, labels: np.ndarray, num_classes: int) -> None:
        counts = np.bincount(labels, minlength=num_classes)
        self.present = tf.constant(np.flatnonzero(counts), tf.int32)  # classes with images
        self.order = tf.constant(np.argsort(labels, kind="stable"), tf.int32)  # image indices, class by class
        self.first = tf.constant(np.cumsum(counts) - counts, tf.int32)  # where each class begins in `order`
        self.count = tf.constant(counts, tf.int32)

    def draw(self, rng: tf.random.Generator, count: int) -> tf.Tensor:
        """`count` classes, uniformly among those with images."""
        return tf.gather(self.present, rng.uniform([count], 0, tf.shape(self.present)[0], dtype=tf.int32))

    def images_of(self, rng: tf.random.Generator, classes: tf.Tensor) -> tf.Tensor:
        """For each class, the index of one of its images, uniformly. (A 30-bit number modulo the class's count: a
        bias below a class's size over 2**30, none that matters.)"""
        within = rng.uniform(tf.shape(classes), 0, 2**30, dtype=tf.int32) % tf.gather(self.count, classes)
        return tf.gather(self.order, tf.gather(self.first, classes) + within)


class TrainStep:
    """The tutorial's training step, explicit: the discriminator's half, then the generator's half.

    The discriminator learns from batch/2 real and batch/2 generated images (labels 1 and 0); then the
    generator learns, through the discriminator, to make `batch` latents pass as real. Conditional models draw a
    class for every image, real or generated, each class as often (ClassSampler), and a real image of its class;
    self-conditioned ones the same, their images' clusters as the classes.
    """

    def __init__(
        self,
        gan: Gan,
        images: np.ndarray,  # uint8 (N, height, width, channels)
        batch: int,
        labels: np.ndarray | None = None,  # of the images: their classes, or their clusters (self-conditioned)
        steps: int | None = None,  # the run's last step, where the learning rates reach 0 if they decay
        learning_rate: float | None = None,  # the optimizers' rate before any decay
    ) -> None:
        self.gan = gan
        decays = gan.architecture.decay_from < 1 and steps is not None and learning_rate is not None
        self.decay = (steps, learning_rate) if decays else None
        self.reals = tf.constant(images, tf.uint8)  # the whole training set, resident on the device, as uint8
        # Each pixel's value in [-1, 1], looked up: exactly to_unit_range's, which TensorFlow's own division is not
        # (one in two values differs in the last bit).
        self.pixel_values = tf.constant(to_unit_range(np.arange(256, dtype=np.uint8)))
        self.classes = ClassSampler(labels, gan.num_classes) if gan.takes_labels else None
        self.half, self.batch = batch // 2, batch
        self.latent_dim = gan.generator.inputs[0].shape[-1]
        self.bce = keras.losses.BinaryCrossentropy()
        self.d_targets = tf.concat([tf.ones([self.half, 1]), tf.zeros([self.half, 1])], axis=0)

    def _digits(self, count: int):
        return self.classes.draw(self.gan.rng, count) if self.gan.takes_labels else None

    def discriminator_step(self) -> tuple[tf.Tensor, tf.Tensor]:
        gan = self.gan
        real_digits = self._digits(self.half)
        if gan.takes_labels:
            picks = self.classes.images_of(gan.rng, real_digits)
        else:
            picks = gan.rng.uniform([self.half], 0, tf.shape(self.reals)[0], dtype=tf.int32)
        real = tf.gather(self.pixel_values, tf.cast(tf.gather(self.reals, picks), tf.int32))
        fake_digits = self._digits(self.half)
        # The tutorial's generator.predict() is inference mode: BatchNorm uses its moving statistics (see Architecture).
        fake = call_generator(
            gan.generator,
            gan.rng.normal([self.half, self.latent_dim]),
            fake_digits,
            training=gan.architecture.fakes_in_training_mode,
        )
        images = tf.concat([real, fake], axis=0)
        inputs = images if not gan.takes_labels else [images, tf.concat([real_digits, fake_digits], axis=0)]
        d_vars = gan.discriminator.trainable_variables
        with tf.GradientTape() as tape:
            d_out = gan.discriminator(inputs, training=True)
            d_loss = self.bce(self.d_targets, d_out)
        gan.d_optimizer.apply_gradients(zip(tape.gradient(d_loss, d_vars), d_vars, strict=True))
        d_accuracy = tf.reduce_mean(tf.cast(tf.equal(d_out > 0.5, self.d_targets > 0.5), tf.float32))
        return d_loss, d_accuracy

    def generator_step(self) -> tf.Tensor:
        gan = self.gan
        g_vars = gan.generator.trainable_variables
        digits = self._digits(self.batch)
        with tf.GradientTape() as tape:
            fake = call_generator(gan.generator, gan.rng.normal([self.batch, self.latent_dim]), digits, training=True)
            judged = gan.discriminator(fake if digits is None else [fake, digits], training=False)
            g_loss = self.bce(tf.ones([self.batch, 1]), judged)
        # Only the generator's variables: the discriminator stays frozen in the generator's step.
        gan.g_optimizer.apply_gradients(zip(tape.gradient(g_loss, g_vars), g_vars, strict=True))
        return g_loss

    def update_ema(self) -> None:
        """Move the average towards the weights by the decay of the `ema_every` steps since its last update.

        Applying k steps' decays at once costs a k-th of updating every step (the update reads and writes every
        generator weight: a quarter of a step when done each step) and differs from it only in weighting the newest
        weights for those k steps, a lag of a few steps in an average over about a thousand.
        """
        # Steps done, t, and the k - 1 before it; each step's decay has the warm-up: early on the average follows
        # the weights closely, or samples would look like the initial network.
        steps = tf.cast(self.gan.step, tf.float32) - tf.range(self.gan.architecture.ema_every, dtype=tf.float32)
        decay = tf.reduce_prod(tf.minimum(self.gan.ema_decay, (1.0 + steps) / (10.0 + steps)))
        for average, weight in zip(self.gan.ema_generator.weights, self.gan.generator.weights, strict=True):
            average.assign(weight + decay * (average - weight))

    def set_conditioning(self) -> None:
        """The label's strength in every network, from the steps done: 0 at the start, 1 after the ramp."""
        ramp = self.gan.architecture.conditioning_ramp
        if not (self.gan.takes_labels and ramp):
            return
        strength = conditioning_strength(self.gan.step, ramp)
        for model in (self.gan.generator, self.gan.discriminator, self.gan.ema_generator):
            for layer in conditioning_layers(model) if model is not None else []:
                layer.strength.assign(strength)

    def set_learning_rates(self) -> None:
        """Both optimizers' rate for the next step, from the steps done: constant, then decaying (Architecture)."""
        if self.decay is None:
            return
        steps, learning_rate = self.decay
        rate = learning_rate * learning_rate_scale(self.gan.step, steps, self.gan.architecture.decay_from)
        for optimizer in (self.gan.g_optimizer, self.gan.d_optimizer):
            optimizer.learning_rate = rate

    def compiled(self, jit_compile: bool | None = None):
        """One call runs `n` whole steps with no host round trip; returns the means of the step's metrics."""

        jit_compile = self.gan.architecture.jit_compile if jit_compile is None else jit_compile

        @tf.function(jit_compile=jit_compile)
        def train_steps(n: tf.Tensor) -> dict[str, tf.Tensor]:
            d_loss_sum, g_loss_sum, d_accuracy_sum = tf.constant(0.0), tf.constant(0.0), tf.constant(0.0)
            # Not `for _ in tf.range(n)`: under XLA autograph gives that loop `n` as its maximum iterations, a
            # compile-time constant, and each call of another length would compile the step anew (4-5 s for the MLP).
            steps_done = tf.constant(0)
            while steps_done < n:
                steps_done += 1
                self.set_conditioning()
                self.set_learning_rates()
                d_loss, d_accuracy = self.discriminator_step()
                g_loss = self.generator_step()
                self.gan.step.assign_add(1)
                # The step count is a tensor: autograph makes this a condition XLA evaluates at each step.
                if self.gan.ema_generator is not None and self.gan.step % self.gan.architecture.ema_every == 0:
                    self.update_ema()
                d_loss_sum += d_loss
                g_loss_sum += g_loss
                d_accuracy_sum += d_accuracy
            n_float = tf.cast(n, tf.float32)
            return {
                "d_loss": d_loss_sum / n_float,
                "g_loss": g_loss_sum / n_float,
                "d_accuracy": d_accuracy_sum / n_float,
            }

        return train_steps


def sample_images(gan: Gan, latents=None, labels=None) -> np.ndarray:
    """The sampler's images in [-1, 1] for `latents` (the fixed sample grid by default), inference mode."""
    latents = gan.fixed_latents if latents is None else latents
    if gan.conditional and labels is None:
        labels = cycling_labels(int(latents.shape[0]), gan.num_classes)
    labels = None if labels is None else tf.convert_to_tensor(labels, tf.int32)
    return call_generator(gan.sampler, tf.convert_to_tensor(latents), labels).numpy()
