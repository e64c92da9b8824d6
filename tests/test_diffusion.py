"""Diffusion SR (issue 24): ResShift's equations, the sampler, tiled sampling, the stochastic
measures, and seeded draws through srlab-eval and srlab-upscale."""
import json
import math

import pytest
import torch
import torch.nn.functional as F
from PIL import Image

from srlab.errors import SrlabError
from srlab.evaluation.stochastic import lr_psnr, stochastic_measures
from srlab.inference.diffusion_sampling import TiledSampler
from srlab.nets.resshift_unet import ResShiftUNet, sqrt_eta_schedule
from srlab.ops.imresize import imresize
from tests.conftest import compose_cfg, write_images


def test_schedule_is_resshift_eq_10():
    """sqrt(eta_1) = min(0.04 / kappa, 0.04), sqrt(eta_T) = 0.99, geometric in beta_t = ((t-1)/(T-1))^p (T-1)."""
    s = sqrt_eta_schedule(15, kappa=2.0, power=0.3)
    assert s[0].item() == pytest.approx(0.02) and s[-1].item() == pytest.approx(0.99)
    b0 = math.exp(math.log(0.99 / 0.02) / 14)
    for t in (1, 5, 15):
        beta = ((t - 1) / 14) ** 0.3 * 14
        assert s[t - 1].item() == pytest.approx(0.02 * b0**beta, rel=1e-9)
    assert bool((s[1:] > s[:-1]).all())
    assert sqrt_eta_schedule(4, kappa=0.5, power=0.3)[0].item() == pytest.approx(0.04)


@pytest.mark.parametrize("sample_steps", [None, 5])
def test_reverse_chain_with_a_perfect_denoiser_has_the_forward_marginals(sample_steps):
    """With f = the true x0, every x_t the sampler visits is distributed as q(x_t | x0, y0) =
    N(x0 + eta_t e0, kappa^2 eta_t): the posterior update (also over skipped steps) is right;
    and the last step returns x0 itself."""
    torch.manual_seed(0)
    net = ResShiftUNet(4, channels=8, depth=1, sample_steps=sample_steps)
    hr = torch.rand(1, 3, 128, 128)
    lr = imresize(hr, scale=0.25)
    x0, y0 = hr * 2 - 1, imresize(lr, scale=4) * 2 - 1
    seen = {}

    def oracle(z, t):
        seen[t] = F.pixel_shuffle(z[:, :48], 4) * (1 + 3 * net.kappa * net.sqrt_eta[t])
        return x0

    out = net.sample(lr, 1.0, torch.Generator().manual_seed(1), denoise=oracle)
    assert torch.allclose(out, hr.clamp(0, 1), atol=1e-6)
    assert sorted(seen) == sorted(net.times()) and len(seen) == (sample_steps or 15)
    for t, x_t in seen.items():
        eta = float(net.sqrt_eta[t]) ** 2
        residual = x_t - (x0 + eta * (y0 - x0))
        assert abs(residual.mean().item()) < 0.02 * 2 * math.sqrt(eta) + 1e-3
        assert residual.std().item() == pytest.approx(2.0 * math.sqrt(eta), rel=0.03)


def test_forward_process_and_an_untrained_net_is_bicubic():
    net = ResShiftUNet(2, channels=8, depth=1)
    x0, y0 = torch.zeros(64, 3, 4, 4), torch.ones(64, 3, 4, 4)
    t = torch.full((64,), 14)
    noise = torch.randn(64, 3, 4, 4)
    x_t = net.q_sample(x0, y0, t, noise)
    eta = net.sqrt_eta[14] ** 2
    assert torch.allclose(x_t, eta * 1.0 + 2.0 * net.sqrt_eta[14] * noise)
    lr = torch.rand(1, 3, 12, 10)
    bicubic = imresize(lr, scale=2).clamp(0, 1)
    assert torch.allclose(net(lr), bicubic, atol=1e-6)  # zero head: x0 = y0 at every step, no noise left
    assert torch.equal(net(lr), net(lr))


def trained_like(net: ResShiftUNet) -> ResShiftUNet:
    """Random (non-zero) head weights: the denoiser then depends on its whole receptive field,
    and its samples stray from bicubic by ~22 levels on average (more than a trained net's)."""
    torch.manual_seed(3)
    torch.nn.init.normal_(net.head.weight, std=0.1)
    return net.eval()


def test_tiled_sampling_equals_whole_image_sampling():
    """tile=32 overlap=8: each step tiled, one noise field; the same seed gives the same sample:
    8-bit images at most one level apart in 99.9% of the pixels (measured: max 1.01 levels
    before rounding, mean 0.03), while another seed moves them by ~1 level on average."""
    net = trained_like(ResShiftUNet(4, channels=16, depth=2))
    torch.manual_seed(0)
    lr = imresize(torch.rand(1, 3, 256, 192).cumsum(-1).div(192).clamp(0, 1), scale=0.25)
    whole = net.sample(lr, 1.0, torch.Generator().manual_seed(7))
    tiled = TiledSampler(net, tile=32, overlap=8, seed=7)(lr)
    levels = ((whole * 255).round() - (tiled * 255).round()).abs()
    assert levels.quantile(0.999) <= 1 and levels.max() <= 2 and levels.mean() < 0.1, (levels.max(), levels.mean())
    other = TiledSampler(net, tile=32, overlap=8, seed=8)(lr)
    assert (other - tiled).abs().mean() * 255 > 0.5  # another seed, another sample


def test_stochastic_measures_on_a_known_case():
    """A net whose draws are HR +- a fixed amount: mean of the draws = HR; LR-PSNR of HR itself
    is its own bicubic downscale's; the diversity is the known std."""
    hr = imresize(torch.rand(1, 3, 64, 64), scale=1.0)
    lr = imresize(hr, scale=0.25).clamp(0, 1)

    class Coin(torch.nn.Module):
        scale = 4
        sign = 1.0

        def sample(self, x, temperature=1.0):
            self.sign = -self.sign
            return (hr + self.sign * 4 / 255).clamp(0, 1)

    measures, std, samples = stochastic_measures(Coin(), lr, hr.clamp(0, 1), None, 4, n=4)
    assert samples.shape == (4, 1, 3, 64, 64) and std.shape == (1, 1, 64, 64)
    assert measures["mean_psnr_y"].item() > 60 > measures["sample_psnr_y"].item()
    # +-4 levels in R, G and B move Y by 4 x 219/255 levels; std of [+a, -a, +a, -a] is 2a/sqrt(3)
    assert measures["sample_diversity"].item() == pytest.approx(4 * 219 / 255 * 2 / math.sqrt(3), rel=0.05)
    exact = lr_psnr(hr.clamp(0, 1), lr, 4)
    assert exact.item() > 45


def test_approach_refuses_a_plain_net_and_a_plain_approach_refuses_the_denoiser(make_cfg):
    from hydra.utils import instantiate

    cfg = make_cfg(["approach=diffusion"])  # FAST: net=unet
    with pytest.raises(Exception, match="net=resshift_unet"):
        instantiate(cfg.approach, net=instantiate(cfg.net), loss=instantiate(cfg.loss))
    cfg = make_cfg(["experiment=diffusion", "trainer.max_steps=2"], fast=False)
    with pytest.raises(Exception, match="approach=diffusion"):
        from srlab.approaches.regression import RegressionSR

        RegressionSR(instantiate(cfg.net), instantiate(cfg.loss), torch.optim.Adam)


@pytest.fixture(scope="module")
def diffusion_run(tmp_path_factory):
    """A few steps of experiment=diffusion on tiny photos (a small net, 4 sampling steps)."""
    from srlab.cli.train import train

    root = tmp_path_factory.mktemp("diffusion")
    write_images(root / "train", 4, size=(48, 48), seed=0)
    write_images(root / "val", 2, size=(40, 32), seed=1)
    cfg = compose_cfg("train", ["experiment=diffusion", "trainer.accelerator=cpu", "trainer.max_time=null", "logger=csv",
                                "data=folder", f"data.train_dir={root / 'train'}", f"data.val_dir={root / 'val'}",
                                "data.num_workers=0", "data.batch_size=4", "data.patch_size=32", "net.channels=8",
                                "approach.steps=6", "approach.sample_steps=3", "approach.val_samples=3",
                                "trainer.max_steps=6", "trainer.val_check_interval=3", "callbacks.progress_bar=null"],
                      root / "run")
    metrics = train(cfg)
    return root, metrics


def test_a_diffusion_run_logs_the_stochastic_measures(diffusion_run):
    root, metrics = diffusion_run
    for key in ("val/psnr_y", "val/sample_psnr_y", "val/mean_psnr_y", "val/lr_psnr", "val/sample_diversity",
                "val/sample_diversity_textured"):
        assert math.isfinite(metrics[key]), key
    assert metrics["val/sample_diversity"] > 0  # the draws differ
    panels = list((root / "run" / "samples").glob("*_samples.png"))
    assert panels and Image.open(panels[0]).size[0] == 4 * 32  # 3 draws | the std map (val images 32 px wide)


def test_eval_and_upscale_sample_a_diffusion_checkpoint_reproducibly(diffusion_run, tmp_path):
    from srlab.cli.eval import evaluate
    from srlab.cli.upscale import upscale

    root, _ = diffusion_run
    ckpt = root / "run" / "checkpoints" / "best.ckpt"
    out = tmp_path / "eval"  # in-process: the CLIs' own functions (a CLI start costs ~5 s)
    evaluate(compose_cfg("eval", [f"ckpt_path={ckpt}", f"eval.sets=[{root / 'val'}]", "eval.samples=3", "eval.tile=16",
                                  "eval.overlap=4"], out))
    metrics = json.loads((out / "metrics.json").read_text())
    for key in ("psnr_y", "sample_psnr_y", "mean_psnr_y", "lr_psnr", "sample_diversity"):
        assert math.isfinite(metrics[f"val/{key}"]), key
    images = []
    for seed in (5, 5, 6):
        dst = tmp_path / f"up{len(images)}"
        upscale(compose_cfg("upscale", [f"ckpt_path={ckpt}", f"input={root / 'val' / 'img00.png'}", f"output={dst}.png",
                                        "samples=2", f"seed={seed}", "tile=16", "overlap=4", "progress=false"],
                            tmp_path / "up_run"))
        images.append([torch.tensor(list(Image.open(f"{dst}_sample{i}.png").getdata())) for i in range(2)])
    assert torch.equal(images[0][0], images[1][0]) and torch.equal(images[0][1], images[1][1])  # same seed
    assert not torch.equal(images[0][0], images[0][1])  # draw i from seed + i
    assert torch.equal(images[0][1], images[2][0])     # seed 5's second draw is seed 6's first


def test_vae_draws_follow_the_seed_too(tmp_path):
    from srlab.inference.prior_samples import sample_jobs
    from srlab.nets.cvae_unet import CVAEUNet

    net = CVAEUNet(2, channels=8, depth=1, latent_channels=2).eval()
    torch.nn.init.normal_(net.head.weight, std=0.05)
    jobs = sample_jobs(net, [(tmp_path / "a.png", tmp_path / "b.png")], 2, 1.0, 64, seed=3)
    again = sample_jobs(net, [(tmp_path / "a.png", tmp_path / "b.png")], 2, 1.0, 64, seed=3)
    lr = torch.rand(1, 3, 8, 8)
    assert torch.equal(jobs[0][0](lr), again[0][0](lr)) and not torch.equal(jobs[0][0](lr), jobs[1][0](lr))
    with pytest.raises(SrlabError, match="deterministic"):
        sample_jobs(torch.nn.Conv2d(3, 3, 1), [(tmp_path / "a.png", tmp_path / "b.png")], 2, 1.0, 64)


def test_debug_fdr_of_the_diffusion_recipe(tmp_path):
    """`srlab-train experiment=diffusion debug=fdr`: one training step, one val batch with its draws."""
    from srlab.cli.train import train

    cfg = compose_cfg("train", ["experiment=diffusion", "debug=fdr", "logger=none", "trainer.max_time=null",
                                "data.val_crop=64", "approach.val_samples=2"], tmp_path / "run")
    metrics = train(cfg)
    assert math.isfinite(metrics["val/psnr_y"]) and math.isfinite(metrics["val/lr_psnr"])


def test_onnx_export_refuses_a_diffusion_net_in_one_line(tmp_path):
    pytest.importorskip("onnx")
    from srlab.inference.onnx_export import export_onnx

    with pytest.raises(SrlabError, match="format=srlab"):
        export_onnx(ResShiftUNet(2, channels=8, depth=1), tmp_path / "x.onnx")
