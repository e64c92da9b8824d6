"""Blur kernels of Real-ESRGAN's degradation (Wang et al. 2021, Sec. 3.1), drawn batch-wise.

Real-world blur is not one Gaussian: Real-ESRGAN draws each image's kernel from a mix of
isotropic and anisotropic Gaussians, generalized Gaussians exp(-0.5 q^beta) (beta < 1: heavy
tails, > 1: flat top) and "plateau" kernels 1 / (1 + q^beta), where q = x^T Sigma^-1 x is the
Mahalanobis distance of a tap from the centre, or a 2D sinc (ideal circular low-pass, whose
ringing and overshoot imitate sharpening and resampling artefacts). Kernel sizes are odd,
7..21 px, drawn per image; every kernel is zero-padded to 21 x 21 so one batched `filter2d`
(kornia) applies them all.

All draws come from a CPU `torch.Generator` and are vectorised over the batch (a fixed
number of draws per image whatever its kernel type, so later choices never shift), so the
kernels cost microseconds and nothing is read back from the GPU. Values are computed in
float64 and every kernel sums to 1.
"""
from __future__ import annotations

import math
from collections.abc import Mapping, Sequence

import torch

from srlab.errors import SrlabError

MAX_SIZE = 21
KERNEL_TYPES = ("iso", "aniso", "generalized_iso", "generalized_aniso", "plateau_iso", "plateau_aniso")


def uniform(n: int, lo_hi: Sequence[float], g: torch.Generator | None) -> torch.Tensor:
    lo, hi = float(lo_hi[0]), float(lo_hi[1])
    return lo + (hi - lo) * torch.rand(n, generator=g, dtype=torch.float64)


def odd_sizes(n: int, size_range: Sequence[int], g: torch.Generator | None) -> torch.Tensor:
    """n odd kernel sizes, uniform over the odd numbers in [lo, hi] (Real-ESRGAN: 7, 9, ... 21)."""
    lo, hi = int(size_range[0]), int(size_range[1])
    choices = torch.arange(lo | 1, hi + 1, 2)
    return choices[torch.randint(len(choices), (n,), generator=g)]


def _grid(size: int = MAX_SIZE) -> tuple[torch.Tensor, torch.Tensor]:
    """(x, y) offsets of every tap from the centre: x along columns, y along rows."""
    r = torch.arange(size, dtype=torch.float64) - (size - 1) / 2
    return r.view(1, 1, -1).expand(1, size, size), r.view(1, -1, 1).expand(1, size, size)


def _window(sizes: torch.Tensor, size: int = MAX_SIZE) -> torch.Tensor:
    """[n,size,size] masks: 1 inside each image's own (odd) kernel size, centred."""
    x, y = _grid(size)
    half = ((sizes.to(torch.float64) - 1) / 2).view(-1, 1, 1)
    return ((x.abs() <= half) & (y.abs() <= half)).to(torch.float64)


def _normalise(k: torch.Tensor) -> torch.Tensor:
    return k / k.sum(dim=(-2, -1), keepdim=True)


def covariance(sigma_x: torch.Tensor, sigma_y: torch.Tensor, theta: torch.Tensor) -> torch.Tensor:
    """[n,2,2] Sigma = R diag(sx^2, sy^2) R^T, R the rotation by theta (radians)."""
    c, s = torch.cos(theta), torch.sin(theta)
    rot = torch.stack([torch.stack([c, -s], -1), torch.stack([s, c], -1)], -2)
    diag = torch.diag_embed(torch.stack([sigma_x**2, sigma_y**2], -1))
    return rot @ diag @ rot.transpose(-1, -2)


def shaped_kernels(sigma_x, sigma_y, theta, beta, shape, sizes, size: int = MAX_SIZE) -> torch.Tensor:
    """[n,size,size] Gaussian-family kernels from explicit per-kernel parameters.

    shape[i]: 0 Gaussian exp(-q/2), 1 generalized exp(-q^beta/2), 2 plateau 1/(1+q^beta).
    """
    cov = covariance(sigma_x, sigma_y, theta)
    a, b_, d = cov[:, 0, 0], cov[:, 0, 1], cov[:, 1, 1]
    det = a * d - b_ * b_  # 2 x 2 inverse by hand: linalg.inv costs ~100x more for small batches
    inv = torch.stack([torch.stack([d, -b_], -1), torch.stack([-b_, a], -1)], -2) / det.view(-1, 1, 1)
    x, y = _grid(size)
    q = (inv[:, 0, 0, None, None] * x * x + (inv[:, 0, 1] + inv[:, 1, 0])[:, None, None] * x * y
         + inv[:, 1, 1, None, None] * y * y)
    b = beta.view(-1, 1, 1)
    shape = shape.view(-1, 1, 1)
    qb = torch.where(shape == 0, q, q.pow(b))
    # exp(-qb/2) as exp2: torch.exp on small CPU tensors was measured ~1000x slower here (2 busy cores)
    k = torch.where(shape == 2, 1.0 / (1.0 + qb), torch.exp2(qb * (-0.5 / math.log(2))))
    return _normalise(k * _window(sizes, size))


def sinc_kernels(cutoff: torch.Tensor, sizes: torch.Tensor, size: int = MAX_SIZE) -> torch.Tensor:
    """[n,size,size] circular low-pass (2D sinc): omega J1(omega r) / (2 pi r), cut to each size."""
    x, y = _grid(size)
    r = torch.sqrt(x * x + y * y)
    w = cutoff.view(-1, 1, 1)
    centre = (w**2 / (4 * math.pi)).expand(-1, size, size)  # the limit at r = 0
    k = torch.where(r > 0, w * torch.special.bessel_j1(w * r) / (2 * math.pi * r.clamp_min(1e-12)), centre)
    return _normalise(k * _window(sizes, size))


def pulse(n: int, size: int = MAX_SIZE) -> torch.Tensor:
    """[n,size,size] identity kernels (a 1 at the centre): "no filter" inside a batched filter2d."""
    k = torch.zeros(n, size, size, dtype=torch.float64)
    k[:, size // 2, size // 2] = 1.0
    return k


def check_probs(probs: Mapping[str, float], allowed: Sequence[str], key: str) -> dict[str, float]:
    bad = [k for k in probs if k not in allowed]
    if bad or not probs or any(float(v) < 0 for v in probs.values()) or sum(map(float, probs.values())) <= 0:
        raise SrlabError(f"{key}: give non-negative weights for some of {', '.join(allowed)}, got {dict(probs)}")
    return {k: float(v) for k, v in probs.items()}


def mixed_kernels(
    n: int,
    g: torch.Generator | None,
    kernel_probs: Mapping[str, float],
    sinc_prob: float,
    sigma: Sequence[float],
    betag: Sequence[float],
    betap: Sequence[float],
    size_range: Sequence[int] = (7, 21),
) -> torch.Tensor:
    """[n,21,21] kernels, one per image: a 2D sinc with probability `sinc_prob`, else a kernel
    of a type drawn with `kernel_probs` ({iso: 0.45, aniso: 0.25, ...}). Parameters per image:
    sigma_x, sigma_y in `sigma` (iso: sigma_y = sigma_x, theta = 0), theta in [-pi, pi],
    beta from `betag` (generalized) or `betap` (plateau), each taken below 1 or above it with
    probability 1/2 as in Real-ESRGAN; sinc cut-off in [pi/3, pi] (size < 13) or [pi/5, pi]."""
    probs = check_probs(kernel_probs, KERNEL_TYPES, "degradation kernel_probs")
    weights = torch.tensor([probs.get(t, 0.0) for t in KERNEL_TYPES], dtype=torch.float64)
    kind = torch.multinomial(weights, n, replacement=True, generator=g)
    sizes = odd_sizes(n, size_range, g)
    sx, sy = uniform(n, sigma, g), uniform(n, sigma, g)
    theta = uniform(n, (-math.pi, math.pi), g)
    below = torch.rand(n, generator=g, dtype=torch.float64) < 0.5

    def beta(rng):  # Real-ESRGAN: half the draws in [lo, 1), half in [1, hi]
        lo, hi = float(rng[0]), float(rng[1])
        return torch.where(below, uniform(n, (lo, min(1.0, hi)), g), uniform(n, (max(1.0, lo), hi), g))

    bg, bp = beta(betag), beta(betap)
    use_sinc = torch.rand(n, generator=g, dtype=torch.float64) < float(sinc_prob)
    cutoff = torch.where(sizes < 13, uniform(n, (math.pi / 3, math.pi), g), uniform(n, (math.pi / 5, math.pi), g))

    iso = kind % 2 == 0  # KERNEL_TYPES alternates iso / aniso
    sy = torch.where(iso, sx, sy)
    theta = torch.where(iso, torch.zeros_like(theta), theta)
    shape = kind // 2  # 0 Gaussian, 1 generalized, 2 plateau
    b = torch.where(shape == 1, bg, torch.where(shape == 2, bp, torch.ones_like(bg)))
    gauss = shaped_kernels(sx, sy, theta, b, shape, sizes)
    return torch.where(use_sinc.view(-1, 1, 1), sinc_kernels(cutoff, sizes), gauss)


def final_sinc(n: int, g: torch.Generator | None, prob: float, size_range: Sequence[int] = (7, 21)) -> torch.Tensor:
    """Real-ESRGAN's last filter: a sinc (cut-off in [pi/3, pi]) with probability `prob`, else a pulse."""
    sizes = odd_sizes(n, size_range, g)
    cutoff = uniform(n, (math.pi / 3, math.pi), g)
    use = torch.rand(n, generator=g, dtype=torch.float64) < float(prob)
    return torch.where(use.view(-1, 1, 1), sinc_kernels(cutoff, sizes), pulse(n))
