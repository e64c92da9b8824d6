"""ESPCN (Shi et al. 2016, arXiv 1609.05158): convs at LR size, a sub-pixel conv upsamples last.

Pre-upsampling nets (SRCNN) spend every conv on the bicubic image, scale^2 times more pixels
than the input has, and those pixels hold no more information. ESPCN runs all its convs on
the LR image and only the last one predicts 3 * scale^2 channels, which PixelShuffle lays
out as the scale x scale HR pixels of each LR pixel (the "efficient sub-pixel convolution").
Layers as in the paper: 5x5 (64) tanh, 3x3 (32) tanh, 3x3 to 3 * scale^2, PixelShuffle.

What differs from the paper, and why:
- RGB in and out, not the Y channel only: every srlab net maps RGB to RGB.
- `residual=True` (srlab's convention): output = MATLAB bicubic(lr) + the shuffled
  prediction, and the last conv starts at zero, so an untrained ESPCN is exactly the
  bicubic baseline and training shows up as gain over it from the first step. The paper
  predicts the image itself; `residual=False` gives that back.

All convs are stride 1 with 'same' padding at LR size, so a 1 LR px shift of the input
shifts the output by `scale` HR px away from the borders: tiled inference is exact once the
tile overlap covers the small receptive field (4 LR px; bicubic's 2 px lie within it).
"""
import torch
from torch import nn

from srlab.ops.imresize import imresize


class ESPCN(nn.Module):
    upsampling = "post"

    def __init__(self, scale: int, channels: int = 64, mid_channels: int = 32, residual: bool = True):
        super().__init__()
        self.scale = int(scale)
        self.multiple = 1  # no strides: tiles may start anywhere
        self.residual = residual
        # tanh, as the paper found it better than ReLU for this shallow net
        self.features = nn.Sequential(
            nn.Conv2d(3, channels, 5, padding=2), nn.Tanh(),
            nn.Conv2d(channels, mid_channels, 3, padding=1), nn.Tanh(),
        )
        self.head = nn.Conv2d(mid_channels, 3 * self.scale**2, 3, padding=1)  # the sub-pixel conv
        self.shuffle = nn.PixelShuffle(self.scale)
        if residual:  # zero detail at the start: the untrained net is bicubic
            nn.init.zeros_(self.head.weight)
            nn.init.zeros_(self.head.bias)

    def forward(self, lr: torch.Tensor) -> torch.Tensor:
        out = self.shuffle(self.head(self.features(lr)))
        return imresize(lr, scale=self.scale) + out if self.residual else out
