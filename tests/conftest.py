"""Shared fixtures: compose the real configs (as srlab-train would) with tiny, fast settings."""
import os
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from srlab.config.compose import compose_config

os.environ.setdefault("WANDB_MODE", "offline")
os.environ.setdefault("WANDB_SILENT", "true")
torch.set_num_threads(max(1, min(2, os.cpu_count() or 1)))

# Settings that make any composed training config run in seconds on a CPU. experiment=unet
# replaces the default recipe (experiment=photo_x4, an EDSR) by the plain U-Net defaults the
# net.* keys below fit; a test's own experiment=... comes later and wins.
FAST = [
    "experiment=unet",
    "trainer.accelerator=cpu",
    "trainer.max_time=null",
    "logger=none",
    "data.num_workers=0",
    "data.batch_size=4",
    "data.patch_size=32",
    "net.channels=8",
    "net.depth=2",
    "net.space_to_depth=1",
]


def compose_cfg(config_name: str, overrides: list[str], run_dir: Path):
    """Compose like the CLI does, with the Hydra runtime set so ${hydra:...} resolves."""
    return compose_config(config_name, overrides, run_dir)


@pytest.fixture
def make_cfg(tmp_path):
    def make(overrides=(), config_name="train", fast=True, run_dir=None):
        extra = FAST if (fast and config_name == "train") else []
        return compose_cfg(config_name, extra + list(overrides), run_dir or tmp_path / "run")

    return make


def write_images(folder: Path, n: int, size=(48, 40), seed=0, ext=".png") -> list[Path]:
    """Smooth random colour images (structured enough that SR can beat bicubic on them)."""
    folder.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(seed)
    h, w = size
    yy, xx = np.mgrid[0:h, 0:w]
    paths = []
    for i in range(n):
        img = np.zeros((h, w, 3))
        for c in range(3):
            for _ in range(4):
                fy, fx, ph = rng.uniform(0.05, 0.4), rng.uniform(0.05, 0.4), rng.uniform(0, 6.3)
                img[..., c] += np.sin(fy * yy + fx * xx + ph)
        img += (((xx // 6 + yy // 6) % 2) * 2 - 1)[..., None] * 1.5  # sharp edges: detail to restore
        img = (img - img.min()) / (img.max() - img.min())
        path = folder / f"img{i:02d}{ext}"
        Image.fromarray((img * 255).astype(np.uint8)).save(path)
        paths.append(path)
    return paths


@pytest.fixture
def image_folder(tmp_path):
    return lambda name="hr", n=6, **kw: (write_images(tmp_path / name, n, **kw), tmp_path / name)[1]


@pytest.fixture
def offline_hub(tmp_path, monkeypatch):
    """An empty torch hub cache and no network: what loading ImageNet weights meets offline.
    Returns the folder the one-line error must name."""
    from srlab.losses import vgg

    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "th"))

    def offline(url, path):
        raise OSError("offline")

    monkeypatch.setattr(vgg, "_download", offline)
    return tmp_path / "th" / "hub" / "checkpoints"
