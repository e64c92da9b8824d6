"""ESRGAN's VGG-style critic: one real/fake logit per fixed-size image.

ESRGAN (Wang et al. 2018) and SRGAN (Ledig et al. 2017) judge a whole HR patch: five stages of
[3x3 conv, 4x4 stride-2 conv], each with batch norm and LeakyReLU(0.2), widths 64 -> 512, then
two linear layers (100 units, then 1 logit). The linear head ties it to one input size
(`input_size`, 128 px in the papers, a multiple of 32): it sees global structure that a patch
critic cannot, at the price of training on fixed crops only. Batch norm follows the paper;
with very small per-GPU batches a patch critic with spectral norm (patch_critic.py) is steadier.
"""
import torch
from torch import nn


class VGGCritic(nn.Module):
    def __init__(self, channels: int = 64, input_size: int = 128, in_channels: int = 3):
        super().__init__()
        if input_size % 32:
            raise ValueError(f"VGGCritic: input_size={input_size} must be a multiple of 32 (5 stride-2 stages)")
        self.input_size = int(input_size)
        widths = [channels, channels * 2, channels * 4, channels * 8, channels * 8]
        layers: list[nn.Module] = [nn.Conv2d(in_channels, widths[0], 3, padding=1), nn.LeakyReLU(0.2)]
        c_in = widths[0]
        for i, c_out in enumerate(widths):
            if i:  # the 3x3 conv of stages 2..5 (stage 1's is the unnormalised stem above)
                layers += [nn.Conv2d(c_in, c_out, 3, padding=1, bias=False), nn.BatchNorm2d(c_out), nn.LeakyReLU(0.2)]
            layers += [nn.Conv2d(c_out, c_out, 4, stride=2, padding=1, bias=False), nn.BatchNorm2d(c_out),
                       nn.LeakyReLU(0.2)]
            c_in = c_out
        self.features = nn.Sequential(*layers)
        side = self.input_size // 32
        self.head = nn.Sequential(nn.Flatten(), nn.Linear(widths[-1] * side * side, 100), nn.LeakyReLU(0.2),
                                  nn.Linear(100, 1))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if tuple(x.shape[-2:]) != (self.input_size, self.input_size):
            raise ValueError(f"VGGCritic takes {self.input_size} px crops, got {tuple(x.shape[-2:])}: "
                             "set approach.critic.input_size to data.patch_size")
        return self.head(self.features(x * 2 - 1))  # [0,1] -> [-1,1], as the patch critic
