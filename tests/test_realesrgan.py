"""degradation=realesrgan: each op's statistics, shapes, determinism, the pool, sharpened HR, val LR."""
import math

import pytest
import torch
from omegaconf import OmegaConf

from srlab.config.compose import CONFIG_DIR
from srlab.data import kernels
from srlab.data.pair_pool import PairPool
from srlab.data.realesrgan import RealESRGAN
from srlab.data.sharpen import UnsharpMask
from srlab.errors import SrlabError


def realesrgan(scale=4, **over) -> RealESRGAN:
    cfg = OmegaConf.load(CONFIG_DIR / "degradation" / "realesrgan.yaml")
    cfg.scale = scale
    kw = OmegaConf.to_container(OmegaConf.merge(cfg, over))
    kw.pop("_target_")
    return RealESRGAN(**kw)


def moments(k: torch.Tensor) -> torch.Tensor:
    """[2,2] covariance of a kernel seen as a distribution over (x, y) offsets."""
    x, y = kernels._grid(k.shape[-1])
    xx, yy, xy = (k * x * x).sum(), (k * y * y).sum(), (k * x * y).sum()
    return torch.stack([torch.stack([xx, xy]), torch.stack([xy, yy])])


# ---- kernels ----
def test_every_kernel_sums_to_one_and_stays_inside_its_size():
    g = torch.Generator().manual_seed(0)
    probs = {t: 1.0 for t in kernels.KERNEL_TYPES}
    k = kernels.mixed_kernels(500, g, probs, 0.3, (0.2, 3.0), (0.5, 4.0), (1.0, 2.0), (7, 9))
    assert k.shape == (500, 21, 21) and k.dtype == torch.float64
    assert torch.allclose(k.sum((-2, -1)), torch.ones(500, dtype=torch.float64), atol=1e-12)
    assert k[:, :6].abs().max() == 0 and k[:, :, 15:].abs().max() == 0  # 9 px at most: rows/cols 6..14
    assert (k.sum((-2, -1)) == k.sum((-2, -1))).all() and k[:, 10, 10].min() > 0  # finite, peaked at centre
    final = kernels.final_sinc(400, g, 0.8)
    assert torch.allclose(final.sum((-2, -1)), torch.ones(400, dtype=torch.float64))
    is_pulse = (final[:, 10, 10] == 1).double().mean()
    assert 0.14 < float(is_pulse) < 0.26  # prob 0.2 of no final filter


def test_gaussian_covariance_isotropic_and_anisotropic():
    one = torch.ones(1, dtype=torch.float64)
    iso = kernels.shaped_kernels(1.5 * one, 1.5 * one, 0 * one, one, torch.zeros(1, dtype=torch.long), 21 * one)
    assert torch.allclose(moments(iso[0]), 2.25 * torch.eye(2, dtype=torch.float64), atol=1e-3)
    theta = math.pi / 6
    aniso = kernels.shaped_kernels(2.5 * one, 1.0 * one, theta * one, one, torch.zeros(1, dtype=torch.long), 21 * one)
    expected = kernels.covariance(2.5 * one, 1.0 * one, theta * one)[0]
    rot = torch.tensor([[math.cos(theta), -math.sin(theta)], [math.sin(theta), math.cos(theta)]], dtype=torch.float64)
    assert torch.allclose(expected, rot @ torch.diag(torch.tensor([6.25, 1.0], dtype=torch.float64)) @ rot.T)
    assert torch.allclose(moments(aniso[0]), expected, rtol=0.02, atol=0.02)  # truncated at +-4 sigma
    # generalized with beta = 1 is the Gaussian; beta > 1 has a flatter top and lighter tails
    gen = kernels.shaped_kernels(2.5 * one, one, theta * one, one, torch.ones(1, dtype=torch.long), 21 * one)
    assert torch.allclose(gen, aniso)
    flat = kernels.shaped_kernels(2 * one, 2 * one, 0 * one, 4 * one, torch.ones(1, dtype=torch.long), 21 * one)[0]
    gauss = kernels.shaped_kernels(2 * one, 2 * one, 0 * one, one, torch.zeros(1, dtype=torch.long), 21 * one)[0]
    assert flat[10, 11] / flat[10, 10] > 0.99 > 0.9 > gauss[10, 11] / gauss[10, 10]
    assert flat[10, 18] / flat[10, 10] < 1e-6 < gauss[10, 18] / gauss[10, 10]
    plateau = kernels.shaped_kernels(2 * one, 2 * one, 0 * one, one, 2 * torch.ones(1, dtype=torch.long), 21 * one)[0]
    assert plateau[10, 20] > gauss[10, 20]  # 1/(1+q): heavy tails


def test_sinc_is_a_circular_low_pass():
    cutoff = torch.tensor([math.pi / 3], dtype=torch.float64)
    k = kernels.sinc_kernels(cutoff, torch.tensor([21]))[0]
    assert torch.allclose(k, k.T) and torch.allclose(k, k.flip(0)) and float(k.sum()) == pytest.approx(1.0)
    spectrum = torch.fft.fft2(k, s=(64, 64)).abs()
    assert float(spectrum[0, 0]) == pytest.approx(1.0)
    assert spectrum[0, 2] > 0.9  # 0.06 pi: passed
    assert spectrum[0, 20:33].max() < 0.15 and spectrum[20:33, 20:33].max() < 0.15  # > 0.6 pi: stopped


def test_kernel_type_mix_follows_the_probabilities():
    g = torch.Generator().manual_seed(1)
    probs = {"iso": 0.45, "aniso": 0.25, "generalized_iso": 0.12, "generalized_aniso": 0.03,
             "plateau_iso": 0.12, "plateau_aniso": 0.03}
    k = kernels.mixed_kernels(3000, g, probs, 0.1, (0.2, 3.0), (0.5, 4.0), (1.0, 2.0))
    # iso kernels and sincs are symmetric under transposition; rotated aniso ones are not
    symmetric = torch.isclose(k, k.transpose(-1, -2), atol=1e-9).flatten(1).all(1).double().mean()
    assert float(symmetric) == pytest.approx(0.1 + 0.9 * 0.69, abs=0.03)
    with pytest.raises(SrlabError, match="kernel_probs"):
        kernels.mixed_kernels(2, g, {"box": 1.0}, 0.1, (0.2, 3.0), (0.5, 4.0), (1.0, 2.0))


# ---- noise, JPEG, resize ----
def test_gaussian_and_poisson_noise_statistics_and_gray_noise():
    deg = realesrgan()
    x = torch.full((4, 3, 96, 96), 0.5)
    p = {"gaussian": True, "sigma": torch.tensor([2.0, 10.0, 25.0, 10.0]) / 255,
         "gray_noise": torch.tensor([False, False, False, True]), "poisson": torch.ones(4)}
    gray = torch.tensor([False, False, False, False])
    out = deg._noise(x, p, gray, torch.Generator().manual_seed(0))
    std = ((out - x) * 255).flatten(1).std(1)
    assert torch.allclose(std, torch.tensor([2.0, 10.0, 25.0, 10.0]), rtol=0.03)
    assert torch.equal(out[3, 0], out[3, 1]) and not torch.equal(out[2, 0], out[2, 1])
    # an image flagged gray gets gray noise even without the gray-noise draw
    out = deg._noise(x, p, torch.tensor([True, False, False, False]), torch.Generator().manual_seed(0))
    assert torch.equal(out[0, 0], out[0, 2])
    # Poisson: variance scale^2 * v / 256 at value v
    p.update(gaussian=False, poisson=torch.tensor([0.5, 1.0, 2.0, 2.0]), gray_noise=torch.zeros(4, dtype=torch.bool))
    out = deg._noise(x, p, gray, torch.Generator().manual_seed(0))
    expected = torch.tensor([0.5, 1.0, 2.0, 2.0]) * math.sqrt(0.5 / 256)
    assert torch.allclose((out - x).flatten(1).std(1), expected, rtol=0.05)


def test_drawn_resize_and_jpeg_ranges_follow_the_config():
    deg, g = realesrgan(), torch.Generator().manual_seed(0)
    draws = [deg.draw(1, g) for _ in range(300)]
    for i, (lo, hi, probs) in enumerate([(0.15, 1.5, (0.2, 0.7, 0.1)), (0.3, 1.2, (0.3, 0.4, 0.3))]):
        rounds = [d["rounds"][i] for d in draws]
        for direction, prob in zip(("up", "down", "keep"), probs):
            share = sum(r["direction"] == direction for r in rounds) / len(rounds)
            assert share == pytest.approx(prob, abs=0.08), (i, direction)
        factors = torch.tensor([r["factor"] for r in rounds])
        assert lo <= factors.min() < lo + 0.05 and hi - 0.05 < factors.max() <= hi
        assert {r["mode"] for r in rounds} == {"area", "bilinear", "bicubic"}
        quality = torch.cat([r["quality"] for r in rounds])
        assert 30 <= quality.min() < 33 and 92 < quality.max() <= 95
        sigma = torch.cat([r["sigma"] for r in rounds]) * 255
        assert 1 <= sigma.min() and sigma.max() <= (30, 25)[i]
        blur = sum(r["blur"] for r in rounds) / len(rounds)
        assert blur == pytest.approx((1.0, 0.8)[i], abs=0.07)
    # JPEG: lower quality, larger error
    x = torch.rand(1, 3, 32, 32).repeat(2, 1, 1, 1)
    out = deg._jpeg(kornia_smooth(x), torch.tensor([30.0, 95.0]), torch.zeros(2, dtype=torch.bool))
    err = (out - kornia_smooth(x)).abs().flatten(1).mean(1)
    assert err[0] > 1.5 * err[1] > 0


def kornia_smooth(x):
    import kornia

    return kornia.filters.gaussian_blur2d(x, (5, 5), (1.0, 1.0))


def test_intermediate_size_follows_the_drawn_factor():
    deg, g = realesrgan(), torch.Generator().manual_seed(3)
    p = deg.draw(2, g)
    p["rounds"][0].update(factor=0.5, mode="area")
    p["rounds"][1].update(factor=0.75, mode="bilinear")
    seen = []
    resize = deg._resize
    deg._resize = lambda x, size, mode: seen.append(tuple(int(v) for v in size)) or resize(x, size, mode)
    out = deg.apply(torch.rand(2, 3, 64, 96), p, torch.zeros(2, dtype=torch.bool))
    assert seen == [(32, 48), (12, 18), (16, 24)] and out.shape == (2, 3, 16, 24)


# ---- the whole pipeline ----
@pytest.mark.parametrize("scale,size", [(4, (64, 96)), (2, (34, 50)), (3, (30, 45)), (4, (16, 16))])
def test_output_is_exactly_hr_over_scale_8_bit_and_seeded(scale, size):
    deg = realesrgan(scale)
    hr = torch.rand(3, 3, *size)
    lr = deg.batch(hr, [False] * 3, torch.Generator().manual_seed(5))
    assert lr.shape == (3, 3, size[0] // scale, size[1] // scale)
    assert lr.min() >= 0 and lr.max() <= 1 and torch.equal(lr, (lr * 255).round() / 255)
    assert torch.equal(lr, deg.batch(hr, [False] * 3, torch.Generator().manual_seed(5)))
    assert not torch.equal(lr, deg.batch(hr, [False] * 3, torch.Generator().manual_seed(6)))


def test_gray_images_stay_gray_and_bad_config_is_one_line():
    deg = realesrgan()
    hr = torch.rand(2, 1, 32, 32).expand(2, 3, 32, 32).contiguous()
    for seed in range(4):
        lr = deg.batch(hr, [True, True], torch.Generator().manual_seed(seed))
        assert torch.equal(lr[:, 0], lr[:, 1]) and torch.equal(lr[:, 1], lr[:, 2])
    with pytest.raises(SrlabError, match=r"first.jpeg_quality must lie in \[1, 100\]"):
        realesrgan(first={"jpeg_quality": [0, 95]})
    with pytest.raises(SrlabError, match="second.gray_noise_prob"):
        realesrgan(second={"gray_noise_prob": 1.5})
    with pytest.raises(SrlabError, match="resize_modes"):
        realesrgan(resize_modes=["lanczos"])


def test_unsharp_mask_sharpens_edges_only():
    usm = UnsharpMask(weight=0.5, radius=50, threshold=10)
    assert usm.size == 51 and usm.sigma == pytest.approx(8.0)
    flat = torch.full((1, 3, 64, 64), 0.4)
    assert torch.allclose(usm(flat), flat)
    edge = torch.full((1, 3, 64, 64), 0.3)
    edge[..., 32:] = 0.7
    out = usm(edge)
    assert out[0, 0, 10, 31] < 0.3 - 0.02 and out[0, 0, 10, 32] > 0.7 + 0.02  # overshoot both sides
    assert torch.allclose(out[..., :4], edge[..., :4], atol=2e-3)  # far from the edge: unchanged
    faint = torch.full((1, 3, 64, 64), 0.5)
    faint[..., 32:] += 5 / 255  # below the threshold of 10/255
    assert torch.allclose(usm(faint), faint)


def test_pair_pool_mixes_across_batches_and_loses_nothing():
    pool, g = PairPool(8), torch.Generator().manual_seed(0)
    batches = [{"lr": torch.arange(4.0) + 10 * i, "hr": -(torch.arange(4.0) + 10 * i),
                "name": [f"b{i}_{j}" for j in range(4)]} for i in range(6)]
    outs = [pool(dict(b), ("lr", "hr"), g) for b in batches]
    assert outs[0] is not None and torch.equal(outs[0]["lr"], batches[0]["lr"])  # filling: unchanged
    assert torch.equal(outs[1]["lr"], batches[1]["lr"])
    seen = torch.cat([o["lr"] for o in outs[2:]])
    assert not all(torch.equal(o["lr"], b["lr"]) for o, b in zip(outs[2:], batches[2:]))  # mixed
    assert torch.equal(torch.cat([o["hr"] for o in outs[2:]]), -seen)  # pairs stay pairs
    assert [f"b{int(v) // 10}_{int(v) % 10}" for v in seen] == [n for o in outs[2:] for n in o["name"]]
    left = torch.cat([pool.store["lr"]])
    everything = torch.cat([b["lr"] for b in batches[2:]] + [batches[0]["lr"], batches[1]["lr"]])
    assert sorted((torch.cat([seen, left])).tolist()) == sorted(everything.tolist())


def test_training_batches_sharpened_pooled_and_deterministic(image_folder):
    from srlab.data.datamodule import FolderDataModule

    folder = image_folder(n=4, size=(64, 64))

    def batches(seed, n=4):
        dm = FolderDataModule(train_dir=str(folder), degradation=realesrgan(pool_size=8), scale=4, patch_size=32,
                              batch_size=4, num_workers=0, seed=seed, train_repeats=8)
        dm.setup("fit")
        torch.manual_seed(0)  # the loader's crops
        it = iter(dm.train_dataloader())
        return [dm.on_after_batch_transfer(dm.transfer_batch_to_device(next(it), torch.device("cpu"), 0), 0)
                for _ in range(n)]

    a, b, c = batches(0), batches(0), batches(1)
    for x, y in zip(a, b):
        assert torch.equal(x["lr"], y["lr"]) and torch.equal(x["hr"], y["hr"])
    assert not torch.equal(a[0]["lr"], c[0]["lr"])
    first = a[0]
    assert first["lr"].shape == (4, 3, 8, 8) and first["hr_plain"].shape == (4, 3, 32, 32)
    assert torch.allclose(first["hr"], UnsharpMask()(first["hr_plain"]))
    assert not torch.equal(first["hr"], first["hr_plain"])
    with pytest.raises(SrlabError, match="degrade_on=device"):
        FolderDataModule(train_dir=str(folder), degradation=realesrgan(), scale=4, patch_size=32,
                         degrade_on="loader").setup("fit")


def test_val_lr_is_the_same_in_two_runs_and_not_bicubic(image_folder):
    from srlab.data.datamodule import FolderDataModule
    from srlab.ops.imresize import imresize

    folder = image_folder(n=6, size=(48, 40))
    vals = []
    for global_seed in (1, 2):  # two runs: other global seeds, other training draws before validation
        torch.manual_seed(global_seed)
        dm = FolderDataModule(train_dir=str(folder), val_fraction=0.5, degradation=realesrgan(), scale=4,
                              patch_size=16, batch_size=2, num_workers=0)
        dm.setup("fit")
        dm.on_after_batch_transfer(dm.transfer_batch_to_device(next(iter(dm.train_dataloader())), "cpu", 0), 0)
        vals.append([dm.val_set[i] for i in range(len(dm.val_set))])
    assert len(vals[0]) >= 2
    for x, y in zip(*vals):
        assert x["name"] == y["name"] and torch.equal(x["lr"], y["lr"])
        assert x["lr"].shape == (3, 12, 10)
        assert (x["lr"] - imresize(x["hr"], 1 / 4).clamp(0, 1)).abs().mean() > 0.01  # degraded, not bicubic
    assert not torch.equal(vals[0][0]["lr"], vals[0][1]["lr"][:, :12, :10])


def test_sample_panel_shows_the_degraded_lr_as_the_net_saw_it():
    from srlab.training.callbacks import nearest_up, panel

    lr = torch.rand(3, 4, 5)
    up = nearest_up(lr, 4)
    assert up.shape == (3, 16, 20) and torch.equal(up[:, 4:8, 8:12], lr[:, 1:2, 2:3].expand(3, 4, 4))
    hr, bicubic, sr = torch.rand(3, 16, 20), torch.rand(3, 16, 20), torch.rand(3, 16, 20)
    strip = panel(lr, bicubic, sr, hr, 4)
    assert strip.shape == (3, 16, 80) and torch.equal(strip[..., :20], up)
    assert torch.equal(strip[..., 40:60], sr) and torch.equal(strip[..., 60:], hr)
