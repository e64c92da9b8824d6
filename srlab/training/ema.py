"""Exponential moving average of the net's weights (as BasicSR and neosr keep), for inference.

The average of the last few thousand optimizer steps sits in a flatter, better point than the
last step's weights: a free gain in PSNR at no training cost. srlab validates, picks
`best.ckpt`, evaluates, upscales and exports with the averaged weights (`checkpoint.load_net`
prefers them) and stores them in every checkpoint, so a resumed run continues the average.

decay: the weight of the old average per step (0 = off). Early on, the effective decay is
min(decay, (1 + step) / (10 + step)) (TensorFlow's ExponentialMovingAverage warm-up): with a
plain 0.999, a 800-step CPU run's average would still be mostly the random initialisation.
Updates use the step count kept on the CPU and one fused lerp over all tensors: no device sync.
"""

from __future__ import annotations

import copy

import torch
from torch import nn


class EMA(nn.Module):
    def __init__(self, net: nn.Module, decay: float):
        super().__init__()
        if not 0.0 < decay < 1.0:
            raise ValueError(f"EMA decay must be in (0, 1), got {decay}")
        self.decay = float(decay)
        self.module = copy.deepcopy(net).requires_grad_(False)
        self.updates = 0  # a Python int (no device read), saved as this module's extra state

    def decay_at(self, updates: int) -> float:
        return min(self.decay, (1.0 + updates) / (10.0 + updates))

    @torch.no_grad()
    def update(self, net: nn.Module, weight: torch.Tensor | None = None) -> None:
        """Fold `net`'s current weights in; the first update copies them (init_from included).

        `weight` (a 0-d device tensor holding 1 - decay): the update inside a captured CUDA
        graph (srlab/training/cuda_graph.py), whose caller fills it and counts the update.
        """
        ema_params = list(self.module.parameters())
        params = [p.detach() for p in net.parameters()]
        if weight is not None:  # ema += weight * (p - ema), no Python float baked into a graph
            torch._foreach_add_(ema_params, torch._foreach_mul(torch._foreach_sub(params, ema_params), weight))
        elif self.updates == 0:
            torch._foreach_copy_(ema_params, params)
        else:
            torch._foreach_lerp_(ema_params, params, 1.0 - self.decay_at(self.updates))
        for mine, theirs in zip(self.module.buffers(), net.buffers()):
            mine.copy_(theirs)  # running statistics, constants: the net's own
        if weight is None:
            self.updates += 1

    def get_extra_state(self) -> dict:
        return {"updates": self.updates, "decay": self.decay}

    def set_extra_state(self, state: dict) -> None:
        self.updates = int(state["updates"])

    def forward(self, *args, **kwargs):
        return self.module(*args, **kwargs)
