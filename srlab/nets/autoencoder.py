"""Auto-encoder (the seed's approach 1): squeeze the bicubic image through a bottleneck.

Strided convs halve the resolution `depth` times down to a bottleneck, transposed convs
expand it back; there are no skip connections, so every detail must pass the bottleneck.
That is the point of comparing it with the U-Net (which adds skips and nothing else).
"""
from torch import nn

from srlab.nets.blocks import PreUpsamplingNet, conv_block


class AutoEncoder(PreUpsamplingNet):
    def __init__(self, scale: int, channels: int = 32, depth: int = 3, residual: bool = True, norm: str | None = None,
                 space_to_depth: int = 1):
        super().__init__(scale, residual, multiple=2**depth, space_to_depth=space_to_depth)
        widths = [channels * 2**i for i in range(depth + 1)]
        encoder: list[nn.Module] = [conv_block(self.io_channels, widths[0], norm)]
        for c_in, c_out in zip(widths[:-1], widths[1:]):
            encoder += [nn.Conv2d(c_in, c_out, 4, stride=2, padding=1), nn.LeakyReLU(0.2, inplace=True),
                        conv_block(c_out, c_out, norm)]
        decoder: list[nn.Module] = []
        for c_in, c_out in zip(widths[:0:-1], widths[-2::-1]):
            decoder += [nn.ConvTranspose2d(c_in, c_out, 4, stride=2, padding=1), nn.LeakyReLU(0.2, inplace=True),
                        conv_block(c_out, c_out, norm)]
        self.encoder = nn.Sequential(*encoder)
        self.decoder = nn.Sequential(*decoder)
        self.head = nn.Conv2d(widths[0], self.io_channels, 3, padding=1)
        self.zero_head()

    def body(self, x):
        return self.head(self.decoder(self.encoder(x)))
