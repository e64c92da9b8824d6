"""LPIPS (Zhang et al., CVPR 2018): distance between deep features; lower is better.

srlab's own arithmetic, equal to the reference package `lpips` 0.1.4 (v0.1, `normalize=True`)
to 1e-5 when both get the same backbone weights (tests/test_measures.py injects one random
backbone into both, offline): inputs mapped to [-1, 1] and shifted/scaled by LPIPS's
ScalingLayer; at each of the backbone's ReLU outputs (AlexNet relu1-5, VGG16 relu1_2 ...
relu5_3, SqueezeNet fire outputs) features are unit-normalised over channels, their squared
difference weighted by a learned 1x1 conv (the linear heads shipped in torchmetrics, the same
files as in `lpips`), averaged over space, and summed over layers. Images are compared as
saved (8-bit) with the same border crop as PSNR. Backbones: srlab/evaluation/backbones.py.

Own code rather than torchmetrics' wrapper: that one downloads the backbone itself and
keeps a running mean; measuring per image, offline-safe, needs neither.
"""
from __future__ import annotations

import torch
from torch import nn

from srlab.errors import SrlabError
from srlab.evaluation.backbones import imagenet_features, torchmetrics_file
from srlab.evaluation.measure import Measure, as_rgb8

# backbone -> indices into `features` where LPIPS taps a ReLU output (its slice ends)
TAPS = {"alex": (2, 5, 8, 10, 12), "vgg": (4, 9, 16, 23, 30), "squeeze": (2, 5, 8, 10, 11, 12, 13)}
SHIFT = (-0.030, -0.088, -0.188)  # LPIPS's ScalingLayer, on inputs in [-1, 1]
SCALE = (0.458, 0.448, 0.450)


class LPIPS(Measure):
    higher_is_better = False

    def __init__(self, backbone: str = "alex", weights: str | None = None):
        super().__init__()
        if backbone not in TAPS:
            raise SrlabError(f"lpips: backbone={backbone!r} is not one of {', '.join(TAPS)}")
        self.backbone = backbone
        self.features = imagenet_features(backbone, weights, self.name or f"lpips ({backbone})")
        heads = torch.load(torchmetrics_file("lpips_models", f"{backbone}.pth"), map_location="cpu", weights_only=True)
        self.heads = nn.ParameterList([nn.Parameter(heads[f"lin{i}.model.1.weight"], requires_grad=False)
                                       for i in range(len(TAPS[backbone]))])
        self.register_buffer("shift", torch.tensor(SHIFT).view(1, 3, 1, 1))
        self.register_buffer("scale", torch.tensor(SCALE).view(1, 3, 1, 1))

    def taps(self, x: torch.Tensor) -> list[torch.Tensor]:
        out, start = [], 0
        for end in TAPS[self.backbone]:
            x = self.features[start:end](x)
            out.append(x)
            start = end
        return out

    def distance(self, a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
        """[N] LPIPS of [N,3,H,W] images in [0,1] (no quantization or crop)."""
        fa, fb = (self.taps(((2 * x - 1) - self.shift) / self.scale) for x in (a, b))
        total = 0
        for x, y, w in zip(fa, fb, self.heads):
            x = x / (x.pow(2).sum(dim=1, keepdim=True).sqrt() + 1e-10)
            y = y / (y.pow(2).sum(dim=1, keepdim=True).sqrt() + 1e-10)
            total = total + nn.functional.conv2d((x - y) ** 2, w).mean(dim=(2, 3))
        return total.reshape(-1)

    def measure(self, sr, hr, border, gray):
        return self.distance(as_rgb8(sr, border), as_rgb8(hr, border))
