"""The explicit training step: each half updates its own network and nothing else."""

from pathlib import Path

import numpy as np
import pytest
import tensorflow as tf

from job.config import EMA_EVERY, TrainConfig
from job.data.load import load_data, training_images, training_set
from job.networks.gan import ClassSampler, TrainStep, build_gan
from job.networks.models import conditioning_layers
from tests.conftest import MNIST


def snapshot(model) -> list[np.ndarray]:
    return [v.numpy().copy() for v in model.weights]


def same(a, b) -> bool:
    return all(np.array_equal(x, y) for x, y in zip(a, b, strict=True))


@pytest.fixture
def step(small_mnist):
    config = TrainConfig(out=Path("unused"), seed=1)
    gan = build_gan(config, *MNIST)
    return TrainStep(gan, training_images(load_data(small_mnist), -1), config.batch)


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


@pytest.fixture
def conditional_step(small_mnist):
    config = TrainConfig(out=Path("unused"), seed=1, conditional=True)
    images, labels = training_set(load_data(small_mnist), -1)
    return TrainStep(build_gan(config, *MNIST), images, config.batch, labels)


def test_conditional_generator_step_also_leaves_the_discriminator_untouched(conditional_step):
    gan = conditional_step.gan
    d_before, g_before = snapshot(gan.discriminator), snapshot(gan.generator)
    conditional_step.generator_step()
    assert same(snapshot(gan.discriminator), d_before)
    assert not same(snapshot(gan.generator), g_before)
    conditional_step.discriminator_step()
    assert not same(snapshot(gan.discriminator), d_before)


def test_conditional_models_take_the_digit_label():
    config = TrainConfig(out=Path("unused"), conditional=True)
    gan = build_gan(config, *MNIST)
    assert [i.name for i in gan.generator.inputs] == ["z", "label"]
    assert [i.name for i in gan.discriminator.inputs] == ["image", "label"]
    images = gan.generator([np.zeros((4, 100), "float32"), np.arange(4, dtype="int32")]).numpy()
    assert images.shape == (4, 28, 28, 1)


@pytest.mark.slow
def test_ema_follows_the_generator_and_is_what_samples_are_drawn_from(conditional_step):
    gan = conditional_step.gan
    assert gan.sampler is gan.ema_generator
    conditional_step.compiled()(np.int32(20))
    for average, weight, start in zip(
        snapshot(gan.ema_generator),
        snapshot(gan.generator),
        snapshot(build_gan(TrainConfig(out=Path("unused"), seed=1, conditional=True), *MNIST).generator),
        strict=True,
    ):
        # between where the generator started and where it is now, nearer to now early on (warm-up)
        assert np.abs(average - weight).max() <= np.abs(start - weight).max() + 1e-6


@pytest.mark.slow
def test_the_conditional_dcgans_label_comes_in_over_its_ramp_in_every_network(small_mnist):
    config = TrainConfig(out=Path("unused"), seed=1, conditional=True, arch="dcgan")
    images, labels = training_set(load_data(small_mnist), -1)
    gan = build_gan(config, *MNIST)
    train_steps = TrainStep(gan, images, config.batch, labels).compiled()
    ramp = gan.architecture.conditioning_ramp

    def strength_after_a_step_from(step: int) -> list[float]:
        gan.step.assign(step)
        train_steps(np.int32(1))
        networks = (gan.generator, gan.discriminator, gan.ema_generator)
        return [float(layer.strength.numpy()) for network in networks for layer in conditioning_layers(network)]

    assert strength_after_a_step_from(0) == [0.0] * 3  # the first step is unconditional
    assert strength_after_a_step_from(ramp // 4) == [0.25] * 3
    assert strength_after_a_step_from(ramp) == [1.0] * 3
    assert strength_after_a_step_from(3 * ramp) == [1.0] * 3


def rates_after_a_step_from(gan, train_steps, step: int) -> set[float]:
    gan.step.assign(step)
    train_steps(np.int32(1))
    return {round(float(optimizer.learning_rate.numpy()), 10) for optimizer in (gan.g_optimizer, gan.d_optimizer)}


def test_the_dcgans_learning_rates_fall_linearly_over_the_second_half_of_its_run(small_mnist):
    config = TrainConfig(out=Path("unused"), seed=1, arch="dcgan", steps=1000)
    gan = build_gan(config, *MNIST)
    images = training_images(load_data(small_mnist), -1)
    train_steps = TrainStep(gan, images, config.batch, None, config.steps, config.hyper.learning_rate).compiled()
    assert gan.architecture.decay_from == 0.5
    assert rates_after_a_step_from(gan, train_steps, 0) == {2e-4}
    assert rates_after_a_step_from(gan, train_steps, 499) == {2e-4}  # the first half's last step
    assert rates_after_a_step_from(gan, train_steps, 750) == {1e-4}  # half way down
    assert rates_after_a_step_from(gan, train_steps, 999) == {round(2e-4 / 500, 10)}  # the run's last step


@pytest.mark.slow
def test_the_mlps_learning_rates_stay_as_the_preset_sets_them(small_mnist):
    config = TrainConfig(out=Path("unused"), seed=1, steps=1000)
    gan = build_gan(config, *MNIST)
    images = training_images(load_data(small_mnist), -1)
    train_steps = TrainStep(gan, images, config.batch, None, config.steps, config.hyper.learning_rate).compiled()
    assert rates_after_a_step_from(gan, train_steps, 999) == {2e-4}


def test_seed_preset_is_the_tutorial_without_ema():
    config = TrainConfig(out=Path("unused"), preset="seed")
    gan = build_gan(config, *MNIST)
    assert gan.ema_generator is None and gan.sampler is gan.generator
    assert TrainConfig(out=Path("unused"), preset="seed", ema=True).ema_decay == 0.999
    assert TrainConfig(out=Path("unused"), ema=False).ema_decay == 0.0


@pytest.mark.slow
def test_the_moving_average_moves_every_ema_every_steps_by_the_decay_of_all_of_them(small_mnist):
    config = TrainConfig(out=Path("unused"), seed=1)
    gan = build_gan(config, *MNIST)
    train_steps = TrainStep(gan, training_images(load_data(small_mnist), -1), config.batch).compiled()
    start = snapshot(gan.ema_generator)
    train_steps(np.int32(EMA_EVERY - 1))
    assert same(snapshot(gan.ema_generator), start)  # not yet
    train_steps(np.int32(1))
    # The warm-up's decays of steps 1..EMA_EVERY, multiplied: the average is now almost the weights themselves.
    decay = np.prod([min(config.ema_decay, (1 + s) / (10 + s)) for s in range(1, EMA_EVERY + 1)])
    for average, weight, initial in zip(snapshot(gan.ema_generator), snapshot(gan.generator), start, strict=True):
        np.testing.assert_allclose(average, weight + decay * (initial - weight), rtol=1e-5, atol=1e-6)


def test_a_conditional_model_sees_every_class_as_often_however_rare_its_images():
    labels = np.repeat([0, 1, 2], [100, 20, 5])  # a user's unbalanced folder
    sampler = ClassSampler(labels, num_classes=3)
    rng = tf.random.Generator.from_seed(0)
    classes = sampler.draw(rng, 30_000).numpy()
    picks = sampler.images_of(rng, tf.constant(classes)).numpy()
    assert np.allclose(np.bincount(classes) / len(classes), 1 / 3, atol=0.01)
    assert np.array_equal(labels[picks], classes)  # each class's image is one of its own
    assert set(picks[classes == 2]) == set(np.flatnonzero(labels == 2))  # every image of the rarest class is used
    assert np.allclose(np.bincount(picks[classes == 2])[-5:] / np.sum(classes == 2), 1 / 5, atol=0.02)


def test_a_class_without_images_is_never_drawn():
    sampler = ClassSampler(np.array([0, 0, 2, 2, 2]), num_classes=3)
    classes = sampler.draw(tf.random.Generator.from_seed(0), 1000).numpy()
    assert set(classes) == {0, 2}


def test_a_compiled_call_trains_about_two_seconds_whatever_the_log_interval():
    from job.loop.schedule import CALL_SECONDS, FIRST_CALL_STEPS, CallLength

    config = TrainConfig(out=Path("unused"), steps=50_000, log_every=5000, sample_every=5000)
    length = CallLength()
    assert length.next(0, config) == FIRST_CALL_STEPS  # before any speed is known
    length.measured(FIRST_CALL_STEPS, 30.0)  # the first call's time is mostly the trace: not a speed
    assert length.next(1, config) == FIRST_CALL_STEPS
    speed = 2.0  # steps/s
    length.measured(6, 6 / speed)
    assert length.next(7, config) == int(speed * CALL_SECONDS)
    length.measured(4, 400.0)  # slower than a step per CALL_SECONDS: still one step at a time
    assert length.next(11, config) == 1
    length.measured(1, 0.001)  # fast: at most twice the call before...
    assert length.next(12, config) == 2
    length.measured(2000, 0.001)
    assert length.next(4990, config) == 10  # ... and never past the next log line


def test_calls_of_any_length_run_one_compiled_program(step):
    # Calls end after about CALL_SECONDS, so nearly every call asks for another number of steps. With the step
    # count compiled in as a constant, XLA compiled the MLP's step anew for each (4-5 s each): 17 steps/s, not 110.
    train_steps = step.compiled(jit_compile=True)

    def program(steps: int) -> str:
        return train_steps.experimental_get_compiler_ir(tf.constant(steps))(stage="hlo")

    assert program(3) == program(5)
