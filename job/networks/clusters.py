"""Self-conditioning: an unconditional model trained as a conditional one, on clusters of its own images.

A generator continuous in its latent vector draws a connected set of images: between two digits it must draw
something that is neither (Tanielian et al. 2020, "Learning disconnected manifolds: a no GAN's land"). Given the
class, a conditional generator has no such gaps to bridge, and the conditional DCGAN on MNIST draws far better images
than the unconditional one (docs/decisions/self-conditioning.md). Self-conditioning (Liu et al. 2020, "Diverse Image
Generation via Self-Conditioned GANs") takes the labels from the images themselves: k-means clusters of their pixels.
The networks learn as a conditional pair on those clusters; the model that draws samples and is exported picks the
cluster from the latent vector, each as often as the data has it (models.DrawnCluster), and takes no label.
"""

from __future__ import annotations

import io
import logging
import math
from pathlib import Path

import numpy as np

from serving.files import atomic_write_bytes

log = logging.getLogger(__name__)

IMAGES_PER_CLUSTER = 100  # on average: smaller data sets get fewer clusters (fewer than 2: none)
ITERATIONS = 50  # of Lloyd's algorithm at most; on MNIST it settles in about 30
CHUNK = 8192  # images whose distances to the centres are computed at once (8192 x 3072 floats of 32x32 RGB: 100 MB)


def cluster_count(images: int, most: int) -> int:
    """The clusters of a data set of `images` images: `most`, fewer for small data; 0 (no self-conditioning) where
    fewer than two would be left."""
    count = min(most, images // IMAGES_PER_CLUSTER)
    if most and count < 2:
        log.info("self-conditioning: off, %d images are too few for 2 clusters of %d", images, IMAGES_PER_CLUSTER)
    return count if count >= 2 else 0


def run_clusters(path: Path, images: np.ndarray, count: int, seed: int) -> np.ndarray:
    """The cluster of each training image, as the run's first start made them (kept in `path`, so that a resumed
    run learns the very same ones); made and written there when missing, or not of these images."""
    try:
        kept = np.load(path)
    except (OSError, ValueError):
        kept = None
    if kept is not None and kept.shape == (len(images),) and 0 <= kept.min(initial=0) <= kept.max(initial=0) < count:
        return kept.astype(np.int32)
    if path.exists():
        log.warning("self-conditioning: %s is unreadable or not of these images; clustering them again", path)
    clusters = cluster_images(images, count, seed)
    buffer = io.BytesIO()
    np.save(buffer, clusters)
    atomic_write_bytes(path, buffer.getvalue())
    return clusters


def cluster_images(images: np.ndarray, count: int, seed: int) -> np.ndarray:
    """The k-means cluster (0 … count-1) of each uint8 image (N, H, W, C), by the Euclidean distance of their
    pixels, from k-means++ centres drawn with `seed`. Clusters come numbered by size, the largest first."""
    points = images.reshape(len(images), -1).astype(np.float32) / 255.0
    log.info("self-conditioning: clustering %d images into %d clusters (once per run)", len(points), count)
    centres = _kmeans_plus_plus(points, count, np.random.default_rng(seed))
    clusters = _nearest(points, centres)
    for _ in range(ITERATIONS):
        centres = np.stack([_centre(points, clusters, c, centres[c]) for c in range(count)])
        moved = _nearest(points, centres)
        if np.array_equal(moved, clusters):
            break
        clusters = moved
    by_size = np.argsort(-np.bincount(clusters, minlength=count), kind="stable")
    return np.argsort(by_size)[clusters].astype(np.int32)


def _kmeans_plus_plus(points: np.ndarray, count: int, rng: np.random.Generator) -> np.ndarray:
    """Greedy k-means++ (Arthur & Vassilvitskii 2007, as scikit-learn does it): each next centre the best, by the
    summed squared distance to the nearest centre, of a few candidates drawn with probability proportional to that
    distance. With one candidate, three plain groups of test images came out as two merged and one split."""
    candidates = 2 + int(math.log(count))
    centres = [points[rng.integers(len(points))]]
    nearest = _squared_distances(points, centres[0][None])[:, 0]
    for _ in range(1, count):
        picks = rng.choice(len(points), size=candidates, p=nearest / nearest.sum())
        options = np.minimum(nearest[:, None], _squared_distances(points, points[picks]))
        best = int(options.sum(axis=0).argmin())
        centres.append(points[picks[best]])
        nearest = options[:, best]
    return np.stack(centres)


def _nearest(points: np.ndarray, centres: np.ndarray) -> np.ndarray:
    return np.concatenate(
        [_squared_distances(points[i : i + CHUNK], centres).argmin(axis=1) for i in range(0, len(points), CHUNK)]
    )


def _squared_distances(points: np.ndarray, centres: np.ndarray) -> np.ndarray:
    squares = (points * points).sum(axis=1)[:, None] - 2 * points @ centres.T + (centres * centres).sum(axis=1)
    return np.maximum(squares, 0.0)


def _centre(points: np.ndarray, clusters: np.ndarray, cluster: int, previous: np.ndarray) -> np.ndarray:
    """The mean of a cluster's points; an emptied cluster keeps its centre."""
    members = points[clusters == cluster]
    return members.mean(axis=0) if len(members) else previous
