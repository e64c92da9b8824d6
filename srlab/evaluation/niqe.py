"""NIQE (Mittal et al., IEEE SPL 2013), as MATLAB's `niqe` with its default pristine model;
no reference image, lower is better.

How far an image's natural-scene statistics are from those of pristine photos: the 8-bit Y
image (MATLAB rgb2ycbcr, rounded; a gray source's own values) is cropped to whole 96x96
blocks; at two scales (the second by MATLAB bicubic x0.5, srlab.ops.imresize) it is
normalised by a local Gaussian mean and deviation (MSCN, 7x7 window, replicate border) and
each block (96, then 48 px) gives 18 features: an asymmetric generalised Gaussian fitted to
the coefficients and to their products with the four neighbours (right, down, two
diagonals; the block wrapped around, as MATLAB's circshift). The blocks' 36 features give a
mean and covariance; NIQE is the Mahalanobis-like distance of that Gaussian to the pristine
one (`niqe_pris_params.npz`, data from basicsr 1.4.2, see niqe_pris_params.md).

Written here from the paper and MATLAB's behaviour, vectorised over blocks; the image side in
float32 as MATLAB's niqe (float64 reads 5.7300 on baboon, float32 5.7296 = MATLAB), the fit in float64;
checked against MATLAB's published value for Set14's baboon (5.7296) in tests/test_niqe.py.
An image with fewer than two blocks after the border crop has no covariance: NaN, warned once.
"""
from __future__ import annotations

import warnings
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from scipy.special import gamma

from srlab.evaluation.measure import Measure, y8
from srlab.ops.imresize import imresize

PARAMS = Path(__file__).with_name("niqe_pris_params.npz")
BLOCK = 96
SHIFTS = ((0, 1), (1, 0), (1, 1), (1, -1))


def _aggd_tables() -> dict[str, torch.Tensor]:
    """The shape grid MATLAB searches (0.2:0.001:10) and the gamma ratios each point needs."""
    shape = np.arange(0.2, 10.001, 0.001)
    inv = 1.0 / shape
    return {
        "shape": torch.from_numpy(shape),
        "ratio": torch.from_numpy(gamma(2 * inv) ** 2 / (gamma(inv) * gamma(3 * inv))),
        "scale": torch.from_numpy(np.sqrt(gamma(1 / shape) / gamma(3 / shape))),
        "mean": torch.from_numpy(gamma(2 / shape) / gamma(1 / shape)),
    }


class NIQE(Measure):
    higher_is_better = False
    needs_hr = False

    def __init__(self, block: int = BLOCK):
        super().__init__()
        params = np.load(PARAMS)
        self.block = int(block)
        self.register_buffer("mu", torch.from_numpy(params["mu_pris_param"]).reshape(-1))
        self.register_buffer("cov", torch.from_numpy(params["cov_pris_param"]))
        self.register_buffer("window", torch.from_numpy(params["gaussian_window"])[None, None])
        for key, table in _aggd_tables().items():
            self.register_buffer(f"aggd_{key}", table)
        self._warned = False

    def measure(self, sr, hr, border, gray):
        y = y8(sr, border, gray).float().to(self.mu.device)  # float32: as MATLAB's niqe computes
        return torch.stack([self.score(img[0]) for img in y]).to(sr.device).float()

    def score(self, img: torch.Tensor) -> torch.Tensor:
        """NIQE of one [H,W] float32 image on 8-bit levels (features fitted in float64)."""
        nh, nw = img.shape[0] // self.block, img.shape[1] // self.block
        if nh * nw < 2:
            if not self._warned:
                warnings.warn(f"niqe: a {img.shape[0]}x{img.shape[1]} image (border cropped) has fewer than two "
                              f"{self.block}x{self.block} blocks: not measured (NaN)", stacklevel=2)
                self._warned = True
            return torch.tensor(float("nan"), device=img.device)
        img = img[: nh * self.block, : nw * self.block]
        feats = []
        for size in (self.block, self.block // 2):
            feats.append(self.block_features(self.mscn(img), size))
            if size == self.block:
                img = imresize(img / 255.0, scale=0.5) * 255.0
        f = torch.cat(feats, dim=1).double()  # [blocks, 36]
        mu = f.nanmean(dim=0)
        rows = f[~f.isnan().any(dim=1)]
        cov = torch.cov(rows.T)
        d = (self.mu - mu)[None]
        return (d @ torch.linalg.pinv((self.cov + cov) / 2) @ d.T).sqrt().reshape(())

    def mscn(self, img: torch.Tensor) -> torch.Tensor:
        """Mean-subtracted, contrast-normalised coefficients (Eq. 1), replicate border."""
        pad = self.window.shape[-1] // 2
        x = F.pad(img[None, None].double(), (pad,) * 4, mode="replicate")
        # filtered in float64, stored in float32 (MATLAB's single imfilter); the variance then
        # cancels in float32 as MATLAB's does, which moves NIQE by ~4e-4 on baboon. The Gaussian
        # is separable (window = outer(v, v), v its column sums): two 7-tap passes, not 49 taps
        v = self.window.sum(dim=-2, keepdim=True)  # [1,1,1,7]
        both = torch.cat([x, x * x])
        blurred = F.conv2d(F.conv2d(both, v), v.transpose(-1, -2)).float()
        mu, sigma = blurred[0, 0], (blurred[1, 0] - blurred[0, 0] ** 2).abs().sqrt()
        return (img - mu) / (sigma + 1)

    def block_features(self, x: torch.Tensor, size: int) -> torch.Tensor:
        """[blocks, 18] features of the size x size blocks of x (the same block order at both scales)."""
        nh, nw = x.shape[0] // size, x.shape[1] // size
        blocks = x.reshape(nh, size, nw, size).permute(0, 2, 1, 3).reshape(nh * nw, size, size)
        shape, left, right = self.aggd(blocks)
        out = [shape, (left + right) / 2]
        for shift in SHIFTS:
            shape, left, right = self.aggd(blocks * torch.roll(blocks, shift, dims=(1, 2)))
            mean = (right - left) * self.aggd_mean[self._index]
            out += [shape, mean, left, right]
        return torch.stack(out, dim=1)

    def aggd(self, blocks: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """Asymmetric generalised Gaussian fit per block (moment matching over the shape grid):
        (shape, left scale, right scale) [blocks]. A block without negative or positive values
        gives NaN scales (dropped from the covariance, as MATLAB's nancov does)."""
        x = blocks.flatten(1)
        neg, pos = (x < 0).to(x.dtype), (x > 0).to(x.dtype)
        left = ((x * x * neg).sum(1) / neg.sum(1)).sqrt()
        right = ((x * x * pos).sum(1) / pos.sum(1)).sqrt()
        g = left / right
        rhat = x.abs().mean(1) ** 2 / (x * x).mean(1)
        rnorm = (rhat * (g**3 + 1) * (g + 1) / (g**2 + 1) ** 2).double()
        index = ((self.aggd_ratio[None] - rnorm[:, None]) ** 2).argmin(dim=1)
        index = torch.where(rnorm.isnan(), torch.zeros_like(index), index)  # numpy's argmin of NaNs
        self._index = index
        factor = self.aggd_scale[index]
        return self.aggd_shape[index], left.double() * factor, right.double() * factor
