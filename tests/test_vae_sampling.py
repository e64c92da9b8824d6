"""VAE sampling: diversity of prior draws, the collapse warning, samples from srlab-upscale / srlab-eval."""
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from srlab.cli.train import train
from srlab.cli.upscale import upscale
from srlab.errors import SrlabError
from srlab.evaluation.diversity import sample_spread
from srlab.losses.kl import gaussian_kl
from srlab.nets.cvae_unet import CVAEUNet
from srlab.nets.unet import UNet

VAE_FAST = ["experiment=vae", "net.channels=8", "net.depth=2", "net.space_to_depth=1", "net.latent_channels=4"]


@pytest.fixture(scope="module")
def vae_run(tmp_path_factory):
    """A VAE trained for a few seconds (the default logvar_init fix), validated once at the end."""
    from tests.conftest import FAST, compose_cfg, write_images

    root = tmp_path_factory.mktemp("vae")
    write_images(root / "hr", 4)
    cfg = compose_cfg("train", FAST + VAE_FAST + ["data=folder", f"data.train_dir={root / 'hr'}",
                                                  "trainer.max_steps=20", "trainer.val_check_interval=20"],
                      root / "run")
    torch.manual_seed(0)
    return train(cfg), Path(cfg.paths.output_dir)


def test_free_bits_charge_a_floor_per_channel_without_gradient():
    mu = torch.zeros(2, 2, 3, 3, requires_grad=True)
    with torch.no_grad():
        mu[:, 1] = 2.0  # channel 1: 2 nats per value, channel 0: 0 nats
    logvar = torch.zeros(2, 2, 3, 3)
    kl = gaussian_kl(mu, logvar, per_values=9, free_bits=0.5)
    assert kl.item() == pytest.approx((0.5 * 9 + 2.0 * 9) / 9)  # channel 0 charged the floor
    kl.backward()
    assert mu.grad[:, 0].abs().max() == 0 and mu.grad[:, 1].abs().min() > 0
    assert gaussian_kl(mu, logvar, per_values=9).item() == pytest.approx(2.0)  # true KL, free_bits off


def test_posterior_starts_nearly_deterministic():
    net = CVAEUNet(2, channels=8, depth=1, latent_channels=3)
    _, logvar = net.encode(torch.rand(2, 3, 8, 8), torch.rand(2, 3, 16, 16))
    assert torch.allclose(logvar, torch.full_like(logvar, 10 * np.tanh(-0.6)))  # sigma ~ 0.05, not 1


def test_diversity_is_zero_for_a_deterministic_net_and_positive_for_a_trained_vae(vae_run):
    torch.manual_seed(0)
    unet = UNet(2, channels=8, depth=1)
    torch.nn.init.normal_(unet.head.weight, std=0.1)
    spread, std, _ = sample_spread(unet, torch.rand(2, 3, 12, 12), n=8, border=2)
    assert spread.tolist() == [0.0, 0.0] and std.abs().max() == 0
    metrics, run_dir = vae_run
    assert metrics["val/sample_diversity"] > 0.01  # 8-bit Y levels
    assert list(run_dir.glob("samples/step000020_*_samples.png"))  # draws | std map panel


def test_collapse_warning_fires_when_the_latent_is_ignored(image_folder, make_cfg):
    # lr = 0: the zero-initialised head stays zero, SR is bicubic whatever z is: a collapsed model
    cfg = make_cfg(VAE_FAST + ["data=folder", f"data.train_dir={image_folder(n=3)}", "trainer.max_steps=2",
                               "trainer.val_check_interval=2", "approach.optimizer.lr=0.0", "approach.val_samples=0"])
    with pytest.warns(UserWarning, match=r"posterior collapse at step 2: .* = 0\.000 dB < 0\.05 dB"):
        metrics = train(cfg)
    assert metrics["val/posterior_psnr_y"] == pytest.approx(metrics["val/psnr_y"], abs=1e-9)


def test_upscale_writes_n_samples_for_a_vae_and_refuses_for_a_deterministic_net(vae_run, tmp_path, make_cfg):
    _, run_dir = vae_run
    Image.fromarray((np.random.default_rng(0).random((20, 24, 3)) * 255).astype(np.uint8)).save(tmp_path / "a.png")
    ckpt = run_dir / "checkpoints" / "last.ckpt"
    written = upscale(make_cfg([f"ckpt_path={ckpt}", f"input={tmp_path / 'a.png'}", "samples=3", "temperature=1.0",
                                "progress=false"], config_name="upscale"))
    assert written == [tmp_path / f"a_x4_sample{i}.png" for i in range(3)]
    images = [np.asarray(Image.open(p)).astype(float) for p in written]
    assert images[0].shape == (80, 96, 3) and np.abs(images[0] - images[1]).mean() > 0
    (tmp_path / "unet").mkdir()
    unet = UNet(4, channels=8, depth=1)
    torch.save({"state_dict": {f"net.{k}": v for k, v in unet.state_dict().items()},
                "srlab_config": {"scale": 4, "net": {"_target_": "srlab.nets.unet.UNet", "scale": 4,
                                                      "channels": 8, "depth": 1}}}, tmp_path / "unet.ckpt")
    with pytest.raises(SrlabError, match=r"^samples=2: UNet is deterministic .*use samples=1"):
        upscale(make_cfg([f"ckpt_path={tmp_path / 'unet.ckpt'}", f"input={tmp_path / 'a.png'}", "samples=2"],
                         config_name="upscale"))


def test_eval_reports_diversity_for_a_vae(vae_run, image_folder, make_cfg):
    from srlab.cli.eval import evaluate

    _, run_dir = vae_run
    folder = image_folder("set", n=2, size=(32, 32))
    metrics = evaluate(make_cfg([f"ckpt_path={run_dir / 'checkpoints' / 'last.ckpt'}", f"eval.sets=[{folder}]"],
                                config_name="eval"))
    assert metrics["set/sample_diversity"] > 0 and metrics["set/psnr_y"] > 10
