"""The tutorial's GAN step written as plainly as TensorFlow allows: bare variables, bare math, one XLA call of many
steps. No Keras, no metrics, no step counter, no checkpointable state: the yardstick the job's loop is measured
against in bench/train_speed.py.

Same math as the job's `seed` preset: generator 100-128-256-512-1024-784 (LeakyReLU 0.2, BatchNorm momentum 0.8
after each hidden layer, tanh), discriminator 784-784-392-1 (LeakyReLU 0.2, sigmoid), binary cross-entropy,
Adam(2e-4, 0.9, 0.999); the discriminator learns on 16 real + 16 generated images (drawn in inference mode), then
the generator through the frozen discriminator on 32 latents labelled real.
"""

from __future__ import annotations

import keras
import numpy as np
import tensorflow as tf

from job.networks.models import build_discriminator, build_generator

MNIST = ((28, 28, 1), 10)  # image shape, classes

EPSILON_BN, EPSILON_BCE, MOMENTUM = 1e-3, 1e-7, 0.8
LEARNING_RATE, BETA_1, BETA_2, EPSILON_ADAM = 2e-4, 0.9, 0.999, 1e-7


def dense_layers(model) -> list[list[tf.Variable]]:
    """The Keras models' initial weights as bare variables, grouped by layer."""
    return [[tf.Variable(w) for w in layer.get_weights()] for layer in model.layers if layer.get_weights()]


class MinimalGan:
    def __init__(self, images: np.ndarray, seed: int = 0) -> None:
        keras.utils.set_random_seed(seed)
        g, d = dense_layers(build_generator("mlp", 100, MNIST[0])), dense_layers(build_discriminator("mlp", MNIST[0]))
        # generator: [kernel, bias] and [gamma, beta, moving_mean, moving_variance] alternating, then [kernel, bias]
        self.g_dense = [g[i] for i in (0, 2, 4, 6, 8)]
        self.g_norm = [g[i] for i in (1, 3, 5, 7)]
        self.d_dense = d
        self.g_vars = [v for layer in self.g_dense for v in layer] + [v for n in self.g_norm for v in n[:2]]
        self.d_vars = [v for layer in self.d_dense for v in layer]
        self.g_adam = [(tf.Variable(tf.zeros_like(v)), tf.Variable(tf.zeros_like(v))) for v in self.g_vars]
        self.d_adam = [(tf.Variable(tf.zeros_like(v)), tf.Variable(tf.zeros_like(v))) for v in self.d_vars]
        self.t = tf.Variable(0.0)
        self.reals = tf.constant(images.reshape(len(images), 784))
        self.seed = seed

    def generator(self, z, training: bool):
        x = z
        for (kernel, bias), norm in zip(self.g_dense[:4], self.g_norm, strict=True):
            x = tf.nn.leaky_relu(x @ kernel + bias, 0.2)
            gamma, beta, moving_mean, moving_variance = norm
            if training:
                mean, variance = tf.nn.moments(x, axes=[0])
                moving_mean.assign(moving_mean * MOMENTUM + mean * (1 - MOMENTUM))
                moving_variance.assign(moving_variance * MOMENTUM + variance * (1 - MOMENTUM))
            else:
                mean, variance = moving_mean, moving_variance
            x = (x - mean) * tf.math.rsqrt(variance + EPSILON_BN) * gamma + beta
        kernel, bias = self.g_dense[4]
        return tf.tanh(x @ kernel + bias)

    def discriminator(self, x):
        (k1, b1), (k2, b2), (k3, b3) = self.d_dense
        x = tf.nn.leaky_relu(x @ k1 + b1, 0.2)
        x = tf.nn.leaky_relu(x @ k2 + b2, 0.2)
        return tf.sigmoid(x @ k3 + b3)

    @staticmethod
    def bce(target: float, p):
        p = tf.clip_by_value(p, EPSILON_BCE, 1 - EPSILON_BCE)
        return -tf.reduce_mean(target * tf.math.log(p) + (1 - target) * tf.math.log(1 - p))

    def adam(self, variables, slots, grads):
        t = self.t
        rate = LEARNING_RATE * tf.sqrt(1 - BETA_2**t) / (1 - BETA_1**t)
        for v, (m, s), g in zip(variables, slots, grads, strict=True):
            m.assign(BETA_1 * m + (1 - BETA_1) * g)
            s.assign(BETA_2 * s + (1 - BETA_2) * g * g)
            v.assign_sub(rate * m / (tf.sqrt(s) + EPSILON_ADAM))

    @tf.function(jit_compile=True)
    def train(self, n):
        for _ in tf.range(n):
            seed = tf.stack([tf.cast(self.t, tf.int32), self.seed])
            picks = tf.random.stateless_uniform([16], seed, 0, tf.shape(self.reals)[0], dtype=tf.int32)
            z = tf.random.stateless_normal([48, 100], seed + 1)
            self.t.assign_add(1.0)
            fake = self.generator(z[:16], training=False)
            with tf.GradientTape() as tape:
                p = self.discriminator(tf.concat([tf.gather(self.reals, picks), fake], 0))
                d_loss = (self.bce(1.0, p[:16]) + self.bce(0.0, p[16:])) / 2
            self.adam(self.d_vars, self.d_adam, tape.gradient(d_loss, self.d_vars))
            with tf.GradientTape() as tape:
                g_loss = self.bce(1.0, self.discriminator(self.generator(z[16:], training=True)))
            self.adam(self.g_vars, self.g_adam, tape.gradient(g_loss, self.g_vars))
        return g_loss
