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

from srlab.errors import SrlabError


class LossMix(nn.Module):
    def __init__(self, terms: Mapping):
        super().__init__()
        if not terms:
            raise SrlabError("the loss mix has no terms: choose one, e.g. loss=mse")
        self.fns = nn.ModuleDict()
        self.weights: dict[str, float] = {}
        for name, term in terms.items():
            if term is None or "fn" not in term or term["fn"] is None:
                raise SrlabError(
                    f"loss term '{name}' has no fn: add it with "
                    f"'+loss/terms@loss.terms.{name}={name}' (see README, 'Loss mixes')"
                )
            if not isinstance(term["fn"], nn.Module):
                raise SrlabError(f"loss term '{name}': fn must be an nn.Module, got {type(term['fn']).__name__}")
            self.fns[name] = term["fn"]
            self.weights[name] = float(term.get("weight", 1.0))

    def forward(self, sr: torch.Tensor, hr: torch.Tensor) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        values = {name: fn(sr, hr) for name, fn in self.fns.items()}
        total = sum(self.weights[name] * value for name, value in values.items())
        return total, values
