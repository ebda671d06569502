"""The quality classifier's cache is shared by every run beside it: first runs side by side must not trip over each
other (the per-digit Job's pods start together on one volume), a cached file that cannot be read is retrained, and
`gan-job evaluate` of a run's model finds the cache its run used."""

import subprocess
import sys
from pathlib import Path

import keras
import pytest

from job import signals
from job.analysis.quality import load_or_train_classifier
from job.config import user_cache
from job.data.load import load_data
from job.errors import Interrupted
from job.rundir.claim import classifier_cache_of
from tests.conftest import SMALL_MNIST, recorded_run

TRAIN_INTO_CACHE = (
    "import sys; from job.data.load import load_data; from job.analysis.quality import load_or_train_classifier; "
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


def test_evaluate_finds_a_runs_cache_from_any_folder_and_after_the_run_moved(tmp_path, monkeypatch):
    # gan-job train --out A/run1, started in tmp_path: the cache recorded as A/.quality-cache, relative
    model = recorded_run(tmp_path / "A" / "run1", out="A/run1", quality_cache="A/.quality-cache")
    (tmp_path / "A" / ".quality-cache").mkdir()
    for folder in (tmp_path, tmp_path / "A" / "run1", Path("/")):
        monkeypatch.chdir(folder)
        assert classifier_cache_of(model) == tmp_path / "A" / ".quality-cache"
    # --quality-cache Q1, relative, beside a run started in tmp_path: found from elsewhere too
    other = recorded_run(tmp_path / "D" / "run", out="D/run", quality_cache="Q1")
    (tmp_path / "Q1").mkdir()
    assert classifier_cache_of(other) == tmp_path / "Q1"
    # moved with the folder around it, so that the relative cache cannot be placed: the user's cache
    (tmp_path / "A").rename(tmp_path / "A2")
    assert classifier_cache_of(tmp_path / "A2" / "run1" / "generator.onnx") == user_cache()


def test_evaluate_says_when_the_recorded_cache_is_gone_and_takes_a_bare_model_as_one_without_its_run(tmp_path, caplog):
    model = recorded_run(tmp_path / "run", out=str(tmp_path / "run"), quality_cache=str(tmp_path / "kept-elsewhere"))
    assert classifier_cache_of(model) == user_cache()
    assert f"{tmp_path / 'kept-elsewhere'}, is not there" in caplog.text
    (tmp_path / "bare").mkdir()
    assert classifier_cache_of(tmp_path / "bare" / "g.onnx") == user_cache()
    (tmp_path / "bare" / "config.json").write_text('{"out": ')  # damaged: said, and the model taken as bare
    assert classifier_cache_of(tmp_path / "bare" / "g.onnx") == user_cache()
    assert "unreadable" in caplog.text
