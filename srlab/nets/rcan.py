"""RCAN (Zhang et al. 2018, arXiv 1807.02758): very deep residual-in-residual net with channel attention.

    lr - mean -> conv3x3 -> [n_groups x ResidualGroup -> conv3x3] (+ skip from the first conv)
       -> PixelShuffle upsampler -> conv3x3 to RGB -> + mean

A residual group is `n_blocks` RCABs and a conv, with a skip over the whole group (the
"short skip"); the groups together have one more skip (the "long skip"). The skips let the
abundant low-frequency content bypass the 400 convs, which then learn high frequencies.
An RCAB is EDSR's block (conv-ReLU-conv) followed by channel attention: the global average of
each feature map -> 1x1 conv down by `reduction` -> ReLU -> 1x1 conv up -> sigmoid, which
rescales each channel, so the net weighs channels by how informative they are.
Defaults are the paper's: 10 groups x 20 RCABs, 64 features, reduction 16 -> 15.59 M at x4.

As in EDSR (srlab/nets/edsr.py) the DIV2K mean is subtracted and added back; images are in
[0, 1]. The authors' code works in [0, 255]. Their weights load with the first conv's weight
scaled by 255 and the last conv by 1/255 (`_from_255`): the features in between are then
exactly theirs (the sigmoids see the same values), and the output is theirs / 255.
x2/x4/x8 upsample in x2 stages, x3 in one.
"""
import torch
from torch import nn

from srlab.nets.blocks import pixel_shuffle_upsampler
from srlab.nets.edsr import DIV2K_MEAN
from srlab.nets.official_weights import load_official

# The authors' names (RCAN/RCAN_TestCode/code/model/rcan.py) -> ours
OFFICIAL_RULES = [
    (r"^(sub_mean|add_mean)\.", None),  # their fixed MeanShift convs: our mean is a constant buffer
    (r"^head\.0\.", "stem."),
    (r"^body\.(\d+)\.body\.(\d+)\.body\.0\.", r"body.\1.blocks.\2.conv1."),
    (r"^body\.(\d+)\.body\.(\d+)\.body\.2\.", r"body.\1.blocks.\2.conv2."),
    (r"^body\.(\d+)\.body\.(\d+)\.body\.3\.conv_du\.0\.", r"body.\1.blocks.\2.attention.squeeze."),
    (r"^body\.(\d+)\.body\.(\d+)\.body\.3\.conv_du\.2\.", r"body.\1.blocks.\2.attention.excite."),
    (r"^body\.(\d+)\.body\.(\d+)\.(weight|bias)$", r"body.\1.conv.\3"),
    (r"^tail\.0\.", "upsampler."),
    (r"^tail\.1\.", "tail."),
]


def _from_255(state_dict: dict[str, torch.Tensor]) -> None:
    """Fold the authors' [0, 255] pixel range into the first and last convs (module docstring)."""
    state_dict["stem.weight"] = state_dict["stem.weight"] * 255.0
    state_dict["tail.weight"] = state_dict["tail.weight"] / 255.0
    state_dict["tail.bias"] = state_dict["tail.bias"] / 255.0


class ChannelAttention(nn.Module):
    def __init__(self, channels: int, reduction: int = 16):
        super().__init__()
        self.squeeze = nn.Conv2d(channels, channels // reduction, 1)
        self.excite = nn.Conv2d(channels // reduction, channels, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        weights = self.excite(torch.relu(self.squeeze(x.mean(dim=(2, 3), keepdim=True))))
        return x * torch.sigmoid(weights)


class RCAB(nn.Module):
    """Residual channel-attention block: x + CA(conv(ReLU(conv(x))))."""

    def __init__(self, channels: int, reduction: int = 16):
        super().__init__()
        self.conv1 = nn.Conv2d(channels, channels, 3, padding=1)
        self.conv2 = nn.Conv2d(channels, channels, 3, padding=1)
        self.attention = ChannelAttention(channels, reduction)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x + self.attention(self.conv2(torch.relu(self.conv1(x))))


class ResidualGroup(nn.Module):
    def __init__(self, channels: int, n_blocks: int, reduction: int):
        super().__init__()
        self.blocks = nn.Sequential(*(RCAB(channels, reduction) for _ in range(n_blocks)))
        self.conv = nn.Conv2d(channels, channels, 3, padding=1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x + self.conv(self.blocks(x))  # short skip


class RCAN(nn.Module):
    upsampling = "post"

    def __init__(self, scale: int, n_groups: int = 10, n_blocks: int = 20, channels: int = 64,
                 reduction: int = 16, weights: str | None = None):
        super().__init__()
        self.scale = int(scale)
        self.multiple = 1  # no strides: tiles may start anywhere
        self.register_buffer("mean", torch.tensor(DIV2K_MEAN).view(1, 3, 1, 1), persistent=False)
        self.stem = nn.Conv2d(3, channels, 3, padding=1)
        self.body = nn.Sequential(*(ResidualGroup(channels, n_blocks, reduction) for _ in range(n_groups)),
                                  nn.Conv2d(channels, channels, 3, padding=1))
        self.upsampler = pixel_shuffle_upsampler(channels, self.scale)
        self.tail = nn.Conv2d(channels, 3, 3, padding=1)
        if weights:
            load_official(self, weights, OFFICIAL_RULES, adapt=_from_255)

    def forward(self, lr: torch.Tensor) -> torch.Tensor:
        x = self.stem(lr - self.mean)
        x = x + self.body(x)  # long skip
        return self.tail(self.upsampler(x)) + self.mean
