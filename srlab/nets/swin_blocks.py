"""Swin Transformer layers (Liu et al. 2021, arXiv 2103.14030), the pieces SwinIR is built of.

Self-attention over a whole image costs (H*W)^2; Swin attends within non-overlapping
`window` x `window` windows instead (linear in H*W), and every second layer shifts the window
grid by window/2 so information crosses window borders. The shift is a cyclic roll of the
image; the windows that then straddle the wrapped-around edge hold pixels that are not
neighbours, and a mask (-100 before the softmax) keeps them from attending to each other.
Each head adds a learnt bias indexed by the relative position of the two tokens in the window
(a (2w-1)^2 table), which is what gives the attention a sense of geometry.

Tokens are [B, H*W, C]; H and W must be multiples of the window (SwinIR pads to that).
"""
import torch
import torch.nn.functional as F
from torch import nn

MASKED = -100.0  # the Swin papers' value: exp(-100) is 0 in any float type


def relative_position_index(window: int) -> torch.Tensor:
    """[N, N] index into the (2w-1)^2 bias table for each pair of tokens of a window (N = w^2)."""
    coords = torch.stack(torch.meshgrid(torch.arange(window), torch.arange(window), indexing="ij")).flatten(1)
    rel = coords[:, :, None] - coords[:, None, :] + (window - 1)  # [2, N, N], in [0, 2w-2]
    return rel[0] * (2 * window - 1) + rel[1]


def to_windows(x: torch.Tensor, window: int) -> torch.Tensor:
    """[B, H, W, C] -> [B, nW, w*w, C], windows in row-major order."""
    b, h, w, c = x.shape
    x = x.view(b, h // window, window, w // window, window, c).permute(0, 1, 3, 2, 4, 5)
    return x.reshape(b, -1, window * window, c)


def from_windows(x: torch.Tensor, window: int, h: int, w: int) -> torch.Tensor:
    """Inverse of `to_windows`: [B, nW, w*w, C] -> [B, H, W, C]."""
    b, c = x.shape[0], x.shape[-1]
    x = x.view(b, h // window, w // window, window, window, c).permute(0, 1, 3, 2, 4, 5)
    return x.reshape(b, h, w, c)


def shift_mask(h: int, w: int, window: int, shift: int, device=None) -> torch.Tensor:
    """[nW, N, N] additive mask for the shifted layers: 0 within a region, MASKED across.

    After rolling by -shift, each axis has three regions: [0, -w), [-w, -shift), [-shift, end);
    tokens from different regions met only because of the roll.
    """
    region = torch.zeros(1, h, w, 1, device=device)
    label = 0
    for rows in (slice(0, -window), slice(-window, -shift), slice(-shift, None)):
        for cols in (slice(0, -window), slice(-window, -shift), slice(-shift, None)):
            region[:, rows, cols] = label
            label += 1
    region = to_windows(region, window).squeeze(-1)[0]  # [nW, N]
    differs = region[:, None, :] != region[:, :, None]
    return torch.zeros(differs.shape, device=device).masked_fill(differs, MASKED)


class WindowAttention(nn.Module):
    """Multi-head self-attention within each window, with a relative position bias."""

    def __init__(self, dim: int, window: int, heads: int):
        super().__init__()
        self.heads = heads
        self.qkv = nn.Linear(dim, 3 * dim)
        self.proj = nn.Linear(dim, dim)
        self.relative_position_bias_table = nn.Parameter(torch.zeros((2 * window - 1) ** 2, heads))
        nn.init.trunc_normal_(self.relative_position_bias_table, std=0.02)
        # rebuilt from `window`, so kept out of state dicts (the authors' files have it: dropped on load)
        self.register_buffer("relative_position_index", relative_position_index(window), persistent=False)

    def forward(self, x: torch.Tensor, mask: torch.Tensor | None = None) -> torch.Tensor:
        """x: [B, nW, N, C]; mask: [nW, N, N] or None."""
        b, nw, n, c = x.shape
        q, k, v = self.qkv(x).view(b, nw, n, 3, self.heads, c // self.heads).permute(3, 0, 1, 4, 2, 5)
        bias = self.relative_position_bias_table[self.relative_position_index.view(-1)]
        bias = bias.view(n, n, self.heads).permute(2, 0, 1)  # [heads, N, N]
        bias = bias + mask[:, None] if mask is not None else bias.expand(nw, -1, -1, -1)  # [nW, heads, N, N]
        # Windows x heads as one 4-D "heads" axis: the bias then broadcasts over the batch without
        # a copy, and PyTorch's fused CPU kernel takes it (5-D inputs fall back to a path that
        # measured 13x slower at batch 4). Default scale 1/sqrt(head dim), as Swin's.
        q, k, v = (t.reshape(b, nw * self.heads, n, -1) for t in (q, k, v))
        out = F.scaled_dot_product_attention(q, k, v, attn_mask=bias.reshape(1, nw * self.heads, n, n).to(q.dtype))
        return self.proj(out.view(b, nw, self.heads, n, -1).transpose(2, 3).reshape(b, nw, n, c))


class Mlp(nn.Module):
    def __init__(self, dim: int, hidden: int):
        super().__init__()
        self.fc1 = nn.Linear(dim, hidden)
        self.fc2 = nn.Linear(hidden, dim)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc2(F.gelu(self.fc1(x)))


class SwinLayer(nn.Module):
    """Pre-norm transformer layer: x + W-MSA(LN(x)), then x + MLP(LN(x)); windows shifted or not."""

    def __init__(self, dim: int, heads: int, window: int, shift: int, mlp_ratio: float = 2.0):
        super().__init__()
        self.window, self.shift = window, shift
        self.norm1 = nn.LayerNorm(dim)
        self.attn = WindowAttention(dim, window, heads)
        self.norm2 = nn.LayerNorm(dim)
        self.mlp = Mlp(dim, int(dim * mlp_ratio))

    def forward(self, x: torch.Tensor, size: tuple[int, int], mask: torch.Tensor) -> torch.Tensor:
        """x: [B, H*W, C]; mask: `shift_mask` for this H, W (used by shifted layers only)."""
        (h, w), (b, _, c) = size, x.shape
        y = self.norm1(x).view(b, h, w, c)
        if self.shift:
            y = torch.roll(y, (-self.shift, -self.shift), dims=(1, 2))
        y = self.attn(to_windows(y, self.window), mask if self.shift else None)
        y = from_windows(y, self.window, h, w)
        if self.shift:
            y = torch.roll(y, (self.shift, self.shift), dims=(1, 2))
        x = x + y.reshape(b, h * w, c)
        return x + self.mlp(self.norm2(x))
