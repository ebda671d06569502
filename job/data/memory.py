"""Whether a run fits in this machine's memory, checked before it trains: a run that does not fit is killed by the
kernel (exit 137, no message), so it is refused in one line instead. Twice: before images are read or resized (their
uint8 arrays, TensorFlow-free), then before the first step (the networks). A quality measurement is checked the same
way, before anything loads TensorFlow (check_room_for_samples: the samples it holds at once).

The memory available is the least of the kernel's MemAvailable and what a container's limit leaves (cgroup v2's
memory.max, or v1's memory.limit_in_bytes), the page cache the kernel would reclaim first not counted as used.

The networks' estimate is a lower bound of what training holds at once, on the CPU: the training set twice (the
uint8 array and TensorFlow's copy of it, resident for the whole run), every network variable with its gradient and
the two Adam slots (the moving average once more), and each layer's output for a step's images three times (kept
for the backward pass, its gradient, one more in flight). TensorFlow itself needs about 1-3 GB beside it.
"""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np

from job.errors import ConfigError

FLOAT = 4  # bytes of a float32
FEATURES = 128  # per sample: the quality classifier's feature layer (build_classifier, job/analysis/quality.py)
ROOT = Path("/")  # where /proc and /sys are; tests point it at a folder of their own
MEMINFO = "proc/meminfo"
OWN_CGROUPS = "proc/self/cgroup"  # this process's cgroup in each hierarchy
CGROUP = "sys/fs/cgroup"  # cgroup v2's single hierarchy: what a pod's memory limit sets
CGROUP_V1 = "sys/fs/cgroup/memory"  # cgroup v1's memory controller
# (limit file, usage file, memory.stat's reclaimable page cache, the limit's "no limit") per cgroup version
V2 = ("memory.max", "memory.current", "inactive_file", "max")
V1 = ("memory.limit_in_bytes", "memory.usage_in_bytes", "total_inactive_file", None)
V1_UNLIMITED = 2**62  # v1 says "no limit" with a huge number: 9223372036854771712 (2**63 - 1, page-rounded)


def available_bytes(root: Path | None = None) -> int | None:
    """Memory this process may still use: the kernel's MemAvailable, or less under a container's limit (cgroup v2
    or v1); None where neither can be read. `root`: where /proc and /sys are (ROOT)."""
    root = root or ROOT
    candidates = [_mem_available(root)]
    for version, mount in ((V2, root / CGROUP), (V1, root / CGROUP_V1)):
        candidates += [_cgroup_room(folder, *version) for folder in _cgroup_folders(root, mount, version is V2)]
    known = [candidate for candidate in candidates if candidate is not None]
    return max(0, min(known)) if known else None


def _mem_available(root: Path) -> int | None:
    try:
        for line in (root / MEMINFO).read_text().splitlines():
            if line.startswith("MemAvailable:"):
                return int(line.split()[1]) * 1024
    except (OSError, ValueError, IndexError):
        pass
    return None


def _cgroup_folders(root: Path, mount: Path, v2: bool) -> list[Path]:
    """Where this process's memory limit may be: the hierarchy's mount (a container's own cgroup, as it sees it) and,
    where the host's hierarchy is visible, the folder of the cgroup /proc/self/cgroup names."""
    folders = [mount]
    try:
        lines = (root / OWN_CGROUPS).read_text().splitlines()
    except OSError:
        lines = []
    for line in lines:
        number, controllers, path = (line.split(":", 2) + ["", ""])[:3]
        ours = controllers == "" and number == "0" if v2 else "memory" in controllers.split(",")
        if ours and path.strip("/") and (mount / path.strip("/")).is_dir():
            folders.append(mount / path.strip("/"))
    return folders


def _cgroup_room(folder: Path, limit_file: str, usage_file: str, cache_key: str, unlimited: str | None) -> int | None:
    """What a cgroup's limit leaves: limit - (usage - reclaimable page cache); None without a limit."""
    try:
        limit = (folder / limit_file).read_text().strip()
        if limit == unlimited or int(limit) >= V1_UNLIMITED:
            return None
        used = int((folder / usage_file).read_text())
    except (OSError, ValueError):
        return None
    return int(limit) - used + _stat(folder, cache_key)


def _stat(folder: Path, key: str) -> int:
    """A value of a cgroup's memory.stat; 0 where it cannot be read."""
    try:
        for line in (folder / "memory.stat").read_text().splitlines():
            name, _, value = line.partition(" ")
            if name == key:
                return int(value)
    except (OSError, ValueError):
        pass
    return 0


def check_fits(images: np.ndarray, networks: dict[str, int]) -> None:
    """ConfigError when training on `images` needs more than the memory available: the images twice over, and the
    networks' own estimate in bytes (job.networks.models.training_bytes)."""
    parts = {"data": 2 * images.nbytes} | networks
    what = f"training {len(images)} images of {_shape(images.shape[1:])}"
    _refuse_beyond(what, parts, "a smaller --image-size, fewer images, or a machine with more memory")


def check_room_for_images(count: int, shape: tuple[int, ...]) -> None:
    """ConfigError when `count` uint8 images of `shape` (height, width, channels) would not fit, twice over (they
    are stacked into one array from the images read or resized one by one)."""
    _refuse_beyond(
        f"reading {count} images of {_shape(shape)}",
        {"images": 2 * count * math.prod(shape)},
        "a smaller --image-size or fewer images",
    )


def check_room_for_samples(count: int, latent_dim: int, shape: tuple[int, ...], option: str) -> None:
    """ConfigError when a quality measurement of `count` samples of `shape` would not fit: it holds their latents,
    the images drawn from them (as drawn, and as the classifier takes them) and their features at once."""
    _refuse_beyond(
        f"measuring {count} samples of {_shape(shape)}",
        {
            "latents": count * latent_dim * FLOAT,
            "images": 2 * count * math.prod(shape) * FLOAT,
            "features": count * FEATURES * FLOAT,
        },
        f"fewer {option}",
    )


def _refuse_beyond(what: str, parts: dict[str, int], advice: str) -> None:
    available = available_bytes()
    if available is None or sum(parts.values()) <= available:
        return
    detail = ", ".join(f"{name} {_size(size)}" for name, size in parts.items())
    raise ConfigError(
        f"{what} needs at least {_size(sum(parts.values()))} of memory ({detail}), {_size(available)} is "
        f"available: use {advice}"
    )


def _shape(shape: tuple[int, ...]) -> str:
    return "x".join(map(str, shape))


def _size(size: int) -> str:
    return f"{size / 1e9:.1f} GB" if size >= 1e9 else f"{size / 1e6:.0f} MB"
