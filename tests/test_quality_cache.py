"""The quality classifier's cache is shared by every run beside it: first runs side by side must not trip over each
other (the per-digit Job's pods start together on one volume), and a cached file that cannot be read is retrained."""

import subprocess
import sys

import keras
import pytest

from job import signals
from job.data import load_data
from job.errors import Interrupted
from job.quality import load_or_train_classifier
from tests.conftest import SMALL_MNIST

TRAIN_INTO_CACHE = (
    "import sys; from job.data import load_data; from job.quality import load_or_train_classifier; "
    "load_or_train_classifier(load_data(sys.argv[1]), sys.argv[2], epochs=1)"
)


def test_an_unreadable_cached_classifier_is_a_miss_that_is_retrained_and_replaced(tmp_path, caplog):
    mnist = load_data(SMALL_MNIST)
    cached = tmp_path / f"classifier-{mnist.fingerprint()}.keras"
    cached.write_bytes(b"not a keras file: a truncated copy, say")
    caplog.set_level("INFO")

    load_or_train_classifier(mnist, tmp_path, epochs=1)

    assert "unreadable" in caplog.text and "training the classifier" in caplog.text
    assert keras.models.load_model(cached).name == "classifier"  # replaced by a good one


def test_a_signal_whose_interrupt_was_swallowed_still_stops_the_training_and_caches_nothing(tmp_path):
    # As if a SIGTERM's Interrupted had been caught by library code: the request is recorded, nothing was raised.
    signals.requested.set()
    try:
        with pytest.raises(Interrupted):
            load_or_train_classifier(load_data(SMALL_MNIST), tmp_path, epochs=50)
    finally:
        signals.requested.clear()
    assert list(tmp_path.iterdir()) == []


@pytest.mark.slow
def test_first_runs_side_by_side_both_succeed_and_leave_one_valid_classifier(tmp_path):
    runs = [
        subprocess.Popen([sys.executable, "-c", TRAIN_INTO_CACHE, str(SMALL_MNIST), str(tmp_path)], text=True)
        for _ in range(2)
    ]
    assert [run.wait(timeout=300) for run in runs] == [0, 0]
    assert [p.name for p in tmp_path.iterdir()] == [f"classifier-{load_data(SMALL_MNIST).fingerprint()}.keras"]
    assert keras.models.load_model(next(tmp_path.iterdir())).name == "classifier"
