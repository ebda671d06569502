"""Sample quality is measured by a small MNIST classifier: a Fréchet distance of its features, the share of each
digit, and for conditional models the share classified as the digit asked for."""

import numpy as np
import pytest

from job.analysis import quality
from job.analysis.quality import QualityMeter, classifier_epochs, frechet_distance, load_or_train_classifier
from job.config import user_cache
from job.data.load import load_data, reference_images, to_unit_range
from tests.conftest import SMALL_MNIST


def test_frechet_distance_of_a_gaussian_with_itself_is_zero():
    rng = np.random.default_rng(0)
    features = rng.normal(size=(500, 8))
    mean, cov = features.mean(0), np.cov(features, rowvar=False)
    assert frechet_distance(mean, cov, mean, cov) == pytest.approx(0, abs=1e-8)


def test_frechet_distance_matches_the_closed_form_for_diagonal_gaussians():
    # For diagonal covariances: |m1 - m2|² + Σ (σ1 - σ2)².
    m1, m2 = np.array([0.0, 1.0]), np.array([3.0, 1.0])
    s1, s2 = np.array([1.0, 4.0]), np.array([9.0, 1.0])
    expected = 9.0 + (1 - 3) ** 2 + (2 - 1) ** 2
    assert frechet_distance(m1, np.diag(s1), m2, np.diag(s2)) == pytest.approx(expected)


@pytest.fixture(scope="module")
def meter():
    mnist = load_data(SMALL_MNIST)
    classifier = load_or_train_classifier(mnist, user_cache())  # the session's, shared
    return mnist, QualityMeter(classifier, reference_images(mnist), mnist.class_names)


def test_real_images_score_well_and_noise_scores_badly(meter):
    mnist, quality = meter
    real = quality.measure(to_unit_range(mnist.x_train[:200]), asked=mnist.y_train[:200])
    noise = quality.measure(np.random.default_rng(0).uniform(-1, 1, (200, 28, 28, 1)).astype(np.float32))
    assert real.frechet_distance * 5 < noise.frechet_distance
    assert real.classes_covered == 10  # real MNIST holds every digit
    assert real.label_accuracy > 0.9  # the classifier recognises the training digits
    assert sum(real.class_shares) == pytest.approx(1.0, abs=1e-3)


def test_the_classifier_of_a_small_data_set_trains_long_enough_to_read_unseen_images(meter):
    mnist, quality = meter  # 1,000 digits: two epochs would be 16 batches
    assert classifier_epochs(len(mnist.x_train)) == 64 and classifier_epochs(60_000) == 2
    unseen = quality.measure(to_unit_range(mnist.x_test), asked=mnist.y_test)  # 200 digits
    assert unseen.label_accuracy > 0.95


def test_a_collapsed_generator_covers_one_digit(meter):
    mnist, quality = meter
    ones = to_unit_range(mnist.x_train[mnist.y_train == 1][:50])
    report = quality.measure(np.repeat(ones[:1], 200, axis=0))
    assert report.classes_covered == 1 and report.class_shares[1] == 1.0


def test_real_images_are_about_as_varied_as_the_reference_images_of_their_class(meter):
    mnist, quality = meter
    report = quality.measure(to_unit_range(mnist.x_train[:500]))
    assert all(0.8 < variety < 1.25 for variety in report.class_variety), report.class_variety
    assert report.look_alike() is None
    assert report.record()["least_variety"] == report.least_varied[1] == min(report.class_variety)


def test_a_class_drawn_as_one_image_repeated_is_reported_as_looking_alike(meter):
    mnist, quality = meter
    others = to_unit_range(mnist.x_train[mnist.y_train != 3][:400])
    three = to_unit_range(mnist.x_train[mnist.y_train == 3][:1])
    report = quality.measure(np.concatenate([others, np.repeat(three, 60, axis=0)]))
    assert report.class_variety[3] < 0.05 and all(v > 0.7 for i, v in enumerate(report.class_variety) if i != 3)
    assert report.least_varied[0] == 3
    assert (
        "the samples of class 3 look alike" in report.look_alike()
        and "below 0.4 (1: as varied as the real images of 3)" in report.look_alike()
    )


def test_classes_with_fewer_than_two_samples_have_no_variety_and_are_not_the_least_varied(meter):
    mnist, quality = meter
    sevens = to_unit_range(mnist.x_train[mnist.y_train == 7][:30])
    report = quality.measure(np.concatenate([sevens, to_unit_range(mnist.x_train[mnist.y_train == 1][:1])]))
    assert report.class_variety[1] is None and report.class_variety[7] is not None
    assert report.least_varied[0] == 7  # the lone 1 is neither measured nor covered


def test_the_classifier_is_trained_once_per_data_set_and_cached(tmp_path, caplog, monkeypatch):
    mnist = load_data(SMALL_MNIST)
    caplog.set_level("INFO")
    monkeypatch.setattr(quality, "PROGRESS_SECONDS", 0)  # a progress line after every batch
    load_or_train_classifier(mnist, tmp_path, epochs=1)
    # Its one-time training says what it is for, where it is kept, and how far it has come
    assert "measures sample quality" in caplog.text and "Once per data set" in caplog.text
    assert str(tmp_path) in caplog.text
    progress = [record.getMessage() for record in caplog.records if "% trained" in record.getMessage()]
    assert len(progress) == 8 and progress[-1].startswith("quality: classifier 100% trained")  # 1,000 images: 8 batches
    assert (tmp_path / f"classifier-{mnist.fingerprint()}.keras").is_file()
    caplog.clear()
    load_or_train_classifier(mnist, tmp_path, epochs=1)
    assert "using the cached classifier" in caplog.text and "training the classifier" not in caplog.text
