"""Published recipes as experiment configs: each composes to the paper's settings and runs."""
from __future__ import annotations

import pytest

from srlab.data.prepared import prepare_store
from srlab.train import train


def test_edsr_div2k_recipe_and_fast_dev_run(image_folder, make_cfg, tmp_path):
    prepare_store(image_folder(n=5, size=(64, 64)), tmp_path / "store", progress=False)
    store = f"data.train_dir={tmp_path / 'store'}"
    cfg = make_cfg(["experiment=edsr_div2k", store], fast=False)
    # the paper's recipe (EDSR-baseline x4): what a GPU user gets without further overrides
    assert cfg.net.n_blocks == 16 and cfg.net.channels == 64 and cfg.scale == 4
    assert cfg.data.patch_size == 192 and cfg.data.batch_size == 16 and cfg.trainer.max_steps == 300_000
    assert cfg.approach.optimizer.lr == 1e-4 and list(cfg.approach.optimizer.betas) == [0.9, 0.999]
    assert list(cfg.approach.scheduler.milestones) == [200_000] and cfg.approach.scheduler.gamma == 0.5
    assert list(cfg.loss.terms) == ["l1"] and cfg.trainer.precision == "bf16-mixed"
    # and it runs end to end (one batch, on the CPU, small patches)
    cfg = make_cfg(["experiment=edsr_div2k", store, "debug=fdr", "data.patch_size=32",
                    "data.batch_size=2", "trainer.precision=32-true", "data.val_crop=32"], fast=False)
    metrics = train(cfg)
    assert metrics["train/steps"] == 1 and "val/psnr_y" in metrics


TINY_NETS = {  # one block, narrow: the recipe runs, the giant net is not built
    "rrdbnet": ["net.n_blocks=1", "net.channels=8", "net.growth=4"],
    "rcan": ["net.n_groups=1", "net.n_blocks=1", "net.channels=8", "net.reduction=4"],
    "swinir": ["net.embed_dim=12", "net.depths=[2]", "net.heads=[2]", "net.upsample_channels=8"],
    "swinir_light": ["net.embed_dim=12", "net.depths=[2]", "net.heads=[2]"],
}
RECIPES = {  # (HR patch, batch, lr, milestones, max_steps, net class) from each paper
    "rrdbnet": (128, 16, 2e-4, [200_000, 400_000, 600_000, 800_000], 1_000_000, "RRDBNet"),
    "rcan": (192, 16, 1e-4, [200_000, 400_000, 600_000, 800_000], 1_000_000, "RCAN"),
    "swinir": (192, 32, 2e-4, [250_000, 400_000, 450_000, 475_000], 500_000, "SwinIR"),
    "swinir_light": (256, 64, 2e-4, [250_000, 400_000, 450_000, 475_000], 500_000, "SwinIR"),
}


@pytest.mark.parametrize("experiment", list(RECIPES))
def test_paper_net_recipe_and_fast_dev_run(experiment, image_folder, make_cfg, tmp_path):
    prepare_store(image_folder(n=5, size=(64, 64)), tmp_path / "store", progress=False)
    store = f"data.train_dir={tmp_path / 'store'}"
    patch, batch, lr, milestones, steps, cls = RECIPES[experiment]
    cfg = make_cfg([f"experiment={experiment}", store], fast=False)
    assert cfg.net._target_.endswith(cls) and cfg.scale == 4 and cfg.net.weights is None
    assert cfg.data.patch_size == patch and cfg.data.batch_size == batch and cfg.trainer.max_steps == steps
    assert cfg.approach.optimizer.lr == lr and list(cfg.approach.optimizer.betas) == [0.9, 0.999]
    assert list(cfg.approach.scheduler.milestones) == milestones and cfg.approach.scheduler.gamma == 0.5
    assert list(cfg.loss.terms) == ["l1"]
    # and it runs end to end (one batch, on the CPU, a tiny version of the net)
    cfg = make_cfg([f"experiment={experiment}", store, "debug=fdr", "data.patch_size=32", "data.batch_size=2",
                    "trainer.precision=32-true", "data.val_crop=32", *TINY_NETS[experiment]], fast=False)
    metrics = train(cfg)
    assert metrics["train/steps"] == 1 and "val/psnr_y" in metrics
