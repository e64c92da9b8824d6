"""srlab-eval: paper-convention numbers for a checkpoint (or bicubic) on folders of HR images.

For each image: crop HR to a multiple of the scale, make LR with MATLAB bicubic and round it
to 8 bits (as the benchmark LR PNGs are), super-resolve, then measure PSNR_Y / SSIM_Y
(border = scale; gray images on their own values) and PSNR_RGB for SR and for the bicubic
upscale of the same LR. The net is rebuilt from the checkpoint's own saved config, so no
training override needs repeating. Writes `per_image.csv` and `metrics.json`
(`<set>/psnr_y`, `<set>/ssim_y`, `<set>/bicubic_psnr_y`, `<set>/bicubic_ssim_y`,
`<set>/n_images`, ...) into its run directory and prints a table.
"""
import csv
import json
import logging
from pathlib import Path

import hydra
import torch
from hydra.utils import instantiate
from omegaconf import DictConfig
from rich.console import Console
from rich.table import Table

from srlab.cli import user_errors
from srlab.config import CONFIG_DIR, check_scale
from srlab.data.images import read_image, save_image
from srlab.data.sources import list_images
from srlab.errors import SrlabError
from srlab.imresize import imresize
from srlab.metrics import quantize, sr_metrics
from srlab.upscale import pick_device

log = logging.getLogger(__name__)
METRICS = ("psnr_y", "ssim_y", "psnr_rgb")


def set_name(folder: str | Path) -> str:
    """Benchmark sets are laid out as <Set>/HR: name them by the set, not by 'HR'."""
    path = Path(folder).resolve()
    return path.parent.name if path.name.lower() == "hr" else path.name


@torch.no_grad()
def super_resolve(net: torch.nn.Module, lr: torch.Tensor, self_ensemble: bool) -> torch.Tensor:
    """net(lr), or EDSR's x8 self-ensemble: mean over the 8 flips/rotations, each undone."""
    if not self_ensemble:
        return net(lr)
    outputs = []
    for flip in (False, True):
        x = lr.flip(-1) if flip else lr
        for k in range(4):
            y = net(torch.rot90(x, k, dims=(-2, -1)))
            y = torch.rot90(y, -k, dims=(-2, -1))
            outputs.append(y.flip(-1) if flip else y)
    return torch.stack(outputs).mean(dim=0)


def load_model(cfg: DictConfig) -> tuple[torch.nn.Module, int]:
    if cfg.get("ckpt_path"):
        from srlab.checkpoint import load_net

        net, _ = load_net(cfg.ckpt_path, trust_checkpoint=bool(cfg.get("trust_checkpoint", False)))
        if cfg.get("scale") is not None and int(cfg.scale) != int(net.scale):
            raise SrlabError(f"{cfg.ckpt_path} was trained for x{net.scale}, not scale={cfg.scale}: "
                             f"drop scale= or pass scale={net.scale}")
        return net, int(net.scale)
    if cfg.get("scale") is None:
        raise SrlabError("scale is not set: without ckpt_path, pass it, e.g. scale=4")
    scale = check_scale(cfg.scale)
    return instantiate(cfg.net), scale


def evaluate(cfg: DictConfig) -> dict:
    if not cfg.eval.sets:
        raise SrlabError("eval.sets is empty: pass folders of HR images, e.g. eval.sets=[data/Set5/HR]")
    net, scale = load_model(cfg)
    device, _ = pick_device(str(cfg.eval.device), half=False)
    net = net.to(device).eval()
    run_dir = Path(cfg.paths.output_dir)
    rows, metrics = [], {}
    for folder in cfg.eval.sets:
        name, files = set_name(folder), list_images(folder, what="eval.sets entry")
        set_rows = []
        for path in files:
            hr, gray = read_image(path)
            h, w = (hr.shape[-2] // scale) * scale, (hr.shape[-1] // scale) * scale
            hr = hr[:, :h, :w].unsqueeze(0).to(device)
            lr = quantize(imresize(hr, scale=1 / scale)) / 255.0  # LR as saved to PNG
            sr = super_resolve(net, lr, bool(cfg.eval.self_ensemble)).clamp(0, 1)
            gray_t = torch.tensor([gray], device=device)
            ours, bicubic = sr_metrics(sr, hr, scale, gray_t), sr_metrics(imresize(lr, scale=scale), hr, scale, gray_t)
            row = {"set": name, "image": path.name}
            row.update({k: float(ours[k]) for k in METRICS})
            row.update({f"bicubic_{k}": float(bicubic[k]) for k in METRICS})
            set_rows.append(row)
            if cfg.eval.save_images:
                save_image(sr[0], run_dir / "images" / name / f"{path.stem}.png")
        for key in set_rows[0]:
            if key not in ("set", "image"):
                metrics[f"{name}/{key}"] = sum(r[key] for r in set_rows) / len(set_rows)
        metrics[f"{name}/n_images"] = len(set_rows)
        rows += set_rows

    run_dir.mkdir(parents=True, exist_ok=True)
    with open(run_dir / "per_image.csv", "w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=list(rows[0]))
        writer.writeheader()
        writer.writerows(rows)
    (run_dir / "metrics.json").write_text(json.dumps(metrics, indent=2) + "\n")
    print_table(metrics, [set_name(s) for s in cfg.eval.sets], scale, run_dir)
    return metrics


def print_table(metrics: dict, sets: list[str], scale: int, run_dir: Path) -> None:
    table = Table(title=f"x{scale}, Y channel, border = {scale}")
    for column in ("set", "images", "PSNR_Y", "SSIM_Y", "bicubic PSNR_Y", "bicubic SSIM_Y", "gain dB"):
        table.add_column(column, justify="right")
    for s in sets:
        m = lambda k: metrics[f"{s}/{k}"]  # noqa: E731
        table.add_row(s, str(m("n_images")), f"{m('psnr_y'):.2f}", f"{m('ssim_y'):.4f}", f"{m('bicubic_psnr_y'):.2f}",
                      f"{m('bicubic_ssim_y'):.4f}", f"{m('psnr_y') - m('bicubic_psnr_y'):+.2f}")
    console = Console()
    console.print(table)
    console.print(f"per-image CSV and metrics.json in {run_dir}")


@hydra.main(version_base="1.3", config_path=str(CONFIG_DIR), config_name="eval")
def main(cfg: DictConfig) -> None:
    with user_errors():
        evaluate(cfg)


if __name__ == "__main__":
    main()
