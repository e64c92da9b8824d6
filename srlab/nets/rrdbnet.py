"""RRDBNet (Wang et al. 2018, ESRGAN, arXiv 1809.00219): ESRGAN's generator, GAN SR's default.

    lr -> conv3x3 -> n_blocks x RRDB -> conv3x3 (+ skip from the first conv)
       -> [nearest x2 -> conv3x3 -> LReLU] per x2 stage -> conv3x3 -> LReLU -> conv3x3 to RGB

An RRDB (residual-in-residual dense block) is three dense blocks in a row, each wrapped in a
residual connection scaled by `res_scale` (0.2), and the three of them wrapped once more.
A dense block is five 3x3 convs; conv k sees the block input and the outputs of all convs
before it (growth `growth` channels each), the fifth maps back to `channels`. Batch norm is
left out (ESRGAN sec. 3.1: it brings artefacts in GAN training); the residual scaling and a
small init (x0.1 of Kaiming, as the paper's code does) keep the 23-block net trainable.
Defaults are the paper's: 23 RRDBs, 64 features, growth 32 -> 16.70 M parameters at x4.

Upsampling is nearest-neighbour + conv (ESRGAN's choice: no checkerboard from sub-pixel
convs); x2/x4/x8 use x2 stages, x3 one x3 stage. The paper's net and weights are x4 only.
Images are in [0, 1] and no mean is subtracted, as in ESRGAN.

Module names are those of the BasicSR release of the authors' code, so its files load as
they are; the original ESRGAN files (`RRDB_ESRGAN_x4.pth`, `RRDB_PSNR_x4.pth`) are renamed
on load (`OFFICIAL_RULES`). Real-ESRGAN's x2 model feeds a pixel-unshuffled input to an x4
net, a different first conv: it does not load into `scale=2`.
"""
import torch
import torch.nn.functional as F
from torch import nn

from srlab.nets.official_weights import load_official

# ESRGAN's original names -> ours (= BasicSR's)
OFFICIAL_RULES = [
    (r"^RRDB_trunk\.(\d+)\.RDB(\d)\.", r"body.\1.rdb\2."),
    (r"^trunk_conv\.", "conv_body."),
    (r"^upconv(\d)\.", r"conv_up\1."),
    (r"^HRconv\.", "conv_hr."),
]


def _small_init(module: nn.Module, factor: float = 0.1) -> None:
    """Kaiming init scaled down: each residual branch starts close to the identity."""
    for m in module.modules():
        if isinstance(m, nn.Conv2d):
            nn.init.kaiming_normal_(m.weight)
            m.weight.data.mul_(factor)
            nn.init.zeros_(m.bias)


class ResidualDenseBlock(nn.Module):
    """Five densely connected convs; output = x + res_scale * conv5(...)."""

    def __init__(self, channels: int = 64, growth: int = 32, res_scale: float = 0.2):
        super().__init__()
        self.res_scale = res_scale
        for k in range(1, 5):
            setattr(self, f"conv{k}", nn.Conv2d(channels + (k - 1) * growth, growth, 3, padding=1))
        self.conv5 = nn.Conv2d(channels + 4 * growth, channels, 3, padding=1)
        self.act = nn.LeakyReLU(0.2, inplace=True)
        _small_init(self)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        features = [x]
        for k in range(1, 5):
            features.append(self.act(getattr(self, f"conv{k}")(torch.cat(features, 1))))
        return x + self.res_scale * self.conv5(torch.cat(features, 1))


class RRDB(nn.Module):
    """Three dense blocks, the whole again a scaled residual branch."""

    def __init__(self, channels: int = 64, growth: int = 32, res_scale: float = 0.2):
        super().__init__()
        self.res_scale = res_scale
        self.rdb1, self.rdb2, self.rdb3 = (ResidualDenseBlock(channels, growth, res_scale) for _ in range(3))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x + self.res_scale * self.rdb3(self.rdb2(self.rdb1(x)))


class RRDBNet(nn.Module):
    upsampling = "post"

    def __init__(self, scale: int, n_blocks: int = 23, channels: int = 64, growth: int = 32,
                 res_scale: float = 0.2, weights: str | None = None):
        super().__init__()
        self.scale = int(scale)
        self.multiple = 1  # no strides: tiles may start anywhere
        if self.scale == 3:
            self.stages = [3]
        elif self.scale in (2, 4, 8):
            self.stages = [2] * (self.scale.bit_length() - 1)
        else:
            raise ValueError(f"RRDBNet supports scale 2, 3, 4, 8; got {scale}")
        self.conv_first = nn.Conv2d(3, channels, 3, padding=1)
        self.body = nn.Sequential(*(RRDB(channels, growth, res_scale) for _ in range(n_blocks)))
        self.conv_body = nn.Conv2d(channels, channels, 3, padding=1)
        for i in range(len(self.stages)):
            setattr(self, f"conv_up{i + 1}", nn.Conv2d(channels, channels, 3, padding=1))
        self.conv_hr = nn.Conv2d(channels, channels, 3, padding=1)
        self.conv_last = nn.Conv2d(channels, 3, 3, padding=1)
        self.act = nn.LeakyReLU(0.2, inplace=True)
        if weights:
            load_official(self, weights, OFFICIAL_RULES)

    def forward(self, lr: torch.Tensor) -> torch.Tensor:
        x = self.conv_first(lr)
        x = x + self.conv_body(self.body(x))
        for i, factor in enumerate(self.stages):
            x = self.act(getattr(self, f"conv_up{i + 1}")(F.interpolate(x, scale_factor=factor, mode="nearest")))
        return self.conv_last(self.act(self.conv_hr(x)))
