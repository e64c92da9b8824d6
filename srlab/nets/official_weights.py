"""Load the weights the papers' authors published into srlab's nets: `net.weights=<file>`.

ESRGAN, RCAN and SwinIR each released trained models as PyTorch state dicts whose key names
follow the authors' code, not srlab's. Each net gives a list of (regex, replacement) rules
that turn the authors' names into its own (`None` drops a key: constants such as RCAN's
MeanShift convs or SwinIR's precomputed attention masks, which srlab rebuilds itself), and
may fold a convention difference into the weights afterwards (`adapt`, e.g. RCAN's [0, 255]
pixel range). A file already in srlab's names (an exported state dict) loads unchanged.

Releases wrap the dict differently: BasicSR saves {"params": ...} or {"params_ema": ...}
(the EMA is what BasicSR evaluates, so it is preferred), others {"state_dict": ...} or the
bare dict; DataParallel adds "module." to every key. Files open with `weights_only=True`
(no code runs). Anything that does not fit is one `SrlabError` line naming a key.
"""
from __future__ import annotations

import re
import warnings
from collections.abc import Callable, Iterable
from pathlib import Path

import torch
from torch import nn

from srlab.errors import SrlabError

WRAPPERS = ("params_ema", "params", "state_dict", "model")
Rules = Iterable[tuple[str, str | None]]


def read_state_dict(path: str | Path) -> dict[str, torch.Tensor]:
    """The tensors of a released weights file, unwrapped and without DataParallel's prefix."""
    path = Path(str(path)).expanduser()
    if not path.is_file():
        raise SrlabError(f"net.weights={path} not found: download the authors' file first (see docs/recipes.md, "
                         "'Published weights') and pass its path")
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            obj = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as e:
        reason = " ".join(str(e).split())[:160] or type(e).__name__
        raise SrlabError(f"net.weights={path} is not a readable PyTorch state dict ({reason})") from None
    while isinstance(obj, dict) and not any(isinstance(v, torch.Tensor) for v in obj.values()):
        inner = next((obj[k] for k in WRAPPERS if isinstance(obj.get(k), dict)), None)
        if inner is None:
            break
        obj = inner
    if not isinstance(obj, dict) or not obj:
        raise SrlabError(f"net.weights={path} holds no state dict (looked inside {', '.join(WRAPPERS)})")
    return {k.removeprefix("module."): v for k, v in obj.items() if isinstance(v, torch.Tensor)}


def rename(state_dict: dict[str, torch.Tensor], rules: Rules) -> dict[str, torch.Tensor]:
    """Apply the first matching rule to each key; keys no rule matches are kept as they are."""
    compiled = [(re.compile(pattern), repl) for pattern, repl in rules]
    out = {}
    for key, value in state_dict.items():
        for pattern, repl in compiled:
            if pattern.search(key):
                key = None if repl is None else pattern.sub(repl, key)
                break
        if key is not None:
            out[key] = value
    return out


def load_official(net: nn.Module, path: str | Path, rules: Rules,
                  adapt: Callable[[dict[str, torch.Tensor]], None] | None = None) -> None:
    """Load the authors' file at `path` into `net` (in place), renaming keys with `rules`."""
    raw = read_state_dict(path)
    expected = net.state_dict()
    ours = set(raw) == set(expected)  # already srlab's names: no renaming, no convention change
    state_dict = dict(raw) if ours else rename(raw, rules)
    if not ours and adapt is not None:
        adapt(state_dict)
    missing = sorted(set(expected) - set(state_dict))
    unexpected = sorted(set(state_dict) - set(expected))
    what = f"net.weights={path} does not fit this {type(net).__name__}"
    if missing or unexpected:
        example = f"missing {missing[0]!r}" if missing else f"unexpected {unexpected[0]!r}"
        raise SrlabError(f"{what}: {len(missing)} missing, {len(unexpected)} unexpected keys (e.g. {example}); "
                         "are scale and the net's size options those the file was trained with?")
    for key, value in state_dict.items():
        if value.shape != expected[key].shape:
            raise SrlabError(f"{what}: {key} has shape {tuple(value.shape)} in the file, "
                             f"{tuple(expected[key].shape)} in the net; check scale and the size options")
    net.load_state_dict(state_dict)
