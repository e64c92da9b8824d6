"""Frequency-domain L1 loss.

Pixel losses weigh all frequencies alike, and since natural images put most energy in low
frequencies, high-frequency detail contributes little to them; comparing 2-D Fourier
coefficients gives each frequency its own error term (the "FFT loss" of MIMO-UNet, Cho et
al. 2021, and NAFNet's variants).

mode="complex" (default) is L1 on the real and imaginary parts, so phase errors (shifted
edges) count as well as amplitude errors. mode="amplitude" compares |F| only, which ignores
phase: it is blind to translations and only asks for the right amount of each frequency.
The "ortho" norm makes the coefficients' scale independent of the image size (Parseval).
"""

import torch
from torch import nn

from srlab.errors import SrlabError

MODES = ("complex", "amplitude")


class FFTLoss(nn.Module):
    """mean |F(sr) - F(hr)| over real+imag parts ("complex") or mean ||F(sr)| - |F(hr)|| ("amplitude")."""

    def __init__(self, mode: str = "complex"):
        super().__init__()
        if mode not in MODES:
            raise SrlabError(f"FFT loss mode {mode!r} unknown: use complex or amplitude")
        self.mode = mode

    def forward(self, sr: torch.Tensor, hr: torch.Tensor) -> torch.Tensor:
        f_sr = torch.fft.rfft2(_full(sr), norm="ortho")
        f_hr = torch.fft.rfft2(_full(hr), norm="ortho")
        if self.mode == "amplitude":
            return (f_sr.abs() - f_hr.abs()).abs().mean()
        return (torch.view_as_real(f_sr) - torch.view_as_real(f_hr)).abs().mean()

    def extra_repr(self) -> str:
        return f"mode={self.mode}"


def _full(x: torch.Tensor) -> torch.Tensor:
    # Half-precision FFTs only exist for power-of-two sizes on CUDA: compute those in float32.
    return x.float() if x.dtype in (torch.float16, torch.bfloat16) else x
