"""VAE approach: the KL term, the conditional-VAE U-Net, training with KL annealing, loading."""
import csv
from pathlib import Path

import pytest
import torch

from srlab.cli.train import train
from srlab.inference.checkpoint import load_net
from srlab.losses.kl import gaussian_kl
from srlab.nets.bicubic import Bicubic
from srlab.nets.cvae_unet import CVAEUNet

VAE_FAST = ["experiment=vae", "net.channels=8", "net.depth=2", "net.space_to_depth=1", "trainer.log_every_n_steps=1"]


def test_gaussian_kl_by_hand():
    zeros = torch.zeros(2, 4, 3, 3)
    assert float(gaussian_kl(zeros, zeros)) == 0.0  # the posterior is the prior
    # mu = 1, var = 1: 0.5 per latent value, 36 values per image, divided by 12
    assert float(gaussian_kl(torch.ones(2, 4, 3, 3), zeros, per_values=12)) == pytest.approx(0.5 * 36 / 12)
    # var = e: 0.5 * (e - 1 - 1) per value
    assert float(gaussian_kl(zeros[:, :1, :1, :1], torch.ones(2, 1, 1, 1))) == pytest.approx(0.5 * (torch.e - 2))


@pytest.mark.parametrize("s2d", [1, 2])
def test_cvae_unet_latent_grid_and_untrained_output_is_bicubic(s2d):
    torch.manual_seed(0)
    net = CVAEUNet(2, channels=8, depth=2, latent_channels=4, space_to_depth=s2d)
    lr, hr = torch.rand(2, 3, 13, 11), torch.rand(2, 3, 26, 22)
    mu, logvar = net.encode(lr, hr)
    assert mu.shape == logvar.shape == net.latent_shape(lr)
    z = torch.randn(net.latent_shape(lr))
    assert torch.allclose(net(lr, z), Bicubic(2)(lr), atol=1e-6)  # zero head: bicubic whatever z is
    torch.nn.init.normal_(net.head.weight, std=0.1)
    assert torch.equal(net(lr), net(lr, torch.zeros_like(z)))  # no z = the prior mean
    assert (net(lr, z) - net(lr)).abs().max() > 1e-4  # z reaches the output


def test_vae_trains_with_kl_annealing_and_loads_for_inference(image_folder, make_cfg):
    folder = image_folder(n=4)
    cfg = make_cfg(VAE_FAST + ["data=folder", f"data.train_dir={folder}", "logger=csv", "trainer.max_steps=12",
                               "trainer.val_check_interval=6"])
    assert cfg.approach.kl_warmup_steps == 3
    metrics = train(cfg)
    assert metrics["train/steps"] == 12 and metrics["val/kl"] >= 0 and metrics["val/posterior_psnr_y"] > 10
    run_dir = Path(cfg.paths.output_dir)
    with open(run_dir / "csv" / "metrics.csv") as f:
        rows = [r for r in csv.DictReader(f) if r["train/kl_weight"]]
    weights = [float(r["train/kl_weight"]) for r in rows]
    assert weights[0] == 0.0 and weights[-1] == pytest.approx(cfg.approach.kl_weight)
    assert weights == sorted(weights)
    assert all(float(r["train/loss/kl"]) >= 0 for r in rows)
    net, _ = load_net(run_dir / "checkpoints" / "last.ckpt")
    assert isinstance(net, CVAEUNet)
    lr = torch.rand(1, 3, 12, 12)
    with torch.no_grad():
        assert torch.equal(net(lr), net(lr))  # deterministic at inference (z = 0)
        assert net.sample(lr).shape == (1, 3, 48, 48)


def test_vae_with_a_plain_net_is_one_clear_error(make_cfg):
    from hydra.utils import instantiate

    cfg = make_cfg(["approach=vae"])
    with pytest.raises(Exception, match="needs a net with a posterior encoder"):
        instantiate(cfg.approach, net=instantiate(cfg.net), loss=instantiate(cfg.loss))


def test_posterior_logvar_is_bounded_but_never_loses_its_gradient():
    net = CVAEUNet(2, channels=8, depth=1, latent_channels=2)
    last = net.posterior[-1]
    torch.nn.init.zeros_(last.weight)
    with torch.no_grad():
        last.bias.copy_(torch.tensor([0.0, 0.0, -40.0, 40.0]))  # raw logvar far outside +-10
    mu, logvar = net.encode(torch.rand(1, 3, 8, 8), torch.rand(1, 3, 16, 16))
    assert logvar.abs().max() < 10
    gaussian_kl(mu, logvar).backward()
    assert last.bias.grad[2] < 0 and last.bias.grad[3] > 0  # KL still pulls both back toward 0
