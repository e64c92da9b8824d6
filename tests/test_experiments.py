"""Published recipes as experiment configs: each composes to the paper's settings and runs."""
from __future__ import annotations

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
