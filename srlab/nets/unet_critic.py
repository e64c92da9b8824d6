"""Real-ESRGAN's U-Net critic with spectral norm: a real/fake logit for every pixel.

Real-ESRGAN (Wang et al. 2021, Sec. 3.3) needs a stronger critic than ESRGAN's for blind SR:
its degradations are harsher, and the critic must both judge global structure and give
per-pixel feedback on local texture. A U-Net does both: three stride-2 stages down (64 ->
512 channels), three bilinear x2 stages up with skip additions, two more convs and a 1-channel
output at input resolution. Spectral norm (Miyato et al. 2018) on every inner conv stabilises
the training, which the U-Net's capacity and the complex degradations otherwise make unstable.
Takes any size that is a multiple of 8.
"""
import torch
import torch.nn.functional as F
from torch import nn
from torch.nn.utils.parametrizations import spectral_norm


class UNetCritic(nn.Module):
    def __init__(self, channels: int = 64, in_channels: int = 3, use_spectral_norm: bool = True):
        super().__init__()
        norm = spectral_norm if use_spectral_norm else (lambda m: m)
        c = channels
        self.stem = nn.Conv2d(in_channels, c, 3, padding=1)
        self.down = nn.ModuleList([norm(nn.Conv2d(a, b, 4, stride=2, padding=1, bias=False))
                                   for a, b in ((c, 2 * c), (2 * c, 4 * c), (4 * c, 8 * c))])
        self.up = nn.ModuleList([norm(nn.Conv2d(a, b, 3, padding=1, bias=False))
                                 for a, b in ((8 * c, 4 * c), (4 * c, 2 * c), (2 * c, c))])
        self.refine = nn.Sequential(norm(nn.Conv2d(c, c, 3, padding=1, bias=False)), nn.LeakyReLU(0.2),
                                    norm(nn.Conv2d(c, c, 3, padding=1, bias=False)), nn.LeakyReLU(0.2))
        self.out = nn.Conv2d(c, 1, 3, padding=1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if x.shape[-2] % 8 or x.shape[-1] % 8:
            raise ValueError(f"UNetCritic needs sizes that are multiples of 8, got {tuple(x.shape[-2:])}")
        skips = [F.leaky_relu(self.stem(x * 2 - 1), 0.2)]  # [0,1] -> [-1,1]
        for conv in self.down:
            skips.append(F.leaky_relu(conv(skips[-1]), 0.2))
        y = skips.pop()
        for conv in self.up:
            y = F.interpolate(y, scale_factor=2, mode="bilinear", align_corners=False)
            y = F.leaky_relu(conv(y), 0.2) + skips.pop()
        return self.out(self.refine(y))
