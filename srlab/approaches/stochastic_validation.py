"""Validation of a stochastic approach (VAE, diffusion): the measures of stochastic SR, logged.

Both approaches log, per validation, `val/sample_psnr_y`, `val/sample_ssim_y` (one draw),
`val/mean_psnr_y` (the mean of the draws), `val/lr_psnr`, `val/sample_diversity` and
`val/sample_diversity_textured` (srlab.evaluation.stochastic), each the mean over val images,
the other `val.metrics` (LPIPS, NIQE, ...) of one draw and of the mean (`val/sample_lpips`, `val/mean_lpips`),
and hand three draws and the std map to the sample panels.
"""
from __future__ import annotations

import pytorch_lightning as pl
from torch import nn

from srlab.evaluation.stochastic import stochastic_measures


def log_stochastic(module: pl.LightningModule, net: nn.Module, batch: dict, n: int, seed: int) -> dict:
    """Log the stochastic measures of `n` draws of `net` on a val batch; -> panel outputs."""
    measures, std, samples = stochastic_measures(net, batch["lr"], batch["hr"], batch.get("gray"), module.scale,
                                                 n, 1.0, seed)
    for name, values in measures.items():
        module.log(f"val/{name}", values.mean(), on_step=False, on_epoch=True, batch_size=values.numel(),
                   sync_dist=True)
    if hasattr(module, "log_sample_measures"):  # val.metrics beyond PSNR/SSIM: val/sample_lpips, val/mean_lpips
        module.log_sample_measures(samples, batch)
    return {"samples": samples[:3].detach(), "std": std.detach()}
