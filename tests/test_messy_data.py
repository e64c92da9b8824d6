"""A real user's folder: odd modes, odd names and broken files together; training goes on."""
from __future__ import annotations

import logging

import numpy as np
from PIL import Image

from srlab.cli.train import train


def _photo(h, w, seed):
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[0:h, 0:w]
    base = np.sin(xx / 5.0 + seed) + np.cos(yy / 7.0) + rng.normal(0, 0.1, (h, w))
    img = np.stack([base, np.roll(base, 3, 1), np.roll(base, 5, 0)], -1)
    return ((img - img.min()) / (img.max() - img.min()) * 255).astype(np.uint8)


def messy_folder(root):
    root.mkdir(parents=True)
    (root / "sub dir ü").mkdir()
    Image.fromarray(_photo(48, 56, 0)).convert("CMYK").save(root / "cmyk.jpg", quality=95)
    Image.fromarray(_photo(48, 48, 1)).convert("P", palette=Image.ADAPTIVE).save(root / "palette.png")
    Image.fromarray((_photo(48, 48, 2)[..., 0].astype(np.uint16) * 257)).save(root / "gray16.png")
    rgba = np.concatenate([_photo(52, 48, 3), np.full((52, 48, 1), 200, np.uint8)], -1)
    Image.fromarray(rgba, "RGBA").save(root / "alpha.png")
    exif = Image.Exif()
    exif[0x0112] = 6  # rotated 90 degrees: read upright
    Image.fromarray(_photo(40, 64, 4)).save(root / "phone.jpg", exif=exif, quality=95)
    Image.fromarray(_photo(48, 48, 5)).save(root / "sub dir ü" / "Grüße 1.PNG")
    Image.fromarray(_photo(12, 12, 6)).save(root / "tiny.png")  # smaller than the patch
    good = (root / "palette.png").read_bytes()
    (root / "truncated.png").write_bytes(good[: len(good) // 3])
    (root / "empty.jpg").write_bytes(b"")
    (root / "notes.png").write_text("not an image")
    return root


def test_messy_folder_trains_on_the_usable_images(tmp_path, make_cfg, caplog):
    root = messy_folder(tmp_path / "photos ü")
    # Hydra needs a path with spaces quoted: data.train_dir='...'
    cfg = make_cfg(["data=folder", f"data.train_dir='{root}'", "data.val_fraction=0.2", "scale=2",
                    "data.patch_size=32", "trainer.max_steps=4", "trainer.val_check_interval=4"])
    with caplog.at_level(logging.WARNING):
        metrics = train(cfg)
    assert metrics["train/steps"] == 4 and np.isfinite(metrics["val/psnr_y"])
    lines = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]
    for skipped in ("tiny.png", "empty.jpg", "notes.png"):  # found at setup, one line each
        assert sum(skipped in line for line in lines) == 1, skipped
    assert sum("truncated.png" in line for line in lines) == 1  # found when first decoded
