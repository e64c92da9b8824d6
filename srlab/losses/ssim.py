"""Structural-similarity losses: 1 - SSIM and 1 - MS-SSIM (torchmetrics' implementations).

SSIM compares local means, contrasts and correlations in a Gaussian window (11 px, sigma 1.5,
K1 0.01, K2 0.03; Wang et al. 2004) instead of pixel errors, which is closer to what people
notice. Data range is fixed at 1 (images in [0,1]); letting torchmetrics infer it from the
images would make the loss depend on the output's own range.

MS-SSIM (Wang et al. 2003) repeats SSIM's contrast/structure term on 5 successively halved
scales. With an 11-px window the coarsest scale must still be wider than the window, so 5
scales need images of about 161 px, and torchmetrics' own check asks for >= 176 px: more
than the default 128-px training patch. Choice made here: by default (auto_scales=True) use
as many scales as fit, dropping the coarsest ones and rescaling the remaining (finest) betas
to the original sum, so the loss keeps its [0, 1] range. Smaller side >= 176 px: 5 scales,
99..175: 4 (the default 128-px patch), 44..98: 3, 22..43: 2. Below 22 px (not even 2 scales)
it raises SrlabError. With auto_scales=False it raises SrlabError whenever all the betas do not
fit, naming the minimum size (the paper's 5 scales need >= 176 px).
"""

import torch
from torch import nn
from torchmetrics.functional.image import (
    multiscale_structural_similarity_index_measure as ms_ssim,
)
from torchmetrics.functional.image import structural_similarity_index_measure as ssim

from srlab.errors import SrlabError

BETAS = (0.0448, 0.2856, 0.3001, 0.2363, 0.1333)  # Wang et al. 2003


class SSIMLoss(nn.Module):
    """1 - SSIM(sr, hr), averaged over the batch (data range 1, Gaussian window)."""

    def __init__(self, kernel_size: int = 11, sigma: float = 1.5, k1: float = 0.01, k2: float = 0.03):
        super().__init__()
        self.kernel_size, self.sigma, self.k1, self.k2 = int(kernel_size), float(sigma), float(k1), float(k2)

    def forward(self, sr: torch.Tensor, hr: torch.Tensor) -> torch.Tensor:
        value = ssim(sr, hr, kernel_size=self.kernel_size, sigma=self.sigma,
                     data_range=1.0, k1=self.k1, k2=self.k2)
        return 1.0 - value

    def extra_repr(self) -> str:
        return f"kernel_size={self.kernel_size}, sigma={self.sigma}"


def window(kernel_size: int, sigma: float) -> int:
    """Width torchmetrics really uses: for a Gaussian window it derives it from sigma."""
    return max(int(kernel_size), int(3.5 * sigma + 0.5) * 2 + 1)


def scales_that_fit(size: int, kernel_size: int = 11, sigma: float = 1.5, max_scales: int = 5) -> int:
    """The most MS-SSIM scales (<= max_scales) an image whose smaller side is `size` px allows."""
    win = window(kernel_size, sigma)
    for n in range(max_scales, 0, -1):
        coarsest_ok = size // 2 ** (n - 1) > win - 1  # the window fits inside the coarsest scale
        torchmetrics_ok = size >= 2**n and size // max(1, n - 1) ** 2 > win - 1  # its own check
        if coarsest_ok and torchmetrics_ok:
            return n
    return 0


def min_size(n_scales: int, kernel_size: int = 11, sigma: float = 1.5) -> int:
    """Smallest image side that allows `n_scales` scales."""
    size = 1
    while scales_that_fit(size, kernel_size, sigma, n_scales) < n_scales:
        size += 1
    return size


class MSSSIMLoss(nn.Module):
    """1 - MS-SSIM(sr, hr), averaged over the batch; see the module docstring for small images."""

    def __init__(self, kernel_size: int = 11, sigma: float = 1.5, betas=BETAS, auto_scales: bool = True):
        super().__init__()
        self.kernel_size, self.sigma = int(kernel_size), float(sigma)
        self.betas = tuple(float(b) for b in betas)
        self.auto_scales = bool(auto_scales)

    def betas_for(self, size: int) -> tuple[float, ...]:
        """The betas used for images whose smaller side is `size` px (raises if none fit)."""
        n = scales_that_fit(size, self.kernel_size, self.sigma, len(self.betas))
        if n == len(self.betas):
            return self.betas
        need = min_size(len(self.betas), self.kernel_size, self.sigma)
        if not self.auto_scales or n < 2:
            fewest, fix = (len(self.betas), "auto_scales=true") if not self.auto_scales else (2, "a smaller sigma")
            raise SrlabError(
                f"MS-SSIM with {fewest} scales and a {window(self.kernel_size, self.sigma)}-px window needs images of "
                f"at least {min_size(fewest, self.kernel_size, self.sigma)} px on the smaller side "
                f"(all {len(self.betas)} scales: {need} px), got {size} px: use larger patches, {fix} or the ssim loss"
            )
        kept = self.betas[:n]
        return tuple(b * sum(self.betas) / sum(kept) for b in kept)

    def forward(self, sr: torch.Tensor, hr: torch.Tensor) -> torch.Tensor:
        betas = self.betas_for(min(sr.shape[-2:]))
        value = ms_ssim(sr, hr, kernel_size=self.kernel_size, sigma=self.sigma, data_range=1.0, betas=betas)
        return 1.0 - value

    def extra_repr(self) -> str:
        return f"kernel_size={self.kernel_size}, sigma={self.sigma}, betas={self.betas}, auto_scales={self.auto_scales}"
