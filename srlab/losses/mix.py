"""A loss is a weighted sum of named terms, chosen in config.

`loss.terms.<name> = {weight, fn}`: the mix returns the weighted total (what is optimised)
and every term's unweighted value, so the approach can log `train/loss/<name>` for each.
Terms with weight 0 are still computed and logged (handy to watch a metric you don't train
on); terms are kept in an `nn.ModuleDict` so a loss with buffers (perceptual) follows the
model to its device.
"""
from collections.abc import Mapping

import torch
from torch import nn

from srlab.config.compose import CONFIG_DIR
from srlab.errors import SrlabError

TERMS_DIR = CONFIG_DIR / "loss" / "terms"


def default_term_fn(name: str, overrides: Mapping | None = None) -> nn.Module:
    """Instantiate the fn of configs/loss/terms/<name>.yaml (with `overrides` merged in)."""
    from hydra.utils import instantiate
    from omegaconf import OmegaConf

    path = TERMS_DIR / f"{name}.yaml"
    if not path.is_file():
        known = ", ".join(sorted(p.stem for p in TERMS_DIR.glob("*.yaml")))
        raise SrlabError(f"loss term '{name}' has no fn and no configs/loss/terms/{name}.yaml: "
                         f"use one of {known}, or give loss.terms.{name}.fn._target_")
    fn_cfg = OmegaConf.load(path).fn
    if overrides:
        fn_cfg = OmegaConf.merge(fn_cfg, OmegaConf.create(dict(overrides)))
    return instantiate(fn_cfg)


class LossMix(nn.Module):
    def __init__(self, terms: Mapping):
        super().__init__()
        if not terms:
            raise SrlabError("the loss mix has no terms: choose one, e.g. loss=mse")
        self.fns = nn.ModuleDict()
        self.weights: dict[str, float] = {}
        for name, term in terms.items():
            term = term or {}
            fn = term.get("fn")
            if not isinstance(fn, nn.Module):  # absent, or only some fn.* keys given
                fn = default_term_fn(name, fn)
            self.fns[name] = fn
            self.weights[name] = float(term.get("weight", 1.0))

    def forward(self, sr: torch.Tensor, hr: torch.Tensor) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        values = {name: fn(sr, hr) for name, fn in self.fns.items()}
        total = sum(self.weights[name] * value for name, value in values.items())
        return total, values
