"""Diffusion SR (approach=diffusion): ResShift's residual shifting from the bicubic image.

Training (Yue et al. 2023, eq. 3 and their `training_losses` with START_X): per image a step
t ~ U{1..T} and noise eps; x_t = x0 + eta_t (y0 - x0) + kappa sqrt(eta_t) eps with x0 the HR
patch and y0 the MATLAB-bicubic upsampling of its LR, both in [-1, 1]; the net predicts x0
from (x_t, y0, t) and the `loss` mix (L2 by default, any term: + perceptual...) compares the
prediction with the HR patch in [0, 1]. The schedule and sampler are in
`srlab.nets.resshift_unet` (equations and sources in its docstring).

Validation measures one sample per image with the shared SR metrics (`val/psnr_y` is a sample
drawn from seed 0, not a mean), and the measures of stochastic SR on `val_samples` draws
(srlab.evaluation.stochastic): `val/mean_psnr_y`, `val/lr_psnr`, `val/sample_diversity`,
`val/sample_diversity_textured`; the panels get the draws and the std map.
`approach.steps`, `kappa`, `eta_power` and `sample_steps` reach the net through its config
(configs/net/resshift_unet.yaml), so a checkpoint samples with the schedule it trained with.
"""
from collections.abc import Callable

import torch
from torch import nn

from srlab.approaches.regression import RegressionSR
from srlab.approaches.stochastic_validation import log_stochastic
from srlab.errors import SrlabError
from srlab.losses.mix import LossMix
from srlab.ops.imresize import imresize


class DiffusionSR(RegressionSR):
    trains_denoiser = True

    def __init__(
        self,
        net: nn.Module,
        loss: LossMix,
        optimizer: Callable,
        scheduler: Callable | None = None,
        scheduler_interval: str = "step",
        steps: int = 15,
        kappa: float = 2.0,
        eta_power: float = 0.3,
        sample_steps: int | None = None,
        val_samples: int = 8,
        scale: int = 4,
        ema: dict | None = None,
        max_nonfinite_skips: int | None = 5,
    ):
        if not hasattr(net, "q_sample"):
            raise SrlabError(f"approach=diffusion needs a denoiser with a timestep input (net=resshift_unet), "
                             f"not {type(net).__name__}")
        given = (int(steps), float(kappa), int(sample_steps or steps))
        if (net.steps, net.kappa, net.sample_steps) != given:
            raise SrlabError(f"approach.steps/kappa/sample_steps={given} differ from the net's "
                             f"{(net.steps, net.kappa, net.sample_steps)}: set them under approach (the net reads them)")
        if int(val_samples) == 1:
            raise SrlabError("approach.val_samples=1: use 0 (off) or >= 2 draws (a spread needs two)")
        super().__init__(net, loss, optimizer, scheduler, scheduler_interval, scale, ema, max_nonfinite_skips)
        self.val_samples = int(val_samples)

    def training_step(self, batch: dict, batch_idx: int) -> torch.Tensor | None:
        lr, hr = batch["lr"], batch["hr"]
        x0, y0 = hr * 2 - 1, imresize(lr, scale=self.scale) * 2 - 1
        t = torch.randint(self.net.steps, (hr.shape[0],), device=hr.device)
        x_t = self.net.q_sample(x0, y0, t, torch.randn_like(x0))
        pred = (self.net.predict_x0(x_t, y0, t) + 1) / 2
        total, terms = self.loss(pred, hr)
        if not self.finite(total, terms):
            return None
        self.log_loss("train", total, terms, hr.shape[0])
        return total

    def validation_step(self, batch: dict, batch_idx: int) -> dict:
        out = super().validation_step(batch, batch_idx)  # one sample (seed 0): val/psnr_y ...
        if self.val_samples > 1:
            out.update(log_stochastic(self, self.eval_net, batch, self.val_samples, seed=batch_idx))
        return out
