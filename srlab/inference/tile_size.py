"""How big a tile may be: alignment to a net's stride grid, the smallest tile an overlap allows,
and the memory heuristics behind `tile=None` (see the last point of `srlab.inference.tiling`'s docstring).
"""

from __future__ import annotations

import math
import os

import torch
from torch import nn


def lr_alignment(net: nn.Module, scale: int) -> int:
    """LR step on which tiles must start so the net's stride grid matches the whole image's."""
    multiple = int(getattr(net, "multiple", 1) or 1)
    if getattr(net, "upsampling", None) == "pre":  # the stride applies at HR size
        return multiple // math.gcd(multiple, scale)
    return multiple


def min_tile(overlap: int, align: int = 1) -> int:
    # stride >= overlap keeps every pixel inside at most two tiles per axis (see `spans`).
    return 3 * overlap + align


def available_ram() -> int:
    """Bytes the OS says a new allocation can get (MemAvailable), or a cautious guess."""
    try:
        with open("/proc/meminfo") as f:
            for line in f:
                if line.startswith("MemAvailable:"):
                    return int(line.split()[1]) * 1024
    except OSError:
        pass
    try:
        return os.sysconf("SC_AVPHYS_PAGES") * os.sysconf("SC_PAGE_SIZE")
    except (ValueError, OSError, AttributeError):
        return 4 << 30


@torch.inference_mode()
def auto_tile(net: nn.Module, scale: int, channels: int, overlap: int, align: int,
              device: torch.device, dtype: torch.dtype, tile_batch: int = 1) -> int:
    """Largest tile (LR px, multiple of 16) that fits the memory heuristic in the module docstring."""
    if device.type == "cuda":
        free, _ = torch.cuda.mem_get_info(device)
        free += torch.cuda.memory_reserved(device) - torch.cuda.memory_allocated(device)  # reusable cache
        probe = 128
        torch.cuda.synchronize(device)
        torch.cuda.reset_peak_memory_stats(device)
        base = torch.cuda.memory_allocated(device)
        net(torch.zeros(1, channels, probe, probe, device=device, dtype=dtype))
        per_px = max(torch.cuda.max_memory_allocated(device) - base, 1) / probe**2
        budget, cap = 0.5 * free, 1024  # larger tiles gain little speed, cost host RAM
    else:
        per_px = 640 * scale**2
        budget, cap = available_ram() / 4, 1024
    tile = int(math.sqrt(budget / (per_px * max(1, tile_batch)))) // 16 * 16
    return max(min_tile(overlap, align), min(cap, tile))




def auto_tile_height(width: int, scale: int, channels: int, tile: int, overlap: int, align: int = 1,
                     budget: int | None = None) -> int:
    """Tile height (LR px) for an image `width` LR px wide: a tile row's float canvas and the
    uint8 bands in flight cost ~8 * scale^2 * width * channels bytes per LR row, and are kept
    under `budget` (512 MiB, or 1/8 of the free RAM), so memory stays flat as images widen."""
    budget = budget or min(512 << 20, available_ram() // 8)
    rows = int(budget // (8 * scale**2 * width * channels)) // 16 * 16
    return max(min_tile(overlap, align), min(tile, rows))


def auto_tile_batch(device: torch.device) -> int:
    """Tiles per forward: several on a GPU (one small tile cannot fill it), one on a CPU."""
    return 4 if torch.device(device).type == "cuda" else 1
