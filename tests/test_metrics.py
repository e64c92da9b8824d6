"""Paper-convention metrics against values worked out by hand."""
import math

import numpy as np
import pytest
import torch

from srlab.evaluation.metrics import SRMetrics, luma, sr_metrics


def solid(rgb, size=24):
    return torch.tensor(rgb, dtype=torch.float32).view(1, 3, 1, 1).expand(1, 3, size, size) / 255.0


def test_y_channel_is_matlab_studio_range():
    y = luma(solid((255, 0, 0)))
    assert torch.allclose(y, torch.full_like(y, 16 + 65.481), atol=1e-9)
    y = luma(solid((255, 255, 255)))
    assert torch.allclose(y, torch.full_like(y, 235.0), atol=1e-9)


def test_psnr_and_ssim_of_two_flat_colours_by_hand():
    # Y(red) = 81.481, Y(blue) = 40.966 -> MSE = 40.515^2
    m = sr_metrics(solid((0, 0, 255)), solid((255, 0, 0)), border=4)
    assert m["psnr_y"].item() == pytest.approx(10 * math.log10(255**2 / 40.515**2), abs=1e-6)
    # flat images: SSIM = (2ab + C1) / (a^2 + b^2 + C1), contrast/structure terms are 1
    a, b, c1 = 40.966, 81.481, (0.01 * 255) ** 2
    assert m["ssim_y"].item() == pytest.approx((2 * a * b + c1) / (a * a + b * b + c1), abs=1e-6)
    # RGB PSNR: two channels differ by 255 -> MSE = 2/3 * 255^2
    assert m["psnr_rgb"].item() == pytest.approx(10 * math.log10(1.5), abs=1e-6)


def _ssim_reference(x: np.ndarray, y: np.ndarray) -> float:
    """Wang et al. 2004 with an 11x11 sigma-1.5 Gaussian, 'valid' filtering (MATLAB ssim_index)."""
    g = np.exp(-((np.arange(11) - 5) ** 2) / (2 * 1.5**2))
    w = np.outer(g, g) / np.outer(g, g).sum()

    def filt(img):
        h, wd = img.shape
        return np.array([[np.sum(img[i:i + 11, j:j + 11] * w) for j in range(wd - 10)] for i in range(h - 10)])

    c1, c2 = (0.01 * 255) ** 2, (0.03 * 255) ** 2
    mx, my = filt(x), filt(y)
    sxx, syy, sxy = filt(x * x) - mx**2, filt(y * y) - my**2, filt(x * y) - mx * my
    return float(np.mean(((2 * mx * my + c1) * (2 * sxy + c2)) / ((mx**2 + my**2 + c1) * (sxx + syy + c2))))


def test_ssim_matches_the_reference_formula_and_psnr_the_definition():
    g = torch.Generator().manual_seed(0)
    hr = torch.rand(1, 3, 40, 36, generator=g)
    sr = (hr + 0.08 * torch.randn(1, 3, 40, 36, generator=g)).clamp(0, 1)
    border = 3
    m = sr_metrics(sr, hr, border)
    y_sr = luma(sr)[0, 0, border:-border, border:-border].numpy()
    y_hr = luma(hr)[0, 0, border:-border, border:-border].numpy()
    assert m["ssim_y"].item() == pytest.approx(_ssim_reference(y_sr, y_hr), abs=1e-6)
    mse = np.mean((y_sr - y_hr) ** 2)
    assert m["psnr_y"].item() == pytest.approx(10 * np.log10(255**2 / mse), abs=1e-9)


def test_output_is_clamped_and_rounded_before_measuring():
    hr = solid((100, 100, 100))
    tiny = hr + 0.4 / 255  # rounds back to the same 8-bit level
    assert sr_metrics(tiny, hr, 2)["psnr_y"].item() > 140
    assert sr_metrics(hr + 2.0, solid((255, 255, 255)), 2)["psnr_y"].item() > 140  # clamped to 1


def test_gray_images_are_measured_on_their_own_values_not_y():
    hr, sr = solid((100, 100, 100)), solid((110, 110, 110))
    gray = torch.tensor([True])
    assert sr_metrics(sr, hr, 2, gray)["psnr_y"].item() == pytest.approx(10 * math.log10(255**2 / 100), abs=1e-9)
    # Y of a gray image compresses the range by 219/255: +1.32 dB
    shift = sr_metrics(sr, hr, 2)["psnr_y"].item() - sr_metrics(sr, hr, 2, gray)["psnr_y"].item()
    assert shift == pytest.approx(20 * math.log10(255 / 219), abs=1e-6)


def test_border_crop_ignores_errors_in_the_border():
    hr = torch.rand(1, 3, 20, 20, generator=torch.Generator().manual_seed(1))
    sr = hr.clone()
    sr[..., :4, :] = 0  # damage only the top 4 rows
    assert sr_metrics(sr, hr, 4)["psnr_y"].item() > 140
    assert sr_metrics(sr, hr, 3)["psnr_y"].item() < 40


def test_srmetrics_is_the_mean_of_per_image_values():
    g = torch.Generator().manual_seed(2)
    metric = SRMetrics(border=2)
    values = []
    for sigma in (0.01, 0.05, 0.1):
        hr = torch.rand(2, 3, 24, 24, generator=g)
        sr = (hr + sigma * torch.randn(hr.shape, generator=g)).clamp(0, 1)
        metric.update(sr, hr)
        values.append(sr_metrics(sr, hr, 2)["psnr_y"])
    expected = torch.cat(values).mean().item()
    assert metric.compute()["psnr_y"].item() == pytest.approx(expected, abs=1e-4)


def test_ssim_map_is_the_interior_of_torchmetrics_map():
    from torchmetrics.functional.image import (
        structural_similarity_index_measure as tm_ssim,
    )

    from srlab.evaluation.metrics import crop_border, ssim

    torch.manual_seed(0)
    a = (torch.rand(2, 1, 40, 33, dtype=torch.float64) * 255).round()
    b = (a + 20 * torch.randn_like(a)).clamp(0, 255).round()
    _, full = tm_ssim(a, b, gaussian_kernel=True, sigma=1.5, kernel_size=11, data_range=255.0, k1=0.01, k2=0.03,
                      reduction="none", return_full_image=True)
    assert torch.allclose(ssim(a, b), crop_border(full, 5).flatten(1).mean(dim=1), atol=1e-12)
