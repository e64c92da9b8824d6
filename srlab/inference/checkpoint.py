"""Load an SR net for inference from a training checkpoint or an exported file, safely.

Two inputs, one result `(net in eval mode, info)`:
- a training checkpoint (Lightning `.ckpt` from srlab-train): `state_dict` with the net's
  weights under the prefix "net." (and their EMA under "ema.module.", preferred when there)
  and `srlab_config`, the resolved training config, whose
  `net` entry (a `_target_` dict) rebuilds the net;
- an exported inference file (srlab-export, format "srlab-net/1"): `net_config`, `scale`
  and the bare net `state_dict`, nothing else;
- any other model file spandrel detects (a community .pth / .pt / .ckpt / .safetensors, a bare
  state dict or wrapped in `params`, `params_ema`, `state_dict`, `model`): the net is
  spandrel's class (srlab/nets/spandrel_arch.py), with its scale, dtypes and size requirements.

A file is data (docs/inference.md, "Safety"): it is opened by `srlab.ops.untrusted_files.read_model_file`
(no pickle code, no TorchScript, no zip bomb unless `trust_checkpoint=True`), its net config
may name only srlab's own net classes with plain arguments (`file_configs`), the net is built
under an allocation budget proportional to the weights the file holds, and the weights must
be finite floating-point tensors that fit the net exactly (`srlab.ops.weight_checks`). This module
imports neither Hydra nor Lightning, so an exported net loads without them.
"""

from __future__ import annotations

from pathlib import Path

import torch
from torch import nn

from srlab.errors import SrlabError
from srlab.inference.file_configs import NETS, build
from srlab.ops.untrusted_files import EXPORT_FORMAT, read_model_file
from srlab.ops.weight_checks import AllocationBudget, check_weights

__all__ = ["EXPORT_FORMAT", "load_net"]


def _net_parts(obj, path: Path) -> tuple[dict, dict, dict | None, str]:
    """-> (net config, net state_dict, training config or None, source kind)."""
    if not isinstance(obj, dict):
        raise SrlabError(f"checkpoint {path} holds a {type(obj).__name__}, not a checkpoint dict; "
                         "pass a .ckpt from srlab-train or a .srlab.pt from srlab-export")
    if obj.get("format") == EXPORT_FORMAT:
        if not isinstance(obj.get("net_config"), dict) or not isinstance(obj.get("state_dict"), dict):
            raise SrlabError(f"{path} says format {EXPORT_FORMAT} but lacks net_config/state_dict: re-export it")
        return obj["net_config"], obj["state_dict"], None, "export"
    if "format" in obj:
        raise SrlabError(f"{path} has format {str(obj['format'])[:40]!r}, which this srlab cannot read "
                         f"(it reads {EXPORT_FORMAT}); upgrade srlab or re-export")
    cfg = obj.get("srlab_config")
    if not isinstance(obj.get("state_dict"), dict) or not isinstance(cfg, dict) or not isinstance(cfg.get("net"), dict):
        raise SrlabError(f"checkpoint {path} has no srlab_config/state_dict: it was not written by "
                         "srlab-train; pass a .ckpt from an srlab run directory")
    # The averaged weights when the run kept an EMA (srlab/training/ema.py): what was validated.
    weights = {k: v for k, v in obj["state_dict"].items() if isinstance(k, str)}
    prefix = "ema.module." if any(k.startswith("ema.module.") for k in weights) else "net."
    state_dict = {k[len(prefix):]: v for k, v in weights.items() if k.startswith(prefix)}
    return cfg["net"], state_dict, cfg, "checkpoint"


def _spandrel_net(obj: dict, path: Path) -> tuple[nn.Module, dict, None, str]:
    """A file srlab did not write: spandrel detects the architecture (or says what it found),
    under the same budget and weight checks (srlab/nets/spandrel_arch.py: from_state_dict).
    -> (net, the config that rebuilds it, no training config, "spandrel")."""
    from srlab.nets.spandrel_arch import from_state_dict

    net = from_state_dict(obj, f"model file {path}")
    config = net.rebuild_config()
    if config is None:
        raise SrlabError(f"model file {path} is a {net.arch} model whose hyper-parameters a config "
                         "cannot hold; srlab cannot rebuild it")
    return net, config, None, "spandrel"


def build_checked(net_cfg: dict, state_dict: dict, what: str) -> nn.Module:
    """The net a file's config names (srlab's classes only), built within a budget set by the
    weights the file holds, with those weights checked and loaded."""
    # `net.weights` (the authors' released file, srlab/nets/official_weights.py) only seeded
    # training; the state dict replaces it, so the file need not exist where this loads.
    net_cfg = {k: v for k, v in net_cfg.items() if k != "weights"}
    # spandrel nets: no probe backward for unused parameters, nothing trains here
    extra = {"freeze_unused": False} if str(net_cfg.get("_target_", "")).endswith("SpandrelNet") else {}
    with AllocationBudget.for_file(state_dict, what):
        net = build(net_cfg, NETS, what, **extra)
    if not isinstance(net, nn.Module):
        raise SrlabError(f"the net config in {what} builds a {type(net).__name__}, not a torch module")
    expected = net.state_dict()
    if expected and not state_dict:
        raise SrlabError(f"{what} holds no weights for the net (no 'net.' keys in its state_dict)")
    missing = sorted(set(expected) - set(state_dict))
    unexpected = sorted(set(state_dict) - set(expected))
    if missing or unexpected:
        example = (missing or unexpected)[0]
        raise SrlabError(f"weights in {what} do not fit the net its config builds: {len(missing)} missing, "
                         f"{len(unexpected)} unexpected keys (e.g. {example!r})")
    not_tensor = next((k for k, v in state_dict.items() if not isinstance(v, torch.Tensor)), None)
    if not_tensor is not None:
        raise SrlabError(f"{what}: its weight {not_tensor!r} is not a tensor: a damaged or hand-made file")
    check_weights(state_dict, {name for name, _ in net.named_parameters()}, what)
    try:
        net.load_state_dict(state_dict)
    except RuntimeError as e:  # shape mismatch: the first line names the tensor
        reason = str(e).strip().splitlines()[-1].strip()
        raise SrlabError(f"weights in {what} do not fit the net its config builds: {reason}") from None
    return net


def load_net(path: str | Path, trust_checkpoint: bool = False) -> tuple[nn.Module, dict]:
    """Rebuild the SR net stored in `path` -> (net on CPU in eval mode, info).

    info: {"path", "source": "checkpoint" | "export" | "spandrel", "scale", "net_config", "srlab_config"
    (the training config, None for exported files)}. User problems raise `SrlabError`.
    """
    path = Path(path).expanduser()
    obj = read_model_file(path, trust_checkpoint)
    if not isinstance(obj, dict) or "format" in obj or "srlab_config" in obj:
        net_cfg, state_dict, train_cfg, source = _net_parts(obj, path)
        net = build_checked(net_cfg, state_dict, f"checkpoint {path}")
        net_cfg = {k: v for k, v in net_cfg.items() if k != "weights"}
    else:  # a file srlab did not write: spandrel builds the net with its weights
        net, net_cfg, train_cfg, source = _spandrel_net(obj, path)
    net.eval()
    try:
        scale = int(getattr(net, "scale", None) or (train_cfg or {}).get("scale") or obj.get("scale") or 0)
    except (TypeError, ValueError):
        scale = 0
    if scale < 1:
        raise SrlabError(f"cannot tell the scale of the net in {path}: its net has no `scale` attribute")
    info = {"path": str(path), "source": source, "scale": scale, "net_config": net_cfg,
            "srlab_config": train_cfg}
    return net, info
