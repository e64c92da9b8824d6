"""Charbonnier loss: a smooth L1.

sqrt(d^2 + eps^2) behaves like L1 for large errors (robust to outliers, less blur than MSE)
but is differentiable at zero, which L1 is not (LapSRN, Lai et al. 2017). Its minimum, for
identical images, is eps rather than 0; that constant has no gradient and does not matter.
"""

import torch
from torch import nn


class CharbonnierLoss(nn.Module):
    """mean(sqrt((sr - hr)^2 + eps^2))."""

    def __init__(self, eps: float = 1e-3):
        super().__init__()
        self.eps = float(eps)

    def forward(self, sr: torch.Tensor, hr: torch.Tensor) -> torch.Tensor:
        return torch.sqrt((sr - hr) ** 2 + self.eps**2).mean()

    def extra_repr(self) -> str:
        return f"eps={self.eps}"
