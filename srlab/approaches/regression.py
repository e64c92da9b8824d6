"""Regression SR: train any net with any loss mix (auto-encoder, U-Net, U-Net + perceptual).

One pass LR -> SR, one optimizer, the weighted loss mix as the objective (each term logged as
`train/loss/<name>`, weighted values under `.../weighted/<name>`). Only `net` is optimised:
modules inside the loss (a frozen VGG) are never handed to the optimizer. Validation,
metrics and checkpoint contents are the shared ones of `SRApproach`.
"""
from collections.abc import Callable
from functools import partial

import torch
from torch import nn

from srlab.approaches.base import SRApproach
from srlab.losses.mix import LossMix
from srlab.training.cuda_graph import GraphedStep


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
        self.graphed: GraphedStep | None = None  # speed.cuda_graph (srlab/training/cuda_graph.py)

    def use_graphed_step(self, capture: bool) -> None:
        """speed.cuda_graph: manual optimization whose step is the (captured) GraphedStep."""
        self.graphed = GraphedStep(self, capture)
        self.automatic_optimization = False

    def graphed_step(self, batch: dict) -> None:
        """Copy the batch in, replay (or run) the step, count it as Lightning would, schedule, log."""
        optimizer = self.optimizers().optimizer
        progress = self.trainer.fit_loop.epoch_loop.manual_optimization.optim_step_progress
        progress.increment_ready()
        total, terms = self.graphed(batch, optimizer)
        progress.increment_completed()
        scheduler = self.lr_schedulers()
        if scheduler is not None and self.scheduler_interval == "step":
            scheduler.step()
            self.graphed.after_schedule(optimizer)
        if self.train_logs_due():  # read back only at the steps that reach a logger
            total, terms = total.detach().clone(), {k: v.detach().clone() for k, v in terms.items()}
            if not self.finite(total, terms):
                from srlab.errors import SrlabError

                raise SrlabError(f"non-finite loss at step {self.global_step} under speed.cuda_graph (a captured "
                                 "step cannot skip its update): resume from last.ckpt with speed.cuda_graph=false")
            self.log_loss("train", total, terms, batch["hr"].shape[0])

    def on_train_epoch_end(self) -> None:
        scheduler = self.lr_schedulers() if self.graphed is not None else None
        if scheduler is not None and self.scheduler_interval == "epoch":
            scheduler.step()
            self.graphed.after_schedule(self.optimizers().optimizer)

    def training_step(self, batch: dict, batch_idx: int) -> torch.Tensor | None:
        if self.graphed is not None:
            return self.graphed_step(batch)
        sr = self.net(batch["lr"])
        total, terms = self.loss(sr, batch["hr"])
        if not self.finite(total, terms):
            return None  # Lightning skips backward and the optimizer step
        self.log_loss("train", total, terms, batch["hr"].shape[0])
        return total

    def configure_optimizers(self):
        optimizer = self.optimizer_factory
        if self.graphed is not None and self.graphed.capture:  # its step counter on the GPU, lr a tensor
            optimizer = partial(self.optimizer_factory, capturable=True)
        return self.build_optimizer(self.net, optimizer, self.scheduler_factory, self.scheduler_interval)
