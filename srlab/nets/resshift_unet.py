"""ResShift: diffusion SR that shifts the residual from the bicubic image in a few steps.

Yue, Wang and Loy, "ResShift: Efficient Diffusion Model for Image Super-resolution by Residual
Shifting", NeurIPS 2023 (arXiv:2307.12348); public code github.com/zsyOAOA/ResShift
(models/gaussian_diffusion.py). With x0 the HR image and y0 the (MATLAB) bicubic upsampling
of its LR, both in [-1, 1], and e0 = y0 - x0, the Markov chain runs from x0 to y0 (not to noise):

    forward    q(x_t | x0, y0) = N(x0 + eta_t e0, kappa^2 eta_t I)       (eq. 3, `q_sample`)
    schedule   sqrt(eta_t) = sqrt(eta_1) b0^(beta_t), beta_t = ((t-1)/(T-1))^p (T-1),
               b0 = exp(log(sqrt(eta_T)/sqrt(eta_1)) / (T-1)),
               sqrt(eta_1) = min(0.04/kappa, 0.04), sqrt(eta_T) = 0.99        (eq. 10; the code's values)
    reverse    x_T = y0 + kappa sqrt(eta_T) eps;
               x_{t-1} ~ N((eta_{t-1}/eta_t) x_t + (alpha_t/eta_t) f(x_t, y0, t),
                           kappa^2 (eta_{t-1}/eta_t) alpha_t I),  alpha_t = eta_t - eta_{t-1}, eta_0 = 0
    the net    f predicts x0, clipped to [-1, 1]; its x_t input is divided by
               1 + 3 kappa sqrt(eta_t) (the code's `_scale_input` in pixel space).

Fewer sampling steps than training steps (`sample_steps`): the chain restricted to a subset
of its times is again of this form (its increments are independent Gaussians), so the same
update holds with (t-1) replaced by the previous time kept. `temperature` scales every noise
draw (0: the deterministic mean path).

The denoiser is srlab's own U-Net with a timestep embedding, running on the LR grid: x_t and
y0 are folded 4x4 -> 48 channels each (pixel-unshuffle, as `net=unet` runs), so a step costs
what a U-Net forward at LR size costs; diffusers' UNet2DModel at HR size is ~scale^2 more per
step and a new dependency. Its head is zeroed and it predicts x0 as y0 + residual, so an
untrained net samples the bicubic image exactly. The sampler takes `denoise(z, t)` from the
caller: srlab-eval and srlab-upscale run each step through the tiler with one noise field for
the whole image (`srlab.inference.diffusion_sampling`).
"""
from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn

from srlab.nets.blocks import pad_to_multiple
from srlab.ops.imresize import imresize


def sqrt_eta_schedule(steps: int, kappa: float, power: float, min_noise: float = 0.04,
                      end: float = 0.99) -> torch.Tensor:
    """sqrt(eta_t), t = 1..T, as float64 (eq. 10 above)."""
    start = min(min_noise / kappa, min_noise)
    if steps == 1:
        return torch.tensor([end], dtype=torch.float64)
    beta = torch.linspace(0, 1, steps, dtype=torch.float64) ** power * (steps - 1)
    return start * torch.exp(beta * math.log(end / start) / (steps - 1))


def timestep_embedding(t: torch.Tensor, dim: int) -> torch.Tensor:
    """Sinusoidal embedding of integer timesteps [N] -> [N, dim] (as DDPM's)."""
    half = dim // 2
    freqs = torch.exp(-math.log(10000.0) * torch.arange(half, device=t.device, dtype=torch.float32) / half)
    angles = t.float()[:, None] * freqs[None]
    return torch.cat([angles.sin(), angles.cos()], dim=1)


class TimeBlock(nn.Module):
    """conv-act, then a per-channel scale and shift from the timestep, conv-act; residual."""

    def __init__(self, c_in: int, c_out: int, t_dim: int):
        super().__init__()
        self.conv1 = nn.Conv2d(c_in, c_out, 3, padding=1)
        self.film = nn.Linear(t_dim, 2 * c_out)
        self.conv2 = nn.Conv2d(c_out, c_out, 3, padding=1)
        self.skip = nn.Conv2d(c_in, c_out, 1) if c_in != c_out else nn.Identity()
        self.act = nn.SiLU()

    def forward(self, x: torch.Tensor, temb: torch.Tensor) -> torch.Tensor:
        h = self.act(self.conv1(x))
        scale, shift = self.film(temb)[:, :, None, None].chunk(2, dim=1)
        h = self.act(self.conv2(h * (1 + scale) + shift))
        return self.skip(x) + h


class ResShiftUNet(nn.Module):
    """The ResShift denoiser f(x_t, y0, t) -> x0 and its sampler; `forward(lr)` is one sample
    drawn with seed 0 (what validation and a plain `net(lr)` measure), `sample` a fresh one."""

    upsampling = "post"  # the body runs on the LR grid: tiles align to its own stride
    stepwise = True      # srlab-eval / srlab-upscale tile each denoising step, not the whole chain

    def __init__(self, scale: int, channels: int = 64, depth: int = 2, steps: int = 15, kappa: float = 2.0,
                 eta_power: float = 0.3, sample_steps: int | None = None):
        super().__init__()
        if not 1 <= int(sample_steps or steps) <= int(steps):
            raise ValueError(f"sample_steps={sample_steps} must lie in 1..steps={steps}")
        self.scale, self.steps, self.kappa = int(scale), int(steps), float(kappa)
        self.sample_steps = int(sample_steps or steps)
        self.multiple = 2**depth
        self.register_buffer("sqrt_eta", sqrt_eta_schedule(self.steps, self.kappa, float(eta_power)).float(),
                             persistent=False)
        c_io = 3 * self.scale**2
        widths = [channels * 2**i for i in range(depth + 1)]
        t_dim = 4 * channels
        self.t_dim = channels
        self.time = nn.Sequential(nn.Linear(channels, t_dim), nn.SiLU(), nn.Linear(t_dim, t_dim))
        self.stem = nn.Conv2d(2 * c_io, widths[0], 3, padding=1)
        self.enc = nn.ModuleList(TimeBlock(c, c, t_dim) for c in widths[:-1])
        self.down = nn.ModuleList(nn.Conv2d(a, b, 4, stride=2, padding=1) for a, b in zip(widths[:-1], widths[1:]))
        self.mid = TimeBlock(widths[-1], widths[-1], t_dim)
        self.up = nn.ModuleList(nn.ConvTranspose2d(a, b, 2, stride=2) for a, b in zip(widths[:0:-1], widths[-2::-1]))
        self.dec = nn.ModuleList(TimeBlock(2 * c, c, t_dim) for c in widths[-2::-1])
        self.head = nn.Conv2d(widths[0], c_io, 3, padding=1)
        nn.init.zeros_(self.head.weight)
        nn.init.zeros_(self.head.bias)

    # -- the denoiser -----------------------------------------------------------------------
    def step_input(self, x_t: torch.Tensor, y0: torch.Tensor, t: int) -> torch.Tensor:
        """HR-size x_t and y0 ([-1, 1]) -> the LR-grid input of step t: [N, 6 s^2, H/s, W/s]."""
        x = x_t / (1 + 3 * self.kappa * self.sqrt_eta[t])
        return torch.cat([F.pixel_unshuffle(x, self.scale), F.pixel_unshuffle(y0, self.scale)], dim=1)

    def denoise(self, z: torch.Tensor, t: torch.Tensor | int) -> torch.Tensor:
        """LR-grid input (`step_input`, or a tile of it) -> predicted x0 at HR size, in [-1, 1]."""
        h, w = z.shape[-2:]
        t = torch.as_tensor(t, device=z.device).reshape(-1).expand(z.shape[0])
        temb = self.time(timestep_embedding(t, self.t_dim).to(z.dtype))
        x = self.stem(pad_to_multiple(z, self.multiple))
        skips = []
        for block, down in zip(self.enc, self.down):
            x = block(x, temb)
            skips.append(x)
            x = down(x)
        x = self.mid(x, temb)
        for up, block, skip in zip(self.up, self.dec, reversed(skips)):
            x = block(torch.cat([up(x), skip], dim=1), temb)
        c_io = 3 * self.scale**2
        residual = self.head(x)[..., :h, :w]
        y0 = z[:, c_io:]  # the bicubic image's own channels: x0 = y0 + residual
        return F.pixel_shuffle(y0 + residual, self.scale).clamp(-1, 1)

    def predict_x0(self, x_t: torch.Tensor, y0: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
        """Training: f(x_t, y0, t) for a batch with one t per image."""
        scale = (1 + 3 * self.kappa * self.sqrt_eta[t]).view(-1, 1, 1, 1)
        z = torch.cat([F.pixel_unshuffle(x_t / scale, self.scale), F.pixel_unshuffle(y0, self.scale)], dim=1)
        return self.denoise(z, t)

    def q_sample(self, x0: torch.Tensor, y0: torch.Tensor, t: torch.Tensor, noise: torch.Tensor) -> torch.Tensor:
        """x_t = x0 + eta_t (y0 - x0) + kappa sqrt(eta_t) noise, one t per image."""
        s = self.sqrt_eta[t].view(-1, 1, 1, 1)
        return x0 + s**2 * (y0 - x0) + self.kappa * s * noise

    # -- the sampler -------------------------------------------------------------------------
    def times(self) -> list[int]:
        """Indices t-1 of the sampling steps, from T down to 1 (`sample_steps` of them, evenly spaced)."""
        keep = torch.linspace(self.steps - 1, 0, self.sample_steps).round().long().tolist()
        return list(dict.fromkeys(keep))

    @torch.no_grad()
    def sample(self, lr: torch.Tensor, temperature: float = 1.0, generator: torch.Generator | None = None,
               denoise=None) -> torch.Tensor:
        """One draw [N,3,H,W] in [0,1]. `denoise(z, t)` defaults to `self.denoise` on the whole
        image; the noise is drawn here, at full size, from `generator`."""
        denoise = denoise or self.denoise
        y0 = imresize(lr, scale=self.scale) * 2 - 1

        def noise() -> torch.Tensor:
            return torch.randn(y0.shape, generator=generator, device=y0.device, dtype=y0.dtype) * temperature

        times = self.times()
        eta = self.sqrt_eta.to(y0.dtype) ** 2
        x = y0 + self.kappa * eta[times[0]].sqrt() * noise()
        for i, t in enumerate(times):
            x0 = denoise(self.step_input(x, y0, t), t)
            if i + 1 == len(times):
                x = x0  # eta_0 = 0: the mean is the prediction itself, no noise
                break
            ratio = eta[times[i + 1]] / eta[t]
            x = ratio * x + (1 - ratio) * x0 + self.kappa * (ratio * (eta[t] - eta[times[i + 1]])).sqrt() * noise()
        return ((x + 1) / 2).clamp(0, 1)

    def forward(self, lr: torch.Tensor) -> torch.Tensor:
        """One sample from a generator seeded 0: the same answer for the same image, every time."""
        return self.sample(lr, 1.0, torch.Generator(lr.device).manual_seed(0))
