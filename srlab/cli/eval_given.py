"""srlab-eval on SR images made elsewhere: `sr_dirs=[<folder>,...]` (a paper's released results,
another tool's output) measured with the same conventions as a checkpoint's.

Each folder is one method, named after the folder; its files pair with the HR images of each
`eval.sets` folder by name (`baby.png` <-> `baby.png`, `baby_x4_SR.png`: the HR name followed by
a separator). The HR is cropped top-left to a multiple of `scale` as usual and the SR must
then be its size (a file that does not fit is skipped with a warning). Results per method and
set (`<method>/<set>/<key>` in metrics.json, `method` in per_image.csv), with the bicubic
upscale of the MATLAB-bicubic LR of the same HR as `bicubic/<set>`. Without `eval.sets`, only
no-reference measures (NIQE) can run: each folder is scored alone.
"""
from __future__ import annotations

import logging
from pathlib import Path

import torch
from omegaconf import DictConfig, OmegaConf

from srlab.config.compose import check_scale
from srlab.data.images import read_image
from srlab.data.sources import list_images
from srlab.errors import SrlabError
from srlab.evaluation.measures import build_measures, measure_all, measure_configs, reported_keys
from srlab.evaluation.metrics import quantize
from srlab.evaluation.report import print_table, write_results
from srlab.ops.imresize import imresize

log = logging.getLogger(__name__)


def match(hr_stem: str, sr_files: list[Path]) -> Path | None:
    """The SR file named like the HR image: the same stem, or the stem then a separator."""
    exact = [p for p in sr_files if p.stem == hr_stem]
    if exact:
        return exact[0]
    prefixed = [p for p in sr_files if p.stem.startswith(hr_stem) and not p.stem[len(hr_stem)].isalnum()]
    return min(prefixed, key=lambda p: len(p.stem)) if prefixed else None


def evaluate_given(cfg: DictConfig, set_name) -> dict:
    if cfg.get("scale") is None:
        raise SrlabError("sr_dirs: pass the scale the SR images were made at, e.g. scale=4 (the border crop)")
    scale = check_scale(cfg.scale)
    names, optional, definitions = measure_configs(cfg, "eval")
    measures = build_measures(names, definitions, optional, "eval.metrics")
    sets = [] if OmegaConf.is_missing(cfg.eval, "sets") else list(cfg.eval.sets or [])
    if not sets and any(m.needs_hr for m in measures.values()):
        raise SrlabError(f"sr_dirs without eval.sets: {', '.join(k for k, m in measures.items() if m.needs_hr)} "
                         "need HR images; give eval.sets=[<HR folder>] or eval.metrics=[niqe]")
    rows, groups = [], {}
    for sr_dir in cfg.sr_dirs:
        method = Path(sr_dir).resolve().name
        sr_files = list_images(sr_dir, what="sr_dirs entry")
        for folder in sets or [None]:
            pairs = [(None, p) for p in sr_files] if folder is None else \
                [(hr, match(hr.stem, sr_files)) for hr in list_images(folder, what="eval.sets entry")]
            for hr_path, sr_path in pairs:
                if sr_path is None:
                    log.warning("sr_dirs: no image in %s is named like %s: skipped", sr_dir, hr_path.name)
                    continue
                sr, gray = read_image(sr_path)
                sr, hr = sr[None], None
                key = f"{method}/{set_name(folder)}" if folder is not None else method
                values = {}
                if hr_path is not None:
                    hr, hr_gray = read_image(hr_path)
                    h, w = (hr.shape[-2] // scale) * scale, (hr.shape[-1] // scale) * scale
                    hr, gray = hr[None, :, :h, :w], gray and hr_gray
                    if tuple(sr.shape[-2:]) != (h, w):
                        log.warning("sr_dirs: %s is %dx%d, its HR %dx%d after the crop to x%d: skipped",
                                    sr_path, sr.shape[-1], sr.shape[-2], w, h, scale)
                        continue
                    bicubic = imresize(quantize(imresize(hr, scale=1 / scale)) / 255.0, scale=scale).clamp(0, 1)
                    g = torch.tensor([gray])
                    values = {f"bicubic_{k}": float(v) for k, v in measure_all(measures, bicubic, hr, scale, g).items()}
                values.update({k: float(v) for k, v in measure_all(measures, sr, hr, scale, torch.tensor([gray])).items()})
                row = {"method": method, "set": set_name(folder) if folder is not None else "", "image": sr_path.name,
                       **({"hr_image": hr_path.name} if hr_path is not None else {}), **values}
                rows.append(row)
                groups.setdefault(key, []).append(row)
    if not rows:
        raise SrlabError("sr_dirs: no SR image matched an HR image by name (see the warnings)")
    metrics = {}
    for key, group in groups.items():
        for k in group[0]:
            if k not in ("method", "set", "image", "hr_image"):
                metrics[f"{key}/{k}"] = sum(r[k] for r in group) / len(group)
        metrics[f"{key}/n_images"] = len(group)
    run_dir = Path(cfg.paths.output_dir)
    write_results(rows, metrics, run_dir)
    print_table(metrics, list(groups), scale, "rgb", run_dir, reported_keys(measures))
    return metrics
