"""The loss mix: exact weighted sums, configs per mix, terms by name, the frozen VGG kept out."""
import pytest
import torch
from hydra.utils import instantiate

from srlab.cli.train import train
from srlab.losses.mix import LossMix
from srlab.losses.pixel import L1Loss, MSELoss

LOSS_CONFIGS = ["mse", "l1", "charbonnier", "ssim", "msssim", "psnr", "hfen", "mse_ssim", "perceptual"]
RANDOM_VGG = "loss.terms.perceptual.fn.weights=random"


def test_mix_sums_weighted_terms_exactly():
    sr, hr = torch.rand(2, 3, 16, 16), torch.rand(2, 3, 16, 16)
    mix = LossMix({"mse": {"weight": 0.25, "fn": MSELoss()}, "l1": {"weight": 3.0, "fn": L1Loss()}})
    total, terms = mix(sr, hr)
    mse, l1 = ((sr - hr) ** 2).mean(), (sr - hr).abs().mean()
    assert terms["mse"].item() == pytest.approx(mse.item()) and terms["l1"].item() == pytest.approx(l1.item())
    assert total.item() == pytest.approx(0.25 * mse.item() + 3.0 * l1.item(), rel=1e-6)


def test_term_without_fn_comes_from_its_config_file(make_cfg):
    cfg = make_cfg(["loss=mse", "+loss.terms.hfen.weight=0.1"])
    mix = instantiate(cfg.loss)
    assert set(mix.fns) == {"mse", "hfen"} and mix.weights["hfen"] == 0.1
    assert type(mix.fns["hfen"]).__name__ == "HFENLoss"


def test_changing_a_weight_from_the_command_line(make_cfg):
    mix = instantiate(make_cfg(["loss=mse_ssim", "loss.terms.ssim.weight=0.5"]).loss)
    assert mix.weights == {"mse": 1.0, "ssim": 0.5}


def test_unknown_term_name_fails_in_one_line(make_cfg):
    with pytest.raises(Exception, match="no configs/loss/terms/nosuch.yaml"):
        instantiate(make_cfg(["+loss.terms.nosuch.weight=1"]).loss)


def test_perceptual_backbone_is_frozen_and_not_in_the_checkpoint(make_cfg):
    cfg = make_cfg(["experiment=unet_perceptual", RANDOM_VGG])
    model = instantiate(cfg.approach, net=instantiate(cfg.net), loss=instantiate(cfg.loss))
    assert all(k.startswith(("net.", "val_")) for k in model.state_dict()), "VGG must not be saved"
    optimizer = model.configure_optimizers()["optimizer"]
    in_opt = {id(p) for group in optimizer.param_groups for p in group["params"]}
    assert in_opt == {id(p) for p in model.net.parameters()}


@pytest.mark.parametrize("loss", LOSS_CONFIGS)
def test_short_training_per_loss_config(loss, image_folder, make_cfg):
    folder = image_folder(n=4)
    cfg = make_cfg([f"loss={loss}", RANDOM_VGG if loss == "perceptual" else "seed=1", "data=folder",
                    f"data.train_dir={folder}", "trainer.max_steps=3", "trainer.val_check_interval=3",
                    "callbacks=none"])
    metrics = train(cfg)
    assert metrics["train/steps"] == 3
    assert all(torch.isfinite(torch.tensor(v)) for v in metrics.values())
