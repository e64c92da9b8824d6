"""VGG feature extractors for feature-space losses and metrics.

Both the perceptual loss and an LPIPS-style metric need the same thing: the convolutional part
of a torchvision VGG with ImageNet (or user-given, or random) weights, frozen, and a map from
the usual layer names (`relu3_3`) to indices. Getting the weights is the part that fails on
offline machines, so it lives here, once, and fails with one line that says where to put the
file instead of hanging on a download or silently training against random features.
"""

from __future__ import annotations

import os
import socket
from pathlib import Path

import torch
from torch import nn
from torchvision import models
from torchvision.models import vgg as tv_vgg

from srlab.errors import SrlabError

# arch -> (torchvision layer config, batch norm, ImageNet weight enum)
ARCHS = {
    "vgg16": ("D", False, models.VGG16_Weights.IMAGENET1K_V1),
    "vgg19": ("E", False, models.VGG19_Weights.IMAGENET1K_V1),
    "vgg16_bn": ("D", True, models.VGG16_BN_Weights.IMAGENET1K_V1),
    "vgg19_bn": ("E", True, models.VGG19_BN_Weights.IMAGENET1K_V1),
}

# A download that cannot connect must fail in seconds, not hang a training job.
DOWNLOAD_TIMEOUT_S = 15.0


def layer_names(features: nn.Sequential) -> dict[str, int]:
    """Map `reluB_C` (block B, conv C in that block, counted from 1) to its index in `features`,
    and `convB_C` to the conv's own index: its output before the activation (ESRGAN's conv5_4,
    whose features are not yet sparse after the ReLU and keep brightness information)."""
    names, block, conv = {}, 1, 0
    for i, layer in enumerate(features):
        if isinstance(layer, nn.Conv2d):
            conv += 1
            names[f"conv{block}_{conv}"] = i
        elif isinstance(layer, nn.ReLU):
            names[f"relu{block}_{conv}"] = i
        elif isinstance(layer, nn.MaxPool2d):
            block, conv = block + 1, 0
    return names


def load_vgg(arch: str = "vgg16", weights: str = "imagenet", hint: str | None = None) -> nn.Sequential:
    """Return the frozen, eval-mode `features` part of a VGG.

    weights: "imagenet" (torchvision's IMAGENET1K_V1 file from the torch hub cache, downloaded
    there if possible), "random" (for tests), or a path to a saved state dict (a whole VGG's,
    as torchvision ships it, or just the `features` part). `hint` finishes the error message
    ("or <hint>") so each caller can name its own config key.
    """
    if arch not in ARCHS:
        raise SrlabError(f"unknown VGG arch {arch!r}: use one of {', '.join(ARCHS)}")
    cfg, batch_norm, enum = ARCHS[arch]
    # Only the conv part: building the whole VGG would allocate ~120M classifier weights for nothing.
    features = tv_vgg.make_layers(tv_vgg.cfgs[cfg], batch_norm=batch_norm)
    if weights == "random":
        _init_like_torchvision(features)
    elif weights == "imagenet":
        _load_into(features, _imagenet_state_dict(arch, enum, hint), f"{arch} ImageNet weights")
    else:
        _load_into(features, _file_state_dict(Path(weights)), str(weights))
    for p in features.parameters():
        p.requires_grad_(False)
    # In-place ReLUs would overwrite activations that a caller keeps as features.
    for layer in features:
        if isinstance(layer, nn.ReLU):
            layer.inplace = False
    return features.eval()


def imagenet_file(arch: str) -> Path:
    """Where torchvision looks for (and downloads) the ImageNet weights of `arch`."""
    return hub_file(ARCHS[arch][2])


def hub_file(enum) -> Path:
    """Where torchvision looks for (and downloads) the file of a weight enum, e.g. AlexNet_Weights.IMAGENET1K_V1."""
    return Path(torch.hub.get_dir()) / "checkpoints" / os.path.basename(enum.url)


def fetch_weights(enum, what: str, hint: str | None = None) -> Path:
    """Path of a torchvision weight file in the hub cache, downloaded there if possible.

    Offline and absent: one SrlabError line naming the file and the folder to put it in
    (`hint` finishes it: "or <hint>"). No network attempt when the file is already there.
    """
    path = hub_file(enum)
    if not path.is_file():
        try:
            _download(enum.url, path)
        except Exception as err:  # noqa: BLE001 - any failure means "not available": say where to put it
            or_hint = f" or {hint}" if hint else ""
            raise SrlabError(
                f"{what} not found and cannot be downloaded ({type(err).__name__}): "
                f"put {path.name} in {path.parent}/{or_hint}"
            ) from None
    return path


def _imagenet_state_dict(arch: str, enum, hint: str | None) -> dict:
    hint = hint or "pass weights=<path to a .pth state dict>"
    path = fetch_weights(enum, f"{arch.upper()} ImageNet weights", hint)
    return torch.load(path, map_location="cpu", weights_only=True)


def _download(url: str, path: Path) -> None:
    """Fetch `url` to `path` (torch hub's downloader, hash-checked), failing fast when offline."""
    path.parent.mkdir(parents=True, exist_ok=True)
    old = socket.getdefaulttimeout()
    socket.setdefaulttimeout(DOWNLOAD_TIMEOUT_S)
    try:
        torch.hub.download_url_to_file(url, str(path), hash_prefix=path.stem.split("-")[-1], progress=False)
    finally:
        socket.setdefaulttimeout(old)


def _file_state_dict(path: Path) -> dict:
    if not path.is_file():
        raise SrlabError(f"VGG weights file {path} not found: give an existing .pth path or weights=imagenet")
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as err:  # noqa: BLE001 - a corrupt/foreign file is a user error
        raise SrlabError(f"cannot read VGG weights {path} ({type(err).__name__}): save it with torch.save(model.state_dict())") from None
    if isinstance(state, dict) and isinstance(state.get("state_dict"), dict):
        state = state["state_dict"]
    if not isinstance(state, dict):
        raise SrlabError(f"VGG weights {path} hold a {type(state).__name__}, not a state dict")
    return state


def _load_into(features: nn.Sequential, state: dict, what: str) -> None:
    # Accept a whole-VGG state dict ("features.0.weight", "classifier...") or a features-only one.
    if any(k.startswith("features.") for k in state):
        state = {k[len("features."):]: v for k, v in state.items() if k.startswith("features.")}
    try:
        missing, unexpected = features.load_state_dict(state, strict=False)
    except RuntimeError as err:  # a size mismatch: another arch's file
        raise SrlabError(f"{what} do not fit this VGG ({str(err).splitlines()[-1].strip()}): check the arch or the file") from None
    if missing or unexpected:
        raise SrlabError(
            f"{what} do not fit this VGG (missing {len(missing)} keys e.g. {missing[:2]}, "
            f"unexpected {len(unexpected)} e.g. {unexpected[:2]}): check the arch or the file"
        )


def _init_like_torchvision(features: nn.Sequential) -> None:
    """The init torchvision's VGG uses, so random-weight features have sensible scales."""
    for m in features.modules():
        if isinstance(m, nn.Conv2d):
            nn.init.kaiming_normal_(m.weight, mode="fan_out", nonlinearity="relu")
            nn.init.zeros_(m.bias)
        elif isinstance(m, nn.BatchNorm2d):
            nn.init.ones_(m.weight)
            nn.init.zeros_(m.bias)
