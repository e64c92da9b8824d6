"""What every SR approach shares: a net that maps LR -> SR, its validation and its checkpoint.

An approach (regression, GAN, VAE, ...) differs only in how it trains. What it is *measured*
by must not differ, or runs cannot be compared: validation here computes the paper-convention
measures the run's config lists (`val.metrics`, srlab/evaluation/measures.py; PSNR and SSIM
by default) for SR and for the bicubic upscale of the same LR (`val/<key>`, `val/bicubic_<key>`,
`val/gain_psnr_y`), logs the loss mix on val images, and returns the images the sample-panel
callback draws. The bicubic numbers of a val image do not change between validations, so
they are measured once per image and reused (keyed by the LR's shape and sum): with LPIPS and
NIQE on, that halves what the measures add to a validation. The measures' networks are kept
outside the module's state (never in a checkpoint); `measure_direction` tells `best.ckpt`
whether a logged key is better high or low. The net is always the attribute `net`, so its
weights sit under "net." in every checkpoint, which is what srlab-eval / srlab-upscale load;
`srlab_config` (the resolved training config) rides along to rebuild it.
"""
import random
from collections.abc import Callable, Mapping

import numpy as np
import pytorch_lightning as pl
import torch
from torch import nn

from srlab.errors import SrlabError
from srlab.evaluation.measures import (DEFAULT_DEFINITIONS, MeasureMeans, base_key, build_measures, direction,
                                      measure_all, measure_configs, reported_keys)
from srlab.losses.mix import LossMix
from srlab.ops.imresize import imresize
from srlab.training.ema import EMA
from srlab.training.nonfinite import NonFiniteGuard


class SRApproach(pl.LightningModule):
    trains_denoiser = False  # approach=diffusion: the net is a denoiser sampled step by step

    def __init__(self, net: nn.Module, loss: LossMix, scale: int = 4, ema: Mapping | None = None,
                 max_nonfinite_skips: int | None = 5):
        super().__init__()
        if getattr(net, "stepwise", False) and not self.trains_denoiser:
            raise SrlabError(f"net={type(net).__name__} is a diffusion denoiser: train it with approach=diffusion "
                             "(experiment=diffusion)")
        self.net = net
        self.loss = loss
        self.scale = int(scale)
        self._measures: dict | None = None  # built from srlab_config at setup (val_measures)
        self._bicubic_values: dict = {}
        decay = float((ema or {}).get("decay", 0.0) or 0.0)
        if not 0.0 <= decay < 1.0:
            raise SrlabError(f"approach.ema.decay={decay}: use 0 (off) or a value in (0, 1), e.g. 0.999")
        # Averaged weights (srlab/training/ema.py), under "ema.module." in checkpoints; None when off.
        self.ema = EMA(net, decay) if decay > 0 else None
        # a NaN/Inf loss skips its update, named in one warning (srlab/training/nonfinite.py)
        self.nonfinite = NonFiniteGuard(max_nonfinite_skips)

    def finite(self, total: torch.Tensor, terms: dict, what: str = "loss") -> bool:
        """Apply this update? False (and a warning) when the loss is NaN/Inf."""
        return self.nonfinite.ok(total, terms, self.global_step, what)

    @property
    def eval_net(self) -> nn.Module:
        """The weights that are validated, checkpointed as best and used for inference."""
        return self.ema.module if self.ema is not None else self.net

    def forward(self, lr: torch.Tensor) -> torch.Tensor:
        return self.eval_net(lr)

    def on_train_batch_end(self, outputs, batch, batch_idx) -> None:
        if self.ema is not None and getattr(self, "graphed", None) is None:  # a graphed step updates it itself
            self.ema.update(self.net)

    def train_logs_due(self) -> bool:
        """Will on-step values logged now reach a logger? Lightning writes them only every
        `trainer.log_every_n_steps` steps, so logging in between only costs Python time per
        step, and a progress bar that shows them reads them back from the GPU (a sync)."""
        trainer = self._trainer
        if trainer is None:
            return True
        return bool(getattr(trainer._logger_connector, "should_update_logs", True))

    def log_loss(self, stage: str, total: torch.Tensor, terms: dict, batch_size: int, prefix: str = "loss") -> None:
        """`<stage>/<prefix>` and, per term, `<stage>/<prefix>/<name>` and `.../weighted/<name>`.

        Training values are logged only on the steps that reach the loggers (`train_logs_due`).
        """
        on_step = stage == "train"
        if on_step and not self.train_logs_due():
            return
        kw = dict(on_step=on_step, on_epoch=not on_step, batch_size=batch_size, sync_dist=not on_step)
        self.log(f"{stage}/{prefix}", total, prog_bar=on_step, **kw)
        for name, value in terms.items():
            self.log(f"{stage}/{prefix}/{name}", value, **kw)
            self.log(f"{stage}/{prefix}/weighted/{name}", self.loss.weights[name] * value, **kw)

    def val_measures(self) -> dict:
        """{name: measure} of `val.metrics` in the run's config (PSNR and SSIM without one),
        built once; a missing backbone is one line here, before any step (setup)."""
        if self._measures is None:
            names, optional, definitions = measure_configs(getattr(self, "srlab_config", None) or {}, "val")
            self._measures = build_measures(names, definitions or DEFAULT_DEFINITIONS, optional, "val.metrics")
            keys = reported_keys(self._measures)
            self.val_sr, self.val_bicubic = MeasureMeans(keys), MeasureMeans(keys)
        return self._measures

    def measure_direction(self, key: str) -> str | None:
        """"max" / "min" for a logged key (`val/lpips`: min), None when unknown."""
        return direction(key, self.val_measures())

    def logged_keys(self) -> list[str]:
        """The `val/...` keys validation logs for SR and bicubic."""
        keys = reported_keys(self.val_measures())
        return [f"val/{k}" for k in keys] + [f"val/bicubic_{k}" for k in keys] + \
            (["val/gain_psnr_y"] if "psnr_y" in keys else [])

    def unmeasured(self, key: str) -> str | None:
        """Why validation will not log `key` (a measure not in val.metrics, or left out), or
        None (it will, or it is no measure's key: a loss, a KL, trust it)."""
        if key in self.logged_keys() or not key.startswith("val/"):
            return None
        names, _, definitions = measure_configs(getattr(self, "srlab_config", None) or {}, "val")
        known = set(definitions or DEFAULT_DEFINITIONS) | {"psnr_y", "ssim_y", "psnr_rgb"}
        if base_key(key) in known and not key.split("/")[-1].startswith(("sample_", "mean_")):
            return f"{key} is not measured (val.metrics=[{','.join(names)}] gives {', '.join(self.logged_keys())})"
        return None

    def setup(self, stage: str) -> None:
        self.val_measures()

    def measure(self, images: torch.Tensor, batch: dict, **kw) -> dict:
        """{key: per-image values} of the val measures of `images` against the batch's HR."""
        measures = self.val_measures()
        for m in measures.values():
            m.to(images.device)
        return measure_all(measures, images, batch["hr"], self.scale, batch.get("gray"), **kw)

    def validation_step(self, batch: dict, batch_idx: int) -> dict:
        lr, hr = batch["lr"], batch["hr"]
        sr = self.eval_net(lr)
        total, terms = self.loss(sr, hr)
        self.log_loss("val", total, terms, hr.shape[0])
        bicubic = imresize(lr, scale=self.scale)
        values = self.measure(sr, batch)  # builds the accumulators on first use
        self.val_sr.to(sr.device).update(values)
        key = (batch_idx, tuple(lr.shape), float(lr.double().sum()))  # the same val image as last time?
        if key not in self._bicubic_values:
            self._bicubic_values[key] = self.measure(bicubic, batch)
        self.val_bicubic.to(sr.device).update(self._bicubic_values[key])
        # Returned for the sample-panel callback (LR | bicubic | SR | HR; LR comes from the batch).
        return {"sr": sr.detach().clamp(0, 1), "bicubic": bicubic.clamp(0, 1)}

    def log_sample_measures(self, samples: torch.Tensor, batch: dict) -> None:
        """A stochastic approach's draws [n,N,3,H,W]: the val measures beyond PSNR/SSIM (those
        are `sample_psnr_y`, `mean_psnr_y` already) of one draw and of their mean."""
        for prefix, images in (("sample_", samples[0]), ("mean_", samples.mean(dim=0))):
            values = measure_all({k: m for k, m in self.val_measures().items() if k not in ("psnr", "ssim")},
                                 images, batch["hr"], self.scale, batch.get("gray"))
            for name, v in values.items():
                self.log(f"val/{prefix}{name}", v.nanmean(), on_step=False, on_epoch=True, batch_size=v.numel(),
                         sync_dist=True)

    def on_validation_epoch_end(self) -> None:
        self.val_measures()
        sr, bicubic = self.val_sr.compute(), self.val_bicubic.compute()
        self.log_dict({f"val/{k}": v for k, v in sr.items()}, prog_bar=False)
        self.log_dict({f"val/bicubic_{k}": v for k, v in bicubic.items()})
        if "psnr_y" in sr and "psnr_y" in bicubic:
            self.log("val/gain_psnr_y", sr["psnr_y"] - bicubic["psnr_y"], prog_bar=True)
        self.val_sr.reset()
        self.val_bicubic.reset()

    @staticmethod
    def build_optimizer(module: nn.Module, optimizer: Callable, scheduler: Callable | None, interval: str) -> dict:
        """Lightning's optimizer dict for the trainable parameters of `module` only."""
        opt = optimizer(params=[p for p in module.parameters() if p.requires_grad])
        if scheduler is None:
            return {"optimizer": opt}
        return {"optimizer": opt, "lr_scheduler": {"scheduler": scheduler(optimizer=opt), "interval": interval}}

    def on_save_checkpoint(self, checkpoint: dict) -> None:
        # Set by srlab-train: lets srlab-eval / srlab-upscale rebuild the net with no overrides.
        if getattr(self, "srlab_config", None) is not None:
            checkpoint["srlab_config"] = self.srlab_config
        checkpoint["rng_states"] = rng_states()

    def on_load_checkpoint(self, checkpoint: dict) -> None:
        # applied when training starts, after everything else is restored (nothing between
        # then and the first step draws from these generators)
        self._rng_to_restore = checkpoint.get("rng_states")

    def on_train_start(self) -> None:
        states, self._rng_to_restore = getattr(self, "_rng_to_restore", None), None
        if states:
            set_rng_states(states)


def rng_states() -> dict:
    """Python, NumPy and torch (CPU, CUDA) generator states: with them a resumed run draws
    the noise (VAE latents, GAN, dropout) the uninterrupted run would have drawn."""
    name, keys, pos, has_gauss, gauss = np.random.get_state()
    # numpy's keys as a tensor: checkpoints stay loadable with torch.load(weights_only=True)
    numpy_state = {"name": name, "keys": torch.from_numpy(keys.astype(np.int64)), "pos": int(pos),
                   "has_gauss": int(has_gauss), "gauss": float(gauss)}
    states = {"python": random.getstate(), "numpy": numpy_state, "torch": torch.get_rng_state()}
    if torch.cuda.is_available() and torch.cuda.is_initialized():
        states["cuda"] = torch.cuda.get_rng_state_all()
    return states


def set_rng_states(states: dict) -> None:
    random.setstate(states["python"])
    n = states["numpy"]
    np.random.set_state((n["name"], n["keys"].numpy().astype(np.uint32), n["pos"], n["has_gauss"], n["gauss"]))
    torch.set_rng_state(states["torch"])
    if "cuda" in states and torch.cuda.is_available() and len(states["cuda"]) == torch.cuda.device_count():
        torch.cuda.set_rng_state_all(states["cuda"])
