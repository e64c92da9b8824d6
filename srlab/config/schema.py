"""The config check that runs before anything is built: one line per bad value.

Why not a second schema (dataclasses in Hydra's ConfigStore)? srlab's config *is* a tree of
`_target_` nodes, and the shape of each node is already written down once: the signature
of the class or function it instantiates (`srlab.nets.edsr.EDSR`, `torch.optim.Adam`,
`pytorch_lightning.Trainer`, ...). A dataclass per node would repeat every signature and
drift from it; nets added tomorrow would need a schema entry too. So the schema is read
from the signatures themselves, here, in one place:

- unknown keys: a key the callable does not accept (with the closest valid names);
- wrong types: a value that cannot be what the parameter's annotation says (a string where
  a number goes, a list where a scalar goes, a value outside a `Literal`). Annotations we
  cannot judge (a class that may convert its argument) are trusted, never guessed;
- value ranges the types cannot express: `RANGES` below, one row per rule;
- values that only the net can judge (is the scale supported, is the patch large enough):
  `check_net` builds the net and runs one LR patch through it, before any data is read.

Every failure is an `SrlabError` naming the key, the value and what is expected.
"""
from __future__ import annotations

import difflib
import inspect
import types
import typing
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path, PurePath

import torch
from omegaconf import DictConfig, OmegaConf

from srlab.errors import SrlabError

_UNKNOWN = object()  # "cannot judge": never an error

# Modules that the by-role layout moved (srlab 0.1 -> 0.2) and that configs name by
# `_target_`. Nets, losses, data and approaches did not move, so checkpoints and exports
# (which instantiate only those) load unchanged; a whole old config re-run gets this hint.
MOVED_MODULES = {
    "srlab.callbacks": "srlab.training.callbacks",
    "srlab.faults": "srlab.training.faults",
    "srlab.ema": "srlab.training.ema",
    "srlab.speed": "srlab.training.speed",
    "srlab.nonfinite": "srlab.training.nonfinite",
    "srlab.metrics": "srlab.evaluation.metrics",
}


def _locate(target: str, key: str) -> Callable:
    """The object at a dotted path: the longest importable module, then attributes."""
    import importlib

    parts = target.split(".")
    for i in range(len(parts) - 1, 0, -1):
        module = ".".join(parts[:i])
        try:
            obj = importlib.import_module(module)
        except ModuleNotFoundError as e:
            if e.name and not module.startswith(e.name):
                raise  # the module exists but imports something missing: a real error
            continue
        try:
            for attr in parts[i:]:
                obj = getattr(obj, attr)
            return obj
        except AttributeError:
            break
    for old, new in MOVED_MODULES.items():  # a config saved by srlab 0.1, re-run as it is
        if target.startswith(old + "."):
            raise SrlabError(f"{key}={target}: this module moved in srlab's by-role layout; "
                             f"use {new}{target[len(old):]}")
    raise SrlabError(f"{key}={target}: no such class or function can be imported; "
                     "check the spelling (a module path such as srlab.nets.edsr.EDSR)")


def _signature(fn: Callable) -> tuple[dict, bool, dict]:
    """(parameters by name, accepts any **kwargs, resolved type hints). A class whose
    __init__ passes **kw on to its base (SamplesDataModule -> SRDataModule) gets the base's
    parameters too, so they are checked rather than waved through."""
    inits = [c.__dict__["__init__"] for c in fn.__mro__ if "__init__" in c.__dict__] if inspect.isclass(fn) else [fn]
    params, hints = {}, {}
    for init in inits:
        try:
            own = inspect.signature(init).parameters
        except (TypeError, ValueError):
            return params, True, hints
        try:
            own_hints = typing.get_type_hints(init)
        except Exception:  # noqa: BLE001 - unresolvable forward refs: judge nothing
            own_hints = {}
        for name, p in own.items():
            if p.kind not in (inspect.Parameter.VAR_KEYWORD, inspect.Parameter.VAR_POSITIONAL):
                params.setdefault(name, p)
                if name in own_hints:
                    hints.setdefault(name, own_hints[name])
        kw = [n for n, p in own.items() if p.kind is inspect.Parameter.VAR_KEYWORD]
        if not kw:
            return params, False, hints
        if not _forwards_to_base(init, kw[0]):
            return params, True, hints  # **kwargs used for something else (wandb.init's options)
    return params, True, hints


def _forwards_to_base(init: Callable, kwname: str) -> bool:
    """Does this __init__ hand its **kwargs to super().__init__ and nowhere else? (Two
    mentions: its signature and that call.)"""
    import re

    try:
        source = inspect.getsource(init)
    except (OSError, TypeError):
        return False
    calls = re.findall(r"\*\*" + kwname + r"\b", source)
    return len(calls) == 2 and re.search(r"super\(\)\.__init__\([^)]*\*\*" + kwname + r"\b", source) is not None


def _is_number(v) -> bool:
    return isinstance(v, (int, float)) and not isinstance(v, bool)


def _matches(value, ann):
    """True / False when the annotation can judge a config value, else _UNKNOWN."""
    if ann is typing.Any or ann is inspect.Parameter.empty or isinstance(ann, (str, typing.TypeVar)):
        return _UNKNOWN
    origin, args = typing.get_origin(ann), typing.get_args(ann)
    if origin is typing.Union or origin is types.UnionType:
        verdicts = [_matches(value, a) for a in args]
        return True if True in verdicts else (_UNKNOWN if _UNKNOWN in verdicts else False)
    if origin is typing.Literal:
        return value in args
    if isinstance(value, dict) and "_target_" in value:
        return _UNKNOWN  # an object built from its own node (checked there)
    if ann is bool:
        return isinstance(value, bool)
    if ann is int:
        return (isinstance(value, int) and not isinstance(value, bool)) or (
            isinstance(value, float) and value.is_integer())
    if ann is float:
        return _is_number(value)
    if ann is str:
        return isinstance(value, str)
    if ann is type(None):
        return value is None
    if ann is torch.Tensor:
        return _is_number(value)  # a config can only hold the number a tensor would carry
    if isinstance(ann, type) and issubclass(ann, PurePath):
        return isinstance(value, str)
    base = origin or ann
    if base in (list, tuple, Sequence, set, frozenset):
        if not isinstance(value, (list, tuple)):
            return False
        if base is tuple and len(args) == 2 and args[1] is Ellipsis:
            args = args[:1]
        if base is tuple and args and args[-1] is not Ellipsis and len(args) > 1:
            return _UNKNOWN if len(args) == len(value) else False
        if len(args) == 1:
            verdicts = [_matches(v, args[0]) for v in value]
            return False if False in verdicts else (True if verdicts else _UNKNOWN)
        return True
    if base in (dict, Mapping):
        return isinstance(value, dict)
    return _UNKNOWN


def describe(ann) -> str:
    origin, args = typing.get_origin(ann), typing.get_args(ann)
    if origin is typing.Union or origin is types.UnionType:
        parts = list(dict.fromkeys(describe(a) for a in args))  # float | Tensor: "a number" once
        return " or ".join(parts)
    if origin is typing.Literal:
        return "one of " + ", ".join(map(repr, args))
    if ann is type(None):
        return "null"
    if ann in (float, torch.Tensor):
        return "a number"
    if ann is int:
        return "an integer"
    if origin in (list, tuple, Sequence):
        return "a list" + (f" of {describe(args[0])}" if len(args) == 1 else "")
    return getattr(ann, "__name__", str(ann))


def check_targets(node, key: str = "") -> None:
    """Every `_target_` node of a resolved config against its callable's signature."""
    if isinstance(node, list):
        for i, item in enumerate(node):
            check_targets(item, f"{key}[{i}]")
        return
    if not isinstance(node, dict):
        return
    if "_target_" in node:
        fn = _locate(str(node["_target_"]), f"{key}._target_" if key else "_target_")
        params, var_kw, hints = _signature(fn)
        name = getattr(fn, "__qualname__", str(fn))
        delegate = getattr(fn, "config_signature", None)  # a wrapper whose **kwargs go to another class
        if var_kw and callable(delegate):
            inner = delegate(node)
            inner_params, var_kw, inner_hints = _signature(inner)
            params, hints = {**params, **inner_params}, {**inner_hints, **hints}
            name = f"{name} ({getattr(inner, '__qualname__', inner)})"
        for k, value in node.items():
            if k.startswith("_"):
                continue
            full = f"{key}.{k}" if key else k
            if k not in params and not var_kw:
                close = difflib.get_close_matches(k, params, n=1)
                hint = f"did you mean {close[0]}?" if close else \
                    "it takes " + ", ".join(p for p in params if p not in ("self", "args", "kwargs"))
                raise SrlabError(f"{full}: {name} has no parameter '{k}'; {hint}")
            if isinstance(value, str) and value == "???":
                continue  # reported as a missing value, by name, where it is read
            if k in hints and _matches(value, hints[k]) is False:
                raise SrlabError(f"{full}={value!r}: {name} expects {describe(hints[k])} here")
    for k, value in node.items():
        if not str(k).startswith("_"):
            check_targets(value, f"{key}.{k}" if key else str(k))


def _rule(path: str, ok: Callable, expected: str) -> tuple:
    return path, ok, expected


def _positive(v) -> bool:
    return _is_number(v) and v > 0


# Value ranges the annotations cannot say. A path ending in "*" matches any key with that
# name below the prefix (every optimizer's lr under approach, the critic's included).
RANGES = (
    _rule("data.patch_size", lambda v: isinstance(v, int) and v >= 1, "a positive integer, a multiple of scale"),
    _rule("data.train_dir", lambda v: v is not None and Path(str(v)).expanduser().is_dir(),
          "an existing folder of HR images (or an srlab-prepare store)"),
    _rule("data.val_dir", lambda v: v is None or Path(str(v)).expanduser().is_dir(),
          "null or an existing folder of HR images"),
    _rule("data.train_lr_dir", lambda v: v is None or Path(str(v)).expanduser().is_dir(),
          "null (a paired store) or an existing folder of LR images"),
    _rule("data.val_lr_dir", lambda v: v is None or Path(str(v)).expanduser().is_dir(),
          "null or an existing folder of LR images"),
    _rule("approach.*lr", lambda v: _is_number(v) and v >= 0, "a number >= 0, e.g. 1e-4 (0 freezes the net)"),
    _rule("approach.*weight_decay", lambda v: _is_number(v) and v >= 0, "a number >= 0"),
    _rule("approach.*betas", lambda v: isinstance(v, list) and len(v) == 2
          and all(_is_number(b) and 0 <= b < 1 for b in v), "two numbers in [0, 1), e.g. [0.9, 0.99]"),
    _rule("approach.ema.decay", lambda v: _is_number(v) and 0 <= v < 1, "0 (off) or a number in (0, 1), e.g. 0.999"),
    _rule("approach.max_nonfinite_skips", lambda v: v is None or (isinstance(v, int) and v >= 0),
          "null (no check) or an integer >= 0"),
    _rule("approach.kl_weight", lambda v: _is_number(v) and v >= 0, "a number >= 0"),
    _rule("approach.adv_weight", lambda v: _is_number(v) and v >= 0, "a number >= 0"),
    _rule("data.batch_size", lambda v: isinstance(v, int) and v >= 1, "an integer >= 1"),
    _rule("data.num_workers", lambda v: v is None or (isinstance(v, int) and v >= 0), "null or an integer >= 0"),
    _rule("data.train_downscales", lambda v: v is None or (isinstance(v, list)
          and all(_is_number(f) and 0 < f < 1 for f in v)), "a list of factors in (0, 1), e.g. [0.8, 0.6]"),
    _rule("data.train_repeats", lambda v: isinstance(v, int) and v >= 1, "an integer >= 1"),
    _rule("trainer.max_steps", lambda v: isinstance(v, int) and (v >= 1 or v == -1), "an integer >= 1 (or -1: no limit)"),
    _rule("trainer.val_check_interval", lambda v: v is None or _positive(v), "a positive number of steps (or a fraction of an epoch)"),
    _rule("trainer.log_every_n_steps", lambda v: isinstance(v, int) and v >= 1, "an integer >= 1"),
    _rule("trainer.gradient_clip_val", lambda v: v is None or (_is_number(v) and v >= 0), "null or a number >= 0"),
    _rule("seed", lambda v: isinstance(v, int) and not isinstance(v, bool), "an integer"),
    _rule("speed.channels_last", lambda v: v in (True, False, "gpu"), "true, false or gpu"),
    _rule("speed.compile", lambda v: v in (True, False, "gpu"), "true, false or gpu"),
    _rule("speed.cuda_graph", lambda v: v in (True, False, "gpu"), "true, false or gpu"),
    _rule("loss.terms.*weight", lambda v: _is_number(v) and v >= 0, "a number >= 0"),
)


def _find(node, parts: list[str], key: str):
    """(full key, value) pairs of `node` at `parts`; "*name" matches `name` at any depth."""
    if not parts:
        yield key, node
        return
    head, rest = parts[0], parts[1:]
    if not isinstance(node, dict):
        return
    if head.startswith("*"):
        for k, v in node.items():
            full = f"{key}.{k}" if key else str(k)
            if k == head[1:]:
                yield full, v
            elif isinstance(v, (dict, list)) and not str(k).startswith("_"):
                yield from _find(v, parts, full)
        return
    if head in node:
        yield from _find(node[head], rest, f"{key}.{head}" if key else head)


def check_ranges(cfg: dict) -> None:
    for path, ok, expected in RANGES:
        for key, value in _find(cfg, path.split("."), ""):
            if isinstance(value, str) and value == "???":
                continue
            if not ok(value):
                raise SrlabError(f"{key}={value!r}: expected {expected}")


def _check_missing(node, key: str) -> None:
    if isinstance(node, dict):
        for k, v in node.items():
            _check_missing(v, f"{key}.{k}" if key else str(k))
    elif isinstance(node, list):
        for i, v in enumerate(node):
            _check_missing(v, f"{key}[{i}]")
    elif isinstance(node, str) and node == "???":
        raise SrlabError(f"missing value for {key}: set it on the command line, e.g. {key}=<value>")


def check_config(cfg: DictConfig) -> dict:
    """Types, unknown keys and ranges of a composed config; returns it resolved."""
    try:
        resolved = OmegaConf.to_container(cfg, resolve=True, throw_on_missing=False)
    except Exception as e:  # noqa: BLE001 - an interpolation that cannot resolve
        raise SrlabError(f"config cannot be resolved: {str(e).splitlines()[0]}") from None
    _check_missing(resolved, "")
    check_ranges(resolved)  # first: these name the keys users set (trainer.max_steps, not T_max)
    check_targets(resolved)
    return resolved


def build_net(net_cfg) -> torch.nn.Module:
    """Instantiate the net; a value its constructor refuses (a scale it has no upsampler
    for, a width its heads cannot divide) is one line naming the net."""
    from hydra.errors import InstantiationException
    from hydra.utils import instantiate

    try:
        return instantiate(net_cfg)
    except (InstantiationException, ValueError, TypeError, AssertionError) as e:
        cause = e.__cause__ or e
        if isinstance(cause, SrlabError):
            raise cause from None
        message = str(cause).strip().splitlines()[-1] if str(cause).strip() else type(cause).__name__
        raise SrlabError(f"net ({net_cfg.get('_target_')}) cannot be built with these values: {message}") from None


def check_net(net: torch.nn.Module, scale: int, patch_size: int | None, net_name: str = "net") -> None:
    """Run one training-sized LR patch through the net (no gradients): a patch too small for
    the net's strides or windows, or an output of the wrong size, is one line now rather
    than a shape error in the first training step."""
    if not patch_size or not any(True for _ in net.parameters()):
        return
    lr_size = patch_size // scale
    try:
        was_training = net.training
        with torch.no_grad():
            out = net.eval()(torch.zeros(1, 3, lr_size, lr_size))
        net.train(was_training)
    except Exception as e:  # noqa: BLE001 - any failure here is the patch size's doing
        raise SrlabError(f"data.patch_size={patch_size} (LR {lr_size} px at scale {scale}) is too small "
                         f"for {net_name}: {str(e).splitlines()[0]}; use a larger data.patch_size") from None
    if tuple(out.shape[-2:]) != (lr_size * scale, lr_size * scale):
        raise SrlabError(f"{net_name} turns a {lr_size} px LR patch into {tuple(out.shape[-2:])} px, "
                         f"not {lr_size * scale}: is scale={scale} supported by this net?")
