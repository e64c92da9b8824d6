"""The measures of stochastic SR: what one sample, the mean of N and their spread are worth.

A stochastic net (the VAE's prior draws, diffusion samples) gives a different HR image per
draw; PSNR of one draw penalises detail that is plausible but not the ground truth's, and the
mean of many draws approaches the regression answer. So they are reported side by side,
for every stochastic approach, in validation and in srlab-eval:

- `sample_psnr_y`, `sample_ssim_y`: one draw (the first), paper conventions (Y, border = scale);
- `mean_psnr_y`: the mean of the N draws (the estimate of E[HR | LR]);
- `lr_psnr`: each draw downscaled with the same MATLAB bicubic, against the LR it came from,
  8-bit RGB, whole image, averaged over draws: does the answer explain its input? NTIRE 2021's
  "Learning the Super-Resolution Space" challenge (Lugmayr et al.) required >= 45 dB;
- `sample_diversity`: the per-pixel std across draws in 8-bit Y levels (srlab.evaluation.diversity),
  and `sample_diversity_textured`: the same over the quarter of pixels where the bicubic
  upscale is worst (edges and texture, where draws should differ; flat regions should not).
"""
from __future__ import annotations

import torch

from srlab.evaluation.diversity import sample_spread
from srlab.evaluation.metrics import crop_border, psnr, quantize, sr_metrics
from srlab.ops.imresize import imresize


def lr_psnr(sr: torch.Tensor, lr: torch.Tensor, scale: int) -> torch.Tensor:
    """Per-image PSNR [N] of bicubic-downscaled SR [N,3,H,W] against LR [N,3,h,w], 8-bit RGB."""
    down = imresize(sr.double(), scale=1 / scale)
    return psnr(quantize(down), quantize(lr.double()))


def textured_mask(hr: torch.Tensor, lr: torch.Tensor, scale: int, border: int) -> torch.Tensor:
    """[N,1,H',W'] bool: the quarter of (border-cropped) pixels where bicubic misses HR the most."""
    err = crop_border((imresize(lr, scale=scale) - hr).abs().mean(dim=1, keepdim=True), border)
    flat = err.flatten(1)
    cut = flat.quantile(0.75, dim=1).view(-1, 1, 1, 1)
    return err >= cut


@torch.no_grad()
def stochastic_measures(net, lr: torch.Tensor, hr: torch.Tensor, gray: torch.Tensor | None, scale: int,
                        n: int = 8, temperature: float = 1.0, seed: int = 0) -> tuple[dict, torch.Tensor, torch.Tensor]:
    """-> ({measure: per-image tensor [N]}, std map [N,1,H,W], samples [n,N,3,H,W]).

    `net` draws with `sample(lr, temperature)` from torch's RNG (forked and seeded by `seed`:
    the same numbers every validation, the training noise untouched).
    """
    spread, std, samples = sample_spread(net, lr, n, temperature, gray, border=scale, seed=seed)
    one = sr_metrics(samples[0], hr, scale, gray)
    mean = sr_metrics(samples.mean(dim=0), hr, scale, gray)
    mask = textured_mask(hr, lr, scale, scale)
    cropped = crop_border(std, scale)
    textured = (cropped * mask).flatten(1).sum(1) / mask.flatten(1).sum(1).clamp_min(1)
    measures = {
        "sample_psnr_y": one["psnr_y"], "sample_ssim_y": one["ssim_y"], "mean_psnr_y": mean["psnr_y"],
        "lr_psnr": torch.stack([lr_psnr(s, lr, scale) for s in samples]).mean(dim=0),
        "sample_diversity": spread, "sample_diversity_textured": textured.float(),
    }
    return {k: v.float() for k, v in measures.items()}, std, samples
