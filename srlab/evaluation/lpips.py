"""LPIPS (Zhang et al. 2018) for srlab-eval: torchmetrics' implementation, offline-safe.

torchmetrics ships LPIPS's learned linear layers but takes the backbone (AlexNet, VGG16 or
SqueezeNet 1.1) from torchvision's ImageNet weights, which it downloads on first use. On an
offline machine that download would hang or fail deep inside torchvision, so the backbone
file is looked up in the torch hub cache first (`srlab.losses.vgg.fetch_weights`), and its
absence is one line saying which file to put where — the same message as the perceptual
loss. Images are compared as they would be saved (8-bit), with the same border crop as
PSNR/SSIM; lower is better.
"""
from __future__ import annotations

import torch
from torchvision import models

from srlab.errors import SrlabError
from srlab.evaluation.metrics import crop_border, quantize
from srlab.losses.vgg import fetch_weights

BACKBONES = {
    "alex": models.AlexNet_Weights.IMAGENET1K_V1,
    "vgg": models.VGG16_Weights.IMAGENET1K_V1,
    "squeeze": models.SqueezeNet1_1_Weights.IMAGENET1K_V1,
}


class LPIPS(torch.nn.Module):
    """Per-image LPIPS of [N,C,H,W] images in [0,1] (C = 1 is repeated to RGB)."""

    def __init__(self, backbone: str = "alex"):
        super().__init__()
        if backbone not in BACKBONES:
            raise SrlabError(f"eval.lpips={backbone!r} is not an LPIPS backbone: use one of {', '.join(BACKBONES)} or null")
        fetch_weights(BACKBONES[backbone], f"LPIPS backbone ({backbone}) ImageNet weights", "set eval.lpips=null")
        from torchmetrics.image.lpip import LearnedPerceptualImagePatchSimilarity

        self.metric = LearnedPerceptualImagePatchSimilarity(net_type=backbone, reduction="none", normalize=True)
        self.metric.eval()

    @torch.no_grad()
    def forward(self, sr: torch.Tensor, hr: torch.Tensor, border: int = 0) -> torch.Tensor:
        a, b = (crop_border(quantize(x.float()) / 255.0, border) for x in (sr, hr))
        if a.shape[1] == 1:
            a, b = a.expand(-1, 3, -1, -1), b.expand(-1, 3, -1, -1)
        value = self.metric(a, b)
        self.metric.reset()  # per-image values only: nothing accumulates across calls
        return value.reshape(-1)
