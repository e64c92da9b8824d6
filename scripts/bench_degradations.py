"""make bench's degradation rows: each degradation alone on one device batch.

A batch of HR photo crops (scikit-image's photos, colour and gray; default 16 x 256 px, x4)
is degraded again and again as training would (`train_batch` for a degradation that has one:
realesrgan's sharpened HR, LR and pair pool; its LR alone as a second row), beside one raw
training step of a net on the same batch. `cost_of_step` = degradation time / step time:
issue 12 asks <= 0.15 on a GPU with RRDBNet. CPU: the median call; GPU: the mean between syncs.
"""
from __future__ import annotations

import json
import time
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from hydra.utils import instantiate

from srlab.config.compose import compose_config
from srlab.data.sources import SAMPLE_COLOR, SAMPLE_GRAY, sample_dir


def sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def photo_batch(n: int, size: int, device) -> tuple[torch.Tensor, list[bool]]:
    """n random size x size crops of the scikit-image photos (colour and gray), float in [0,1]."""
    from srlab.data.images import read_image

    g = torch.Generator().manual_seed(0)
    images = [read_image(sample_dir() / name) for name in list(SAMPLE_COLOR.values()) + list(SAMPLE_GRAY.values())]
    crops, gray = [], []
    for i in range(n):
        img, is_gray = images[i % len(images)]
        if min(img.shape[-2:]) < size:  # small photos: upscale so that a crop fits
            img = F.interpolate(img[None], scale_factor=size / min(img.shape[-2:]) + 0.01, mode="bilinear")[0]
        top = int(torch.randint(img.shape[-2] - size + 1, (), generator=g))
        left = int(torch.randint(img.shape[-1] - size + 1, (), generator=g))
        crops.append(img[:, top:top + size, left:left + size])
        gray.append(is_gray)
    return torch.stack(crops).clamp(0, 1).to(device), gray


def time_per_call(fn, device, warmup: int, calls: int) -> float:
    """Seconds per call: GPU the mean over the window between two syncs, CPU the median call."""
    for _ in range(warmup):
        fn()
    sync(device)
    stamps = [time.perf_counter()]
    for _ in range(calls):
        fn()
        if device.type != "cuda":
            stamps.append(time.perf_counter())
    sync(device)
    if device.type == "cuda":
        return (time.perf_counter() - stamps[0]) / calls
    return float(np.median(np.diff(stamps)))


def degradation_rows(args, work: Path) -> list[dict]:
    """Each degradation alone on one device batch, beside a raw U-Net training step on it."""
    device = torch.device(args.device)
    hr, gray = photo_batch(args.batch, args.degradation_patch, device)
    base = ["trainer=cpu" if device.type == "cpu" else "trainer=gpu", f"scale={args.degradation_scale}"]
    step_s = None
    if args.degradation_net:
        cfg = compose_config("train", base + [f"net={args.degradation_net}"], work / "degradation_net")
        net = instantiate(cfg.net).to(device)
        opt = torch.optim.Adam(net.parameters(), lr=1e-4)
        lr = F.interpolate(hr, scale_factor=1 / args.degradation_scale, mode="area")

        def step():
            loss = F.l1_loss(net(lr), hr)
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()

        steps = 3 if device.type == "cpu" else 50
        step_s = time_per_call(step, device, 1, steps)
        del net, opt
    rows = []
    for name in [d for d in args.degradations.split(",") if d]:
        cfg = compose_config("train", base + [f"degradation={name}"], work / f"degradation_{name}")
        variants = [(name, "batch")] + ([(f"{name} (LR only)", "lr")] if name == "realesrgan" else [])
        for label, how in variants:
            deg = instantiate(cfg.degradation)
            g = torch.Generator().manual_seed(0)
            if how == "batch" and hasattr(deg, "train_batch"):  # what training runs: targets, LR, pool
                fn = lambda: deg.train_batch({"hr": hr, "gray": torch.tensor(gray, device=device)}, gray, g)  # noqa: E731
            else:
                fn = lambda: deg.batch(hr, gray=gray, generator=g)  # noqa: E731
            seconds = time_per_call(fn, device, 3, args.degradation_batches)
            row = {"name": f"degradation {label}", "srlab_batches_per_s": round(1 / seconds, 3),
                   "ms_per_batch": round(seconds * 1000, 2), "batch": args.batch,
                   "patch": args.degradation_patch, "scale": args.degradation_scale}
            if step_s:
                row.update(raw_batches_per_s=round(1 / step_s, 3), ratio=round(step_s / seconds, 3),
                           cost_of_step=round(seconds / step_s, 4), net=args.degradation_net)
            rows.append(row)
            print(json.dumps(row), flush=True)
    return rows
