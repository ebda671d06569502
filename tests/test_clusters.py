"""Self-conditioning (job/networks/clusters.py): the unconditional DCGAN learns as a conditional pair on k-means
clusters of its own images, and the model it exports draws the cluster itself, from the latent vector alone."""

import dataclasses
import json
import logging
import shutil

import numpy as np
import onnx
import pytest

from job.config import ARCH_SETTINGS, ConfigError
from job.loop.train import train
from job.networks.clusters import cluster_count, cluster_images, run_clusters
from job.networks.models import ARCHITECTURES, DrawnCluster
from serving.model import Generator
from tests.conftest import invoke_cli, short_run_config

# One pytest-xdist worker runs the whole module: the self-conditioned run, trained once.
pytestmark = pytest.mark.xdist_group("test_clusters")


def three_kinds_of_images(rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    """100 images lit on the left, 300 dark, 200 lit on the right, shuffled; and which kind each is, numbered by
    the kinds' sizes (dark 0, right 1, left 2)."""
    kinds = np.array([2] * 100 + [0] * 300 + [1] * 200)
    rng.shuffle(kinds)
    images = rng.integers(0, 40, (len(kinds), 12, 12, 1)).astype(np.uint8)
    images[kinds == 2, :, :6] += 200
    images[kinds == 1, :, 6:] += 200
    return images, kinds


def test_kmeans_finds_groups_of_unlike_images_and_numbers_them_by_size_the_same_way_every_time():
    images, kinds = three_kinds_of_images(np.random.default_rng(0))
    clusters = cluster_images(images, 3, seed=0)
    assert clusters.dtype == np.int32 and np.array_equal(clusters, kinds)  # 0 the largest group, 2 the smallest
    assert np.array_equal(cluster_images(images, 3, seed=0), clusters)


@pytest.mark.parametrize(
    "damage",
    [lambda c: c[:-1], lambda c: np.where(np.arange(len(c)) == 5, -3, c), lambda c: c + 3],
    ids=["shorter", "negative", "beyond"],
)
def test_a_runs_kept_clusters_are_reused_and_damaged_ones_made_again_with_a_warning(tmp_path, caplog, damage):
    images, kinds = three_kinds_of_images(np.random.default_rng(0))
    path = tmp_path / "clusters.npy"
    made = run_clusters(path, images, 3, seed=0)
    assert np.array_equal(made, kinds) and np.array_equal(np.load(path), made)
    np.save(path, np.zeros(len(images), np.int32))  # valid, if not what k-means made: kept as the run's
    assert not run_clusters(path, images, 3, seed=0).any() and not caplog.records
    np.save(path, damage(made))  # shorter, a negative entry, beyond the clusters
    assert np.array_equal(run_clusters(path, images, 3, seed=0), made)
    assert "is unreadable or not of these images; clustering them again" in caplog.text


def test_small_data_sets_get_fewer_clusters_and_tiny_ones_none_which_the_log_says(caplog):
    caplog.set_level(logging.INFO, logger="job.networks.clusters")
    assert cluster_count(60_000, 10) == 10
    assert cluster_count(500, 10) == 5  # 100 images a cluster on average
    assert cluster_count(200, 10) == 2
    assert not caplog.records
    assert cluster_count(199, 10) == 0  # one cluster would be no conditioning at all
    assert "self-conditioning: off, 199 images are too few" in caplog.text
    caplog.clear()
    assert cluster_count(199, 0) == 0  # an architecture without self-conditioning: nothing to say
    assert not caplog.records


def test_only_the_dcgan_is_self_conditioned():
    assert ARCHITECTURES["dcgan"].self_conditioning == 30 and ARCHITECTURES["mlp"].self_conditioning == 0


def test_the_sampler_draws_each_cluster_at_its_share_and_over_the_whole_range_of_the_first_latent():
    layer = DrawnCluster(3)
    layer.build((None, 100))
    layer.shares.assign(np.array([0.5, 0.3, 0.2], np.float32))
    z = np.random.default_rng(0).standard_normal((30_000, 100)).astype(np.float32)
    drawn = np.asarray(layer(z))
    np.testing.assert_allclose(np.bincount(drawn, minlength=3) / len(drawn), [0.5, 0.3, 0.2], atol=0.01)
    # In training each cluster saw every latent vector: here too, the first entry of z is no guide to the cluster.
    for cluster in range(3):
        first = z[drawn == cluster, 0]
        assert abs(first.mean()) < 0.05 and abs(first.std() - 1) < 0.05


@pytest.fixture(scope="module")
def self_conditioned_run(tmp_path_factory, small_mnist_classifier):
    """An unconditional DCGAN on the 1,000 small MNIST images: 10 clusters (100 images a cluster on average)."""
    out = tmp_path_factory.mktemp("self-conditioned")
    train(short_run_config(out, arch="dcgan", steps=24, checkpoint_every=24, sample_every=24, log_every=12))
    return out


@pytest.mark.slow
def test_an_unconditional_dcgan_learns_its_images_clusters_and_records_them(self_conditioned_run):
    clusters = np.load(self_conditioned_run / "clusters.npy")
    assert clusters.shape == (1000,) and set(np.unique(clusters)) == set(range(10))
    assert json.loads((self_conditioned_run / "config.json").read_text())["clusters"] == 10


@pytest.mark.slow
def test_its_exported_model_takes_latents_alone_and_draws_the_clusters_at_their_shares(self_conditioned_run):
    model = onnx.load(self_conditioned_run / "generator.onnx")
    assert [tensor.name for tensor in model.graph.input] == ["z"]
    assert {prop.key: prop.value for prop in model.metadata_props}["clusters"] == "10"
    generator = Generator(self_conditioned_run / "generator.onnx")
    assert not generator.conditional
    images = generator.images(np.random.default_rng(0).standard_normal((8, 100)).astype(np.float32))
    assert images.shape == (8, 28, 28, 1)

    import keras

    sampler = keras.models.load_model(self_conditioned_run / "generator.keras")
    clusters = np.load(self_conditioned_run / "clusters.npy")
    shares = sampler.get_layer("drawn_cluster").shares.numpy()
    np.testing.assert_allclose(shares, np.bincount(clusters) / len(clusters), rtol=1e-6)


@pytest.mark.slow
def test_gan_job_export_of_a_checkpoint_draws_what_the_run_exported(self_conditioned_run, tmp_path):
    again = tmp_path / "again.onnx"
    result = invoke_cli("export", "--run", str(self_conditioned_run), "--out", str(again))
    assert result.returncode == 0, result.stderr
    latents = np.random.default_rng(1).standard_normal((16, 100)).astype(np.float32)
    exported = Generator(self_conditioned_run / "generator.onnx").images(latents)
    np.testing.assert_allclose(Generator(again).images(latents), exported, atol=1e-6)


@pytest.mark.slow
def test_conditional_and_mlp_runs_are_not_self_conditioned(trained_run, conditional_run):
    for run, _ in (trained_run, conditional_run):
        assert "clusters" not in json.loads((run / "config.json").read_text())
        assert not (run / "clusters.npy").exists()


@pytest.mark.slow
def test_a_run_resumes_with_the_clusters_it_began_with_though_this_version_would_make_another_number(
    self_conditioned_run, tmp_path, monkeypatch
):
    run = tmp_path / "run"
    shutil.copytree(self_conditioned_run, run)
    fewer = dataclasses.replace(ARCH_SETTINGS["dcgan"], self_conditioning=3)
    monkeypatch.setitem(ARCH_SETTINGS, "dcgan", fewer)  # a later version, which would cut 3 clusters
    gan = train(short_run_config(run, arch="dcgan", steps=32, checkpoint_every=32, sample_every=32, log_every=8))
    assert gan.clusters == 10 and int(gan.step.numpy()) == 32
    assert json.loads((run / "config.json").read_text())["clusters"] == 10
    assert set(np.unique(np.load(run / "clusters.npy"))) == set(range(10))


@pytest.mark.slow
@pytest.mark.parametrize("recorded", [-1, "abc", None, True, 2.5])
def test_a_resume_refuses_a_config_json_whose_clusters_are_no_count(self_conditioned_run, tmp_path, recorded):
    run = tmp_path / "run"
    shutil.copytree(self_conditioned_run, run)
    saved = json.loads((run / "config.json").read_text())
    (run / "config.json").write_text(json.dumps(saved | {"clusters": recorded}))
    with pytest.raises(ConfigError, match="records clusters .*expected a whole number of clusters"):
        train(short_run_config(run, arch="dcgan", steps=32, checkpoint_every=32, sample_every=32, log_every=8))
