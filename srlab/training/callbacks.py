"""Callbacks that make a run directory worth keeping: image panels and no lost work.

`SamplePanels` saves LR | bicubic | SR | HR strips of the first few val images at every
validation (`samples/step<N>_<name>.png`) and sends them to W&B / TensorBoard. The LR tile is
the net's actual input upsampled by pixel repetition (nearest): with a degradation such as
crapify or realesrgan it shows the blur, noise and JPEG blocks the net was trained to undo,
which the bicubic upscale beside it smooths over.
For a generative approach (VAE: outputs carry `samples` and `std`) a second strip,
`step<N>_<name>_samples.png`, shows three prior draws | their per-pixel std map across all
draws (8-bit Y levels, `STD_FULL_SCALE` levels = white): the std should sit on edges and texture.
`CheckpointOnException` writes `last.ckpt` when training dies (Ctrl-C, a corrupt image),
so a crash costs at most the steps since the last save — never the whole run.
`ProgressBar` is Lightning's Rich bar, redrawn every few batches instead of every batch.
`BestCheckpoint` is `best.ckpt` by any logged measure, its mode read off the measure's direction.
`ValHistory` keeps the run's own val curve (`val_history.csv`) whatever the logger, so
`srlab-compare` can plot runs offline.
"""
import csv
import logging
import time
from pathlib import Path

import pytorch_lightning as pl
import torch
from pytorch_lightning.loggers import TensorBoardLogger, WandbLogger
from pytorch_lightning.utilities.exceptions import SIGTERMException

from srlab.data.images import save_image
from srlab.errors import SrlabError

log = logging.getLogger(__name__)

CAPTION = "LR (nearest) | bicubic | SR | HR"
SAMPLES_CAPTION = "samples at temperature 1 | per-pixel std across samples (Y, white = 16 levels)"
STD_FULL_SCALE = 16.0  # 8-bit levels of std drawn as white in the std map


def nearest_up(lr: torch.Tensor, scale: int) -> torch.Tensor:
    """[..., h, w] -> [..., h*s, w*s], each LR pixel an s x s block: the input as the net saw it."""
    return lr.repeat_interleave(scale, dim=-2).repeat_interleave(scale, dim=-1)


def panel(lr: torch.Tensor, bicubic: torch.Tensor, sr: torch.Tensor, hr: torch.Tensor, scale: int) -> torch.Tensor:
    """[3,H,4W]: LR (nearest) | bicubic | SR | HR, side by side, in [0,1]."""
    return torch.cat([nearest_up(lr, scale), bicubic, sr, hr], dim=-1).clamp(0, 1)


def samples_panel(samples: torch.Tensor, std: torch.Tensor) -> torch.Tensor:
    """samples [k,3,H,W], std [1,H,W] in 8-bit levels -> [3,H,(k+1)W]: the draws | the std map."""
    std_map = (std / STD_FULL_SCALE).clamp(0, 1).expand(3, -1, -1)
    return torch.cat([*samples.float(), std_map.to(samples.device).float()], dim=-1).clamp(0, 1)


class SamplePanels(pl.Callback):
    def __init__(self, dirpath: str, n_images: int = 3):
        self.dirpath = Path(dirpath)
        self.n_images = n_images

    def on_validation_batch_end(self, trainer, pl_module, outputs, batch, batch_idx, dataloader_idx=0):
        if batch_idx >= self.n_images or not trainer.is_global_zero or not isinstance(outputs, dict):
            return
        if trainer.sanity_checking:
            return
        strip = panel(batch["lr"][0], outputs["bicubic"][0], outputs["sr"][0], batch["hr"][0], pl_module.scale)
        name = Path(str(batch["name"][0])).stem
        self.dirpath.mkdir(parents=True, exist_ok=True)
        save_image(strip, self.dirpath / f"step{trainer.global_step:06d}_{name}.png")
        self.send(trainer, f"samples/{name}", strip, CAPTION)
        if "samples" in outputs and "std" in outputs:  # a generative approach: draws + std map
            strip = samples_panel(outputs["samples"][:, 0], outputs["std"][0])
            save_image(strip, self.dirpath / f"step{trainer.global_step:06d}_{name}_samples.png")
            self.send(trainer, f"samples/{name}_draws", strip, SAMPLES_CAPTION)

    @staticmethod
    def send(trainer, key: str, strip: torch.Tensor, caption: str) -> None:
        for logger in trainer.loggers:
            if isinstance(logger, WandbLogger):
                logger.log_image(key=key, images=[strip.float().cpu()], caption=[caption], step=trainer.global_step)
            elif isinstance(logger, TensorBoardLogger):
                logger.experiment.add_image(key, strip.float().cpu(), trainer.global_step)


class ProgressBar(pl.callbacks.RichProgressBar):
    """Lightning's Rich progress bar, updated at most every `min_interval_s` seconds.

    Lightning's bar updates after every batch, and showing the metrics reads them back from
    the GPU: a sync per step that empties the GPU's queue, while a step there takes a few
    milliseconds (measured in `make bench`). Rich also redraws from a thread `refresh_rate`
    times a second (Lightning's default 100), competing with the training loop for the GIL.
    Twice a second is plenty to read, on a CPU (every step) as on a GPU (every ~100 steps).
    """

    def __init__(self, min_interval_s: float = 0.5, refresh_rate: int = 4, **kw):
        super().__init__(refresh_rate=refresh_rate, **kw)
        self.min_interval_s = float(min_interval_s)
        self._last = -float("inf")

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx):
        now = time.monotonic()
        last = batch_idx + 1 == self.total_train_batches or (
            trainer is not None and 0 < trainer.max_steps <= trainer.global_step)
        if now - self._last >= self.min_interval_s or last:
            self._last = now
            super().on_train_batch_end(trainer, pl_module, outputs, batch, batch_idx)


class CheckpointOnException(pl.Callback):
    def __init__(self, dirpath: str):
        self.dirpath = Path(dirpath)

    def on_exception(self, trainer, pl_module, exception):
        # Saving is a collective under DDP; a crashed rank cannot join it, so single process
        # only -- except on SIGTERM, which Lightning broadcasts so every rank stops together.
        signalled = isinstance(exception, SIGTERMException)
        if (trainer.world_size > 1 and not signalled) or trainer.global_step == 0 or trainer.state.fn != "fit":
            return
        if not getattr(exception, "save_on_exit", True):  # NaN weights (NonFiniteState): keep the last good file
            return
        # A batch fetched but never trained (the crash came first) must not count: Lightning
        # would resume with its batch index one ahead of the steps, and validate off-schedule.
        progress = trainer.fit_loop.epoch_loop.batch_progress
        for tracker in (progress.total, progress.current):
            tracker.ready = tracker.started = tracker.processed = tracker.completed
        self.dirpath.mkdir(parents=True, exist_ok=True)
        trainer.save_checkpoint(self.dirpath / "last.ckpt", weights_only=False)
        why = "on a stop signal" if signalled else f"({type(exception).__name__})"
        print(f"training stopped {why}: saved {self.dirpath / 'last.ckpt'} "
              f"at step {trainer.global_step}; resume with ckpt_path=<that file>", flush=True)


class ValHistory(pl.Callback):
    """Appends `step, val/...` to `val_history.csv` after each validation of the fit.

    Loggers differ (W&B offline files, TensorBoard events, none at all); this file is the
    one metric history every run directory has, read by `srlab-compare`. Only validations
    during `fit` are recorded: the final `trainer.validate` of the best checkpoint goes to
    `metrics.json` and would put a second point at an earlier or equal step.

    A metric key first logged after the first row (an approach that adds one later) makes
    the file be rewritten with the union of columns, older rows blank there: the file holds
    one row per validation, so rewriting it is cheap, nothing is dropped, and every reader
    sees one consistent header. Columns are `step` then the `val/*` keys, sorted.
    """

    def __init__(self, path: str):
        self.path = Path(path)
        self._columns: list[str] | None = None

    def on_validation_end(self, trainer, pl_module):
        if trainer.sanity_checking or not trainer.is_global_zero or trainer.state.fn != "fit":
            return
        row = {"step": int(trainer.global_step)}
        for key, value in trainer.callback_metrics.items():
            if key.startswith("val/") and (not torch.is_tensor(value) or value.numel() == 1):
                row[key] = float(value)
        if self._columns is None:  # a resumed run in the same directory extends its own file
            self._columns = self._read_header()
        new = sorted(set(row) - set(self._columns or []) - {"step"})
        if self._columns is None or new:
            self._columns = ["step"] + sorted(set(self._columns or []) - {"step"} | set(new))
            self._rewrite(row)
        else:
            with self.path.open("a", newline="") as f:
                csv.DictWriter(f, self._columns, restval="").writerow(row)

    def _read_header(self) -> list[str] | None:
        if not self.path.is_file():
            return None
        with self.path.open(newline="") as f:
            return next(csv.reader(f), None) or None

    def _rewrite(self, row: dict) -> None:
        rows = []
        if self.path.is_file():
            with self.path.open(newline="") as f:
                rows = list(csv.DictReader(f))
        self.path.parent.mkdir(parents=True, exist_ok=True)
        tmp = self.path.with_suffix(".csv.tmp")  # never leave a half-written history behind
        with tmp.open("w", newline="") as f:
            writer = csv.DictWriter(f, self._columns, restval="")
            writer.writeheader()
            writer.writerows(rows + [row])
        tmp.replace(self.path)


class BestCheckpoint(pl.callbacks.ModelCheckpoint):
    """best.ckpt by any logged key: `monitor=val/lpips` keeps the lowest LPIPS, `val/psnr_y` the
    highest PSNR. `mode: auto` takes the direction from the measure itself (the module's
    `measure_direction`), so nobody has to remember that LPIPS is better low. `monitor` may be a
    list: the first key validation logs wins (`[val/lpips, val/niqe]`: LPIPS where its
    backbone file is there, else NIQE), said in one line. A key naming a measure validation
    does not take is one line at the start, not a run that silently keeps no best."""

    def __init__(self, monitor: str | list[str] = "val/psnr_y", mode: str = "auto", **kw):
        candidates = [monitor] if isinstance(monitor, str) else [str(m) for m in monitor or []]
        if not candidates:
            raise SrlabError("callbacks.best.monitor is empty: name a logged key, e.g. val/psnr_y or val/lpips")
        if mode not in ("auto", "min", "max"):
            raise SrlabError(f"callbacks.best.mode={mode}: use auto (from the measure), min or max")
        super().__init__(monitor=candidates[0], mode="max" if mode == "auto" else mode, **kw)
        self.candidates, self.auto_mode = candidates, mode == "auto"

    def setup(self, trainer, pl_module, stage) -> None:
        super().setup(trainer, pl_module, stage)
        unmeasured = getattr(pl_module, "unmeasured", lambda key: None)
        reasons = {key: unmeasured(key) for key in self.candidates}
        chosen = next((key for key in self.candidates if reasons[key] is None), None)
        if chosen is None:
            raise SrlabError(f"callbacks.best.monitor={','.join(self.candidates)}: {'; '.join(reasons.values())}")
        if chosen != self.candidates[0]:
            log.warning("best.ckpt follows %s (%s)", chosen, "; ".join(r for r in reasons.values() if r))
        mode = self.mode
        if self.auto_mode:
            mode = getattr(pl_module, "measure_direction", lambda key: None)(chosen)
            if mode is None:
                raise SrlabError(f"callbacks.best.monitor={chosen}: cannot tell whether higher is better; "
                                 "set callbacks.best.mode=max or min")
        if len(self.candidates) > 1 and chosen == self.candidates[0]:
            log.info("best.ckpt follows %s (%s is better)", chosen, "lower" if mode == "min" else "higher")
        self.monitor = chosen
        self._ModelCheckpoint__init_monitor_mode(mode)
