"""MATLAB-compatible `imresize` in torch.

SR papers make their LR inputs with MATLAB's `imresize(hr, 1/s, 'bicubic')` (antialiased cubic,
a = -0.5, symmetric border) and report bicubic baselines with it; PIL and
`torch.nn.functional.interpolate` differ enough to move PSNR by 0.01-0.2 dB. This module follows
MATLAB's imresize.m contribution formulas exactly (as BasicSR's `matlab_functions.imresize` does)
but expresses each axis as an (out x in) weight matrix, so a resize is two matmuls:
    out = Wh @ x @ Ww^T
which is differentiable, runs on any device/dtype and batches over leading dims. Mirrored border
taps are accumulated into the matrix, which is the same sum MATLAB computes per output pixel.

Deviations from MATLAB, on purpose:
- Input must be a floating tensor; integer/uint8 tensors are refused (convert with
  `x.float() / 255`), and the output is neither clamped nor rounded.
- Output size from `scale` is ceil(in * scale) with a 1e-9 guard against float round-off
  (MATLAB/BasicSR give ceil(30 * 0.1) = 4; we give 3). Integer scales and 1/int are unaffected.
"""

from __future__ import annotations

import contextlib
import functools
import math

import numpy as np
import torch
import torch.nn.functional as F

from srlab.errors import SrlabError


def _cubic(x: np.ndarray) -> np.ndarray:
    # Keys' cubic convolution with a = -0.5, written exactly as in MATLAB's imresize.m.
    ax = np.abs(x)
    ax2, ax3 = ax**2, ax**3
    return (1.5 * ax3 - 2.5 * ax2 + 1) * (ax <= 1) + (-0.5 * ax3 + 2.5 * ax2 - 4 * ax + 2) * (
        (1 < ax) & (ax <= 2)
    )


def _triangle(x: np.ndarray) -> np.ndarray:
    return (x + 1) * ((-1 <= x) & (x < 0)) + (1 - x) * ((0 <= x) & (x <= 1))


def _box(x: np.ndarray) -> np.ndarray:
    return ((-0.5 <= x) & (x < 0.5)).astype(np.float64)


def _lanczos(a: int):
    eps = np.finfo(np.float64).eps  # MATLAB adds eps to avoid 0/0 at x = 0

    def f(x: np.ndarray) -> np.ndarray:
        v = (np.sin(np.pi * x) * np.sin(np.pi * x / a) + eps) / (np.pi**2 * x**2 / a + eps)
        return v * (np.abs(x) < a)

    return f


# name -> (kernel function, kernel width), MATLAB's table; aliases map to MATLAB names.
_KERNELS = {
    "cubic": (_cubic, 4.0),
    "triangle": (_triangle, 2.0),
    "box": (_box, 1.0),
    "lanczos2": (_lanczos(2), 4.0),
    "lanczos3": (_lanczos(3), 6.0),
}
_ALIASES = {"bicubic": "cubic", "linear": "triangle", "bilinear": "triangle", "nearest": "nearest"}


def _resolve_kernel(kernel: str, antialias: bool) -> tuple[str, bool]:
    name = _ALIASES.get(kernel, kernel)
    if name == "nearest":  # MATLAB: nearest is the width-1 box with antialiasing off
        return "box", False
    if name not in _KERNELS:
        choices = sorted(set(_KERNELS) | set(_ALIASES))
        raise SrlabError(f"imresize: unknown kernel {kernel!r}; use one of {', '.join(choices)}")
    return name, antialias


@functools.lru_cache(maxsize=256)
def _weights(in_len: int, out_len: int, scale: float, kernel: str, antialias: bool) -> torch.Tensor:
    """Dense float64 (out_len x in_len) matrix of MATLAB's contributions for one axis."""
    func, width = _KERNELS[kernel]
    if scale < 1 and antialias:
        # Stretch the kernel by 1/scale so it low-passes before decimating (MATLAB's antialias).
        def h(t):
            return scale * func(scale * t)

        width = width / scale
    else:
        h = func
    x = np.arange(1, out_len + 1, dtype=np.float64)  # 1-based output coords, as in MATLAB
    u = x / scale + 0.5 * (1 - 1 / scale)  # input-space coordinate of each output pixel
    left = np.floor(u - width / 2)
    taps = int(math.ceil(width)) + 2
    idx = left[:, None] + np.arange(taps, dtype=np.float64)[None, :]  # 1-based input indices
    w = h(u[:, None] - idx)
    w = w / w.sum(axis=1, keepdims=True)
    # Symmetric (half-sample) mirroring: ..., 2, 1 | 1, 2, ..., n | n, n-1, ...
    aux = np.concatenate([np.arange(in_len), np.arange(in_len)[::-1]])
    cols = aux[np.mod(idx.astype(np.int64) - 1, 2 * in_len)]
    rows = np.repeat(np.arange(out_len), taps)
    mat = np.zeros((out_len, in_len), dtype=np.float64)
    np.add.at(mat, (rows, cols.ravel()), w.ravel())
    return torch.from_numpy(mat)


# Output rows per block: the matrices are banded (kernel support ~ 4-6 taps, or 4/scale when
# antialiasing), so multiplying only each block's non-zero column span skips almost all zeros.
# Dense would be ~4x slower for a 512 -> 2048 upscale on a 2-core CPU (116 ms vs 30 ms).
_BLOCK = 64


@functools.lru_cache(maxsize=256)
def _blocks_on(in_len, out_len, scale, kernel, antialias, dtype, device):
    """((r0, r1, c0, c1, W[r0:r1, c0:c1]), ...) on x's device/dtype, cached per call signature."""
    mat = _weights(in_len, out_len, scale, kernel, antialias)
    nonzero = mat != 0
    blocks = []
    for r0 in range(0, out_len, _BLOCK):
        r1 = min(r0 + _BLOCK, out_len)
        cols = nonzero[r0:r1].any(dim=0).nonzero().flatten()
        c0, c1 = int(cols[0]), int(cols[-1]) + 1
        sub = mat[r0:r1, c0:c1].to(device=device, dtype=dtype).contiguous()
        blocks.append((r0, r1, c0, c1, sub))
    return tuple(blocks)


# Lists that keep every weight block handed out while they are registered (`holding_blocks`).
_holders: list[list] = []


@contextlib.contextmanager
def holding_blocks(into: list):
    """Append every weight block `imresize` uses inside the block to `into`.

    A captured CUDA graph (speed.cuda_graph, srlab/training/cuda_graph.py) reads these tensors
    by address on every replay, but `_blocks_on`'s lru_cache may evict them (validation on many
    image sizes): freed, their memory would be reused under the graph. The graph's owner keeps
    `into` alive as long as the graph.
    """
    _holders.append(into)
    try:
        yield into
    finally:
        _holders.remove(into)


def _blocks(in_len, out_len, scale, kernel, antialias, dtype, device):
    blocks = _blocks_on(in_len, out_len, scale, kernel, antialias, dtype, device)
    for held in _holders:
        held.append(blocks)
    return blocks


def _apply_h(x: torch.Tensor, blocks) -> torch.Tensor:
    """Wh @ x along dim -2, block by block."""
    if len(blocks) == 1 and blocks[0][2] == 0 and blocks[0][3] == x.shape[-2]:
        return blocks[0][4] @ x
    return torch.cat([w @ x[..., c0:c1, :] for _, _, c0, c1, w in blocks], dim=-2)


def _apply_w(x: torch.Tensor, blocks) -> torch.Tensor:
    """x @ Ww^T along dim -1, block by block."""
    if len(blocks) == 1 and blocks[0][2] == 0 and blocks[0][3] == x.shape[-1]:
        return x @ blocks[0][4].T
    return torch.cat([x[..., c0:c1] @ w.T for _, _, c0, c1, w in blocks], dim=-1)


def output_size(in_len: int, scale: float) -> int:
    """MATLAB's ceil(in * scale), guarded against float round-off (see module docstring)."""
    return max(1, math.ceil(in_len * scale - 1e-9))


def imresize(
    x: torch.Tensor,
    scale: float | None = None,
    size: tuple[int, int] | None = None,
    kernel: str = "cubic",
    antialias: bool = True,
) -> torch.Tensor:
    """Resize the last two dims of a float tensor [..., H, W] like MATLAB's imresize.

    Give exactly one of `scale` (same factor on both axes; output = ceil(in * scale)) or
    `size` = (out_h, out_w) (per-axis factor out/in, as MATLAB does). Kernels: "cubic"
    ("bicubic"), "triangle" ("linear", "bilinear"), "box", "lanczos2", "lanczos3", "nearest".
    `antialias` stretches the kernel when downscaling (MATLAB's default). Output is not clamped.
    """
    if not isinstance(x, torch.Tensor) or not torch.is_floating_point(x):
        got = x.dtype if isinstance(x, torch.Tensor) else type(x).__name__
        raise SrlabError(f"imresize: needs a floating torch tensor, got {got}; use x.float() / 255")
    if x.dim() < 2:
        raise SrlabError(f"imresize: needs a tensor [..., H, W], got shape {tuple(x.shape)}")
    if (scale is None) == (size is None):
        raise SrlabError("imresize: give exactly one of scale=... or size=(h, w)")
    kname, antialias = _resolve_kernel(kernel, antialias)
    if torch.onnx.is_in_onnx_export() and size is None and float(scale).is_integer() and scale >= 2 \
            and kname == "cubic":
        return upsample_int(x, int(scale), kname)  # sizes that follow the input (see upsample_int)
    in_h, in_w = x.shape[-2], x.shape[-1]
    if scale is not None:
        if not scale > 0:
            raise SrlabError(f"imresize: scale must be > 0, got {scale}")
        out_h, out_w = output_size(in_h, scale), output_size(in_w, scale)
        sh = sw = float(scale)
    else:
        if len(size) != 2 or min(size) < 1:
            raise SrlabError(f"imresize: size must be (h, w) with positive ints, got {size}")
        out_h, out_w = int(size[0]), int(size[1])
        sh, sw = out_h / in_h, out_w / in_w
    dev, dt = x.device, x.dtype
    # Scale 1 with unchanged length is the identity for every kernel here, so skip that axis.
    do_h, do_w = (out_h != in_h or sh != 1), (out_w != in_w or sw != 1)
    # Apply the cheaper axis first (fewer flops); in exact arithmetic the order does not matter.
    h_first = out_h * in_w * (in_h + out_w) <= in_h * out_w * (in_w + out_h)
    out = x
    for axis in ("h", "w") if h_first else ("w", "h"):
        if axis == "h" and do_h:
            out = _apply_h(out, _blocks(in_h, out_h, sh, kname, antialias, dt, dev))
        elif axis == "w" and do_w:
            out = _apply_w(out, _blocks(in_w, out_w, sw, kname, antialias, dt, dev))
    return out


@functools.lru_cache(maxsize=32)
def _phase_taps(scale: int, kernel: str) -> torch.Tensor:
    """[scale, 2R+1] float64: output pixel s*i+p = sum_t taps[p, t] * in[i + t - R], read off an
    interior row of `_weights` (upscaling by an integer repeats the same taps every s rows)."""
    n = 32
    mat = _weights(n, n * scale, float(scale), kernel, True)[n // 2 * scale:(n // 2 + 1) * scale]
    cols = (mat != 0).any(dim=0).nonzero().flatten()
    radius = int(max(n // 2 - cols[0], cols[-1] - n // 2))
    return mat[:, n // 2 - radius:n // 2 + radius + 1]


def _upsample_axis(x: torch.Tensor, taps: torch.Tensor) -> torch.Tensor:
    """[N,1,H,W] -> [N,1,H*s,W]: symmetric padding, one conv with s output phases, interleaved."""
    radius = (taps.shape[1] - 1) // 2
    padded = torch.cat([x[:, :, :radius].flip(2), x, x[:, :, -radius:].flip(2)], dim=2)
    phases = F.conv2d(padded, taps.to(x)[:, None, :, None])  # [N, s, H, W]
    return phases.permute(0, 2, 1, 3).reshape(phases.shape[0], 1, -1, phases.shape[-1])


def upsample_int(x: torch.Tensor, scale: int, kernel: str = "cubic") -> torch.Tensor:
    """imresize(x, scale) for an integer scale >= 2 as convolutions whose shape follows the input's:
    what an exported graph (ONNX, dynamic height/width) needs, where `_weights` would freeze the
    tracing image's size into constant matrices. Equal to imresize up to float rounding for
    inputs of at least 3 px (symmetric padding of the taps' radius)."""
    kname, _ = _resolve_kernel(kernel, True)
    taps = _phase_taps(int(scale), kname)
    lead, (h, w) = x.shape[:-2], x.shape[-2:]
    flat = x.reshape(-1, 1, h, w)
    out = _upsample_axis(_upsample_axis(flat, taps).transpose(2, 3), taps).transpose(2, 3)
    return out.reshape(*lead, out.shape[-2], out.shape[-1])
