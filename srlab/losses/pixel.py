"""Per-pixel losses: the plain baselines every other loss is compared against.

MSE optimises PSNR directly but averages plausible textures into blur; L1 is more robust to
outliers and is what most modern SR recipes (EDSR, RCAN, SwinIR) train with.
"""
import torch
import torch.nn.functional as F
from torch import nn


class MSELoss(nn.Module):
    def forward(self, sr: torch.Tensor, hr: torch.Tensor) -> torch.Tensor:
        return F.mse_loss(sr, hr)


class L1Loss(nn.Module):
    def forward(self, sr: torch.Tensor, hr: torch.Tensor) -> torch.Tensor:
        return F.l1_loss(sr, hr)
