"""Unsharp masking of HR targets, as Real-ESRGAN trains on "sharpened ground truth".

Real-ESRGAN (Wang et al. 2021, Sec. 4.1) sharpens the HR patch before making its LR and
before the pixel and perceptual losses: a net trained on plain HR learns the slight blur of
photographs too, and its output looks soft. Unsharp masking adds `weight` x (image - its
Gaussian blur) where that difference exceeds `threshold` (in /255 units, so flat areas and
noise are left alone), with the mask itself blurred so sharpened and plain regions blend.
The blur is OpenCV's Gaussian for a `radius`-sized window (sigma 0.3 ((k-1)/2 - 1) + 0.8;
8.0 at the default 51 taps), separable, through kornia.
"""
from __future__ import annotations

import kornia
import torch

from srlab.errors import SrlabError


def opencv_sigma(size: int) -> float:
    """The sigma OpenCV's getGaussianKernel(size, 0) uses."""
    return 0.3 * ((size - 1) * 0.5 - 1) + 0.8


def border_for(x: torch.Tensor, size: int) -> str:
    """Reflect padding where the image is larger than half the kernel, else replicate (tiny crops)."""
    return "reflect" if min(x.shape[-2:]) > size // 2 else "replicate"


class UnsharpMask:
    def __init__(self, weight: float = 0.5, radius: int = 50, threshold: float = 10.0):
        if radius < 1 or weight < 0 or threshold < 0:
            raise SrlabError(f"sharpen_gt: need radius >= 1, weight >= 0, threshold >= 0; got "
                             f"weight={weight} radius={radius} threshold={threshold}")
        self.weight, self.threshold = float(weight), float(threshold)
        self.size = int(radius) + (1 - int(radius) % 2)  # odd window, as Real-ESRGAN rounds 50 -> 51
        self.sigma = opencv_sigma(self.size)
        self.kernel = kornia.filters.get_gaussian_kernel1d(self.size, self.sigma)  # [1, size], sums to 1

    def _blur(self, x: torch.Tensor) -> torch.Tensor:
        # Two 1D passes with one fixed kernel: 2x faster on a CPU than gaussian_blur2d's per-sample
        # sigma path (measured on 16 x 256 px: 0.7 s vs 1.5 s on 2 busy cores).
        k = self.kernel.to(x.device, x.dtype, non_blocking=True)
        return kornia.filters.filter2d_separable(x, k, k, border_type=border_for(x, self.size))

    def __call__(self, x: torch.Tensor) -> torch.Tensor:
        """[B,C,H,W] in [0,1] -> the sharpened batch, same shape, in [0,1]."""
        residual = x - self._blur(x)
        mask = (residual.abs() * 255 > self.threshold).to(x.dtype)
        soft = self._blur(mask)
        sharp = (x + self.weight * residual).clamp(0, 1)
        return soft * sharp + (1 - soft) * x

    def __repr__(self) -> str:
        return f"UnsharpMask(weight={self.weight}, size={self.size}, sigma={self.sigma}, threshold={self.threshold})"
