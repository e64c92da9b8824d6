"""Several answers per image from a VAE checkpoint: `srlab-upscale samples=N temperature=T`.

SR is one-to-many; a conditional VAE (experiment=vae) can return N plausible HR images for one
LR image by drawing z from its prior. Each draw is one job of srlab-upscale's loop, written as
`<name>_sample<i>`; a deterministic net refuses samples > 1 in one line.
"""
from __future__ import annotations

from pathlib import Path

import torch
from torch import nn

from srlab.errors import SrlabError


class PriorDraw(nn.Module):
    """A VAE net that answers with a fresh prior draw, z ~ N(0, temperature^2 I), per call."""

    def __init__(self, net: nn.Module, temperature: float):
        super().__init__()
        self.net, self.temperature = net, temperature
        self.scale, self.multiple, self.upsampling = net.scale, getattr(net, "multiple", 1), getattr(net, "upsampling", None)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net.sample(x, self.temperature)


def sample_jobs(net: nn.Module, pairs: list[tuple[Path, Path]], samples: int, temperature: float, tile: int
                ) -> list[tuple[nn.Module, Path, Path, int | None]]:
    """-> (net, source, destination, tile) per image to write: one per input, or `samples` draws."""
    if samples < 1:
        raise SrlabError(f"samples={samples}: use samples >= 1 (images written per input)")
    if samples == 1:
        return [(net, src, dst, tile) for src, dst in pairs]
    if not hasattr(net, "sample"):
        raise SrlabError(f"samples={samples}: {type(net).__name__} is deterministic (one answer per image); "
                         f"use samples=1, or a VAE checkpoint (experiment=vae) to sample")
    draw = PriorDraw(net, float(temperature))
    # tile None: the whole image in one tile, so one latent field covers it (independent
    # draws per tile would not match at the seams)
    return [(draw, src, dst.with_name(f"{dst.stem}_sample{i}{dst.suffix}"), None)
            for src, dst in pairs for i in range(samples)]
