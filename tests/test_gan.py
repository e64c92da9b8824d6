"""GAN approach: adversarial loss values, the patch critic, training both nets, init and resume."""
import csv
import math
from pathlib import Path

import pytest
import torch

from srlab.approaches.gan import GanSR
from srlab.cli.train import train
from srlab.errors import SrlabError
from srlab.inference.checkpoint import load_net
from srlab.losses.adversarial import KINDS, AdversarialLoss
from srlab.nets.patch_critic import PatchCritic
from srlab.nets.unet_critic import UNetCritic
from srlab.nets.vgg_critic import VGGCritic

LOG2 = math.log(2)
GAN_FAST = ["experiment=gan", "approach.critic.channels=8", "trainer.log_every_n_steps=1"]


@pytest.mark.parametrize("kind,critic,generator", [
    ("vanilla", 2 * LOG2, LOG2), ("lsgan", 1.0, 1.0), ("hinge", 2.0, 0.0), ("ragan", LOG2, LOG2)])
def test_adversarial_losses_at_an_undecided_critic(kind, critic, generator):
    zeros = torch.zeros(2, 1, 5, 5)
    loss = AdversarialLoss(kind)
    assert float(loss.critic(zeros, zeros)) == pytest.approx(critic, abs=1e-6)
    assert float(loss.generator(zeros, zeros)) == pytest.approx(generator, abs=1e-6)


@pytest.mark.parametrize("kind", KINDS)
def test_generator_gains_by_fooling_and_critic_by_separating(kind):
    loss = AdversarialLoss(kind)
    real, fake = torch.full((4, 1), 0.5), torch.full((4, 1), -0.5)
    # the critic's loss is lower when it separates real from fake than when it mixes them up
    assert float(loss.critic(real, fake)) < float(loss.critic(fake, real))
    fake_logits = fake.clone().requires_grad_(True)
    loss.generator(fake_logits, real).backward()
    assert (fake_logits.grad < 0).all()  # raising the fake logits lowers the generator's loss
    with pytest.raises(SrlabError, match="not one of"):
        AdversarialLoss("wgan-gp?")


def test_patch_critic_gives_a_logit_map_for_any_size_with_spectral_norm():
    critic = PatchCritic(channels=8)
    for size in (96, 50):
        out = critic(torch.rand(2, 3, size, size))
        assert out.shape[:2] == (2, 1) and out.shape[-1] == size // 8 - 2
    convs = [m for m in critic.modules() if isinstance(m, torch.nn.Conv2d)]
    assert convs and all(hasattr(m, "parametrizations") for m in convs)
    assert not any(isinstance(m, torch.nn.BatchNorm2d) for m in critic.modules())


def test_gan_trains_generator_and_critic_and_logs_both(image_folder, make_cfg):
    folder = image_folder(n=4)
    cfg = make_cfg(GAN_FAST + ["data=folder", f"data.train_dir={folder}", "logger=csv", "trainer.max_steps=12",
                               "trainer.val_check_interval=6"])
    assert cfg.approach.scheduler.T_max == 6  # 12 optimizer steps = 6 batches
    metrics = train(cfg)
    run_dir = Path(cfg.paths.output_dir)
    assert metrics["train/steps"] == 12
    with open(run_dir / "csv" / "metrics.csv") as f:
        rows = list(csv.DictReader(f))
    logged = {k for r in rows for k, v in r.items() if v}
    for key in ("train/loss", "train/loss/mse", "train/loss/adversarial", "train/loss/weighted/adversarial",
                "train/critic/loss", "train/critic/real", "train/critic/fake", "val/psnr_y", "val/bicubic_psnr_y"):
        assert key in logged, key
    # the generator moved away from bicubic (zero head) and the critic's weights changed
    ckpt = torch.load(run_dir / "checkpoints" / "last.ckpt", map_location="cpu", weights_only=True)
    assert len(ckpt["optimizer_states"]) == 2
    net, _ = load_net(run_dir / "checkpoints" / "last.ckpt")  # eval/upscale read only "net." keys
    assert net.head.weight.abs().sum() > 0


def test_critic_learns_to_tell_hr_from_bicubic():
    torch.manual_seed(0)
    hr = torch.rand(4, 3, 24, 24)
    blurry = torch.nn.functional.avg_pool2d(hr, 3, stride=1, padding=1)
    critic, loss = PatchCritic(channels=8), AdversarialLoss("vanilla")
    opt = torch.optim.Adam(critic.parameters(), lr=2e-3)
    for _ in range(25):
        opt.zero_grad()
        loss.critic(critic(hr), critic(blurry)).backward()
        opt.step()
    with torch.no_grad():
        assert float(critic(hr).mean()) > float(critic(blurry).mean()) + 1.0


def test_init_from_copies_a_regression_generator_and_refuses_another_net(image_folder, make_cfg, tmp_path):
    folder = image_folder(n=4)
    reg = make_cfg(["trainer.max_steps=2", "trainer.val_check_interval=2", "data=folder",
                    f"data.train_dir={folder}"], run_dir=tmp_path / "reg")
    train(reg)
    ckpt = Path(reg.paths.output_dir) / "checkpoints" / "last.ckpt"
    pretrained, _ = load_net(ckpt)
    from hydra.utils import instantiate

    gan_cfg = make_cfg(GAN_FAST + ["data=folder", f"data.train_dir={folder}", f"approach.init_from={ckpt}"],
                       run_dir=tmp_path / "gan")
    model = instantiate(gan_cfg.approach, net=instantiate(gan_cfg.net), loss=instantiate(gan_cfg.loss))
    assert isinstance(model, GanSR)
    for (name, a), b in zip(model.net.state_dict().items(), pretrained.state_dict().values()):
        assert torch.equal(a, b), name
    other = make_cfg(GAN_FAST + ["net.channels=16", f"approach.init_from={ckpt}"], run_dir=tmp_path / "other")
    with pytest.raises(Exception, match="do not fit this UNet"):  # Hydra wraps it; the CLI unwraps it
        instantiate(other.approach, net=instantiate(other.net), loss=instantiate(other.loss))


def test_gan_resumes_at_the_same_step(image_folder, make_cfg, tmp_path):
    folder = image_folder(n=4)
    base = GAN_FAST + ["data=folder", f"data.train_dir={folder}", "trainer.val_check_interval=4"]
    first = make_cfg(base + ["trainer.max_steps=8"], run_dir=tmp_path / "a")
    train(first)
    last = Path(first.paths.output_dir) / "checkpoints" / "last.ckpt"
    assert torch.load(last, map_location="cpu", weights_only=True)["global_step"] == 8
    resumed = make_cfg(base + ["trainer.max_steps=12", f"ckpt_path={last}"], run_dir=tmp_path / "b")
    assert train(resumed)["train/steps"] == 12


def test_vgg_critic_gives_one_logit_per_fixed_size_crop():
    critic = VGGCritic(channels=4, input_size=64)
    assert critic(torch.rand(3, 3, 64, 64)).shape == (3, 1)
    with pytest.raises(ValueError, match="takes 64 px crops"):
        critic(torch.rand(1, 3, 32, 32))
    with pytest.raises(ValueError, match="multiple of 32"):
        VGGCritic(input_size=100)
    assert sum(isinstance(m, torch.nn.BatchNorm2d) for m in critic.modules()) == 9  # as ESRGAN's VGG128


def test_unet_critic_gives_a_logit_per_pixel_with_spectral_norm():
    critic = UNetCritic(channels=4)
    assert critic(torch.rand(2, 3, 40, 24)).shape == (2, 1, 40, 24)
    inner = [m for m in critic.modules() if isinstance(m, torch.nn.Conv2d)]
    normed = [m for m in inner if hasattr(m, "parametrizations")]
    assert len(inner) == 10 and len(normed) == 8  # all but the first and the last conv, as Real-ESRGAN
    with pytest.raises(ValueError, match="multiples of 8"):
        critic(torch.rand(1, 3, 36, 36))
