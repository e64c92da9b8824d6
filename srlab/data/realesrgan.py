"""Real-ESRGAN's second-order degradation (Wang et al. 2021), batched on the device.

Bicubic LR teaches a net a degradation no camera makes; one random blur + noise + JPEG pass
("crapify") is closer, but real photos went through several such chains (camera, edit, upload,
re-share). Real-ESRGAN applies the classical chain twice, each round with its own ranges:

    blur (kernels.py: Gaussian family or sinc) -> resize (up/down/keep; area, bilinear or
    bicubic) -> Gaussian or Poisson noise (colour or gray) -> JPEG
    then a second round, whose resize goes to `factor` x the LR size, and last, in random
    order, [resize to the LR size + a sinc filter (or none)] and JPEG; LR rounded to 8 bits.

Per image: blur kernels, noise strength and colour, JPEG quality, final sinc. Per batch (so
the batch stays one tensor): resize direction, factor and mode, noise type, second blur on or
off, order of the last steps; the training-pair pool (pair_pool.py) mixes those across batches.
Every choice is drawn first on the CPU from the caller's generator (`draw`), then applied on
hr's device (`apply`); pixel noise comes from a device generator seeded by one of those draws,
so nothing is read back from a GPU and the same seed gives the same LR. Deviations, all for
speed on a GPU: JPEG is kornia's differentiable codec (soft rounding); Poisson noise assumes
256 grey levels (Real-ESRGAN counts the distinct values of each image, a device sync). Gray
images (all channels equal) get gray noise and stay gray, as with crapify.

Training batches go through `train_batch` (called by the data module after transfer): the
optional sharpened HR target (sharpen.py; LR is made from it, as Real-ESRGAN does; the plain
HR rides along as "hr_plain" for the GAN critic), then the pool. Validation calls the
degradation image by image with a generator seeded by the image index: fixed LR every run.
"""
from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import kornia
import torch
import torch.nn.functional as F

from srlab.data import kernels
from srlab.data.pair_pool import PairPool
from srlab.data.sharpen import UnsharpMask, border_for
from srlab.errors import SrlabError

RESIZE_MODES = ("area", "bilinear", "bicubic")
DIRECTIONS = ("up", "down", "keep")


@dataclass(frozen=True)
class Round:
    """The ranges and probabilities of one degradation round (noise in /255 units)."""

    blur_prob: float
    kernel_probs: Mapping[str, float]
    sinc_prob: float
    blur_sigma: Sequence[float]
    betag: Sequence[float]
    betap: Sequence[float]
    resize_probs: Mapping[str, float]
    resize_range: Sequence[float]
    gaussian_noise_prob: float
    noise_sigma: Sequence[float]
    poisson_scale: Sequence[float]
    gray_noise_prob: float
    jpeg_quality: Sequence[float]

    @classmethod
    def from_config(cls, cfg: Mapping, name: str) -> Round:
        keys = cls.__dataclass_fields__
        unknown, missing = set(cfg) - set(keys), set(keys) - set(cfg)
        if unknown or missing:
            raise SrlabError(f"degradation.{name}: unknown keys {sorted(unknown)}, missing {sorted(missing)}")
        for key in ("blur_prob", "sinc_prob", "gaussian_noise_prob", "gray_noise_prob"):
            if not 0 <= float(cfg[key]) <= 1:
                raise SrlabError(f"degradation.{name}.{key}={cfg[key]} must lie in [0, 1]")
        for key in ("blur_sigma", "betag", "betap", "resize_range", "noise_sigma", "poisson_scale", "jpeg_quality"):
            lo_hi = list(cfg[key])
            if len(lo_hi) != 2 or not 0 <= float(lo_hi[0]) <= float(lo_hi[1]):
                raise SrlabError(f"degradation.{name}.{key} must be [low, high] with 0 <= low <= high, got {lo_hi}")
        if float(cfg["blur_sigma"][0]) <= 0 or float(cfg["resize_range"][0]) <= 0:
            raise SrlabError(f"degradation.{name}: blur_sigma and resize_range must be > 0")
        if not (1 <= float(cfg["jpeg_quality"][0]) and float(cfg["jpeg_quality"][1]) <= 100):
            raise SrlabError(f"degradation.{name}.jpeg_quality must lie in [1, 100], got {list(cfg['jpeg_quality'])}")
        kernels.check_probs(cfg["kernel_probs"], kernels.KERNEL_TYPES, f"degradation.{name}.kernel_probs")
        kernels.check_probs(cfg["resize_probs"], DIRECTIONS, f"degradation.{name}.resize_probs")
        return cls(**{k: (dict(v) if isinstance(v, Mapping) else tuple(v) if isinstance(v, Sequence)
                          else float(v)) for k, v in cfg.items()})


class RealESRGAN:
    def __init__(self, scale: int, first: Mapping, second: Mapping, final_sinc_prob: float = 0.8,
                 kernel_size: Sequence[int] = (7, 21), resize_modes: Sequence[str] = RESIZE_MODES,
                 sharpen_gt: Mapping | None = None, pool_size: int = 180):
        self.scale = int(scale)
        self.rounds = (Round.from_config(first, "first"), Round.from_config(second, "second"))
        self.final_sinc_prob = float(final_sinc_prob)
        lo, hi = (int(v) for v in kernel_size)
        if not 1 <= lo <= hi <= kernels.MAX_SIZE:
            raise SrlabError(f"degradation.kernel_size must be [low, high] within [1, {kernels.MAX_SIZE}], got {[lo, hi]}")
        self.kernel_size = (lo, hi)
        self.resize_modes = tuple(resize_modes)
        if not self.resize_modes or set(self.resize_modes) - set(RESIZE_MODES):
            raise SrlabError(f"degradation.resize_modes: use some of {', '.join(RESIZE_MODES)}, got {list(resize_modes)}")
        self.sharpen = UnsharpMask(**sharpen_gt) if sharpen_gt else None
        self.pool = PairPool(pool_size) if pool_size else None

    # ---- every random choice of a batch, on the CPU ----
    def _draw_round(self, r: Round, n: int, g: torch.Generator | None) -> dict:
        directions = torch.tensor([r.resize_probs.get(d, 0.0) for d in DIRECTIONS], dtype=torch.float64)
        direction = DIRECTIONS[int(torch.multinomial(directions, 1, generator=g))]
        lo, hi = r.resize_range
        up, down = kernels.uniform(1, (1.0, max(1.0, hi)), g), kernels.uniform(1, (lo, min(1.0, hi)), g)
        return {
            "blur": bool(torch.rand((), generator=g) < r.blur_prob),
            "kernel": kernels.mixed_kernels(n, g, r.kernel_probs, r.sinc_prob, r.blur_sigma, r.betag, r.betap,
                                            self.kernel_size),
            "direction": direction,
            "factor": {"up": float(up), "down": float(down), "keep": 1.0}[direction],
            "mode": self.resize_modes[int(torch.randint(len(self.resize_modes), (), generator=g))],
            "gaussian": bool(torch.rand((), generator=g) < r.gaussian_noise_prob),
            "sigma": kernels.uniform(n, r.noise_sigma, g) / 255.0,
            "poisson": kernels.uniform(n, r.poisson_scale, g),
            "gray_noise": torch.rand(n, generator=g) < r.gray_noise_prob,
            "quality": kernels.uniform(n, r.jpeg_quality, g),
        }

    def draw(self, n: int, g: torch.Generator | None = None) -> dict:
        """Every random choice for a batch of n, in a fixed order (the same count whatever is chosen)."""
        return {
            "rounds": [self._draw_round(r, n, g) for r in self.rounds],
            "sinc": kernels.final_sinc(n, g, self.final_sinc_prob, self.kernel_size),
            "last_mode": self.resize_modes[int(torch.randint(len(self.resize_modes), (), generator=g))],
            "sinc_first": bool(torch.rand((), generator=g) < 0.5),
            "seed": int(torch.randint(2**62, (), generator=g)),  # the pixel noise, drawn on the device
        }

    # ---- the steps, on hr's device ----
    @staticmethod
    def _to(values: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
        return values.to(x.dtype).to(x.device, non_blocking=True)

    def _filter(self, x: torch.Tensor, k: torch.Tensor) -> torch.Tensor:
        return kornia.filters.filter2d(x, self._to(k, x), border_type=border_for(x, k.shape[-1]))

    @staticmethod
    def _resize(x: torch.Tensor, size: tuple[int, int], mode: str) -> torch.Tensor:
        size = (max(1, int(size[0])), max(1, int(size[1])))
        if tuple(x.shape[-2:]) == size:
            return x
        return F.interpolate(x, size=size, mode=mode, **({} if mode == "area" else {"align_corners": False}))

    def _noise(self, x, p: dict, gray: torch.Tensor, g: torch.Generator) -> torch.Tensor:
        one_plane = (self._to(p["gray_noise"], x) > 0) | gray  # gray images get gray noise: they stay gray
        one_plane = one_plane.view(-1, 1, 1, 1)
        if p["gaussian"]:
            sigma = self._to(p["sigma"], x).view(-1, 1, 1, 1)
            colour = torch.randn(x.shape, generator=g, device=x.device, dtype=x.dtype)
            mono = torch.randn((x.shape[0], 1, *x.shape[-2:]), generator=g, device=x.device, dtype=x.dtype)
            noise = torch.where(one_plane, mono.expand_as(x), colour) * sigma
        else:  # shot noise: Poisson counts at 256 levels per unit, scaled
            levels = 256.0
            q = (x.clamp(0, 1) * 255).round() / 255
            colour = torch.poisson(q * levels, generator=g) / levels - q
            luma = (kornia.color.rgb_to_grayscale(x).clamp(0, 1) * 255).round() / 255
            mono = torch.poisson(luma * levels, generator=g) / levels - luma
            noise = torch.where(one_plane, mono.expand_as(x), colour) * self._to(p["poisson"], x).view(-1, 1, 1, 1)
        return (x + noise).clamp(0, 1)

    def _jpeg(self, x: torch.Tensor, quality: torch.Tensor, gray: torch.Tensor) -> torch.Tensor:
        out = kornia.enhance.jpeg_codec_differentiable(x.clamp(0, 1), self._to(quality, x))
        # chroma rounding can tint a gray image slightly; keep gray images gray
        return torch.where(gray.view(-1, 1, 1, 1), out.mean(1, keepdim=True).expand_as(out), out)

    def apply(self, hr: torch.Tensor, p: dict, gray: torch.Tensor) -> torch.Tensor:
        """[B,3,H,W] -> [B,3,H/s,W/s] with the choices `p` of `draw`; gray: bool [B] on hr's device."""
        g = torch.Generator(device=hr.device).manual_seed(p["seed"])
        h, w = hr.shape[-2:]
        lr_size = (h // self.scale, w // self.scale)
        x = hr
        for i, r in enumerate(p["rounds"]):
            if r["blur"]:
                x = self._filter(x, r["kernel"])
            # round 1 resizes the image it got; round 2 goes to factor x the LR size (Real-ESRGAN)
            base = x.shape[-2:] if i == 0 else lr_size
            x = self._resize(x, (base[0] * r["factor"], base[1] * r["factor"]), r["mode"])
            x = self._noise(x, r, gray, g)
            if i == 0 or not p["sinc_first"]:
                x = self._jpeg(x, r["quality"], gray)
        x = self._filter(self._resize(x, lr_size, p["last_mode"]), p["sinc"])
        if p["sinc_first"]:
            x = self._jpeg(x, p["rounds"][1]["quality"], gray)
        return ((x * 255).round().clamp(0, 255) / 255).contiguous()

    # ---- the degradation interface (degrade.py) ----
    def batch(self, hr: torch.Tensor, gray=None, generator: torch.Generator | None = None) -> torch.Tensor:
        """[B,3,H,W] -> [B,3,H/s,W/s] on hr's device. Pass `gray` (list or CPU tensor of the
        batch's flags); when None it is read from hr, a device sync."""
        if hr.dim() != 4 or hr.shape[1] != 3 or hr.shape[-2] % self.scale or hr.shape[-1] % self.scale:
            raise ValueError(f"realesrgan: need hr [B,3,H,W] with H, W multiples of {self.scale}, got {tuple(hr.shape)}")
        if gray is None:
            gray = [bool(torch.equal(x[0], x[1]) and torch.equal(x[1], x[2])) for x in hr]
        gray = torch.as_tensor(gray.tolist() if torch.is_tensor(gray) else list(gray), dtype=torch.bool)
        return self.apply(hr, self.draw(hr.shape[0], generator), gray.to(hr.device, non_blocking=True))

    def __call__(self, hr: torch.Tensor, generator: torch.Generator | None = None, gray: bool | None = None):
        """One image [3,H,W]: the batch code on a batch of one (every choice its own)."""
        return self.batch(hr[None], None if gray is None else [gray], generator)[0]

    def train_batch(self, batch: dict, gray, generator: torch.Generator | None) -> dict:
        """A training batch after transfer -> the batch to train on: LR made (from the
        sharpened HR when `sharpen_gt`), then mixed through the pool."""
        hr = batch["hr"]
        if self.sharpen is not None:
            batch["hr_plain"], batch["hr"] = hr, self.sharpen(hr)
        batch["lr"] = self.batch(batch["hr"], gray, generator)
        if self.pool is None:
            return batch
        keys = tuple(k for k in ("lr", "hr", "hr_plain", "gray") if torch.is_tensor(batch.get(k)))
        return self.pool(batch, keys, generator)

    def __repr__(self) -> str:
        return (f"RealESRGAN(scale={self.scale}, final_sinc_prob={self.final_sinc_prob}, "
                f"sharpen={self.sharpen}, pool={self.pool.size if self.pool else 0})")
