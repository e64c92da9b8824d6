"""Upscale images of any size with bounded memory: overlapping tiles, blended, streamed out.

A net run on a whole 4000x3000 photo needs its activations for every pixel at once; run on
tiles it needs them for one tile. Tiles meet with `overlap` LR pixels in common and are
blended there, so no seam shows:

- Weights: along each axis a tile's weight is 0 in the outer quarter of each overlap it has
  with a neighbour (those pixels saw the tile's zero/reflect padding instead of the real
  neighbours), rises as a raised cosine over the middle half and is 1 beyond. Neighbours'
  ramps are mirror images, so they sum to 1; the sum is still divided out. Image borders
  get no ramp (the whole image has the same border there). For a net whose receptive field
  reaches r LR pixels, overlap >= 4r makes tiled output equal whole-image output; a larger
  field (a U-Net) is approximated, with an error that falls as the overlap grows.
- Alignment: nets with strided encoders (`multiple`) are not shift-invariant, so tile
  starts are multiples of the LR step that keeps every tile on the whole image's grid.
- Streaming: tiles run one at a time on `device`; the output is a uint8/uint16 CPU buffer
  (channels-last, so it can be handed to Pillow without a copy). Float partial sums exist
  only where a pixel still waits for a later tile: the band of rows shared with the next
  tile row (overlap*scale rows, full width) and the columns shared with the next tile. A
  pixel is normalised and quantised as soon as its last tile is done. Extra memory is thus
  O(width * overlap + tile^2): flat in image height and far below the float output size.
- `tile=None`: on CUDA a 128 px probe measures the net's peak activation bytes per LR pixel
  and the tile uses half of the free GPU memory (capped at 1024); on CPU a fixed estimate
  of 640*scale^2 bytes per LR px (about five 32-channel float maps at HR size, what a
  pre-upsampling U-Net keeps alive) against a quarter of the available RAM, capped at 512.
"""

from __future__ import annotations

import math
import os

import torch
from torch import nn
from tqdm import tqdm

from srlab.errors import SrlabError


def lr_alignment(net: nn.Module, scale: int) -> int:
    """LR step on which tiles must start so the net's stride grid matches the whole image's."""
    multiple = int(getattr(net, "multiple", 1) or 1)
    if getattr(net, "upsampling", None) == "pre":  # the stride applies at HR size
        return multiple // math.gcd(multiple, scale)
    return multiple


def min_tile(overlap: int, align: int = 1) -> int:
    # stride >= overlap keeps every pixel inside at most two tiles per axis (see `spans`).
    return 3 * overlap + align


def spans(length: int, tile: int, overlap: int, align: int = 1) -> list[tuple[int, int]]:
    """Cover [0, length) with tiles of at most `tile` px that overlap by >= `overlap` px.

    All but the last tile have the same size; starts are multiples of `align`; the stride is
    the smallest aligned one that needs as few tiles as the largest allowed stride does.
    """
    if length <= tile:
        return [(0, length)]
    s_max = (tile - overlap) // align * align
    n = -(-(length - overlap) // s_max)
    stride = -(-(length - overlap) // (n * align)) * align
    starts = [0]
    while starts[-1] + stride + overlap < length:
        starts.append(starts[-1] + stride)
    return [(a, min(a + stride + overlap, length)) for a in starts]


def _ramp(d: torch.Tensor, overlap: int) -> torch.Tensor:
    """Weight at distance d (LR px) from a tile edge shared with a neighbour over `overlap` px."""
    if overlap <= 0:
        return torch.ones_like(d)
    t = ((d - overlap / 4) / (overlap / 2)).clamp(0, 1)
    return 0.5 - 0.5 * torch.cos(math.pi * t)


def blend_weights(tiles: list[tuple[int, int]], scale: int) -> list[torch.Tensor]:
    """Per-tile HR weight vectors along one axis, already divided by their sum over the tiles.

    2-D weights are products wy * wx, so their sum is a product of the 1-D sums: normalising
    each axis normalises the blend, and no division pass over the pixels is needed.
    """
    weights, total = [], torch.zeros(tiles[-1][1] * scale, dtype=torch.float64)
    for i, (a, b) in enumerate(tiles):
        u = (torch.arange((b - a) * scale, dtype=torch.float64) + 0.5) / scale  # HR px centres, in LR px
        left = tiles[i - 1][1] - a if i > 0 else 0
        right = b - tiles[i + 1][0] if i + 1 < len(tiles) else 0
        weights.append(_ramp(u, left) * _ramp((b - a) - u, right))
        total[a * scale:b * scale] += weights[-1]
    return [(w / total[a * scale:b * scale]).float() for w, (a, b) in zip(weights, tiles)]


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
              device: torch.device, dtype: torch.dtype) -> int:
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
        budget, cap = available_ram() / 4, 512
    tile = int(math.sqrt(budget / per_px)) // 16 * 16
    return max(min_tile(overlap, align), min(cap, tile))


def _quantize_(x: torch.Tensor, dtype: torch.dtype) -> torch.Tensor:
    """In place: clamp to [0,1] and, for integer outputs, scale and round (the copy casts)."""
    x.clamp_(0, 1)
    if not dtype.is_floating_point:
        x.mul_(255.0 if dtype == torch.uint8 else 65535.0).round_()
    return x


@torch.inference_mode()
def upscale_tiled(net: nn.Module, lr: torch.Tensor, scale: int, tile: int | None = None, overlap: int = 32,
                  device: str | torch.device = "cpu", dtype: torch.dtype = torch.float32, progress: bool = False,
                  out_dtype: torch.dtype = torch.uint8, out: torch.Tensor | None = None) -> torch.Tensor:
    """net(lr), tile by tile -> [C, h*scale, w*scale] (or [1, C, ...] for a 4-D `lr`) on CPU.

    lr: float image [C,h,w] or [1,C,h,w] in [0,1] (any device). `tile`/`overlap` in LR px.
    The net is moved to `device`/`dtype` (in place, as `Module.to` does). The result is
    clamped to [0,1] and stored as `out_dtype` (uint8: x255, uint16: x65535, rounded; a
    float dtype keeps the values); it is a [C,H,W] view of a channels-last buffer. `out`:
    write into this [C,H,W] tensor instead (e.g. three channels of an RGBA buffer).
    """
    x = lr.unsqueeze(0) if lr.dim() == 3 else lr
    if x.dim() != 4 or x.shape[0] != 1:
        raise ValueError(f"upscale_tiled expects [C,h,w] or [1,C,h,w], got {tuple(lr.shape)}")
    if overlap < 0:
        raise SrlabError(f"overlap={overlap} must be >= 0")
    device, s = torch.device(device), int(scale)
    _, channels, h, w = x.shape
    net = net.to(device=device, dtype=dtype).eval()
    align = lr_alignment(net, s)
    if tile is None:
        tile = auto_tile(net, s, channels, overlap, align, device, dtype)
    if tile < min_tile(overlap, align):
        raise SrlabError(f"tile={tile} is too small for overlap={overlap}: use tile >= "
                         f"{min_tile(overlap, align)} (3 x overlap + {align}) or a smaller overlap")
    rows, cols = spans(h, tile, overlap, align), spans(w, tile, overlap, align)
    wy, wx = blend_weights(rows, s), blend_weights(cols, s)
    H, W = h * s, w * s

    band = None  # float partial sums of the rows this tile row shares with the previous one
    bar = tqdm(total=len(rows) * len(cols), desc="tiles", unit="tile", leave=False, disable=not progress)
    for k, (ya, yb) in enumerate(rows):
        y0, y1 = ya * s, yb * s
        y_done = rows[k + 1][0] * s if k + 1 < len(rows) else y1  # rows above are final after this row
        top = rows[k - 1][1] * s - y0 if k > 0 else 0
        new_band, carry = None, None  # carry: columns shared with the next tile of this row
        for j, (xa, xb) in enumerate(cols):
            x0, x1 = xa * s, xb * s
            x_done = cols[j + 1][0] * s if j + 1 < len(cols) else x1
            y = net(x[:, :, ya:yb, xa:xb].to(device=device, dtype=dtype).contiguous())
            if y.dim() != 4 or y.shape[-2:] != (y1 - y0, x1 - x0):
                raise SrlabError(f"the net turned a {yb - ya}x{xb - xa} tile into {tuple(y.shape)}, "
                                 f"not [1, C, {y1 - y0}, {x1 - x0}]: is scale={s} the net's scale?")
            canvas = y[0].to("cpu", torch.float32).contiguous()  # usually y itself: weighted in place
            if canvas.untyped_storage().data_ptr() == x.untyped_storage().data_ptr():
                canvas = canvas.clone()  # an identity-like net returned the caller's image
            canvas.mul_(torch.outer(wy[k], wx[j]))
            if out is None:
                out = torch.empty(H, W, canvas.shape[0], dtype=out_dtype).permute(2, 0, 1)
            elif out.shape != (canvas.shape[0], H, W):
                raise ValueError(f"out has shape {tuple(out.shape)}, the result is {(canvas.shape[0], H, W)}")
            left = carry.shape[-1] if carry is not None else 0
            if carry is not None:
                canvas[:, :, :left] += carry
            if top:
                canvas[:, :top, left:] += band[:, :, x0 + left:x1]
            if j + 1 < len(cols):
                carry = canvas[:, :, x_done - x0:].clone()
            if k + 1 < len(rows):
                if new_band is None:  # all overlaps are equal, so the band read above is reused:
                    same = band is not None and band.shape[1] == y1 - y_done  # its columns < x1 are spent
                    new_band = band if same else torch.empty(canvas.shape[0], y1 - y_done, W)
                new_band[:, :, x0:x_done] = canvas[:, y_done - y0:, :x_done - x0]
            # rows above y_done and columns left of x_done have all their tiles: finish them
            out[:, y0:y_done, x0:x_done] = _quantize_(canvas[:, :y_done - y0, :x_done - x0], out.dtype)
            bar.update()
        band = new_band
    bar.close()
    return out.unsqueeze(0) if lr.dim() == 4 else out
