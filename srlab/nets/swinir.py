"""SwinIR (Liang et al. 2021, arXiv 2108.10257): the Swin Transformer baseline of image restoration.

    lr (padded to the window) - mean -> conv3x3 -> tokens -> LayerNorm
       -> n x RSTB -> LayerNorm -> image -> conv3x3 (+ skip from the first conv)
       -> upsampler -> + mean -> cropped back to scale x the input size

A residual Swin Transformer block (RSTB) is `depth` Swin layers (srlab/nets/swin_blocks.py;
every second one with shifted windows) and a 3x3 conv, with a skip over the whole block.
The convs give the translation-equivariant inductive bias attention lacks; attention gives
content-dependent weights and a long reach (each shifted layer extends it by half a window).

Two configurations of the paper (sec. 4.1), chosen by config:
- classical (`configs/net/swinir.yaml`): embed 180, 6 RSTB x 6 layers, 6 heads, window 8,
  MLP ratio 2, `upsampler=pixelshuffle` (conv to 64 channels -> LeakyReLU -> sub-pixel
  stages -> conv to RGB) -> 11.90 M parameters at x4; scales 2, 3, 4, 8.
- lightweight (`configs/net/swinir_light.yaml`): embed 60, 4 RSTB x 6 layers,
  `upsampler=pixelshuffledirect` (one conv to 3*s^2 channels + PixelShuffle) -> 0.93 M at x4,
  the paper's 0.90 M (897K) once the relative position bias tables are left out, as it counts.

Any input size works: the input is reflect-padded at the bottom/right to a multiple of the
window, and the output cropped back. `multiple = window` makes tiled upscaling start tiles on
the window grid, so inside a tile the windows are the whole image's windows (srlab/inference/tiling.py).
Images are in [0, 1]; the DIV2K mean is subtracted and added back, as in the paper's code.
Module names follow the authors' code except two (`OFFICIAL_RULES`), so their released
files load with `net.weights=<file>`.
"""
import torch
from torch import nn

from srlab.nets.blocks import pad_to_multiple, pixel_shuffle_upsampler
from srlab.nets.edsr import DIV2K_MEAN
from srlab.nets.official_weights import load_official
from srlab.nets.swin_blocks import SwinLayer, shift_mask

# The authors' names (JingyunLiang/SwinIR models/network_swinir.py) -> ours
OFFICIAL_RULES = [
    (r"\.(attn_mask|relative_position_index)$", None),  # constants srlab rebuilds for each input size
    (r"^patch_embed\.norm\.", "embed_norm."),
    (r"^layers\.(\d+)\.residual_group\.blocks\.", r"layers.\1.blocks."),
]


class RSTB(nn.Module):
    """Residual Swin Transformer block: x + conv(Swin layers(x))."""

    def __init__(self, dim: int, depth: int, heads: int, window: int, mlp_ratio: float):
        super().__init__()
        self.blocks = nn.ModuleList(SwinLayer(dim, heads, window, 0 if i % 2 == 0 else window // 2, mlp_ratio)
                                    for i in range(depth))
        self.conv = nn.Conv2d(dim, dim, 3, padding=1)

    def forward(self, x: torch.Tensor, size: tuple[int, int], mask: torch.Tensor) -> torch.Tensor:
        y = x
        for block in self.blocks:
            y = block(y, size, mask)
        b, _, c = x.shape
        y = self.conv(y.transpose(1, 2).reshape(b, c, *size))
        return x + y.flatten(2).transpose(1, 2)


class SwinIR(nn.Module):
    upsampling = "post"

    def __init__(self, scale: int, embed_dim: int = 180, depths: list[int] = (6, 6, 6, 6, 6, 6),
                 heads: list[int] = (6, 6, 6, 6, 6, 6), window: int = 8, mlp_ratio: float = 2.0,
                 upsampler: str = "pixelshuffle", upsample_channels: int = 64, weights: str | None = None):
        super().__init__()
        self.scale, self.window = int(scale), int(window)
        self.multiple = self.window  # tiles start on the window grid (module docstring)
        if len(depths) != len(heads):
            raise ValueError(f"SwinIR: depths {list(depths)} and heads {list(heads)} differ in length")
        self.register_buffer("mean", torch.tensor(DIV2K_MEAN).view(1, 3, 1, 1), persistent=False)
        self.conv_first = nn.Conv2d(3, embed_dim, 3, padding=1)
        self.embed_norm = nn.LayerNorm(embed_dim)
        self.layers = nn.ModuleList(RSTB(embed_dim, d, h, self.window, mlp_ratio) for d, h in zip(depths, heads))
        self.norm = nn.LayerNorm(embed_dim)
        self.conv_after_body = nn.Conv2d(embed_dim, embed_dim, 3, padding=1)
        self.upsampler = upsampler
        if upsampler == "pixelshuffle":  # classical SR: a conv stage at 64 channels before the shuffles
            self.conv_before_upsample = nn.Sequential(nn.Conv2d(embed_dim, upsample_channels, 3, padding=1),
                                                      nn.LeakyReLU(inplace=True))
            self.upsample = pixel_shuffle_upsampler(upsample_channels, self.scale)
            self.conv_last = nn.Conv2d(upsample_channels, 3, 3, padding=1)
        elif upsampler == "pixelshuffledirect":  # lightweight SR: straight to RGB sub-pixels
            self.upsample = nn.Sequential(nn.Conv2d(embed_dim, 3 * self.scale**2, 3, padding=1),
                                          nn.PixelShuffle(self.scale))
        else:
            raise ValueError(f"SwinIR upsampler must be pixelshuffle or pixelshuffledirect, got {upsampler!r}")
        self.apply(self._init)
        if weights:
            load_official(self, weights, OFFICIAL_RULES)

    @staticmethod
    def _init(m: nn.Module) -> None:  # the paper's code: truncated normal linears, unit LayerNorms
        if isinstance(m, nn.Linear):
            nn.init.trunc_normal_(m.weight, std=0.02)
            nn.init.zeros_(m.bias)
        elif isinstance(m, nn.LayerNorm):
            nn.init.ones_(m.weight)
            nn.init.zeros_(m.bias)

    def forward(self, lr: torch.Tensor) -> torch.Tensor:
        h, w = lr.shape[-2:]
        x = self.conv_first(pad_to_multiple(lr, self.window) - self.mean)
        b, c, hp, wp = x.shape
        mask = shift_mask(hp, wp, self.window, self.window // 2, x.device)
        tokens = self.embed_norm(x.flatten(2).transpose(1, 2))
        for layer in self.layers:
            tokens = layer(tokens, (hp, wp), mask)
        x = x + self.conv_after_body(self.norm(tokens).transpose(1, 2).reshape(b, c, hp, wp))
        if self.upsampler == "pixelshuffle":
            x = self.conv_last(self.upsample(self.conv_before_upsample(x)))
        else:
            x = self.upsample(x)
        return (x + self.mean)[..., :h * self.scale, :w * self.scale]
