"""The classical baseline: MATLAB bicubic upscaling, no parameters.

Every srlab run reports its gain over this; `net=bicubic` evaluates it on its own
(`srlab-eval net=bicubic ...`, or `srlab-train net=bicubic`, which only validates).
"""
import torch
from torch import nn

from srlab.ops.imresize import imresize


class Bicubic(nn.Module):
    upsampling = "pre"

    def __init__(self, scale: int):
        super().__init__()
        self.scale = int(scale)

    def forward(self, lr: torch.Tensor) -> torch.Tensor:
        return imresize(lr, scale=self.scale)
