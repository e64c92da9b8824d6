"""Upscale images of any size with bounded memory: overlapping tiles, batched, blended on the device.

A net run on a whole 4000x3000 photo needs its activations for every pixel at once; run on
tiles it needs them for a few tiles. Tiles meet with `overlap` LR pixels in common and are
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
- Speed (what made a 2000x1500 x4 job take 26 s on an H100 whose net time is < 1 s): the
  LR image goes to the device once (pinned, non_blocking); the tiles of one tile row run
  `tile_batch` at a time in one forward; their weighted outputs are summed into a float
  canvas *on the device*; finished rows are clamped, quantised and made channels-last
  there, so only uint8/uint16 bytes cross to the host. Nothing waits for the GPU except the
  copy of a finished band, and that wait is one tile row behind (`bands_to_host`), so the
  GPU always has the next row queued. Float16/bfloat16 nets are summed in float32.
- Memory: the canvas holds one tile row (tile*scale rows, full width) plus the rows it
  shares with the next one; finished bands are handed on (`tile_bands` is a generator) so a
  writer can stream them to disk and no full-size output need exist. Working memory is
  O(width * tile height): flat in image height, and with `tile=None` the tile height shrinks
  as the image widens (`auto_tile_height`), so it stays flat in width too. `upscale_tiled`
  assembles a full tensor for callers that want one.
- `tile=None`: on CUDA a 128 px probe measures the net's peak activation bytes per LR pixel
  and `tile_batch` tiles use half of the free GPU memory (tile capped at 1024); on CPU a
  fixed estimate of 640*scale^2 bytes per LR px (about five 32-channel float maps at HR
  size, what a pre-upsampling U-Net keeps alive) against a quarter of the available RAM,
  capped at 1024 (a 512 tile with a 32 px overlap recomputes 13% of the pixels, 1024: 6%).
"""


from __future__ import annotations

import contextlib
import math
from collections.abc import Iterator

import torch
from torch import nn
from tqdm import tqdm

from srlab.errors import SrlabError
from srlab.inference.tile_size import (
    auto_tile,
    auto_tile_batch,
    auto_tile_height,
    lr_alignment,
    min_tile,
)


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


class _NoTimer:
    """Stand-in for `srlab.inference.profiling.StageTimer` when nobody measures."""

    def __call__(self, stage):
        return contextlib.nullcontext()


def _finish_(rows: torch.Tensor, out_dtype: torch.dtype, clamp: bool) -> torch.Tensor:
    """Float canvas rows [C,r,W] (overwritten) -> [r,W,C] channels-last `out_dtype`, clamped (and
    x255/x65535, rounded): in place, then one pass that transposes and casts."""
    if clamp or not out_dtype.is_floating_point:
        rows.clamp_(0, 1)
    if not out_dtype.is_floating_point:
        rows.mul_(255.0 if out_dtype == torch.uint8 else 65535.0).round_()
    c, r, w = rows.shape
    return torch.empty(r, w, c, dtype=out_dtype, device=rows.device).copy_(rows.permute(1, 2, 0))


def _ramp_ends(weights: torch.Tensor) -> tuple[int, int]:
    """(a, b): weights[:a] and weights[b:] are the ramps, weights[a:b] are exactly 1."""
    ones = (weights == 1).nonzero().flatten()
    return (int(ones[0]), int(ones[-1]) + 1) if len(ones) else (len(weights), len(weights))


def _to_device(x: torch.Tensor, device: torch.device) -> torch.Tensor:
    """The LR image on `device`, once; on CUDA through pinned memory, without waiting."""
    if device.type == "cuda" and x.device.type == "cpu":
        return x.contiguous().pin_memory().to(device, non_blocking=True)
    return x.to(device)


def _batches(cols: list[tuple[int, int]], tile_batch: int) -> list[list[int]]:
    """Column indices grouped into forwards: same tile width (stackable), at most `tile_batch`."""
    groups: list[list[int]] = []
    for j, (a, b) in enumerate(cols):
        last = groups[-1] if groups else None
        if last and len(last) < tile_batch and cols[last[0]][1] - cols[last[0]][0] == b - a:
            last.append(j)
        else:
            groups.append([j])
    return groups


@torch.inference_mode()
def tile_bands(net: nn.Module, lr: torch.Tensor, scale: int, tile: int, overlap: int, device: torch.device,
               dtype: torch.dtype = torch.float32, tile_batch: int = 1, out_dtype: torch.dtype = torch.uint8,
               clamp: bool = True, timer=None, progress: bool = False,
               tile_height: int | None = None) -> Iterator[tuple[int, torch.Tensor]]:
    """Yield (first HR row, band [rows, W, C] channels-last `out_dtype` on `device`), top to bottom.

    lr: [1,C,h,w] float in [0,1], any device. The net must already be on `device`/`dtype`.
    Tiles are `tile_height` (default `tile`) by `tile` LR px.
    """
    timer = timer or _NoTimer()
    s, (_, _, h, w) = int(scale), lr.shape
    align = lr_alignment(net, s)
    tile_height = tile_height or tile
    if min(tile, tile_height) < min_tile(overlap, align):
        raise SrlabError(f"tile={min(tile, tile_height)} is too small for overlap={overlap}: use tile >= "
                         f"{min_tile(overlap, align)} (3 x overlap + {align}) or a smaller overlap")
    rows, cols = spans(h, tile_height, overlap, align), spans(w, tile, overlap, align)
    wy, wx = blend_weights(rows, s), blend_weights(cols, s)
    ramps_y, ramps_x = [_ramp_ends(v) for v in wy], [_ramp_ends(v) for v in wx]
    wy, wx = [v.to(device) for v in wy], [v.to(device) for v in wx]
    batches, W = _batches(cols, max(1, int(tile_batch))), w * s
    x = _to_device(lr, device)
    band = None  # float rows this tile row shares with the next one
    bar = tqdm(total=len(rows) * len(cols), desc="tiles", unit="tile", leave=False, disable=not progress)
    for k, (ya, yb) in enumerate(rows):
        y0, y1 = ya * s, yb * s
        done = (rows[k + 1][0] * s if k + 1 < len(rows) else y1) - y0  # rows above are final after this row
        canvas = None
        for group in batches:
            with timer("net"):
                tiles = [x[:, :, ya:yb, cols[j][0]:cols[j][1]] for j in group]
                y = net((torch.cat(tiles) if len(tiles) > 1 else tiles[0]).to(dtype))
            width = (cols[group[0]][1] - cols[group[0]][0]) * s
            if y.dim() != 4 or y.shape[0] != len(group) or y.shape[-2:] != (y1 - y0, width):
                raise SrlabError(f"the net turned {len(group)} tile(s) of {yb - ya}x{width // s} into "
                                 f"{tuple(y.shape)}, not [{len(group)}, C, {y1 - y0}, {width}]: "
                                 f"is scale={s} the net's scale?")
            with timer("blend"):
                if y.untyped_storage().data_ptr() == x.untyped_storage().data_ptr():
                    y = y.clone()  # an identity-like net handed back the image itself: weighted in place below
                if canvas is None:  # not zeroed: each pixel's first contribution is assigned, not added
                    canvas = torch.empty(y.shape[1], y1 - y0, W, device=device)
                    if band is not None:
                        canvas[:, :band.shape[1]] = band
                top = 0 if band is None else band.shape[1]
                for i, j in enumerate(group):
                    x0 = cols[j][0] * s
                    fresh = cols[j - 1][1] * s if j > 0 else x0  # columns left of it the last tile covered
                    yi = y[i] if y.dtype == torch.float32 else y[i].float()
                    (a, b), (c, d) = ramps_y[k], ramps_x[j]  # weights are 1 outside the ramps: skip them
                    yi[:, :a].mul_(wy[k][:a, None])
                    yi[:, b:].mul_(wy[k][b:, None])
                    yi[:, :, :c].mul_(wx[j][:c])
                    yi[:, :, d:].mul_(wx[j][d:])
                    canvas[:, :top, x0:x0 + width] += yi[:, :top]
                    canvas[:, top:, x0:fresh] += yi[:, top:, :fresh - x0]
                    canvas[:, top:, fresh:x0 + width] = yi[:, top:, fresh - x0:]
            bar.update(len(group))
        with timer("blend"):
            band = canvas[:, done:].clone() if k + 1 < len(rows) else None  # a copy frees the canvas
            finished = _finish_(canvas[:, :done], out_dtype, clamp)
        yield y0, finished
    bar.close()


def bands_to_host(bands: Iterator[tuple[int, torch.Tensor]], timer=None) -> Iterator[tuple[int, torch.Tensor]]:
    """Device bands -> CPU bands. CUDA: pinned, non_blocking copies; each wait is one band behind,
    so the next tile row is already queued on the GPU while the CPU handles this one."""
    timer, pending = timer or _NoTimer(), None
    for y0, band in bands:
        if band.device.type != "cuda":
            yield y0, band.cpu()
            continue
        host = torch.empty(band.shape, dtype=band.dtype, pin_memory=True)
        host.copy_(band, non_blocking=True)
        event = torch.cuda.Event()
        event.record()
        if pending is not None:
            with timer("net"):  # waiting here is waiting for the GPU's queued work
                pending[2].synchronize()
            yield pending[:2]
        pending = (y0, host, event)
    if pending is not None:
        with timer("net"):
            pending[2].synchronize()
        yield pending[:2]


def upscale_tiled(net: nn.Module, lr: torch.Tensor, scale: int, tile: int | None = None, overlap: int = 32,
                  device: str | torch.device = "cpu", dtype: torch.dtype = torch.float32, progress: bool = False,
                  out_dtype: torch.dtype = torch.uint8, out: torch.Tensor | None = None, tile_batch: int | None = None,
                  out_device: str | torch.device = "cpu", clamp: bool = True, timer=None) -> torch.Tensor:
    """net(lr), tile by tile -> [C, h*scale, w*scale] (or [1, C, ...] for a 4-D `lr`) on `out_device`.

    lr: float image [C,h,w] or [1,C,h,w] in [0,1] (any device). `tile`/`overlap` in LR px.
    The net is moved to `device`/`dtype` (in place, as `Module.to` does). The result is
    clamped to [0,1] (float `out_dtype` with clamp=False: not) and stored as `out_dtype`
    (uint8: x255, uint16: x65535, rounded); it is a [C,H,W] view of a channels-last buffer.
    `out`: write into this [C,H,W] tensor instead (e.g. three channels of an RGBA buffer).
    """
    x = lr.unsqueeze(0) if lr.dim() == 3 else lr
    if x.dim() != 4 or x.shape[0] != 1:
        raise ValueError(f"upscale_tiled expects [C,h,w] or [1,C,h,w], got {tuple(lr.shape)}")
    if overlap < 0:
        raise SrlabError(f"overlap={overlap} must be >= 0")
    device, out_device, s = torch.device(device), torch.device(out_device), int(scale)
    net = net.to(device=device, dtype=dtype).eval()
    tile_batch, tile_height = tile_batch or auto_tile_batch(device), None
    if tile is None:
        align = lr_alignment(net, s)
        tile = auto_tile(net, s, x.shape[1], overlap, align, device, dtype, tile_batch)
        tile_height = auto_tile_height(x.shape[-1], s, x.shape[1], tile, overlap, align)
    bands = tile_bands(net, x, s, tile, overlap, device, dtype, tile_batch, out.dtype if out is not None else out_dtype,
                       clamp, timer, progress, tile_height)
    if out_device.type == "cpu":
        bands = bands_to_host(bands, timer)
    H, W = x.shape[-2] * s, x.shape[-1] * s
    for y0, band in bands:
        if out is None:
            out = torch.empty(H, W, band.shape[-1], dtype=band.dtype, device=out_device).permute(2, 0, 1)
        elif out.shape != (band.shape[-1], H, W):
            raise ValueError(f"out has shape {tuple(out.shape)}, the result is {(band.shape[-1], H, W)}")
        out[:, y0:y0 + band.shape[0]] = band.permute(2, 0, 1)
    return out.unsqueeze(0) if lr.dim() == 4 else out
