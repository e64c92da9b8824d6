"""ImageNet backbones of the learned measures (LPIPS, DISTS), loaded as torchvision loads them.

LPIPS and DISTS are a fixed ImageNet classifier's features plus a few learned weights; the
small learned weights ship inside torchmetrics (a dependency), the backbones (AlexNet 233 MB,
VGG16 528 MB, SqueezeNet 4.7 MB) do not. They are torchvision's own files, looked up where
torchvision keeps them (`$TORCH_HOME/hub/checkpoints/`, via srlab.losses.vgg.fetch_weights,
which downloads them there when it can), or a user-given file (`weights=<path>`). Offline
with no file: one line naming the file and the folder, never a hang or a traceback.
Only `features` is kept, built on the meta device first: the classifier's ~120 M weights
would be allocated for nothing.
"""
from __future__ import annotations

from pathlib import Path

import torch
from torch import nn
from torchvision import models

from srlab.errors import SrlabError
from srlab.losses.vgg import fetch_weights

# name -> (torchvision constructor, its ImageNet weight enum)
BACKBONES = {
    "alex": (models.alexnet, models.AlexNet_Weights.IMAGENET1K_V1),
    "vgg": (models.vgg16, models.VGG16_Weights.IMAGENET1K_V1),
    "squeeze": (models.squeezenet1_1, models.SqueezeNet1_1_Weights.IMAGENET1K_V1),
}


def imagenet_features(backbone: str, weights: str | None, measure: str) -> nn.Sequential:
    """Frozen eval-mode `features` of a torchvision ImageNet classifier, ReLUs not in place.

    weights: None (torchvision's file in the hub cache) or a path to a torchvision state dict.
    `measure` names the caller in the one-line errors ("lpips_vgg").
    """
    if backbone not in BACKBONES:
        raise SrlabError(f"{measure}: backbone={backbone!r} is not one of {', '.join(BACKBONES)}")
    build, enum = BACKBONES[backbone]
    if weights:
        path = Path(weights)
        if not path.is_file():
            raise SrlabError(f"{measure}: weights={path} not found: give torchvision's {Path(enum.url).name} or leave weights unset")
    else:
        path = fetch_weights(enum, f"{measure}: {backbone} ImageNet weights",
                             f"drop {measure} from val.metrics / eval.metrics")
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as err:  # noqa: BLE001 - a corrupt or foreign file is a user error
        raise SrlabError(f"{measure}: cannot read {path} ({type(err).__name__}): use torchvision's {Path(enum.url).name}") from None
    state = {k[len("features."):]: v for k, v in state.items() if isinstance(k, str) and k.startswith("features.")}
    with torch.device("meta"):
        features = build().features
    features = features.to_empty(device="cpu")
    try:
        features.load_state_dict(state)
    except RuntimeError as err:
        raise SrlabError(f"{measure}: {path} does not fit torchvision's {backbone} "
                         f"({str(err).splitlines()[0].strip()}): use {Path(enum.url).name}") from None
    for layer in features.modules():
        if isinstance(layer, nn.ReLU):
            layer.inplace = False
    for p in features.parameters():
        p.requires_grad_(False)
    return features.eval()


def torchmetrics_file(*parts: str) -> Path:
    """A weight file that ships inside torchmetrics (LPIPS linear heads, DISTS alpha/beta)."""
    import torchmetrics

    path = Path(torchmetrics.__file__).parent.joinpath("functional", "image", *parts)
    if not path.is_file():
        raise SrlabError(f"{path.name} is not in this torchmetrics ({torchmetrics.__version__}): "
                         f"pip install 'torchmetrics>=1.8'")
    return path
