"""Diffusion samples of any image size: every denoising step through the tiler, one noise field.

A diffusion net (`stepwise`, srlab.nets.resshift_unet) turns an LR image into an SR sample
in T steps, each a forward of its denoiser plus noise. Running the whole chain per tile would
draw independent noise per tile, and the tiles' samples would not meet at the seams. Here
the chain runs on the whole image: the noise of each step is drawn once, at full size, from
one seeded generator, and only the denoiser's forward is tiled (`srlab.inference.tiling`,
blended over `overlap`). So a tiled sample equals the whole-image sample of the same seed
up to the tiler's blending of the denoiser's outputs (tests/test_diffusion.py measures it).
"""
from __future__ import annotations

import torch
from torch import nn

from srlab.inference.tile_size import auto_tile, auto_tile_batch, lr_alignment
from srlab.inference.tiling import upscale_tiled


class DenoiseStep(nn.Module):
    """The denoiser at one step t, as a plain LR-grid -> HR net the tiler can run."""

    upsampling = "post"

    def __init__(self, net: nn.Module, t: int):
        super().__init__()
        self.net, self.t = net, int(t)
        self.scale, self.multiple = net.scale, net.multiple

    def forward(self, z: torch.Tensor) -> torch.Tensor:
        return self.net.denoise(z, self.t)


class TiledSampler(nn.Module):
    """`net`'s sampler with each denoising step tiled. `forward(lr)` is the draw of `seed` at
    `temperature` (one image per call, as srlab-upscale runs it); `sample(lr, temperature)`
    draws from torch's RNG (what `sample_spread` seeds)."""

    def __init__(self, net: nn.Module, tile: int | None, overlap: int, tile_batch: int | None = None,
                 temperature: float = 1.0, seed: int = 0):
        super().__init__()
        self.net, self.overlap, self.temperature, self.seed = net, int(overlap), float(temperature), int(seed)
        self.scale, self.multiple, self.upsampling = net.scale, 1, "post"
        self.tile, self.tile_batch = tile, tile_batch

    def _denoise(self, z: torch.Tensor, t: int) -> torch.Tensor:
        step = DenoiseStep(self.net, t)
        tile_batch = int(self.tile_batch or auto_tile_batch(z.device))
        if self.tile is None:  # decided once per sampler, from the first step's input
            align = lr_alignment(step, self.scale)
            self.tile = auto_tile(step, self.scale, z.shape[1], self.overlap, align, z.device, z.dtype, tile_batch)
        return upscale_tiled(step, z, self.scale, int(self.tile), self.overlap, z.device, z.dtype,
                             out_dtype=torch.float32, tile_batch=tile_batch, out_device=z.device, clamp=False)

    @torch.no_grad()
    def sample(self, lr: torch.Tensor, temperature: float = 1.0, generator: torch.Generator | None = None):
        return torch.cat([self.net.sample(x[None], temperature, generator, denoise=self._denoise) for x in lr])

    def forward(self, lr: torch.Tensor) -> torch.Tensor:
        generator = torch.Generator(lr.device).manual_seed(self.seed)
        return self.sample(lr, self.temperature, generator)
