"""Published recipes as experiment configs: each composes to the paper's settings and runs."""
from __future__ import annotations

import pytest

from srlab.cli.entry import _find_user_error, user_error_message
from srlab.cli.train import train
from srlab.data.prepared import prepare_store
from tests.conftest import FAST


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


def test_default_recipe_is_photo_x4_and_beats_bicubic_within_seconds(make_cfg):
    """`make train` (no overrides) runs experiment=photo_x4: the light EDSR, L1, 24 px LR patches
    on the scikit-image photos (issue 10). 40 of its steps on those photos
    already beat bicubic on held-out photo crops: the residual net starts at bicubic."""
    cfg = make_cfg([], fast=False)
    assert cfg.net._target_ == "srlab.nets.edsr.EDSR" and cfg.net.upsampler == "direct" and cfg.net.residual
    assert list(cfg.loss.terms) == ["l1"] and cfg.data.patch_size == 96 and cfg.scale == 4
    assert cfg.approach.ema.decay == 0.999
    assert cfg.data._target_.endswith("SamplesDataModule")
    cfg = make_cfg(["logger=none", "trainer.max_time=null", "trainer.max_steps=40", "trainer.val_check_interval=40",
                    "data.batch_size=8", "data.val_crop=128", "callbacks.progress_bar=null",
                    "trainer.accelerator=cpu"], fast=False)
    metrics = train(cfg)
    assert metrics["train/steps"] == 40
    assert metrics["val/psnr_y"] > metrics["val/bicubic_psnr_y"] + 0.2, metrics


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


# ---- ESRGAN / Real-ESRGAN ----
RANDOM_VGG = "loss.terms.perceptual.fn.weights=random"
SMALL_GAN = ["approach.critic.channels=4", "trainer.log_every_n_steps=1", "data.val_crop=32"]
# the FAST settings without the U-Net's keys, and a one-block RRDBNet (the generator of these recipes)
TINY_RRDB = [o for o in FAST if not o.startswith(("net.", "experiment="))] + TINY_NETS["rrdbnet"]


def test_esrgan_recipe(make_cfg):
    cfg = make_cfg(["experiment=esrgan"], fast=False)
    assert cfg.net._target_.endswith("RRDBNet") and cfg.net.n_blocks == 23
    assert cfg.approach.critic._target_.endswith("VGGCritic") and cfg.approach.critic.input_size == 128
    assert cfg.approach.adversarial.kind == "ragan" and cfg.approach.adv_weight == 5e-3
    assert cfg.loss.terms.l1.weight == 0.01 and cfg.loss.terms.perceptual.weight == 1.0
    fn = cfg.loss.terms.perceptual.fn
    assert fn.arch == "vgg19" and dict(fn.layers) == {"conv5_4": 1.0} and fn.distance == "l1"
    assert list(cfg.approach.scheduler.milestones) == [50000, 100000, 200000, 300000]
    assert cfg.approach.optimizer.lr == cfg.approach.critic_optimizer.lr == 1e-4
    assert cfg.data.patch_size == 128 and cfg.degradation._target_.endswith("BicubicDegradation")


@pytest.mark.slow  # ~10-15 s on 2 busy cores: VGG19 up to conv5_4 on CPU
def test_esrgan_fast_dev_run(make_cfg):
    metrics = train(make_cfg(["experiment=esrgan", RANDOM_VGG, "debug=fdr", *SMALL_GAN, *TINY_RRDB], fast=False))
    assert metrics["train/steps"] == 2 and "val/psnr_y" in metrics  # one batch: generator + critic


def test_realesrgan_recipe(make_cfg):
    cfg = make_cfg(["experiment=realesrgan"], fast=False)
    assert cfg.approach.critic._target_.endswith("UNetCritic") and cfg.approach.critic.use_spectral_norm
    assert cfg.approach.adversarial.kind == "vanilla" and cfg.approach.adv_weight == 0.1
    assert dict(cfg.loss.terms.perceptual.fn.layers) == {"conv1_2": 0.1, "conv2_2": 0.1, "conv3_4": 1.0,
                                                          "conv4_4": 1.0, "conv5_4": 1.0}
    assert cfg.degradation._target_.endswith("RealESRGAN") and cfg.degradation.pool_size == 180
    assert cfg.degradation.sharpen_gt.weight == 0.5 and cfg.approach.ema.decay == 0.999
    assert cfg.data.patch_size == 256 and cfg.data.batch_size == 12


@pytest.mark.slow  # ~20-30 s on 2 busy cores: two runs, VGG19 on CPU
def test_realesrgan_starts_from_a_realesrnet_run(make_cfg, tmp_path):
    psnr = make_cfg(["experiment=realesrnet", "trainer.max_steps=1", "trainer.val_check_interval=1", "data.val_crop=32",
                     *TINY_RRDB], run_dir=tmp_path / "psnr", fast=False)
    train(psnr)
    ckpt = tmp_path / "psnr" / "checkpoints" / "last.ckpt"
    metrics = train(make_cfg(["experiment=realesrgan", RANDOM_VGG, "debug=fdr", f"approach.init_from={ckpt}",
                              *SMALL_GAN, *TINY_RRDB], run_dir=tmp_path / "gan", fast=False))
    assert metrics["train/steps"] == 2 and "val/psnr_y" in metrics


@pytest.mark.parametrize("experiment", ["esrgan", "realesrgan"])
def test_without_the_vgg19_file_offline_the_run_stops_with_one_line(experiment, make_cfg, offline_hub):
    with pytest.raises(Exception) as err:
        train(make_cfg([f"experiment={experiment}", "debug=fdr", *TINY_RRDB], fast=False))
    message = user_error_message(_find_user_error(err.value))
    assert "\n" not in message
    assert f"put vgg19-dcbb9e9d.pth in {offline_hub}/" in message
    assert "loss.terms.perceptual.fn.weights=" in message
