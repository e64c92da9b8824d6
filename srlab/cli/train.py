"""srlab-train: compose the config, fit, validate the best checkpoint, fill the run directory.

The whole sequence a reader needs, in order: check the config (fail fast) -> build data,
net, loss, approach, callbacks, loggers, trainer from their `_target_`s -> fit (or, for a
net without parameters such as bicubic, only validate) -> validate the best checkpoint ->
write `metrics.json` and print SR vs bicubic. `train(cfg)` is what tests call;
`main()` is the console script (`srlab-train`, `python -m srlab.cli.train`).
"""
import json
import logging
import shutil
import time
from pathlib import Path

import hydra
import pytorch_lightning as pl
from hydra.utils import instantiate
from omegaconf import DictConfig, OmegaConf
from pytorch_lightning.loggers import WandbLogger
from rich.console import Console
from rich.table import Table

from srlab.cli.entry import hydra_entry, user_errors
from srlab.config.compose import CONFIG_DIR, validate_train_config
from srlab.config.schema import build_net, check_net
from srlab.errors import SrlabError
from srlab.training.speed import apply_speed_config

log = logging.getLogger(__name__)


def instantiate_group(group: DictConfig | None) -> list:
    """Callbacks and loggers are dicts of named `_target_` configs (null entries are dropped)."""
    return [instantiate(item) for item in (group or {}).values() if item and "_target_" in item]


def print_summary(metrics: dict, run_dir: Path) -> None:
    table = Table(title="validation (Y channel, border = scale)")
    for column in ("metric", "SR", "bicubic", "gain"):
        table.add_column(column, justify="right")
    for key, label in (("psnr_y", "PSNR_Y dB"), ("ssim_y", "SSIM_Y"), ("psnr_rgb", "PSNR_RGB dB")):
        sr, bic = metrics.get(f"val/{key}"), metrics.get(f"val/bicubic_{key}")
        if sr is not None and bic is not None:
            table.add_row(label, f"{sr:.4f}", f"{bic:.4f}", f"{sr - bic:+.4f}")
    console = Console()
    console.print(table)
    console.print(f"steps {metrics['train/steps']}, {metrics['train/seconds']:.0f} s; run directory: {run_dir}")


def build(cfg: DictConfig, extra_callbacks: tuple = ()) -> tuple:
    """(datamodule, model, trainer, loggers) from a composed config: what `train` runs, and
    what `make bench` times against a hand-written loop."""
    validate_train_config(cfg)
    pl.seed_everything(cfg.seed, workers=True)
    net = build_net(cfg.net)  # before data and loggers: its errors cost one line and no run
    check_net(net, cfg.scale, cfg.data.get("patch_size"), f"net {cfg.net._target_}")
    datamodule = instantiate(cfg.data)
    model = instantiate(cfg.approach, net=net, loss=instantiate(cfg.loss))
    apply_speed_config(model, cfg.get("speed") or {}, cfg.trainer)
    # The resolved config rides in every checkpoint: srlab-eval/upscale rebuild the net from it.
    model.srlab_config = OmegaConf.to_container(cfg, resolve=True)
    if "weights" in cfg.net and hasattr(net, "rebuild_config") and net.rebuild_config():
        # net=pretrained: the architecture came from the file; the checkpoint keeps it instead
        model.srlab_config["net"] = net.rebuild_config()
    loggers = instantiate_group(cfg.get("logger"))
    callbacks = instantiate_group(cfg.get("callbacks")) + list(extra_callbacks)
    if not loggers:  # Lightning refuses an LR monitor with nothing to log to
        callbacks = [c for c in callbacks if not isinstance(c, pl.callbacks.LearningRateMonitor)]
    trainer: pl.Trainer = instantiate(cfg.trainer, callbacks=callbacks, logger=loggers or False)
    for logger in loggers:
        logger.log_hyperparams(model.srlab_config)
    return datamodule, model, trainer, loggers


def finish_loggers(loggers: list, status: str) -> None:
    """Close this job's logger runs. A W&B run left open would swallow the next job of a
    multirun or Optuna study in this process (Lightning reuses a run in progress)."""
    for logger in loggers:
        logger.finalize(status)
        if isinstance(logger, WandbLogger) and getattr(logger, "_experiment", None) is not None:
            logger.experiment.finish(exit_code=0 if status == "success" else 1)


def discard_unused_run_dir(run_dir: Path) -> None:
    """A job stopped by a config check leaves no run directory behind: Hydra made it (its
    config copy and log) before srlab could look at a value, and a folder that looks like a
    run but holds none misleads `srlab-compare` and the user. Anything else in it is kept."""
    hydra_files = {".hydra", "train.log", "main.log"}
    if run_dir.is_dir() and all(p.name in hydra_files for p in run_dir.iterdir()):
        shutil.rmtree(run_dir, ignore_errors=True)


def save_final_state(trainer: pl.Trainer) -> None:
    """last.ckpt at the step training ended, and best.ckpt if no validation inside `fit` wrote
    one. Lightning's checkpoint callbacks write only at validations inside `fit`, so a run that
    ends between two (`trainer.max_steps=20` with validation every 600, or 6 steps validated
    every 4) would leave no checkpoint, or one that is steps behind: nothing to upscale with or
    resume from. The final validation (`train`) then measures that best.ckpt: the only state
    there is to measure."""
    for callback in trainer.checkpoint_callbacks:
        name, folder = getattr(callback, "filename", None), getattr(callback, "dirpath", None)
        if name == "last" and folder and getattr(callback, "_last_global_step_saved", None) != trainer.global_step:
            trainer.save_checkpoint(Path(folder) / "last.ckpt")
        if name == "best" and folder and not callback.best_model_path:
            callback.best_model_path = str(Path(folder) / "best.ckpt")
            trainer.save_checkpoint(callback.best_model_path)


def train(cfg: DictConfig) -> dict:
    run_dir = Path(cfg.paths.output_dir)
    try:  # checks, then objects; nothing is written, loaded or logged before this returns
        datamodule, model, trainer, loggers = build(cfg)
    except SrlabError:
        discard_unused_run_dir(run_dir)
        raise
    net = model.net
    status = "failed"
    try:
        start = time.perf_counter()
        if any(p.requires_grad for p in net.parameters()):
            trainer.fit(model, datamodule=datamodule, ckpt_path=cfg.get("ckpt_path"))
            save_final_state(trainer)
        else:
            log.info("net %s has no trainable parameters: validating only", type(net).__name__)
        seconds = time.perf_counter() - start
        # SLURM pre-emption checkpoints (srlab/training/faults.py) only serve a requeued job; left in place,
        # Lightning would validate (and resume) them instead of this finished state
        for hpc in run_dir.glob("hpc_ckpt_*.ckpt"):
            hpc.unlink()

        best = trainer.checkpoint_callback.best_model_path if trainer.checkpoint_callback else ""
        results = trainer.validate(model, datamodule=datamodule, ckpt_path=best or None, verbose=False)
        metrics = {k: float(v) for k, v in results[0].items() if k.startswith("val/")}
        metrics.update({"train/steps": int(trainer.global_step), "train/seconds": round(seconds, 1)})
        if trainer.is_global_zero:
            (run_dir / "metrics.json").write_text(json.dumps(metrics, indent=2, sort_keys=True) + "\n")
            print_summary(metrics, run_dir)
        status = "success"
        return metrics
    finally:
        finish_loggers(loggers, status)


@hydra.main(version_base="1.3", config_path=str(CONFIG_DIR), config_name="train")
def main(cfg: DictConfig) -> float | None:
    with user_errors():
        metrics = train(cfg)
    return metrics.get(cfg.get("optimized_metric"))


def cli() -> None:
    """The `srlab-train` console script: one line for an unknown key, then Hydra."""
    hydra_entry("train", main)


if __name__ == "__main__":
    cli()
