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
from srlab.ops.imresize import imresize

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
    """Downscale [..., H, W] by an integer factor with an imresize or torch kernel; scale 1
    keeps the image (a degradation on top of given LR files, `data=paired`)."""
    if scale == 1:
        return hr
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


class NoDegradation:
    """`degradation=none`: the LR is given as files (`data=paired`); nothing is made from the HR."""

    scale = 1

    def __init__(self, scale: int | None = None):
        pass

    def __repr__(self) -> str:
        return "NoDegradation()"


class BicubicDegradation:
    """LR = MATLAB-exact bicubic downscale (the SR benchmark degradation)."""

    def __init__(self, scale: int):
        self.scale = int(scale)

    def __call__(self, hr: torch.Tensor, generator: torch.Generator | None = None) -> torch.Tensor:
        _check(hr, self.scale)
        return self.batch(hr[None])[0]

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

    def _draw(self, gray: list[bool], lr_size: tuple[int, int], g: torch.Generator | None) -> dict:
        """Every random choice of a batch, image after image, on the CPU (no device sync):
        the same draws in the same order whether the loader calls one image at a time or
        the data module one batch, so both paths give the same LR."""
        p = {k: [] for k in ("blur", "sigma", "kernel", "noise", "std", "jpeg", "quality")}
        noise = []
        dev = g.device if g is not None else torch.device("cpu")
        for is_gray in gray:
            p["blur"].append(self._chance(self.blur_prob, g))
            p["sigma"].append(max(_uniform(self.blur_sigma, g), 1e-3) if p["blur"][-1] else 1.0)
            p["kernel"].append(int(torch.randint(len(self.kernels), (), generator=g)))
            p["noise"].append(self._chance(self.noise_prob, g))
            p["std"].append(_uniform(self.noise_sigma, g) / 255.0 if p["noise"][-1] else 0.0)
            n = None
            if p["noise"][-1]:  # gray images get one noise plane for all channels: they stay gray
                n = torch.randn((1 if is_gray else 3, *lr_size), generator=g, device=dev).cpu()
            noise.append(n)
            p["jpeg"].append(self._chance(self.jpeg_prob, g))
            p["quality"].append(_uniform(self.jpeg_quality, g) if p["jpeg"][-1] else 100.0)
        if any(p["noise"]):  # images without noise get zeros (their std is 0 anyway)
            zero = torch.zeros(1, *lr_size)
            p["noise_map"] = torch.stack([(z if z is not None else zero).expand(3, *lr_size) for z in noise])
        return p

    def batch(self, hr: torch.Tensor, gray=None,
              generator: torch.Generator | None = None) -> torch.Tensor:
        """[B,3,H,W] -> [B,3,H/s,W/s] on hr's device, each image with its own blur, kernel,
        noise and JPEG quality. Every step runs once over the whole batch (a per-image
        choice is a mask), so a GPU does it in a few kernels. Pass `gray` (the batch's flags
        as a list or CPU tensor); when None it is read from hr, a device sync."""
        _check(hr[0], self.scale)
        if gray is None:
            gray = [_is_gray(x) for x in hr]
        gray = [bool(v) for v in (gray.tolist() if torch.is_tensor(gray) else gray)]
        lr_size = (hr.shape[-2] // self.scale, hr.shape[-1] // self.scale)
        p = self._draw(gray, lr_size, generator)

        def on_device(values, dtype=hr.dtype):  # pageable -> device without waiting for the GPU
            return torch.tensor(values, dtype=dtype).to(hr.device, non_blocking=True)

        def per_image(flags):
            return on_device(flags, torch.bool).view(-1, 1, 1, 1)

        x = hr
        if any(p["blur"]):
            # One kernel size for the batch: +-3 sigma of the largest sigma allowed (a wider
            # window only adds taps of ~0 weight), per-image sigma as a [B,2] tensor.
            k = 2 * int(3 * max(self.blur_sigma[1], 1e-3) + 0.5) + 1
            k = min(k, 2 * min(x.shape[-2:]) - 1)  # reflect padding needs pad < size
            sigma = on_device([[s, s] for s in p["sigma"]])
            blurred = kornia.filters.gaussian_blur2d(x, (k, k), sigma, border_type="reflect")
            x = torch.where(per_image(p["blur"]), blurred, x)
        used = sorted(set(p["kernel"]))
        if len(used) == 1:
            x = downscale(x, self.scale, self.kernels[used[0]])
        else:
            choice = on_device(p["kernel"], torch.long).view(-1, 1, 1, 1)
            x = sum(torch.where(choice == i, downscale(x, self.scale, self.kernels[i]), 0.0) for i in used)
        x = x.clamp(0, 1)
        if any(p["noise"]):
            noise = p["noise_map"].to(hr.device, hr.dtype, non_blocking=True)
            x = (x + on_device(p["std"]).view(-1, 1, 1, 1) * noise).clamp(0, 1)
        if any(p["jpeg"]):
            jpeg = kornia.enhance.jpeg_codec_differentiable(x, on_device(p["quality"]))
            # chroma rounding can tint a gray image slightly; keep gray images gray
            jpeg = torch.where(per_image(gray), jpeg.mean(1, keepdim=True).expand_as(jpeg), jpeg)
            x = torch.where(per_image(p["jpeg"]), jpeg, x)
        return x.clamp(0, 1).contiguous()

    def __call__(self, hr: torch.Tensor, generator: torch.Generator | None = None,
                 gray: bool | None = None) -> torch.Tensor:
        """One image [3,H,W]: the batch code on a batch of one."""
        _check(hr, self.scale)
        return self.batch(hr[None], None if gray is None else [gray], generator)[0]

    def __repr__(self) -> str:
        return (
            f"Crapify(scale={self.scale}, kernel={self.kernels}, blur={self.blur_prob}@"
            f"{self.blur_sigma}, noise={self.noise_prob}@{self.noise_sigma}, "
            f"jpeg={self.jpeg_prob}@{self.jpeg_quality})"
        )
