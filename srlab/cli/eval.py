"""srlab-eval: paper-convention numbers for a checkpoint (or bicubic) on folders of HR images.

For each image: crop HR to a multiple of the scale, make LR with MATLAB bicubic, super-resolve,
then measure `eval.metrics` (default PSNR_Y / SSIM_Y (border = scale; gray images on their own
values) and PSNR_RGB; LPIPS, DISTS, NIQE by name, srlab/evaluation/measures.py) for SR and for
the bicubic upscale of the same LR, and the no-reference ones for HR too (`hr_niqe`). Two pipelines
(`eval.channels`):
- rgb: the net gets the RGB LR, rounded to 8 bits as the benchmark LR PNGs are; Y is taken
  from the output. What an RGB model is measured with (EDSR, RCAN, SwinIR tables).
- y: the SRCNN/VDSR protocol the published *bicubic* rows come from: HR -> 8-bit Y ->
  bicubic down (kept in float, as their MATLAB scripts do) -> the net on Y alone (an RGB net
  sees it as a gray image) -> measure. Set5 x2 bicubic reads 33.66 here, 33.68 with rgb.
- auto (default): y for a net without weights (bicubic), rgb for a checkpoint.
`eval.degradation` replaces the bicubic LR by another degradation (rgb pipeline): `train` (the
checkpoint's own training degradation) or a `configs/degradation` name (crapify, realesrgan),
each image's LR drawn from a generator seeded by `eval.seed` + its index in the set, so two
evals see the same LR. The W&B crops and `eval.save_images` then show that LR (upsampled
nearest) beside bicubic, SR and HR, so a reader sees what the net was asked to undo.
The net is rebuilt from the checkpoint's own saved config, so no training override needs
repeating. The net runs through the same tiled fast path as srlab-upscale (`srlab.inference.tiling`:
batched tiles, blending on the device, results kept on the device for the metrics; an image
that fits one tile is exactly net(lr)), and the next image is decoded in a thread meanwhile,
so a large set is bounded by the net. Results: printed table, `per_image.csv`, `metrics.json` (`<set>/psnr_y`,
`<set>/bicubic_psnr_y`, `<set>/n_images`, ...) and, with `logger=wandb`, a W&B table with
crops (see srlab/evaluation/report.py). A stochastic checkpoint also gets the measures of
stochastic SR over `eval.samples` draws at temperature 1 (srlab/evaluation/stochastic.py:
sample_psnr_y, sample_ssim_y, mean_psnr_y, lr_psnr, sample_diversity(_textured)); its psnr_y is a
VAE's z = 0 answer, or a diffusion net's draw of seed `eval.seed` + the image's index, each
denoising step tiled with one noise field for the whole image (srlab/inference/diffusion_sampling.py).
"""
import logging
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import hydra
import torch
from hydra.utils import instantiate
from omegaconf import DictConfig, OmegaConf

from srlab.cli.entry import user_errors
from srlab.cli.upscale import GrayNet, pick_device
from srlab.config.compose import CONFIG_DIR, check_scale
from srlab.data.images import read_image, save_image
from srlab.data.pairs import fitted_hr_size, match_pairs, misfit
from srlab.data.sources import list_images
from srlab.errors import SrlabError
from srlab.evaluation.stochastic import stochastic_measures
from srlab.evaluation.measures import build_measures, measure_all, measure_configs, reported_keys
from srlab.evaluation.metrics import luma, quantize
from srlab.evaluation.report import Crops, log_results, print_table, write_results
from srlab.inference.diffusion_sampling import TiledSampler
from srlab.inference.tile_size import auto_tile, auto_tile_batch, lr_alignment
from srlab.inference.tiling import upscale_tiled
from srlab.ops.imresize import imresize
from srlab.training.callbacks import nearest_up

log = logging.getLogger(__name__)
CHANNELS = ("auto", "rgb", "y")


def set_name(folder: str | Path) -> str:
    """Benchmark sets are laid out as <Set>/HR: name them by the set, not by 'HR'."""
    path = Path(folder).resolve()
    return path.parent.name if path.name.lower() == "hr" else path.name


def tiled_forward(net: torch.nn.Module, scale: int, device: torch.device, tile: int | None, overlap: int,
                  tile_batch: int | None):
    """lr [1,C,h,w] on `device` -> net(lr) [1,C,H,W] on `device`, unclamped, through the tiler."""
    tile_batch = int(tile_batch or auto_tile_batch(device))
    if tile is None:
        tile = auto_tile(net, scale, 3, overlap, lr_alignment(net, scale), device, torch.float32, tile_batch)

    def forward(lr: torch.Tensor) -> torch.Tensor:
        return upscale_tiled(net, lr, scale, int(tile), overlap, device, out_dtype=torch.float32, tile_batch=tile_batch,
                             out_device=device, clamp=False)

    return forward


@torch.no_grad()
def super_resolve(net, lr: torch.Tensor, self_ensemble: bool) -> torch.Tensor:
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


def load_model(cfg: DictConfig) -> tuple[torch.nn.Module, int, dict | None]:
    """(net, scale, the training config from the checkpoint or None)."""
    if cfg.get("ckpt_path"):
        from srlab.inference.checkpoint import load_net

        net, info = load_net(cfg.ckpt_path, trust_checkpoint=bool(cfg.get("trust_checkpoint", False)))
        if cfg.get("scale") is not None and int(cfg.scale) != int(net.scale):
            raise SrlabError(f"{cfg.ckpt_path} was trained for x{net.scale}, not scale={cfg.scale}: "
                             f"drop scale= or pass scale={net.scale}")
        return net, int(net.scale), info.get("srlab_config")
    if cfg.get("scale") is None:
        raise SrlabError("scale is not set: without ckpt_path, pass it, e.g. scale=4")
    scale = check_scale(cfg.scale)
    return instantiate(cfg.net), scale, None


def pick_channels(channels: str, net: torch.nn.Module) -> str:
    if channels not in CHANNELS:
        raise SrlabError(f"eval.channels={channels} is not one of {', '.join(CHANNELS)}")
    if channels == "auto":
        return "rgb" if any(True for _ in net.parameters()) else "y"
    return channels


def eval_degradation(name: str | None, scale: int, train_config: dict | None):
    """The degradation that makes eval LR: None (MATLAB bicubic), the checkpoint's own, or a config."""
    if not name:
        return None
    if name == "train":
        node = (train_config or {}).get("degradation")
        if not node:
            raise SrlabError("eval.degradation=train needs a checkpoint from srlab-train (ckpt_path=...); "
                             "or name one, e.g. eval.degradation=realesrgan")
    else:
        path = CONFIG_DIR / "degradation" / f"{name}.yaml"
        if not path.is_file():
            names = ", ".join(sorted(p.stem for p in path.parent.glob("*.yaml")))
            raise SrlabError(f"eval.degradation={name}: use null (bicubic), train, or one of {names}")
        node = OmegaConf.load(path)
    if str(node.get("_target_", "")).endswith("NoDegradation"):
        raise SrlabError("eval.degradation: this checkpoint trained on given LR files (degradation=none); "
                         "measure it on given LR with eval.lr_dirs=[...], or name a degradation")
    # a training-only pair pool and sharpened targets mean nothing for one image at a time
    if name == "train":  # the checkpoint's config is a stranger's: srlab's own degradations only
        from srlab.inference.file_configs import DEGRADATIONS, build

        return build(dict(node), DEGRADATIONS, "the checkpoint", role="degradation", scale=scale)
    return instantiate(OmegaConf.merge(node, {"scale": scale}))


def measure(net, hr: torch.Tensor, gray: bool, scale: int, channels: str, self_ensemble: bool,
            measures: dict, degrade=None, seed: int = 0, lr: torch.Tensor | None = None) -> tuple[dict, tuple]:
    """One HR image [1,3,H,W] -> (`measures` of SR and of bicubic, and the no-reference ones of
    HR as `hr_<key>`; (hr, bicubic, sr, lr) as measured).
    `degrade` (with its generator seeded by `seed`) makes the LR instead of MATLAB bicubic;
    `lr` [1,3,H/s,W/s] is a given LR file's image (eval.lr_dirs), used as it is."""
    gray_t = torch.tensor([gray], device=hr.device)
    if lr is not None:
        pass
    elif degrade is not None:
        lr = quantize(degrade(hr[0], generator=torch.Generator().manual_seed(seed))[None]) / 255.0
    elif channels == "y":
        hr = (torch.round(luma(hr, gray_t)) / 255.0).to(hr.dtype)  # the 8-bit Y (or gray) image of the MATLAB scripts
        lr = imresize(hr, scale=1 / scale)
    else:
        lr = quantize(imresize(hr, scale=1 / scale)) / 255.0  # LR as saved to PNG
    sr = super_resolve(net, lr, self_ensemble).clamp(0, 1)
    bicubic = imresize(lr, scale=scale).clamp(0, 1)
    row = {}
    for prefix, out in (("", sr), ("bicubic_", bicubic)):
        values = measure_all(measures, out, hr, scale, gray_t)  # Y-only: one channel, psnr_y/ssim_y only
        row.update({prefix + k: float(v) for k, v in values.items()})
    row.update({f"hr_{k}": float(v) for k, v in measure_all(measures, hr, None, scale, gray_t).items()})
    return row, (hr, bicubic, sr, lr)


def lpips_name(backbone) -> str:
    return "lpips" if str(backbone) == "alex" else f"lpips_{backbone}"


def eval_files(folder, lr_dir, pattern) -> list[tuple[Path, Path | None]]:
    """(HR file, its LR file or None) of one eval set; pairs matched by name (srlab.data.pairs)."""
    if lr_dir is None:
        return [(p, None) for p in list_images(folder, what="eval.sets entry")]
    return [(hr, lr) for _, hr, lr in match_pairs(folder, lr_dir, pattern, what="eval.sets entry")]


def read_pair(hr_path: Path, lr_path: Path | None, scale: int):
    """(hr, lr or None, gray). A given LR must be 1/scale of its HR after the benchmark's modcrop
    (HR cropped top-left to a multiple of the scale); (None, None, False) and a warning if not."""
    hr, gray = read_image(hr_path)
    if lr_path is None:
        return hr, None, gray
    lr, lr_gray = read_image(lr_path)
    if fitted_hr_size(tuple(hr.shape[-2:]), tuple(lr.shape[-2:]), scale, modcrop=True) is None:
        log.warning("skipped %s", misfit(f"{hr_path} with {lr_path}", hr.shape[-2:], lr.shape[-2:], scale, True))
        return None, None, False
    return hr, lr, gray and lr_gray


def evaluate(cfg: DictConfig) -> dict:
    if cfg.get("sr_dirs"):  # SR images made elsewhere: measured, not made (srlab/cli/eval_given.py)
        from srlab.cli.eval_given import evaluate_given

        return evaluate_given(cfg, set_name)
    if not cfg.eval.sets:
        raise SrlabError("eval.sets is empty: pass folders of HR images, e.g. eval.sets=[data/Set5/HR]")
    net, scale, train_config = load_model(cfg)
    degrade = eval_degradation(cfg.eval.get("degradation"), scale, train_config)
    channels = pick_channels(str(cfg.eval.get("channels", "auto")), net)
    if degrade is not None:
        if str(cfg.eval.get("channels", "auto")) == "y":
            raise SrlabError("eval.channels=y is the bicubic Y-only protocol: drop it to use eval.degradation")
        channels = "rgb"
    lr_dirs = list(cfg.eval.get("lr_dirs") or [])
    if lr_dirs:
        if len(lr_dirs) != len(cfg.eval.sets):
            raise SrlabError(f"eval.lr_dirs has {len(lr_dirs)} folder(s) for {len(cfg.eval.sets)} eval.sets: give one "
                             "LR folder per set, in the same order")
        if degrade is not None or str(cfg.eval.get("channels", "auto")) == "y":
            raise SrlabError("eval.lr_dirs gives the LR: drop eval.degradation / eval.channels=y, which make their own")
        channels = "rgb"
    device, _ = pick_device(str(cfg.eval.device), half=False)
    net = net.to(device).eval()
    # a stochastic net (VAE, diffusion): also the measures of stochastic SR over eval.samples draws
    n_draws = int(cfg.eval.get("samples", 8) or 0)
    sampler = net if hasattr(net, "sample") and n_draws > 1 else None
    if channels == "y":
        net = GrayNet(net)  # Y in, Y out: bicubic is unchanged, an RGB net sees a gray image
    if cfg.eval.get("lpips"):  # srlab <= 0.2: one LPIPS option, now a measure like the others
        raise SrlabError(f"eval.lpips is now a measure: eval.metrics=[psnr,ssim,{lpips_name(cfg.eval.lpips)}]")
    names, optional, definitions = measure_configs(cfg, "eval")
    measures = {k: m.to(device) for k, m in build_measures(names, definitions, optional, "eval.metrics").items()}
    run_dir = Path(cfg.paths.output_dir)
    if getattr(net, "stepwise", False):  # diffusion: one draw, each denoising step tiled
        forward = TiledSampler(net, cfg.eval.get("tile"), int(cfg.eval.get("overlap", 32)), cfg.eval.get("tile_batch"))
        sampler = forward if sampler is not None else None
    else:
        forward = tiled_forward(net, scale, device, cfg.eval.get("tile"), int(cfg.eval.get("overlap", 32)),
                                cfg.eval.get("tile_batch"))
    crops = Crops(int(cfg.eval.get("crop_size") or 0)) if cfg.get("logger") else None
    rows, metrics = [], {}
    reader = ThreadPoolExecutor(1)  # decodes image i+1 while image i is measured
    for set_index, folder in enumerate(cfg.eval.sets):
        name = set_name(folder)
        lr_dir = lr_dirs[set_index] if lr_dirs else None
        files = eval_files(folder, lr_dir, cfg.eval.get("pair_pattern"))
        set_rows = []
        pending = reader.submit(read_pair, *files[0], scale)
        for index, (path, lr_path) in enumerate(files):
            hr, lr, gray = pending.result()
            if index + 1 < len(files):
                pending = reader.submit(read_pair, *files[index + 1], scale)
            if hr is None:
                continue  # a pair whose sizes do not fit: warned in read_pair
            h, w = (hr.shape[-2] // scale) * scale, (hr.shape[-1] // scale) * scale
            hr = hr[:, :h, :w].unsqueeze(0).to(device)
            lr = lr.unsqueeze(0).to(device) if lr is not None else None
            seed = int(cfg.eval.get("seed", 0)) + index
            if isinstance(forward, TiledSampler):
                forward.seed = seed  # the one draw measured as psnr_y, ... (the same in every eval)
            values, images = measure(forward, hr, gray, scale, channels, bool(cfg.eval.self_ensemble), measures,
                                     degrade, seed, lr)
            if sampler is not None:
                is_gray = torch.tensor([gray or channels == "y"], device=device)
                drawn, _, _ = stochastic_measures(sampler, images[3].expand(-1, 3, -1, -1),
                                                  images[0].expand(-1, 3, -1, -1), is_gray, scale, n_draws, 1.0, seed)
                values.update({k: float(v[0]) for k, v in drawn.items()})
            set_rows.append({"set": name, "image": path.name, **({"lr_image": lr_path.name} if lr_path else {}),
                             **values})
            if crops is not None:
                crops.add(name, path.name, *images[:3], lr=nearest_up(images[3], scale))
            if cfg.eval.save_images:
                save_image(images[2][0], run_dir / "images" / name / f"{path.stem}.png")
                if degrade is not None:  # the input too: what the net was given
                    save_image(images[3][0], run_dir / "images" / name / f"{path.stem}_lr.png")
        if not set_rows:
            raise SrlabError(f"eval.lr_dirs: no pair of {folder} and {lr_dir} fits scale={scale} (see the warnings)")
        for key in set_rows[0]:
            if key not in ("set", "image", "lr_image"):
                metrics[f"{name}/{key}"] = sum(r[key] for r in set_rows) / len(set_rows)
        metrics[f"{name}/n_images"] = len(set_rows)
        rows += set_rows
    reader.shutdown()

    write_results(rows, metrics, run_dir)
    print_table(metrics, [set_name(s) for s in cfg.eval.sets], scale, channels, run_dir, reported_keys(measures))
    if cfg.get("logger"):
        log_results(cfg, metrics, rows, crops, scale, train_config)
    return metrics


@hydra.main(version_base="1.3", config_path=str(CONFIG_DIR), config_name="eval")
def main(cfg: DictConfig) -> None:
    with user_errors():
        evaluate(cfg)


def cli() -> None:
    """The `srlab-eval` console script: one line for an unknown key or option, then Hydra."""
    from srlab.cli.entry import hydra_entry

    hydra_entry("eval", main)


if __name__ == "__main__":
    cli()
