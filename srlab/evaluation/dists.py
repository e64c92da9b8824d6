"""DISTS (Ding, Ma, Wang, Simoncelli, TPAMI 2020): structure and texture similarity of deep
features; lower is better (0 for identical images).

srlab's own arithmetic, equal to the reference package `DISTS_pytorch` 0.1 to 1e-5 when both
get the same VGG16 weights (tests/test_measures.py): ImageNet-normalised input through VGG16
whose max-pools are replaced by L2 pooling (a 3x3 Hann window, stride 2, on squares), taps at
the image itself and relu1_2 ... relu5_3; per channel, a luminance-like term of the spatial
means (S1) and a structure term of the covariance (S2), weighted by the learned alpha and
beta (shipped in torchmetrics, the same file as DISTS_pytorch's weights.pt), DISTS =
1 - sum(alpha S1 + beta S2). Images are compared as saved (8-bit), border cropped as for PSNR.
"""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from srlab.evaluation.backbones import imagenet_features, torchmetrics_file
from srlab.evaluation.measure import Measure, as_rgb8

# VGG16 `features` index ranges of the five stages; the max-pool before stages 2-5 (indices
# 4, 9, 16, 23) becomes L2 pooling
STAGES = ((0, 4), (5, 9), (10, 16), (17, 23), (24, 30))
CHANNELS = (3, 64, 128, 256, 512, 512)
MEAN, STD = (0.485, 0.456, 0.406), (0.229, 0.224, 0.225)


class L2Pool(nn.Module):
    """sqrt(Hann-weighted mean of x^2), stride 2: pooling without max-pool's aliasing."""

    def __init__(self, channels: int):
        super().__init__()
        a = torch.tensor([0.5, 1.0, 0.5])  # numpy.hanning(5)[1:-1]
        g = a[:, None] * a[None, :]
        self.register_buffer("filter", (g / g.sum()).expand(channels, 1, 3, 3).clone())

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = F.conv2d(x**2, self.filter, stride=2, padding=1, groups=x.shape[1])
        return (out + 1e-12).sqrt()


class DISTS(Measure):
    higher_is_better = False

    def __init__(self, weights: str | None = None):
        super().__init__()
        features = imagenet_features("vgg", weights, self.name or "dists")
        self.stages = nn.ModuleList(
            nn.Sequential(*([L2Pool(CHANNELS[i])] if i else []), *features[start:end])
            for i, (start, end) in enumerate(STAGES))
        learned = torch.load(torchmetrics_file("dists_models", "weights.pt"), map_location="cpu", weights_only=True)
        total = learned["alpha"].sum() + learned["beta"].sum()
        self.register_buffer("alpha", (learned["alpha"] / total).reshape(-1))
        self.register_buffer("beta", (learned["beta"] / total).reshape(-1))
        self.register_buffer("mean", torch.tensor(MEAN).view(1, 3, 1, 1))
        self.register_buffer("std", torch.tensor(STD).view(1, 3, 1, 1))

    def taps(self, x: torch.Tensor) -> list[torch.Tensor]:
        out = [x]
        h = (x - self.mean) / self.std
        for stage in self.stages:
            h = stage(h)
            out.append(h)
        return out

    def distance(self, a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
        """[N] DISTS of [N,3,H,W] images in [0,1] (no quantization or crop)."""
        c1 = c2 = 1e-6
        score = 0
        alphas, betas = self.alpha.split(CHANNELS), self.beta.split(CHANNELS)
        for x, y, alpha, beta in zip(self.taps(a), self.taps(b), alphas, betas):
            mx, my = x.mean(dim=(2, 3)), y.mean(dim=(2, 3))
            vx = ((x - mx[..., None, None]) ** 2).mean(dim=(2, 3))
            vy = ((y - my[..., None, None]) ** 2).mean(dim=(2, 3))
            cov = (x * y).mean(dim=(2, 3)) - mx * my
            s1 = (2 * mx * my + c1) / (mx**2 + my**2 + c1)
            s2 = (2 * cov + c2) / (vx + vy + c2)
            score = score + (alpha * s1).sum(dim=1) + (beta * s2).sum(dim=1)
        return 1 - score

    def measure(self, sr, hr, border, gray):
        return self.distance(as_rgb8(sr, border), as_rgb8(hr, border))
