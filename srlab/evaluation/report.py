"""Where srlab-eval's results go: printed table, per-image CSV, metrics.json, loggers.

The files are the record (they are written first, so a logger failure loses nothing). With
a logger on (`logger=wandb|csv|tensorboard`), the set means go to it as metrics, and W&B
also gets a table with one row per image: its numbers and four crops (LR input upsampled
nearest, bicubic, SR, HR) of
the window where bicubic is worst — where an SR method has the most to show, and where a
reader looks first when comparing runs in the dashboard. Images inside tables are lost by
offline runs (wandb issue #4611: they sync as the word "Image"), so the same crops are also
logged as one LR | bicubic | SR | HR panel per image under `eval/panels/<set>`, which survive
`wandb sync`.
"""
from __future__ import annotations

import csv
import json
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from hydra.utils import instantiate
from omegaconf import DictConfig
from rich.console import Console
from rich.table import Table

from srlab.runs.names import group_of_checkpoint

PANEL = ("LR", "bicubic", "SR", "HR")  # the crops of each image, left to right


class Crops:
    """Collects, per image, the same `size` x `size` HR-pixel window of LR (nearest), bicubic, SR, HR."""

    def __init__(self, size: int):
        self.size = size
        self.items: dict[tuple[str, str], list[np.ndarray]] = {}

    def window(self, hr: torch.Tensor, bicubic: torch.Tensor) -> tuple[int, int, int]:
        """(top, left, size) of the window with the largest mean bicubic error."""
        h, w = hr.shape[-2:]
        size = min(self.size, h, w)
        err = (bicubic - hr).abs().mean(dim=1, keepdim=True)
        stride = max(1, size // 4)
        pooled = F.avg_pool2d(err, size, stride=stride)[0, 0]
        i = int(pooled.flatten().argmax())
        return (i // pooled.shape[1]) * stride, (i % pooled.shape[1]) * stride, size

    def add(self, set_name: str, image: str, hr: torch.Tensor, bicubic: torch.Tensor, sr: torch.Tensor,
            lr: torch.Tensor | None = None) -> None:
        """Crops of [1,3,H,W] images; `lr` is the LR input already upsampled (nearest) to H x W."""
        if self.size <= 0:
            return
        top, left, size = self.window(hr, bicubic)
        self.items[(set_name, image)] = [
            (x[0, :, top:top + size, left:left + size].clamp(0, 1) * 255).round().byte().permute(1, 2, 0).squeeze(-1).cpu().numpy()
            for x in (lr if lr is not None else bicubic, bicubic, sr, hr)
        ]


def write_results(rows: list[dict], metrics: dict, run_dir: Path) -> None:
    run_dir.mkdir(parents=True, exist_ok=True)
    with open(run_dir / "per_image.csv", "w", newline="") as f:
        fields = list(dict.fromkeys(k for row in rows for k in row))  # sets with and without given LR
        writer = csv.DictWriter(f, fieldnames=fields, restval="")
        writer.writeheader()
        writer.writerows(rows)
    (run_dir / "metrics.json").write_text(json.dumps(metrics, indent=2) + "\n")


def print_table(metrics: dict, sets: list[str], scale: int, channels: str, run_dir: Path) -> None:
    pipeline = "Y-only pipeline (SRCNN/VDSR)" if channels == "y" else "RGB pipeline"
    table = Table(title=f"x{scale}, Y channel, border = {scale}, {pipeline}")
    has_lpips = any(k.endswith("/lpips") for k in metrics)
    columns = ["set", "images", "PSNR_Y", "SSIM_Y", "bicubic PSNR_Y", "bicubic SSIM_Y", "gain dB"]
    columns += ["LPIPS", "bicubic LPIPS"] if has_lpips else []
    for column in columns:
        table.add_column(column, justify="right")
    for s in sets:
        m = lambda k: metrics[f"{s}/{k}"]  # noqa: E731
        cells = [s, str(m("n_images")), f"{m('psnr_y'):.2f}", f"{m('ssim_y'):.4f}", f"{m('bicubic_psnr_y'):.2f}",
                 f"{m('bicubic_ssim_y'):.4f}", f"{m('psnr_y') - m('bicubic_psnr_y'):+.2f}"]
        cells += [f"{m('lpips'):.4f}", f"{m('bicubic_lpips'):.4f}"] if has_lpips else []
        table.add_row(*cells)
    console = Console()
    console.print(table)
    console.print(f"per-image CSV and metrics.json in {run_dir}")


def log_results(cfg: DictConfig, metrics: dict, rows: list[dict], crops: Crops | None, scale: int,
                train_config: dict | None = None) -> None:
    """Send the set means to every configured logger, and the per-image table to W&B. The
    W&B run of a checkpoint's eval joins the group of the run that trained it."""
    group = None
    if cfg.get("ckpt_path"):  # <run>/checkpoints/best.ckpt -> eval_<run>_best_x4
        ckpt = Path(cfg.ckpt_path)
        run_name = f"eval_{ckpt.parent.parent.name}_{ckpt.stem}_x{scale}"
        group = group_of_checkpoint(ckpt, train_config)
    else:
        run_name = f"eval_bicubic_x{scale}"
    for logger_cfg in cfg.logger.values():
        if not logger_cfg or "_target_" not in logger_cfg:
            continue
        is_wandb = logger_cfg._target_.endswith("WandbLogger")
        extra = {"name": run_name, "job_type": "eval", **({"group": group} if group else {})}
        logger = instantiate(logger_cfg, **(extra if is_wandb else {}))
        logger.log_metrics({f"eval/{k}": v for k, v in metrics.items()})
        if is_wandb:
            logger.experiment.log({"eval/images": wandb_table(rows, crops), **wandb_panels(rows, crops)})
            logger.experiment.finish()
        else:
            logger.finalize("success")


def wandb_table(rows: list[dict], crops: Crops | None):
    import wandb

    names = ["set", "image"] + (["lr_image"] if any("lr_image" in row for row in rows) else [])
    numbers = [k for k in rows[0] if k not in names]
    with_crops = crops is not None and bool(crops.items)
    columns = [*names, *numbers] + (list(PANEL) if with_crops else [])
    table = wandb.Table(columns=columns)
    for row in rows:
        cells = [row.get(k, "") for k in names] + [row[k] for k in numbers]
        if with_crops:
            cells += [wandb.Image(a) for a in crops.items[(row["set"], row["image"])]]
        table.add_data(*cells)
    return table


def wandb_panels(rows: list[dict], crops: Crops | None) -> dict:
    """{"eval/panels/<set>": [LR | bicubic | SR | HR image per picture, captioned with its PSNR_Y]}."""
    import wandb

    panels: dict[str, list] = {}
    if crops is None or not crops.items:
        return panels
    for row in rows:
        lr, bicubic, sr, hr = crops.items[(row["set"], row["image"])]
        gap = np.full((hr.shape[0], 2, *hr.shape[2:]), 255, dtype=np.uint8)
        caption = (f"{row['image']}: LR (nearest) | bicubic {row['bicubic_psnr_y']:.2f} dB | "
                   f"SR {row['psnr_y']:.2f} dB | HR")
        panel = wandb.Image(np.concatenate([lr, gap, bicubic, gap, sr, gap, hr], axis=1), caption=caption)
        panels.setdefault(f"eval/panels/{row['set']}", []).append(panel)
    return panels
