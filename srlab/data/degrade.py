"""Degradations: how an LR training/validation input is made from an HR image.

A degradation is a callable `(hr [3,H,W], generator=None) -> lr [3,H/s,W/s]`, float in [0,1].
Every random choice is drawn from `generator` (torch's global RNG when None): data loaders
pass None for training (each worker has its own seeded RNG) and a generator seeded from the
image index for validation, so validation LR images are the same every epoch.
H and W must be multiples of `scale` (patches and val crops are made that way).

`degradation.batch(hr [B,3,H,W], gray=None, generator=None)` degrades a whole batch on
whatever device it lives on. Training uses it after the batch reached the GPU
(`SRDataModule.on_after_batch_transfer`): per-patch work in CPU loader workers cannot keep a
GPU busy. It gives the same LR as calling the degradation patch by patch with the same
generator, and never reads a value back from the device (no sync), so the GPU never waits.

- `BicubicDegradation`: MATLAB `imresize(hr, 1/s, 'bicubic')`, the benchmark convention.
- `Crapify`: a configurable "real-world-ish" pipeline in the spirit of fastai's crappify:
  optional Gaussian blur (HR) -> downscale with a (randomly chosen) kernel -> optional
  Gaussian noise (LR) -> optional JPEG (LR). Gray inputs (all channels equal) stay gray.
"""

from __future__ import annotations

from collections.abc import Sequence

import kornia
import torch
import torch.nn.functional as F

from srlab.errors import SrlabError
from srlab.imresize import imresize

IMRESIZE_KERNELS = ("cubic", "linear", "box", "lanczos2", "lanczos3")
TORCH_KERNELS = ("area", "bilinear", "nearest")


def _check(hr: torch.Tensor, scale: int) -> None:
    if hr.dim() != 3 or hr.shape[0] != 3:
        raise ValueError(f"degradation expects hr [3,H,W], got {tuple(hr.shape)}")
    if hr.shape[-2] % scale or hr.shape[-1] % scale:
        raise ValueError(f"degradation: HR size {tuple(hr.shape[-2:])} not a multiple of {scale}")


def _uniform(lo_hi: Sequence[float], g: torch.Generator | None) -> float:
    lo, hi = float(lo_hi[0]), float(lo_hi[1])
    return lo + (hi - lo) * torch.rand((), generator=g).item()


def _is_gray(x: torch.Tensor) -> bool:
    return bool(torch.equal(x[0], x[1]) and torch.equal(x[1], x[2]))


def downscale(hr: torch.Tensor, scale: int, kernel: str = "cubic") -> torch.Tensor:
    """Downscale [..., H, W] by an integer factor with an imresize or torch kernel."""
    if kernel in IMRESIZE_KERNELS:
        return imresize(hr, scale=1.0 / scale, kernel=kernel)
    x = hr if hr.dim() == 4 else hr[None]
    size = (hr.shape[-2] // scale, hr.shape[-1] // scale)
    if kernel == "area":  # mean over each s x s block
        out = F.interpolate(x, size=size, mode="area")
    elif kernel == "bilinear":  # antialiased, like PIL's BILINEAR that fastai's crappify used
        out = F.interpolate(x, size=size, mode="bilinear", align_corners=False, antialias=True)
    elif kernel == "nearest":
        out = F.interpolate(x, size=size, mode="nearest")
    else:
        raise SrlabError(
            f"degradation.kernel: unknown {kernel!r}; use one of "
            f"{', '.join(IMRESIZE_KERNELS + TORCH_KERNELS)}"
        )
    return out if hr.dim() == 4 else out[0]


class BicubicDegradation:
    """LR = MATLAB-exact bicubic downscale (the SR benchmark degradation)."""

    def __init__(self, scale: int):
        self.scale = int(scale)

    def __call__(self, hr: torch.Tensor, generator: torch.Generator | None = None) -> torch.Tensor:
        _check(hr, self.scale)
        return imresize(hr, scale=1.0 / self.scale).clamp_(0, 1)

    def batch(self, hr: torch.Tensor, gray=None,
              generator: torch.Generator | None = None) -> torch.Tensor:
        """[B,3,H,W] -> [B,3,H/s,W/s]: two batched matmuls, on hr's device."""
        _check(hr[0], self.scale)
        return imresize(hr, scale=1.0 / self.scale).clamp_(0, 1)

    def __repr__(self) -> str:
        return f"BicubicDegradation(scale={self.scale})"


class Crapify:
    """Random blur -> downscale -> noise -> JPEG, each step with its own probability.

    kernel: one name or a list to pick from uniformly per image. Names: cubic, linear, box,
        lanczos2, lanczos3 (MATLAB imresize) or area, bilinear, nearest (torch).
    blur_sigma: Gaussian sigma range in HR pixels, applied before the downscale.
    noise_sigma: Gaussian noise std range in /255 units, added to the LR image.
    jpeg_quality: JPEG quality range (kornia's differentiable codec), applied last.
    """

    def __init__(
        self,
        scale: int,
        kernel: str | Sequence[str] = ("cubic", "bilinear", "area"),
        blur_prob: float = 0.5,
        blur_sigma: Sequence[float] = (0.2, 2.0),
        noise_prob: float = 0.5,
        noise_sigma: Sequence[float] = (1.0, 10.0),
        jpeg_prob: float = 1.0,
        jpeg_quality: Sequence[float] = (10.0, 70.0),
    ):
        self.scale = int(scale)
        self.kernels = [kernel] if isinstance(kernel, str) else list(kernel)
        bad = [k for k in self.kernels if k not in IMRESIZE_KERNELS + TORCH_KERNELS]
        if bad or not self.kernels:
            raise SrlabError(
                f"degradation.kernel: unknown {bad or 'empty list'}; use one or a list of "
                f"{', '.join(IMRESIZE_KERNELS + TORCH_KERNELS)}"
            )
        for name, rng in [("blur_sigma", blur_sigma), ("noise_sigma", noise_sigma),
                          ("jpeg_quality", jpeg_quality)]:
            if len(rng) != 2 or float(rng[0]) > float(rng[1]) or float(rng[0]) < 0:
                raise SrlabError(
                    f"degradation.{name} must be [low, high] with 0 <= low <= high, "
                    f"got {list(rng)}"
                )
        if not (1 <= float(jpeg_quality[0]) and float(jpeg_quality[1]) <= 100):
            raise SrlabError(
                f"degradation.jpeg_quality must lie in [1, 100], got {list(jpeg_quality)}"
            )
        self.blur_prob, self.blur_sigma = float(blur_prob), tuple(map(float, blur_sigma))
        self.noise_prob, self.noise_sigma = float(noise_prob), tuple(map(float, noise_sigma))
        self.jpeg_prob, self.jpeg_quality = float(jpeg_prob), tuple(map(float, jpeg_quality))

    def _chance(self, p: float, g: torch.Generator | None) -> bool:
        # Always draw, so the number of draws (hence later choices) does not depend on p.
        return torch.rand((), generator=g).item() < p

    def __call__(self, hr: torch.Tensor, generator: torch.Generator | None = None,
                 gray: bool | None = None) -> torch.Tensor:
        """One image. `gray` (all channels equal) is looked up when not given: a device sync."""
        _check(hr, self.scale)
        g = generator
        gray = _is_gray(hr) if gray is None else bool(gray)
        x = hr[None]
        if self._chance(self.blur_prob, g):
            sigma = max(_uniform(self.blur_sigma, g), 1e-3)
            k = 2 * int(3 * sigma + 0.5) + 1  # covers +-3 sigma
            sig = torch.tensor([[sigma, sigma]], dtype=x.dtype, device=x.device)
            x = kornia.filters.gaussian_blur2d(x, (k, k), sig, border_type="reflect")
        kernel = self.kernels[int(torch.randint(len(self.kernels), (), generator=g))]
        x = downscale(x, self.scale, kernel).clamp_(0, 1)
        if self._chance(self.noise_prob, g):
            std = _uniform(self.noise_sigma, g) / 255.0
            shape = (1, 1 if gray else 3, *x.shape[-2:])
            # Drawn where the generator lives (CPU for seeded validation), so both paths agree.
            dev = g.device if g is not None else x.device
            noise = torch.randn(shape, generator=g, dtype=x.dtype, device=dev)
            x = (x + std * noise.to(x.device, non_blocking=True)).clamp_(0, 1)
        if self._chance(self.jpeg_prob, g):
            q = torch.tensor([_uniform(self.jpeg_quality, g)], dtype=x.dtype, device=x.device)
            x = kornia.enhance.jpeg_codec_differentiable(x, q)
            if gray:  # chroma rounding can tint a gray image slightly; keep it gray
                x = x.mean(1, keepdim=True).expand_as(x)
        return x[0].clamp(0, 1).contiguous()

    def batch(self, hr: torch.Tensor, gray=None,
              generator: torch.Generator | None = None) -> torch.Tensor:
        """[B,3,H,W] on any device: image by image (each draws its own blur, kernel, noise,
        JPEG quality), in the order the loader path would. Pass `gray` (the batch's flags as
        a list or CPU tensor) to avoid a device sync per image."""
        if gray is None:
            flags = [None] * len(hr)
        else:
            flags = [bool(v) for v in (gray.tolist() if torch.is_tensor(gray) else gray)]
        return torch.stack([self(x, generator, gray=f) for x, f in zip(hr, flags)])

    def __repr__(self) -> str:
        return (
            f"Crapify(scale={self.scale}, kernel={self.kernels}, blur={self.blur_prob}@"
            f"{self.blur_sigma}, noise={self.noise_prob}@{self.noise_sigma}, "
            f"jpeg={self.jpeg_prob}@{self.jpeg_quality})"
        )
