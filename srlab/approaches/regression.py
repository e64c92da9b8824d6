"""Regression SR: train any net with any loss mix (auto-encoder, U-Net, U-Net + perceptual).

One pass LR -> SR, one optimizer, the weighted loss mix as the objective (each term logged as
`train/loss/<name>`, weighted values under `.../weighted/<name>`). Only `net` is optimised:
modules inside the loss (a frozen VGG) are never handed to the optimizer. Validation,
metrics and checkpoint contents are the shared ones of `SRApproach`.
"""
import logging
from collections.abc import Callable

import torch
from torch import nn

from srlab.approaches.base import SRApproach
from srlab.losses.mix import LossMix
from srlab.training.cuda_graph import GraphedStep, capturable_optimizer, distributed_reason, set_capturable
from srlab.training.nonfinite import graph_nonfinite

log = logging.getLogger(__name__)
CHECK_EVERY = 50  # steps between NaN checks of a captured run that never logs (log_every_n_steps=0)


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

    def setup(self, stage: str) -> None:
        # the built trainer knows the strategy and world size the config only hints at; the
        # optimizer is configured after this hook, so it is built for the step that will run
        reason = distributed_reason(self.trainer) if self.graphed is not None else None
        if reason:
            log.info("speed.cuda_graph: runs eager: %s", reason)
            self.graphed, self.automatic_optimization = None, True

    def graphed_step(self, batch: dict) -> None:
        """Copy the batch in, replay (or run) the step, count it as Lightning would, schedule, log."""
        optimizer = self.optimizers().optimizer
        progress = self.trainer.fit_loop.epoch_loop.manual_optimization.optim_step_progress
        progress.increment_ready()
        out = self.graphed(batch, optimizer)
        progress.increment_completed()
        scheduler = self.lr_schedulers()
        if scheduler is not None and self.scheduler_interval == "step":
            scheduler.step()
            self.graphed.after_schedule(optimizer)
        # one device read per logging interval: a NaN costs at most the steps of one interval
        if self.global_step % (self.trainer.log_every_n_steps or CHECK_EVERY) == 0:
            self.check_graph()
        if out is not None and self.train_logs_due():  # read back only at the steps that reach a logger
            total, terms = out[0].clone(), {k: v.clone() for k, v in out[1].items()}  # a replay overwrites them
            self.log_loss("train", total, terms, batch["hr"].shape[0])

    def check_graph(self) -> None:
        """Raise NonFiniteState when a captured step since the last check had a NaN/Inf loss."""
        graphed = self.graphed
        if graphed is None:
            return
        if graphed.poisoned():
            raise graph_nonfinite(graphed.checked_step, self.global_step, self.trainer)
        graphed.replays, graphed.checked_step = 0, self.global_step

    def on_train_start(self) -> None:
        super().on_train_start()
        # optimizers are restored from a checkpoint by now: step the way this run steps
        capturable = self.graphed is not None and self.graphed.capture and self.device.type == "cuda"
        for optimizer in self.trainer.optimizers:
            set_capturable(optimizer, capturable)
        if self.graphed is not None:
            self.graphed.checked_step = self.global_step

    def on_save_checkpoint(self, checkpoint: dict) -> None:
        super().on_save_checkpoint(checkpoint)
        self.check_graph()  # never a NaN state over the last good file (one device read per save)

    def on_train_end(self) -> None:
        self.check_graph()

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
        def build(factory):
            return self.build_optimizer(self.net, factory, self.scheduler_factory, self.scheduler_interval)

        graphed = self.graphed
        if graphed is None or not graphed.capture or self.device.type != "cuda":
            return build(self.optimizer_factory)
        config, reason = capturable_optimizer(build, self.optimizer_factory)  # its step counter on the GPU
        if reason:
            graphed.fall_back(reason)
        return config
