"""Building what a file's config names: srlab's own classes only, with plain data only.

An srlab checkpoint or export stores the `_target_` config that rebuilds its net (and a
training checkpoint its degradation, which `srlab-eval eval.degradation=train` rebuilds).
Those configs come from whoever made the file, so Hydra's `instantiate` (which imports and
calls any `module.attr`, nested arguments included) is never used on them. Instead:
- the target must be one of the classes below, an explicit list (a new net is one line);
- every argument must be plain data (numbers, strings, bools, None, lists and dicts of
  them); a nested `_target_`, or any other `_`-key than the top-level `_target_`, is refused;
- one line names the file and the refused target.
Old files keep loading: their nets did not move (tests/fixtures/legacy_v0_1).
"""
from __future__ import annotations

import importlib
import re

from srlab.errors import SrlabError

NETS = frozenset({
    "srlab.nets.autoencoder.AutoEncoder",
    "srlab.nets.bicubic.Bicubic",
    "srlab.nets.cvae_unet.CVAEUNet",
    "srlab.nets.edsr.EDSR",
    "srlab.nets.espcn.ESPCN",
    "srlab.nets.rcan.RCAN",
    "srlab.nets.resshift_unet.ResShiftUNet",
    "srlab.nets.rrdbnet.RRDBNet",
    "srlab.nets.spandrel_arch.SpandrelNet",
    "srlab.nets.srcnn.SRCNN",
    "srlab.nets.swinir.SwinIR",
    "srlab.nets.unet.UNet",
})
DEGRADATIONS = frozenset({
    "srlab.data.degrade.BicubicDegradation",
    "srlab.data.degrade.Crapify",
    "srlab.data.degrade.NoDegradation",
    "srlab.data.realesrgan.RealESRGAN",
})
_KEY = re.compile(r"^[A-Za-z][A-Za-z0-9_]*$")
MAX_DEPTH = 8


def plain_value(value, where: str, depth: int = 0):
    """`value` if it is plain data, else one line naming where it is not."""
    if depth > MAX_DEPTH:
        raise SrlabError(f"{where} is nested deeper than {MAX_DEPTH} levels: not a net config")
    if value is None or isinstance(value, (bool, int, float, str)):
        return value
    if isinstance(value, (list, tuple)):
        return [plain_value(v, f"{where}[{i}]", depth + 1) for i, v in enumerate(value)]
    if isinstance(value, dict):
        if "_target_" in value:
            raise SrlabError(f"{where} names {str(value['_target_'])[:80]!r}: a file's config may not build "
                             "objects inside arguments")
        for k in value:
            if not isinstance(k, str) or k.startswith("_"):
                raise SrlabError(f"{where} has the key {str(k)[:40]!r}: a file's config holds plain values only")
        return {k: plain_value(v, f"{where}.{k}", depth + 1) for k, v in value.items()}
    raise SrlabError(f"{where} is a {type(value).__name__}: a file's config holds plain values only")


def checked_config(cfg, allowed: frozenset[str], what: str, role: str = "net") -> tuple[str, dict]:
    """(target, keyword arguments) of a file's `_target_` config, or one line saying why not."""
    if not isinstance(cfg, dict) or "_target_" not in cfg:
        raise SrlabError(f"{what}: its {role} config is not a `_target_` mapping: not written by srlab")
    target = cfg["_target_"]
    if not isinstance(target, str) or target not in allowed:
        raise SrlabError(f"{what}: its {role} config names {str(target)[:80]!r}, which is not one of srlab's "
                         f"{role} classes: refused (srlab builds nothing else from a file)")
    kwargs = {}
    for key, value in cfg.items():
        if key == "_target_" or key in ("_recursive_", "_convert_"):  # Hydra's flags: meaningless here
            continue
        if not isinstance(key, str) or not _KEY.match(key):
            raise SrlabError(f"{what}: its {role} config has the key {str(key)[:40]!r}: refused")
        kwargs[key] = plain_value(value, f"{what}: {role}.{key}")
    return target, kwargs


def resolve(target: str):
    module_name, _, attr = target.rpartition(".")
    try:
        return getattr(importlib.import_module(module_name), attr)
    except (ImportError, AttributeError) as e:
        raise SrlabError(f"cannot import {target} ({e}); is the srlab version that wrote the file installed?") from None


def build(cfg, allowed: frozenset[str], what: str, role: str = "net", **overrides):
    """The object a file's config describes, built from srlab's own classes only."""
    target, kwargs = checked_config(cfg, allowed, what, role)
    try:
        return resolve(target)(**{**kwargs, **overrides})
    except TypeError as e:  # an argument the class does not take
        raise SrlabError(f"{what}: its {role} config does not fit {target} ({e})") from None
