"""Regression SR: train any net with any loss mix (auto-encoder, U-Net, U-Net + perceptual).

The LightningModule owns what is common to every approach that maps LR -> SR in one pass:
the loss mix (each term logged as `train/loss/<name>` and `val/loss/<name>`, weighted
values under `.../weighted/<name>`), the paper-convention validation metrics for SR *and*
for the bicubic upscale of the same LR (`val/bicubic_*`) so every run shows its gain, and
the optimizer/scheduler built from `_partial_` configs. Only `net` is optimised: modules
inside the loss (a frozen VGG) are never handed to the optimizer.
"""
from collections.abc import Callable

import pytorch_lightning as pl
import torch
from torch import nn

from srlab.imresize import imresize
from srlab.losses.mix import LossMix
from srlab.metrics import SRMetrics


class RegressionSR(pl.LightningModule):
    def __init__(
        self,
        net: nn.Module,
        loss: LossMix,
        optimizer: Callable,
        scheduler: Callable | None = None,
        scheduler_interval: str = "step",
        scale: int = 4,
    ):
        super().__init__()
        self.net = net
        self.loss = loss
        self.optimizer_factory = optimizer
        self.scheduler_factory = scheduler
        self.scheduler_interval = scheduler_interval
        self.scale = int(scale)
        self.val_sr = SRMetrics(border=self.scale)
        self.val_bicubic = SRMetrics(border=self.scale)

    def forward(self, lr: torch.Tensor) -> torch.Tensor:
        return self.net(lr)

    def _log_loss(self, stage: str, total: torch.Tensor, terms: dict, batch_size: int) -> None:
        on_step = stage == "train"
        kw = dict(on_step=on_step, on_epoch=not on_step, batch_size=batch_size, sync_dist=not on_step)
        self.log(f"{stage}/loss", total, prog_bar=on_step, **kw)
        for name, value in terms.items():
            self.log(f"{stage}/loss/{name}", value, **kw)
            self.log(f"{stage}/loss/weighted/{name}", self.loss.weights[name] * value, **kw)

    def training_step(self, batch: dict, batch_idx: int) -> torch.Tensor:
        sr = self.net(batch["lr"])
        total, terms = self.loss(sr, batch["hr"])
        self._log_loss("train", total, terms, batch["hr"].shape[0])
        return total

    def validation_step(self, batch: dict, batch_idx: int) -> dict:
        lr, hr = batch["lr"], batch["hr"]
        sr = self.net(lr)
        total, terms = self.loss(sr, hr)
        self._log_loss("val", total, terms, hr.shape[0])
        bicubic = imresize(lr, scale=self.scale)
        self.val_sr.update(sr, hr, batch.get("gray"))
        self.val_bicubic.update(bicubic, hr, batch.get("gray"))
        # Returned for the sample-panel callback (LR-bicubic | SR | HR).
        return {"sr": sr.detach().clamp(0, 1), "bicubic": bicubic.clamp(0, 1)}

    def on_validation_epoch_end(self) -> None:
        sr, bicubic = self.val_sr.compute(), self.val_bicubic.compute()
        self.log_dict({f"val/{k}": v for k, v in sr.items()}, prog_bar=False)
        self.log_dict({f"val/bicubic_{k}": v for k, v in bicubic.items()})
        self.log("val/gain_psnr_y", sr["psnr_y"] - bicubic["psnr_y"], prog_bar=True)
        self.val_sr.reset()
        self.val_bicubic.reset()

    def configure_optimizers(self):
        params = [p for p in self.net.parameters() if p.requires_grad]
        optimizer = self.optimizer_factory(params=params)
        if self.scheduler_factory is None:
            return optimizer
        scheduler = self.scheduler_factory(optimizer=optimizer)
        return {"optimizer": optimizer, "lr_scheduler": {"scheduler": scheduler, "interval": self.scheduler_interval}}

    def on_save_checkpoint(self, checkpoint: dict) -> None:
        # Set by srlab-train: lets srlab-eval / srlab-upscale rebuild the net with no overrides.
        if getattr(self, "srlab_config", None) is not None:
            checkpoint["srlab_config"] = self.srlab_config
