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

Files are opened with `torch.load(weights_only=True)`, which cannot run code. A file that
needs pickle's code execution (it holds a custom Python object) is refused unless the caller
passes `trust_checkpoint=True`. This module imports neither Hydra nor Lightning (the
`_target_` instantiation below is a few lines), so an exported net loads without them.
"""

from __future__ import annotations

import importlib
import pickle
import warnings
from pathlib import Path

import torch
from torch import nn

from srlab.errors import SrlabError

EXPORT_FORMAT = "srlab-net/1"


def instantiate(cfg):
    """Minimal Hydra-style `_target_` instantiation: nested dicts/lists, keyword arguments.

    Keys starting with "_" other than `_target_` (Hydra's `_recursive_`, `_convert_`) are
    dropped; everything else is passed as a keyword argument after its own instantiation.
    """
    if isinstance(cfg, list):
        return [instantiate(v) for v in cfg]
    if not isinstance(cfg, dict):
        return cfg
    kwargs = {k: instantiate(v) for k, v in cfg.items() if not k.startswith("_")}
    if "_target_" not in cfg:
        return kwargs
    target = str(cfg["_target_"])
    module_name, _, attr = target.rpartition(".")
    try:
        obj = getattr(importlib.import_module(module_name), attr)
    except (ImportError, AttributeError, ValueError) as e:
        raise SrlabError(f"cannot import {target} named in the checkpoint's net config ({e}); "
                         "is the srlab version that trained it installed?") from None
    return obj(**kwargs)


def _torch_load(path: Path, trust_checkpoint: bool):
    def load(weights_only: bool):
        with warnings.catch_warnings():  # e.g. "Detected pickle protocol 4": noise for users
            warnings.simplefilter("ignore")
            return torch.load(path, map_location="cpu", weights_only=weights_only)

    try:
        return load(weights_only=True)
    except pickle.UnpicklingError as e:
        # torch's safe unpickler names the class it refused: "Unsupported global: GLOBAL x.Y".
        if "Unsupported global" not in str(e):
            raise SrlabError(f"checkpoint {path} is not a PyTorch checkpoint (or is damaged); "
                             "pass a .ckpt from srlab-train or a .srlab.pt from srlab-export") from None
        if not trust_checkpoint:
            raise SrlabError(f"checkpoint {path} needs arbitrary code execution to load (pickle); "
                             "if you trust its source, pass trust_checkpoint=true") from None
    except Exception:  # zip/miniz errors, EOF, garbage: all mean "not a usable file"
        raise SrlabError(f"checkpoint {path} is not a PyTorch checkpoint (or is damaged); "
                         "pass a .ckpt from srlab-train or a .srlab.pt from srlab-export") from None
    try:
        return load(weights_only=False)
    except Exception as e:
        reason = " ".join(str(e).split())[:200] or type(e).__name__
        raise SrlabError(f"checkpoint {path} could not be unpickled even as trusted: {reason}") from None


def _spandrel_restricted(path: Path, refused: SrlabError) -> dict:
    """Files that weights_only refuses may still be plain state dicts next to a pickled extra
    (an argparse Namespace, numpy scalars); spandrel's restricted unpickler reads those without
    running code. Anything it cannot read keeps the original one-line refusal."""
    try:
        import spandrel

        return spandrel.ModelLoader().load_state_dict_from_file(path)
    except Exception:  # noqa: BLE001
        raise refused from None


def _load_safetensors(path: Path) -> dict:
    try:
        from safetensors import safe_open
    except ImportError:
        raise SrlabError(f"{path} is a safetensors file but the safetensors package is not installed: "
                         "pip install safetensors, or use the .srlab.pt file") from None
    import json

    try:
        with safe_open(str(path), framework="pt") as f:
            meta = f.metadata() or {}
            state_dict = {k: f.get_tensor(k) for k in f.keys()}
    except Exception as e:  # noqa: BLE001 - truncated or not safetensors at all
        reason = " ".join(str(e).split())[:120] or type(e).__name__
        raise SrlabError(f"{path} is not a readable safetensors file ({reason})") from None
    if meta.get("format") != EXPORT_FORMAT:
        return state_dict  # a community file: spandrel's to recognise
    return {"format": EXPORT_FORMAT, "net_config": json.loads(meta["net_config"]),
            "scale": int(meta["scale"]), "state_dict": state_dict}


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
        raise SrlabError(f"{path} has format {obj['format']!r}, which this srlab cannot read "
                         f"(it reads {EXPORT_FORMAT}); upgrade srlab or re-export")
    cfg = obj.get("srlab_config")
    if not isinstance(obj.get("state_dict"), dict) or not isinstance(cfg, dict) or not isinstance(cfg.get("net"), dict):
        raise SrlabError(f"checkpoint {path} has no srlab_config/state_dict: it was not written by "
                         "srlab-train; pass a .ckpt from an srlab run directory")
    # The averaged weights when the run kept an EMA (srlab/training/ema.py): what was validated.
    weights = obj["state_dict"]
    prefix = "ema.module." if any(k.startswith("ema.module.") for k in weights) else "net."
    state_dict = {k[len(prefix):]: v for k, v in weights.items() if k.startswith(prefix)}
    return cfg["net"], state_dict, cfg, "checkpoint"


def _spandrel_net(obj: dict, path: Path) -> tuple[nn.Module, dict, None, str]:
    """A file srlab did not write: spandrel detects the architecture (or says what it found).
    -> (net, the config that rebuilds it, no training config, "spandrel")."""
    from srlab.nets.spandrel_arch import from_state_dict

    net = from_state_dict(obj, f"model file {path}")
    config = net.rebuild_config()
    if config is None:
        raise SrlabError(f"model file {path} is a {net.arch} model whose hyper-parameters a config "
                         "cannot hold; srlab cannot rebuild it")
    return net, config, None, "spandrel"


def load_net(path: str | Path, trust_checkpoint: bool = False) -> tuple[nn.Module, dict]:
    """Rebuild the SR net stored in `path` -> (net on CPU in eval mode, info).

    info: {"path", "source": "checkpoint" | "export" | "spandrel", "scale", "net_config", "srlab_config"
    (the training config, None for exported files)}. User problems raise `SrlabError`.
    """
    path = Path(path)
    if not path.is_file():
        raise SrlabError(f"checkpoint {path} not found: pass ckpt_path=<a .ckpt from srlab-train "
                         "or a .srlab.pt from srlab-export>")
    if path.suffix == ".safetensors":
        obj = _load_safetensors(path)
    else:
        try:
            obj = _torch_load(path, trust_checkpoint)
        except SrlabError as e:
            if "trust_checkpoint" not in str(e):
                raise
            obj = _spandrel_restricted(path, e)  # a community .pth with pickled extras
    if not isinstance(obj, dict) or "format" in obj or "srlab_config" in obj:
        net_cfg, state_dict, train_cfg, source = _net_parts(obj, path)
        # `net.weights` (the authors' released file, srlab/nets/official_weights.py) only seeded
        # training; the state dict below replaces it, so the file need not exist where this loads.
        net_cfg = {k: v for k, v in net_cfg.items() if k != "weights"}
        # spandrel nets: no probe backward for unused parameters, nothing trains here
        spandrel_net = str(net_cfg.get("_target_", "")).endswith("SpandrelNet")
        net = instantiate({**net_cfg, "freeze_unused": False} if spandrel_net else net_cfg)
    else:  # a file srlab did not write: spandrel builds the net with its weights
        net, net_cfg, train_cfg, source = _spandrel_net(obj, path)
        state_dict = net.state_dict()
    if not isinstance(net, nn.Module):
        raise SrlabError(f"the net config in {path} builds a {type(net).__name__}, not a torch module")
    expected = net.state_dict()
    if expected and not state_dict:
        raise SrlabError(f"checkpoint {path} holds no weights for the net (no 'net.' keys in its state_dict)")
    missing = sorted(set(expected) - set(state_dict))
    unexpected = sorted(set(state_dict) - set(expected))
    if missing or unexpected:
        example = (missing or unexpected)[0]
        raise SrlabError(f"weights in {path} do not fit the net its config builds: {len(missing)} missing, "
                         f"{len(unexpected)} unexpected keys (e.g. {example!r})")
    try:
        net.load_state_dict(state_dict)
    except RuntimeError as e:  # shape mismatch: the first line names the tensor
        reason = str(e).strip().splitlines()[-1].strip()
        raise SrlabError(f"weights in {path} do not fit the net its config builds: {reason}") from None
    net.eval()
    scale = int(getattr(net, "scale", None) or (train_cfg or {}).get("scale") or obj.get("scale") or 0)
    if scale < 1:
        raise SrlabError(f"cannot tell the scale of the net in {path}: its net has no `scale` attribute")
    info = {"path": str(path), "source": source, "scale": scale, "net_config": net_cfg,
            "srlab_config": train_cfg}
    return net, info
