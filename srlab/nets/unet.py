"""U-Net (the seed's approach 2): the auto-encoder plus skip connections.

Encoder stages halve the resolution and double the width; each decoder stage upsamples,
concatenates the encoder features of the same size (the skip) and fuses them. Skips let
fine detail bypass the bottleneck, which is why a U-Net beats the plain auto-encoder at SR.
"""
import torch
from torch import nn

from srlab.nets.blocks import PreUpsamplingNet, conv_block


class UNet(PreUpsamplingNet):
    def __init__(self, scale: int, channels: int = 32, depth: int = 3, residual: bool = True, norm: str | None = None,
                 space_to_depth: int = 1):
        super().__init__(scale, residual, multiple=2**depth, space_to_depth=space_to_depth)
        widths = [channels * 2**i for i in range(depth + 1)]
        self.stem = conv_block(self.io_channels, widths[0], norm)
        self.down = nn.ModuleList(
            nn.Sequential(nn.Conv2d(c_in, c_out, 4, stride=2, padding=1), nn.LeakyReLU(0.2, inplace=True),
                          conv_block(c_out, c_out, norm))
            for c_in, c_out in zip(widths[:-1], widths[1:])
        )
        self.up = nn.ModuleList(
            nn.ConvTranspose2d(c_in, c_out, 2, stride=2) for c_in, c_out in zip(widths[:0:-1], widths[-2::-1])
        )
        self.fuse = nn.ModuleList(conv_block(2 * c, c, norm) for c in widths[-2::-1])
        self.head = nn.Conv2d(widths[0], self.io_channels, 3, padding=1)
        self.zero_head()

    def contract(self, x: torch.Tensor) -> list[torch.Tensor]:
        """The contracting path: features of every stage, finest first; the last one is the bottleneck."""
        skips = [self.stem(x)]
        for down in self.down:
            skips.append(down(skips[-1]))
        return skips

    def expand(self, skips: list[torch.Tensor]) -> torch.Tensor:
        """The expanding path: upsample from the bottleneck, fusing each stage's skip."""
        x = skips[-1]
        for up, fuse, skip in zip(self.up, self.fuse, reversed(skips[:-1])):
            x = fuse(torch.cat([up(x), skip], dim=1))
        return self.head(x)

    def body(self, x: torch.Tensor) -> torch.Tensor:
        return self.expand(self.contract(x))
