"""Where HR images come from: the photos scikit-image and matplotlib ship, or a user's folder.

Data modules only need a list of (name, path) pairs split into train and val; this file makes
those lists and refuses, with one line naming the path, anything that would give an empty or
unreadable data set. Reading pixels is `images.read_image`'s job.
"""

from __future__ import annotations

import hashlib
import importlib.util
import math
from pathlib import Path

from srlab.errors import SrlabError

# Real photos shipped inside the scikit-image wheel (no pooch download), name -> file name.
# Synthetic/binary images (horse, logo, checkerboards, text, cell, blobs...) are left out:
# they teach a net nothing about natural images. So is clock_motion.png: motion-blurred, it is
# a bad HR target, and as a val image its flat content (43 dB) dominated the mean val PSNR and
# fell as the net learnt to sharpen, so best.ckpt picked early, worse checkpoints (measured:
# best 29.93 vs last 30.14 dB on Set5 x4 after 2600 steps).
SAMPLE_COLOR = {
    "astronaut": "astronaut.png",
    "coffee": "coffee.png",
    "chelsea": "chelsea.png",
    "rocket": "rocket.jpg",
    "hubble_deep_field": "hubble_deep_field.jpg",
    "immunohistochemistry": "ihc.png",
    "retina": "retina.jpg",
    # a stereo pair (Middlebury): two views of one cluttered indoor scene, the only other
    # sharp natural photos in the wheel
    "motorcycle_left": "motorcycle_left.png",
    "motorcycle_right": "motorcycle_right.png",
}
SAMPLE_GRAY = {
    "camera": "camera.png",
    "moon": "moon.png",
    "brick": "brick.png",
    "grass": "grass.png",
    "gravel": "gravel.png",
    "coins": "coins.png",
    "page": "page.png",
}
# Photos shipped by matplotlib (a dependency of srlab), in mpl-data/sample_data: a sharp
# portrait, the only face photo besides astronaut (measured on the val photos: +0.05-0.09 dB
# at every validation of the default recipe; Set5 x4 30.70 -> 30.80, Set14 27.60 -> 27.60).
SAMPLE_MPL = {
    "grace_hopper": "grace_hopper.jpg",
}
SAMPLES = {**SAMPLE_COLOR, **SAMPLE_GRAY, **SAMPLE_MPL}

IMAGE_EXTENSIONS = (".png", ".jpg", ".jpeg", ".bmp", ".tif", ".tiff", ".webp")


def _package_dir(package: str, pip_name: str) -> Path:
    """site-packages/<package>, found without importing it."""
    spec = importlib.util.find_spec(package)
    if spec is None or not spec.submodule_search_locations:
        raise SrlabError(f"data=samples needs {pip_name}: pip install {pip_name}")
    return Path(list(spec.submodule_search_locations)[0])


def sample_dir() -> Path:
    """site-packages/skimage/data."""
    return _package_dir("skimage", "scikit-image") / "data"


def sample_path(name: str) -> Path:
    """Where the sample photo `name` is: scikit-image's data folder, or matplotlib's."""
    if name in SAMPLE_MPL:
        return _package_dir("matplotlib", "matplotlib") / "mpl-data" / "sample_data" / SAMPLE_MPL[name]
    return sample_dir() / SAMPLES[name]


def sample_split(val_names: list[str]) -> tuple[list[tuple[str, Path]], list[tuple[str, Path]]]:
    """(train, val) lists of (name, path) over SAMPLES; val is exactly `val_names`."""
    unknown = [n for n in val_names if n not in SAMPLES]
    if unknown:
        raise SrlabError(
            f"data.val_names: unknown sample image(s) {unknown}; choose from {sorted(SAMPLES)}"
        )
    paths = {n: sample_path(n) for n in SAMPLES}
    missing = [str(p) for p in paths.values() if not p.is_file()]
    if missing:
        raise SrlabError(f"sample file(s) missing: {missing}; reinstall scikit-image and matplotlib")
    train = [(n, p) for n, p in paths.items() if n not in val_names]
    val = [(n, paths[n]) for n in val_names]
    if not train:
        raise SrlabError("data.val_names lists every sample image; leave some for training")
    return train, val


def list_images(folder: str | Path, what: str = "data.train_dir") -> list[Path]:
    """All image files under `folder` (recursive, extensions case-insensitive), sorted."""
    root = Path(folder).expanduser()
    exts = " ".join(IMAGE_EXTENSIONS)
    if not root.is_dir():
        raise SrlabError(f"{what}: folder {root} does not exist; point it at a folder of images")
    files = sorted(
        p for p in root.rglob("*")
        if p.suffix.lower() in IMAGE_EXTENSIONS and p.is_file() and not p.name.startswith(".")
    )
    if not files:
        raise SrlabError(f"{what}: no images in {root} (accepted extensions: {exts})")
    return files


def _named(root: Path, files: list[Path]) -> list[tuple[str, Path]]:
    # The relative path (without suffix) keeps names unique across sub-folders.
    return [(str(p.relative_to(root).with_suffix("")), p) for p in files]


def _hash_unit(name: str) -> float:
    """Stable pseudo-random number in [0,1) from a name (same on every machine and run)."""
    return int.from_bytes(hashlib.sha1(name.encode()).digest()[:8], "big") / 2**64


def folder_items(folder: str | Path, what: str = "data.train_dir") -> list[tuple[str, Path]]:
    """(name, path) of every image under `folder`; names are relative paths without suffix."""
    root = Path(folder).expanduser()
    return _named(root, list_images(root, what))


def hashed_split(names: list[str], val_fraction: float, what: str) -> tuple[list[int], list[int]]:
    """(train ids, val ids): the ceil(val_fraction * n) names (at least 1, and at least 1 left
    for training) with the smallest SHA-1 hash are val: deterministic, the same on every
    machine, and not biased by file order (sorted names often group similar shots together)."""
    if len(names) < 2:
        raise SrlabError(
            f"{what} has {len(names)} image(s); a train/val split needs at least 2 "
            "(or set data.val_dir)"
        )
    if not 0 < val_fraction < 1:
        raise SrlabError(f"data.val_fraction must be in (0, 1), got {val_fraction}")
    n_val = min(len(names) - 1, max(1, math.ceil(val_fraction * len(names) - 1e-9)))
    val_ids = set(sorted(range(len(names)), key=lambda i: _hash_unit(names[i]))[:n_val])
    return [i for i in range(len(names)) if i not in val_ids], sorted(val_ids)


def folder_split(
    train_dir: str | Path, val_dir: str | Path | None = None, val_fraction: float = 0.1
) -> tuple[list[tuple[str, Path]], list[tuple[str, Path]]]:
    """(train, val) lists of (name, path) from folders.

    With `val_dir`, train is all of `train_dir` and val all of `val_dir`. Without it, val is a
    `hashed_split` of `train_dir`'s images by their relative path.
    """
    train = folder_items(train_dir, "data.train_dir")
    if val_dir is not None:
        return train, folder_items(val_dir, "data.val_dir")
    train_ids, val_ids = hashed_split([n for n, _ in train], val_fraction,
                                      f"data.train_dir: {Path(train_dir).expanduser()}")
    return [train[i] for i in train_ids], [train[i] for i in val_ids]
