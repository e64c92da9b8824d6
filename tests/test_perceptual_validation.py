"""Validation measures by name (val.metrics), logged for SR and bicubic into val_history.csv,
and best.ckpt kept by any of them with the mode of its direction (the perceptual recipes:
LPIPS where its backbone file is, else NIQE)."""
import csv
import logging
import math
from pathlib import Path

import pytest
import torch
from torchvision import models

from srlab.cli.train import train
from srlab.errors import SrlabError
from srlab.losses import vgg
from tests.conftest import write_images

GAN = ["experiment=gan", "approach.critic.channels=8", "data=folder", "data.batch_size=2",
       "trainer.max_steps=8", "trainer.val_check_interval=1", "callbacks.sample_panels.n_images=0"]


@pytest.fixture
def folders(tmp_path):
    write_images(tmp_path / "train", 2, size=(48, 48))
    write_images(tmp_path / "val", 1, size=(200, 208), seed=3)  # two 96 px NIQE blocks inside the border
    return [f"data.train_dir={tmp_path / 'train'}", f"data.val_dir={tmp_path / 'val'}"]


@pytest.fixture
def alexnet_file(tmp_path, monkeypatch):
    """A random AlexNet where torchvision keeps its ImageNet weights (features only)."""
    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "torch"))
    path = vgg.hub_file(models.AlexNet_Weights.IMAGENET1K_V1)
    path.parent.mkdir(parents=True)
    torch.manual_seed(0)
    torch.save({f"features.{k}": v for k, v in models.alexnet().features.state_dict().items()}, path)


def history(cfg) -> list[dict]:
    with open(Path(cfg.paths.output_dir) / "val_history.csv") as f:
        return list(csv.DictReader(f))


def best_state(cfg) -> dict:
    ckpt = torch.load(Path(cfg.paths.output_dir) / "checkpoints" / "best.ckpt", map_location="cpu", weights_only=False)
    return next(v for k, v in ckpt["callbacks"].items() if k.startswith("BestCheckpoint"))


def test_a_gan_run_logs_lpips_and_niqe_and_keeps_the_lowest_lpips(make_cfg, folders, alexnet_file):
    cfg = make_cfg(GAN + folders)
    metrics = train(cfg)
    rows = history(cfg)
    assert len(rows) == 4
    for key in ("val/lpips", "val/bicubic_lpips", "val/niqe", "val/bicubic_niqe", "val/psnr_y", "val/gain_psnr_y"):
        assert all(math.isfinite(float(r[key])) for r in rows), key
    assert len({r["val/bicubic_lpips"] for r in rows}) == 1  # bicubic: measured once, the same every time
    assert len({r["val/lpips"] for r in rows}) > 1
    state = best_state(cfg)
    lowest = min(float(r["val/lpips"]) for r in rows)
    assert state["monitor"] == "val/lpips"
    assert float(state["best_model_score"]) == pytest.approx(lowest, abs=1e-6)
    assert metrics["val/lpips"] == pytest.approx(lowest, abs=1e-5)  # the final validation is of best.ckpt


def test_without_the_backbone_the_recipe_keeps_best_by_niqe_in_one_line(make_cfg, folders, offline_hub, caplog):
    cfg = make_cfg(GAN + folders + ["trainer.max_steps=4"])
    with caplog.at_level(logging.WARNING):
        train(cfg)
    assert "lpips left out" in caplog.text and "best.ckpt follows val/niqe" in caplog.text
    state = best_state(cfg)
    assert state["monitor"] == "val/niqe"
    assert float(state["best_model_score"]) == pytest.approx(min(float(r["val/niqe"]) for r in history(cfg)), abs=1e-5)


def test_a_monitor_validation_does_not_measure_is_one_line(make_cfg, folders):
    cfg = make_cfg(folders + ["data=folder", "trainer.max_steps=2", "callbacks.best.monitor=val/dists"])
    with pytest.raises(SrlabError, match=r"val/dists is not measured \(val.metrics=\[psnr,ssim\]"):
        train(cfg)
    cfg = make_cfg(folders + ["data=folder", "trainer.max_steps=2", "val.metrics=[psnr,ssim,niqe]",
                              "callbacks.best.monitor=val/niqe"], run_dir=Path(cfg.paths.output_dir).parent / "b")
    train(cfg)
    assert best_state(cfg)["monitor"] == "val/niqe"


def test_snapshots_every_n_steps_with_their_measures(make_cfg, folders):
    from srlab.inference.checkpoint import load_net

    cfg = make_cfg(folders + ["data=folder", "trainer.max_steps=6", "trainer.val_check_interval=2",
                              "callbacks.snapshots.every_n_steps=4", "val.metrics=[psnr,ssim,niqe]"])
    train(cfg)
    snaps = Path(cfg.paths.output_dir) / "snapshots"
    with open(snaps / "measures.csv") as f:
        rows = list(csv.DictReader(f))
    assert [int(r["step"]) for r in rows] == [4]  # validations at 2, 4, 6: one per 4 steps
    assert rows[0]["file"] == "step0000004.srlab.safetensors" and float(rows[0]["val/psnr_y"]) > 0
    assert "val/niqe" in rows[0]
    net, info = load_net(snaps / rows[0]["file"])  # a U-Net has no spandrel counterpart: srlab's own file
    assert info["scale"] == 4 and net(torch.rand(1, 3, 8, 8)).shape[-1] == 32
