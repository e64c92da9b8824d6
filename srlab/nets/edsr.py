"""EDSR (Lim et al. 2017, arXiv 1707.02921): a deep residual net at LR size, sub-pixel upsampler.

    lr - mean -> conv3x3 -> n_blocks x ResBlock -> conv3x3 (+ skip from the first conv)
       -> PixelShuffle upsampler -> conv3x3 to RGB -> + mean

EDSR is SRResNet with batch norm removed (it costs memory and normalises away the feature
range SR needs) and, for the wide model, the residual branches scaled down. Defaults are
EDSR-baseline: 16 blocks, 64 channels, res_scale 1 (1.37M parameters at x2, 1.52M at x4).
The paper's full EDSR is n_blocks=32, channels=256, res_scale=0.1 (without the 0.1
scaling that width trains unstably); 40.7M at x2, 43.1M at x4.

The DIV2K mean RGB is subtracted at the input and added back at the output, as in EDSR:
the net then works on zero-centred values and a zero output means "the average image".

What differs from the paper, and why:
- Images are in [0, 1], not [0, 255]; the mean is scaled to match.
- `residual=True` is an srlab option (not in the paper): output = MATLAB bicubic(lr) + net,
  with the last conv zero-initialised so an untrained net is exactly bicubic (the repo's
  convention for residual nets); the mean is then not added back, since bicubic(lr) already
  carries it. It defaults to False: EDSR's own global skip already carries the LR content.
- x3 uses one c -> 9c conv + PixelShuffle(3); x2/x4/x8 use x2 stages, as in EDSR's code.
- `upsampler="direct"` is an srlab option: one conv straight to 3 x scale^2 values and one
  PixelShuffle(scale) (ESPCN's sub-pixel layer, the tail of lightweight nets such as IMDN and
  RFDN). EDSR's x4 stages run two c -> 4c convs, the second at 2x LR size: at 32-48 channels
  that is more work than the residual body itself (measured on 2 CPU cores, 32 channels x 6
  blocks, batch 16 x 24 px LR: 0.167 -> 0.050 s per training step). With `residual=True` the
  net only adds detail to bicubic, and one sub-pixel layer is enough for it: that is the
  default recipe's net (configs/net/edsr_light.yaml).
"""
from typing import Literal

import torch
from torch import nn

from srlab.nets.blocks import ResBlock, pixel_shuffle_upsampler
from srlab.ops.imresize import imresize

DIV2K_MEAN = (0.4488, 0.4371, 0.4040)  # mean RGB of the DIV2K training set, in [0, 1]


class EDSR(nn.Module):
    upsampling = "post"

    def __init__(self, scale: int, n_blocks: int = 16, channels: int = 64, res_scale: float = 1.0,
                 residual: bool = False, upsampler: Literal["stages", "direct"] = "stages"):
        super().__init__()
        self.scale = int(scale)
        self.multiple = 1  # no strides: tiles may start anywhere
        self.residual = residual
        # a constant, not a parameter; persistent=False keeps it out of checkpoints
        self.register_buffer("mean", torch.tensor(DIV2K_MEAN).view(1, 3, 1, 1), persistent=False)
        self.stem = nn.Conv2d(3, channels, 3, padding=1)  # EDSR's "head"
        self.blocks = nn.Sequential(*(ResBlock(channels, res_scale) for _ in range(n_blocks)),
                                    nn.Conv2d(channels, channels, 3, padding=1))
        if upsampler == "stages":
            self.upsampler = pixel_shuffle_upsampler(channels, self.scale)
            self.tail = nn.Conv2d(channels, 3, 3, padding=1)
        else:  # one sub-pixel conv: its output is already the RGB image
            self.upsampler = nn.Sequential(nn.Conv2d(channels, 3 * self.scale ** 2, 3, padding=1),
                                           nn.PixelShuffle(self.scale))
            self.tail = nn.Identity()
        if residual:  # zero detail at the start: the untrained net is bicubic
            last = self.tail if upsampler == "stages" else self.upsampler[0]
            nn.init.zeros_(last.weight)
            nn.init.zeros_(last.bias)

    def forward(self, lr: torch.Tensor) -> torch.Tensor:
        x = self.stem(lr - self.mean)
        x = x + self.blocks(x)  # global skip: the blocks learn a residual of the stem features
        out = self.tail(self.upsampler(x))
        return imresize(lr, scale=self.scale) + out if self.residual else out + self.mean
