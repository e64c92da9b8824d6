"""VAE SR (seed approach 5): a conditional VAE, trained on reconstruction + KL.

Per batch: the net's posterior encoder gives q(z | LR, HR) = N(mu, exp(logvar)); z is drawn
with the reparameterisation trick; SR = net(LR, z); the objective is the loss mix on (SR, HR)
plus `kl_weight` x KL(q || N(0, I)) (per HR value, see srlab/losses/kl.py). The KL weight
ramps up linearly over `kl_warmup_steps` (KL annealing, Bowman et al. 2016): with the full
weight from step 0 the posterior is pushed to the prior before the decoder learns to use z,
and z is then ignored ("posterior collapse").

Validation runs the net with z = 0 (the prior mean; shared metrics of `SRApproach`) and also
logs `val/kl` on the val images (near 0: the latent carries nothing),
`val/posterior_psnr_y`, the PSNR with the HR image's own latent (how much detail z can add),
and the measures of stochastic SR on `val_samples` prior draws (one draw, the mean of the
draws, LR-PSNR, diversity: srlab/approaches/stochastic_validation.py). Logged in training:
`train/loss/<term>`, `train/loss/kl`, `train/loss/weighted/kl`, `train/kl_weight`.
The net must offer `encode(lr, hr) -> (mu, logvar)` and `forward(lr, z)` (srlab.nets.cvae_unet).
"""
import warnings
from collections.abc import Callable

import torch
from torch import nn

from srlab.approaches.regression import RegressionSR
from srlab.approaches.stochastic_validation import log_stochastic
from srlab.errors import SrlabError
from srlab.evaluation.metrics import SRMetrics
from srlab.losses.kl import gaussian_kl
from srlab.losses.mix import LossMix


class VaeSR(RegressionSR):
    def __init__(
        self,
        net: nn.Module,
        loss: LossMix,
        optimizer: Callable,
        scheduler: Callable | None = None,
        scheduler_interval: str = "step",
        kl_weight: float = 1e-3,
        kl_warmup_steps: int = 0,
        free_bits: float = 0.0,
        val_samples: int = 8,
        collapse_gap_db: float = 0.05,
        scale: int = 4,
        ema: dict | None = None,
        max_nonfinite_skips: int | None = 5,
    ):
        if not hasattr(net, "encode"):
            raise SrlabError(f"approach=vae needs a net with a posterior encoder (net=cvae_unet), "
                             f"not {type(net).__name__}")
        super().__init__(net, loss, optimizer, scheduler, scheduler_interval, scale, ema,
                         max_nonfinite_skips)  # one optimizer, as regression
        self.val_posterior = SRMetrics(border=self.scale)
        self.kl_weight = float(kl_weight)
        self.kl_warmup_steps = int(kl_warmup_steps)
        self.free_bits = float(free_bits)
        self.val_samples = int(val_samples)
        self.collapse_gap_db = float(collapse_gap_db)

    def current_kl_weight(self) -> float:
        if self.kl_warmup_steps <= 0:
            return self.kl_weight
        return self.kl_weight * min(1.0, self.global_step / self.kl_warmup_steps)

    def kl(self, lr: torch.Tensor, hr: torch.Tensor, sample: bool, net=None,
           free_bits: float = 0.0) -> tuple[torch.Tensor, torch.Tensor]:
        """-> (z, KL per HR value) from `net`'s (default: the trained net's) posterior; z = mu
        when not sampling."""
        mu, logvar = (net or self.net).encode(lr, hr)
        z = mu + torch.randn_like(mu) * (0.5 * logvar).exp() if sample else mu
        return z, gaussian_kl(mu, logvar, per_values=hr[0].numel(), free_bits=free_bits)

    def training_step(self, batch: dict, batch_idx: int) -> torch.Tensor:
        lr, hr = batch["lr"], batch["hr"]
        z, kl = self.kl(lr, hr, sample=True, free_bits=self.free_bits)
        sr = self.net(lr, z)
        content, terms = self.loss(sr, hr)
        weight = self.current_kl_weight()
        total = content + weight * kl
        if not self.finite(total, {**terms, "kl": kl}):
            return None
        n = hr.shape[0]
        if not self.train_logs_due():
            return total
        self.log_loss("train", total, terms, n)
        kw = dict(on_step=True, on_epoch=False, batch_size=n)
        self.log("train/loss/kl", kl, **kw)
        self.log("train/loss/weighted/kl", weight * kl, **kw)
        self.log("train/kl_weight", weight, **kw)
        return total

    def validation_step(self, batch: dict, batch_idx: int) -> dict:
        out = super().validation_step(batch, batch_idx)
        mu, kl = self.kl(batch["lr"], batch["hr"], sample=False, net=self.eval_net)
        self.log("val/kl", kl, on_step=False, on_epoch=True, batch_size=batch["hr"].shape[0], sync_dist=True)
        # SR from the posterior mean, i.e. with the HR image's own latent: an upper bound that
        # shows how much HR detail z carries (equal to val/psnr_y: z is unused)
        self.val_posterior.update(self.eval_net(batch["lr"], mu), batch["hr"], batch.get("gray"))
        if self.val_samples > 1:  # one draw, the mean of the draws, LR-PSNR, spread; the panels
            out.update(log_stochastic(self, self.eval_net, batch, self.val_samples, seed=batch_idx))
        return out

    def on_validation_epoch_end(self) -> None:
        super().on_validation_epoch_end()
        posterior = float(self.val_posterior.compute()["psnr_y"])
        self.val_posterior.reset()
        self.log("val/posterior_psnr_y", posterior)
        self.warn_if_collapsed(posterior, float(self.trainer.callback_metrics["val/psnr_y"]))

    def warn_if_collapsed(self, posterior_psnr: float, prior_psnr: float) -> bool:
        """Posterior collapse: once the KL has its full weight, the HR image's own latent
        reconstructs no better than z = 0, so z carries nothing and the samples are all alike."""
        if self.trainer.sanity_checking or self.global_step < self.kl_warmup_steps:
            return False
        gap = posterior_psnr - prior_psnr
        if gap >= self.collapse_gap_db:
            return False
        warnings.warn(f"posterior collapse at step {self.global_step}: val/posterior_psnr_y - val/psnr_y = "
                      f"{gap:.3f} dB < {self.collapse_gap_db} dB, the latent is ignored (see docs/approaches.md, "
                      f"VAE: net.logvar_init, approach.free_bits, approach.kl_weight)",
                      stacklevel=2)
        return True
