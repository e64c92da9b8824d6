"""Negative PSNR as a loss.

Minimising -PSNR = 10 log10(MSE) is MSE on a log scale: the gradient is MSE's divided by the
current MSE, so it keeps pushing once the error is already small (used e.g. by HINet/NAFNet).
PSNR is computed per image and averaged, as SR papers average it, with data range 1.
"""

import torch
from torch import nn


class PSNRLoss(nn.Module):
    """mean over images of 10 log10(MSE_i + eps) = -PSNR (data range 1).

    eps keeps identical images finite: they give 10 log10(eps) (-80 dB for the default 1e-8),
    the loss's minimum.
    """

    def __init__(self, eps: float = 1e-8):
        super().__init__()
        self.eps = float(eps)

    def forward(self, sr: torch.Tensor, hr: torch.Tensor) -> torch.Tensor:
        mse = ((sr - hr) ** 2).flatten(1).mean(1)
        return (10.0 * torch.log10(mse + self.eps)).mean()

    def extra_repr(self) -> str:
        return f"eps={self.eps}"
