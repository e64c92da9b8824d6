"""Perceptual (feature reconstruction) loss, optionally with a Gram-matrix style term.

Pixel losses reward the blurry mean of plausible outputs; comparing VGG activations instead
rewards matching textures and edges (Johnson et al. 2016: VGG16 relu3_3 for the content
term; relu2_2 in their SR experiments). The fastai feature loss adds Gram terms.

The VGG is a fixed measuring instrument, not part of the model, so it is kept out of the
module tree: it is stored in a plain attribute that nn.Module does not register. That makes it
absent from `state_dict()` (checkpoints stay small and loadable without it) and from
`parameters()` (it can never reach an optimizer), and a parent's `.train()` cannot switch it
out of eval mode. It still follows `.to(device/dtype)` because `_apply` is forwarded to it.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import torch
import torch.nn.functional as F
from torch import nn

from srlab.errors import SrlabError
from srlab.losses.vgg import layer_names, load_vgg

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)
DISTANCES = {"l1": F.l1_loss, "l2": F.mse_loss}


class PerceptualLoss(nn.Module):
    """sum_l w_l * d(phi_l(sr), phi_l(hr)) + style_weight * sum_l w_l * d(G_l(sr), G_l(hr)).

    layers: {"relu3_3": 1.0, ...} (or a list of names, each weighted 1). d is the mean absolute
    ("l1") or mean squared ("l2") difference. G is the Gram matrix F F^T / (C H W). Images are
    [N,3,H,W] in [0,1]; ImageNet mean/std normalisation happens inside.
    """

    def __init__(
        self,
        layers: Mapping[str, float] | Sequence[str] | str = "relu3_3",
        arch: str = "vgg16",
        weights: str = "imagenet",
        distance: str = "l1",
        style_weight: float = 0.0,
    ):
        super().__init__()
        if distance not in DISTANCES:
            raise SrlabError(f"perceptual distance {distance!r} unknown: use l1 or l2")
        self.layers = _as_weights(layers)
        self.distance = distance
        self.style_weight = float(style_weight)
        features = load_vgg(arch, weights, hint="set loss.terms.perceptual.fn.weights=<path to .pth>")
        names = layer_names(features)
        unknown = [n for n in self.layers if n not in names]
        if unknown:
            raise SrlabError(f"{arch} has no layer {unknown[0]!r}: choose from {', '.join(names)}")
        self._index = {n: names[n] for n in self.layers}
        # Truncate after the deepest requested layer: later layers would cost time for nothing.
        backbone = features[: max(self._index.values()) + 1]
        # object.__setattr__ bypasses nn.Module's registration: see the module docstring.
        object.__setattr__(self, "_backbone", backbone)
        # Non-persistent buffers move with .to() but stay out of the state dict.
        self.register_buffer("mean", torch.tensor(IMAGENET_MEAN).view(1, 3, 1, 1), persistent=False)
        self.register_buffer("std", torch.tensor(IMAGENET_STD).view(1, 3, 1, 1), persistent=False)

    @property
    def backbone(self) -> nn.Sequential:
        return self._backbone

    def _apply(self, fn, recurse=True):
        # .to()/.cuda()/.double() reach unregistered modules only through here.
        super()._apply(fn, recurse)
        self._backbone._apply(fn)
        return self

    def train(self, mode: bool = True):
        super().train(mode)
        self._backbone.eval()  # frozen statistics (BN variants) whatever the parent's mode
        return self

    def features(self, x: torch.Tensor) -> dict[str, torch.Tensor]:
        """The requested activations of `x` ([N,3,H,W] in [0,1])."""
        x = (x - self.mean.to(x.dtype)) / self.std.to(x.dtype)
        wanted = {i: n for n, i in self._index.items()}
        out = {}
        for i, layer in enumerate(self._backbone):
            x = layer(x)
            if i in wanted:
                out[wanted[i]] = x
        return out

    def forward(self, sr: torch.Tensor, hr: torch.Tensor) -> torch.Tensor:
        dist = DISTANCES[self.distance]
        if self.mean.device != next(self._backbone.parameters()).device:
            self._backbone.to(self.mean.device)  # a mover that bypassed _apply: catch up lazily
        f_sr = self.features(sr)
        with torch.no_grad():  # the target needs no graph: saves the memory of a second VGG pass
            f_hr = self.features(hr)
        total = sr.new_zeros(())
        for name, w in self.layers.items():
            total = total + w * dist(f_sr[name], f_hr[name])
            if self.style_weight:
                total = total + self.style_weight * w * dist(_gram(f_sr[name]), _gram(f_hr[name]))
        return total

    def extra_repr(self) -> str:
        return f"layers={self.layers}, distance={self.distance}, style_weight={self.style_weight}"


def _gram(f: torch.Tensor) -> torch.Tensor:
    n, c, h, w = f.shape
    f = f.reshape(n, c, h * w)
    return f @ f.transpose(1, 2) / (c * h * w)


def _as_weights(layers) -> dict[str, float]:
    if isinstance(layers, str):
        return {layers: 1.0}
    if isinstance(layers, Mapping):  # also an OmegaConf DictConfig from Hydra
        out = {str(k): float(v) for k, v in layers.items()}
    else:
        out = {str(k): 1.0 for k in layers}
    if not out:
        raise SrlabError("perceptual loss needs at least one layer, e.g. layers={relu3_3: 1.0}")
    return out
