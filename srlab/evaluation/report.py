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


# key -> (column label, format) for the printed table; other keys: upper case, 4 decimals
LABELS = {"psnr_y": ("PSNR_Y", "{:.2f}"), "ssim_y": ("SSIM_Y", "{:.4f}"), "psnr_rgb": ("PSNR_RGB", "{:.2f}")}


def label(key: str) -> tuple[str, str]:
    return LABELS.get(key, (key.upper(), "{:.4f}"))


def print_table(metrics: dict, sets: list[str], scale: int, channels: str, run_dir: Path,
                keys: list[str] | None = None) -> None:
    """One row per set (or per method/set with srlab-eval sr_dirs): each measure for SR and
    bicubic, side by side, and the PSNR gain over bicubic. `keys`: the measures' keys in
    order (default PSNR_Y, SSIM_Y); PSNR_RGB stays in metrics.json to keep the table narrow."""
    pipeline = "Y-only pipeline (SRCNN/VDSR)" if channels == "y" else "RGB pipeline"
    table = Table(title=f"x{scale}, Y channel, border = {scale}, {pipeline}")
    keys = [k for k in (keys or ["psnr_y", "ssim_y"]) if k != "psnr_rgb"]
    shown = [k for k in keys if any(f"{s}/{k}" in metrics for s in sets)]
    columns = ["set", "images"]
    for key in shown:
        columns += [label(key)[0]]
        if any(f"{s}/bicubic_{key}" in metrics for s in sets):
            columns += [f"bicubic {label(key)[0]}"] + (["gain dB"] if key == "psnr_y" else [])
    for column in columns:
        table.add_column(column, justify="right")
    for s in sets:
        def cell(k, fmt):
            value = metrics.get(f"{s}/{k}")
            return fmt.format(value) if isinstance(value, (int, float)) else "—"

        cells = [s, str(metrics.get(f"{s}/n_images", ""))]
        for key in shown:
            fmt = label(key)[1]
            cells.append(cell(key, fmt))
            if any(f"{t}/bicubic_{key}" in metrics for t in sets):
                cells.append(cell(f"bicubic_{key}", fmt))
                if key == "psnr_y":
                    has = f"{s}/psnr_y" in metrics and f"{s}/bicubic_psnr_y" in metrics
                    cells.append(f"{metrics[f'{s}/psnr_y'] - metrics[f'{s}/bicubic_psnr_y']:+.2f}" if has else "—")
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
