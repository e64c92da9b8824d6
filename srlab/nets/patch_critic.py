"""PatchGAN critic with spectral norm: the GAN approach's default discriminator.

A patch critic (Isola et al. 2017) is a small strided conv net that outputs a map of logits,
one per overlapping patch (receptive field 70 px with the default 3 strided stages), instead
of one logit per image. It judges local texture, which is what an SR generator gets wrong,
and it takes any input size, so it trains on crops and validates on whole images. Spectral
norm (Miyato et al. 2018) on every conv keeps the critic 1-Lipschitz-ish without batch norm,
which behaves badly with the small, per-GPU batches of SR training (and with DDP). ESRGAN's
VGG-style critic needs a fixed 128 px input; Real-ESRGAN's U-Net critic is a heavier
alternative for blind SR.
"""
import torch
from torch import nn
from torch.nn.utils.parametrizations import spectral_norm


class PatchCritic(nn.Module):
    def __init__(self, channels: int = 64, n_layers: int = 3, in_channels: int = 3, use_spectral_norm: bool = True):
        super().__init__()
        norm = spectral_norm if use_spectral_norm else (lambda m: m)
        widths = [channels * min(2**i, 8) for i in range(n_layers + 1)]
        layers: list[nn.Module] = [norm(nn.Conv2d(in_channels, widths[0], 4, stride=2, padding=1)), nn.LeakyReLU(0.2)]
        for c_in, c_out in zip(widths[:-2], widths[1:-1]):
            layers += [norm(nn.Conv2d(c_in, c_out, 4, stride=2, padding=1)), nn.LeakyReLU(0.2)]
        # last stage keeps the resolution (stride 1), then one logit per patch
        layers += [norm(nn.Conv2d(widths[-2], widths[-1], 4, stride=1, padding=1)), nn.LeakyReLU(0.2),
                   norm(nn.Conv2d(widths[-1], 1, 4, stride=1, padding=1))]
        self.body = nn.Sequential(*layers)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        # centred input: images in [0, 1] -> [-1, 1]
        return self.body(x * 2 - 1)
