"""High-frequency error norm (HFEN, Ravishankar & Bresler 2011).

MSE is dominated by smooth regions; an edge shifted by a pixel or slightly blurred costs it
little. HFEN compares the images after a Laplacian-of-Gaussian filter, which keeps only
edges and fine texture, and normalises by the reference's own high-frequency energy:

    HFEN = ||LoG(sr - hr)||_2 / ||LoG(hr)||_2      (per image, then averaged over the batch)

with the paper's 15x15 kernel, sigma 1.5, built as MATLAB's fspecial('log', 15, 1.5) (a
normalised Gaussian times (r^2 - 2 sigma^2) / sigma^4, shifted to sum to zero so flat regions
give exactly zero). LoG is linear, so LoG(sr - hr) = LoG(sr) - LoG(hr).

A flat HR patch (sky, a wall) has ||LoG(hr)|| ~ 0 and would make the ratio explode, so the
denominator is floored: its RMS per pixel never goes below `eps` (default 1e-3; natural
images have a LoG RMS around 1e-2, so only near-flat patches are affected).
"""

import kornia
import torch
from torch import nn


def log_kernel(size: int = 15, sigma: float = 1.5) -> torch.Tensor:
    """[1, size, size] zero-sum Laplacian-of-Gaussian kernel, as MATLAB's fspecial('log')."""
    gauss = kornia.filters.get_gaussian_kernel2d((size, size), (sigma, sigma), dtype=torch.float64)[0]
    r = torch.arange(size, dtype=torch.float64) - (size - 1) / 2
    r2 = r[None] ** 2 + r[:, None] ** 2
    lap = gauss * (r2 - 2 * sigma**2) / sigma**4
    return (lap - lap.mean())[None]


class HFENLoss(nn.Module):
    """mean over images of ||LoG(sr - hr)||_2 / sqrt(||LoG(hr)||_2^2 + numel * eps^2)."""

    def __init__(self, kernel_size: int = 15, sigma: float = 1.5, eps: float = 1e-3):
        super().__init__()
        self.eps = float(eps)
        # A non-persistent buffer follows .to(device/dtype) but is rebuilt from the arguments, not saved.
        self.register_buffer("kernel", log_kernel(kernel_size, sigma).float(), persistent=False)

    def forward(self, sr: torch.Tensor, hr: torch.Tensor) -> torch.Tensor:
        k = self.kernel.to(sr.dtype)
        # "reflect" borders: zero padding would invent an edge at the image border.
        err = kornia.filters.filter2d(sr - hr, k, border_type="reflect").flatten(1)
        ref = kornia.filters.filter2d(hr, k, border_type="reflect").flatten(1)
        # vector_norm has a zero (not NaN) gradient at 0, so identical images are safe.
        num = torch.linalg.vector_norm(err, dim=1)
        den = torch.sqrt(ref.pow(2).sum(1) + ref.shape[1] * self.eps**2)
        return (num / den).mean()

    def extra_repr(self) -> str:
        return f"kernel={tuple(self.kernel.shape[-2:])}, eps={self.eps}"
