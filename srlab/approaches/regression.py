"""Regression SR: train any net with any loss mix (auto-encoder, U-Net, U-Net + perceptual).

One pass LR -> SR, one optimizer, the weighted loss mix as the objective (each term logged as
`train/loss/<name>`, weighted values under `.../weighted/<name>`). Only `net` is optimised:
modules inside the loss (a frozen VGG) are never handed to the optimizer. Validation,
metrics and checkpoint contents are the shared ones of `SRApproach`.
"""
from collections.abc import Callable

import torch
from torch import nn

from srlab.approaches.base import SRApproach
from srlab.losses.mix import LossMix


class RegressionSR(SRApproach):
    def __init__(
        self,
        net: nn.Module,
        loss: LossMix,
        optimizer: Callable,
        scheduler: Callable | None = None,
        scheduler_interval: str = "step",
        scale: int = 4,
        ema: dict | None = None,
        max_nonfinite_skips: int | None = 5,
    ):
        super().__init__(net, loss, scale, ema, max_nonfinite_skips)
        self.optimizer_factory = optimizer
        self.scheduler_factory = scheduler
        self.scheduler_interval = scheduler_interval

    def training_step(self, batch: dict, batch_idx: int) -> torch.Tensor | None:
        sr = self.net(batch["lr"])
        total, terms = self.loss(sr, batch["hr"])
        if not self.finite(total, terms):
            return None  # Lightning skips backward and the optimizer step
        self.log_loss("train", total, terms, batch["hr"].shape[0])
        return total

    def configure_optimizers(self):
        return self.build_optimizer(self.net, self.optimizer_factory, self.scheduler_factory, self.scheduler_interval)
