"""Several answers per image from a stochastic checkpoint: `srlab-upscale samples=N temperature=T seed=S`.

SR is one-to-many; a conditional VAE (experiment=vae) or a diffusion net (experiment=diffusion)
can return N plausible HR images for one LR image. Each draw is one job of srlab-upscale's loop,
written as `<name>_sample<i>`, drawn from a generator seeded by `seed + i`: the same seed gives
the same files. A deterministic net refuses samples > 1 in one line.
- VAE: z ~ N(0, temperature^2 I), drawn for the whole image, which then runs as one tile (draws
  per tile would not meet at the seams); samples=1 is the deterministic z = 0 answer.
- diffusion: samples=1 is the draw of `seed`; every denoising step runs tiled with one noise
  field for the whole image (srlab.inference.diffusion_sampling), so big images work too.
"""
from __future__ import annotations

from pathlib import Path

import torch
from torch import nn

from srlab.errors import SrlabError
from srlab.inference.diffusion_sampling import TiledSampler


class PriorDraw(nn.Module):
    """A VAE net that answers with the prior draw of `seed`, z ~ N(0, temperature^2 I)."""

    def __init__(self, net: nn.Module, temperature: float, seed: int = 0):
        super().__init__()
        self.net, self.temperature, self.seed = net, temperature, int(seed)
        self.scale, self.multiple, self.upsampling = net.scale, getattr(net, "multiple", 1), getattr(net, "upsampling", None)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        devices = [x.device] if x.device.type == "cuda" else []
        with torch.random.fork_rng(devices=devices):
            torch.manual_seed(self.seed)
            return self.net.sample(x, self.temperature)


def sample_jobs(net: nn.Module, pairs: list[tuple[Path, Path]], samples: int, temperature: float, tile: int,
                seed: int = 0, overlap: int = 32, tile_batch: int | None = None
                ) -> list[tuple[nn.Module, Path, Path, int | None]]:
    """-> (net, source, destination, tile) per image to write: one per input, or `samples` draws.
    Tile None: the whole image in one tile (the job's net draws its noise for all of it)."""
    if samples < 1:
        raise SrlabError(f"samples={samples}: use samples >= 1 (images written per input)")
    if getattr(net, "stepwise", False):  # diffusion: every job is a draw, its steps tiled
        draws = [TiledSampler(net, tile, overlap, tile_batch, temperature, seed + i) for i in range(samples)]
        if samples == 1:
            return [(draws[0], src, dst, None) for src, dst in pairs]
        return [(draws[i], src, dst.with_name(f"{dst.stem}_sample{i}{dst.suffix}"), None)
                for src, dst in pairs for i in range(samples)]
    if samples == 1:
        return [(net, src, dst, tile) for src, dst in pairs]
    if not hasattr(net, "sample"):
        raise SrlabError(f"samples={samples}: {type(net).__name__} is deterministic (one answer per image); "
                         f"use samples=1, or a VAE or diffusion checkpoint (experiment=vae|diffusion) to sample")
    return [(PriorDraw(net, float(temperature), seed + i), src, dst.with_name(f"{dst.stem}_sample{i}{dst.suffix}"),
             None) for src, dst in pairs for i in range(samples)]
