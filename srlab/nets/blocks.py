"""Building blocks shared by the nets: conv blocks and the pre-upsampling wrapper.

Pre-upsampling nets (the seed's auto-encoder and U-Net, SRCNN) work at HR size: the LR
image is first upscaled with the same MATLAB bicubic that the baseline uses, the body
predicts the HR image — or, with `residual=True`, the detail missing from the bicubic
image. The head of a residual net starts at zero, so an untrained net *is* bicubic and
every step of training shows up as gain over the baseline.

`space_to_depth=f` folds each f x f block of the upsampled image into channels before the
body (pixel-unshuffle) and unfolds the output (pixel-shuffle). With f = scale the body
runs at LR resolution on 3*scale^2 channels: the input is still the bicubic image and no
pixel of it is lost, but a step costs ~scale^2 less — what makes a U-Net trainable on a
laptop CPU in minutes. f = 1 is the classic full-resolution net.

The body sees the bicubic image minus 0.5, not raw [0, 1] values. With all-positive inputs
Adam's first steps (every weight moves by ~lr, all in step) can push whole ReLU layers
negative, and the residual net then sits at bicubic for good: SRCNN at lr 1e-3 lost every
mid-layer ReLU in ~6 steps, and the U-Net with L1 (seed 42, x4, 200 steps) stayed at
-0.03 dB. Centred, the same U-Net runs gave +0.19 dB (L1) and +0.89 dB (MSE, was +0.65).
Centring is a bias shift of the first conv (exact away from zero-padded borders), so the
nets can represent the same functions; it only makes training start reliably.
"""
import torch
import torch.nn.functional as F
from torch import nn

from srlab.ops.imresize import imresize


def conv_block(c_in: int, c_out: int, norm: str | None = None) -> nn.Sequential:
    """Two 3x3 convs with activations; `norm` in {None, "batch", "group"}."""
    layers: list[nn.Module] = []
    for c in (c_in, c_out):
        layers.append(nn.Conv2d(c, c_out, 3, padding=1, bias=norm is None))
        if norm == "batch":
            layers.append(nn.BatchNorm2d(c_out))
        elif norm == "group":
            layers.append(nn.GroupNorm(min(8, c_out), c_out))
        layers.append(nn.LeakyReLU(0.2, inplace=True))
    return nn.Sequential(*layers)


def pad_to_multiple(x: torch.Tensor, multiple: int) -> torch.Tensor:
    """Reflect-pad bottom/right so H and W are multiples of `multiple` (encoder strides)."""
    h, w = x.shape[-2:]
    ph, pw = (-h) % multiple, (-w) % multiple
    if torch.onnx.is_in_onnx_export():  # no branch on sizes: the graph must fit any input size
        return F.pad(x, (0, pw, 0, ph), mode="reflect")
    if ph == 0 and pw == 0:
        return x
    mode = "reflect" if ph < h and pw < w else "replicate"
    return F.pad(x, (0, pw, 0, ph), mode=mode)


class PreUpsamplingNet(nn.Module):
    """Base class: bicubic-upsample the LR input, run `self.body` at HR size.

    Subclasses build `self.body` (3 -> 3 channels) and `self.head` (its last conv, zeroed
    when residual) and pass `multiple` = total stride of the body.
    """

    upsampling = "pre"

    def __init__(self, scale: int, residual: bool = True, multiple: int = 1, space_to_depth: int = 1):
        super().__init__()
        self.scale = int(scale)
        self.residual = residual
        self.space_to_depth = int(space_to_depth)
        self.multiple = multiple * self.space_to_depth
        self.io_channels = 3 * self.space_to_depth**2  # channels the body sees and returns

    def zero_head(self) -> None:
        if self.residual:
            nn.init.zeros_(self.head.weight)
            if self.head.bias is not None:
                nn.init.zeros_(self.head.bias)

    def body(self, x: torch.Tensor, **kwargs) -> torch.Tensor:
        raise NotImplementedError

    def prepare(self, image: torch.Tensor) -> torch.Tensor:
        """HR-size image -> the body's input grid: padded, centred (module docstring), space-to-depth."""
        x = pad_to_multiple(image, self.multiple) - 0.5
        return F.pixel_unshuffle(x, self.space_to_depth) if self.space_to_depth > 1 else x

    def forward(self, lr: torch.Tensor, **body_kwargs) -> torch.Tensor:
        """Extra keyword arguments go to `body` (the CVAE's latent z)."""
        up = imresize(lr, scale=self.scale)
        h, w = up.shape[-2:]
        out = self.body(self.prepare(up), **body_kwargs)
        if self.space_to_depth > 1:
            out = F.pixel_shuffle(out, self.space_to_depth)
        out = out[..., :h, :w]
        return up + out if self.residual else out


class ResBlock(nn.Module):
    """EDSR's residual block: conv-ReLU-conv, no batch norm, branch scaled by `res_scale`.

    Batch norm is left out on purpose (EDSR, sec. 3.1): it normalises away the range of the
    features, which SR needs, and costs as much memory as the conv it follows.
    `res_scale` < 1 (0.1 in EDSR) keeps very wide nets stable.
    """

    def __init__(self, channels: int, res_scale: float = 1.0):
        super().__init__()
        self.res_scale = res_scale
        self.body = nn.Sequential(nn.Conv2d(channels, channels, 3, padding=1), nn.ReLU(inplace=True),
                                  nn.Conv2d(channels, channels, 3, padding=1))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x + self.body(x) * self.res_scale


def pixel_shuffle_upsampler(channels: int, scale: int) -> nn.Sequential:
    """Sub-pixel upsampler (ESPCN/EDSR): conv to r^2 x channels, PixelShuffle(r); c -> c channels.

    Powers of two go in x2 stages (x4 = two stages, as EDSR does) so each conv stays
    c -> 4c; x3 is one c -> 9c stage. Other scales have no stage decomposition here.
    """
    if scale == 3:
        factors = [3]
    elif scale >= 2 and scale & (scale - 1) == 0:
        factors = [2] * (scale.bit_length() - 1)
    else:
        raise ValueError(f"pixel_shuffle_upsampler supports scale 2, 3, 4, 8, ...; got {scale}")
    layers: list[nn.Module] = []
    for r in factors:
        layers += [nn.Conv2d(channels, r * r * channels, 3, padding=1), nn.PixelShuffle(r)]
    return nn.Sequential(*layers)
