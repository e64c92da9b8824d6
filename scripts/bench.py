"""make bench: srlab's training throughput against a hand-written PyTorch loop, as ratios.

For each row, in one process and on the same device:
- srlab: `srlab-train`'s own objects (`srlab.cli.train.build`: the composed config, data module,
  approach, callbacks, CSV logger, Lightning trainer), batches/s over the steps after a warm-up
  (GPU: whole window between two device syncs; CPU: the median step, robust to a busy
  neighbour on a shared machine);
- raw: a minimal loop on the *same net instance* (with the same speed switches), the same
  optimizer and schedule, loss, batch, patch and precision, with one batch already on the
  device: forward, loss, backward, step. The ratio srlab/raw is the framework's cost: data
  loading, degradation, logging, progress bar and Lightning's hooks.
- loader rows: the data path alone (default workers, transfer, LR made on the device) in
  batches/s, beside what the net consumes (raw batches/s): >= 1 means the GPU never waits.
- degradation rows: each degradation alone on a device batch (default 16 x 256 px HR photo
  crops, x4) in batches/s and ms per batch, beside one raw training step of the U-Net on
  the same batch (`cost_of_step` = degradation time / step time; issue 12 asks <= 0.15 on a
  GPU). realesrgan is timed as training runs it (`train_batch`: sharpened HR, LR, pair pool)
  and for the LR alone (scripts/bench_degradations.py).

Data: `samples` (the embedded photos, in RAM), `folder` (PNG files of DIV2K size, 2040x1356,
made here from the scikit-image photos plus grain, decoded lazily per patch) and `store` (the
same folder after `srlab-prepare`, memory-mapped). Epochs are DIV2K-long (800 images x 16
patches) whatever the image count, so epoch restarts cost what they cost on DIV2K.

    make bench                      # all rows on the GPU if there is one, else the CPU
    python scripts/bench.py --rows unet/samples,edsr/store --steps 100
    python scripts/bench.py --rows "" --variants ""   # the degradation rows alone
    python scripts/bench.py --rows swinir_light/samples --batch 2 --warmup 1 --steps 2 --loader 0   # CPU smoke
Peak memory per row: GPU, the allocator's peak (srlab's run and the raw loop apart); CPU, the
whole process's peak RSS over that phase (Linux; reset through /proc/self/clear_refs).
Writes benchmarks/results.json ({"device", "torch", "rows": [...]}) and prints a table.
"""

from __future__ import annotations

import argparse
import gc
import json
import multiprocessing
import os
import platform
import shutil
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import pytorch_lightning as pl
import torch
from PIL import Image

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))  # run from a checkout without installing (GPU machines)

from srlab.cli.train import build  # noqa: E402
from srlab.config.compose import compose_config  # noqa: E402
from srlab.data.prepared import prepare_store  # noqa: E402
from srlab.data.sources import SAMPLE_COLOR, SAMPLE_GRAY, sample_dir  # noqa: E402

sys.path.insert(0, str(Path(__file__).resolve().parent))
from bench_abab import Alternate, RawLoop, sync  # noqa: E402
from bench_degradations import degradation_rows  # noqa: E402

NETS = {  # name -> overrides; EDSR's patch is set per device (--edsr-patch)
    "unet": ["experiment=unet"],
    "edsr": ["experiment=edsr"],
    # the papers' nets at full size, L1 as their recipes (configs/experiment/<net>.yaml)
    "rrdbnet": ["net=rrdbnet", "loss=l1"],
    "rcan": ["net=rcan", "loss=l1"],
    "swinir": ["net=swinir", "loss=l1"],
    "swinir_light": ["net=swinir_light", "loss=l1"],
    # spandrel's classes (srlab/nets/spandrel_arch.py): the efficient nets people train for fast
    # inference, and HAT-S, a window-attention net
    "span": ["net=span", "loss=l1"],
    "compact": ["net=compact", "loss=l1"],
    "hat_s": ["net=hat_s", "loss=l1"],
    # ResShift's training step (a denoiser on the LR grid, one random t per image), no val draws
    "diffusion": ["experiment=diffusion", "approach.val_samples=0"],
}
# HR patch of the papers' recipes on a GPU; on the CPU 64 px (16 px LR), or a step takes minutes
PAPER_PATCH = {"rrdbnet": 128, "rcan": 192, "swinir": 192, "swinir_light": 256, "span": 256, "compact": 256,
               "hat_s": 256}
DIV2K_SIZE, DIV2K_PATCHES_PER_EPOCH = (1356, 2040), 800 * 16


def _photo_png(task: tuple) -> None:
    path, src_name, size, seed = task
    h, w = size
    src = Image.open(sample_dir() / src_name).convert("RGB")
    arr = np.asarray(src.resize((w, h), Image.BICUBIC), dtype=np.float32)
    arr += np.random.default_rng(seed).normal(0, 3.0, arr.shape).astype(np.float32)
    Image.fromarray(arr.clip(0, 255).astype(np.uint8)).save(path)


def make_folder(folder: Path, n: int, size=DIV2K_SIZE) -> Path:
    """n photo-like PNGs of `size`: scikit-image photos resized, plus sensor-like grain, so
    they compress like real photos (a flat synthetic image would decode unrealistically fast)."""
    folder.mkdir(parents=True, exist_ok=True)
    names = list(SAMPLE_COLOR.values()) + list(SAMPLE_GRAY.values())
    tasks = [(folder / f"{i:04d}.png", names[i % len(names)], size, i) for i in range(n)]
    tasks = [t for t in tasks if not t[0].exists()]
    with multiprocessing.get_context("fork").Pool(max(1, min(16, os.cpu_count() or 1))) as pool:
        pool.map(_photo_png, tasks)
    return folder


def data_overrides(data: str, folders: dict) -> list[str]:
    if data == "samples":
        return []
    repeats = -(-DIV2K_PATCHES_PER_EPOCH // folders["n"])
    return [f"data={data}", f"data.train_dir={folders[data]}", f"data.train_repeats={repeats}"]


def compose(net: str, data: str, args, folders: dict, run_dir: Path, extra=()):
    patch = {"edsr": args.edsr_patch, "unet": args.unet_patch, "diffusion": args.unet_patch}.get(net)
    patch = patch or (PAPER_PATCH[net] if args.device == "cuda" else args.paper_net_cpu_patch)
    gpu = ["trainer=gpu"] if args.device == "cuda" else ["trainer=cpu"]
    overrides = NETS[net] + gpu + data_overrides(data, folders) + [
        "logger=csv", f"data.batch_size={args.batch}", f"data.patch_size={patch}",
        f"trainer.max_steps={args.warmup + args.windows * args.steps}", "+trainer.limit_val_batches=0",
        "trainer.max_time=null", "+trainer.enable_model_summary=false", *extra,
    ]
    return compose_config("train", overrides, run_dir)


def reset_peak_memory(device: torch.device) -> None:
    """GPU: the allocator's peak; CPU (Linux): the process's peak RSS (VmHWM), reset by clear_refs."""
    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats(device)
        return
    try:
        Path("/proc/self/clear_refs").write_text("5")
    except OSError:
        pass


def peak_memory_mb(device: torch.device) -> float | None:
    """Peak since `reset_peak_memory`, MB: tensors on the GPU; the whole process's RSS on the CPU."""
    if device.type == "cuda":
        return round(torch.cuda.max_memory_allocated(device) / 2**20, 1)
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                return round(int(line.split()[1]) / 1024, 1)
    except OSError:
        pass
    return None


def on_device(datamodule, batch: dict, device) -> dict:
    """A loader batch as the approach sees it: transferred, LR made on the device."""
    return datamodule.on_after_batch_transfer(datamodule.transfer_batch_to_device(batch, device, 0), 0)


def device_batch(datamodule, device) -> dict:
    return on_device(datamodule, next(iter(datamodule.train_dataloader())), device)


def loader_rate(datamodule, device, batches: int) -> float:
    """Batches/s of the data path alone: default workers, pinned transfer, device degradation."""
    it = iter(datamodule.train_dataloader())
    for _ in range(min(5, batches)):  # workers started, queues full
        next(it)
    sync(device)
    t0 = time.perf_counter()
    for _ in range(batches):
        on_device(datamodule, next(it), device)
    sync(device)
    rate = batches / (time.perf_counter() - t0)
    del it
    return rate


def run_row(name: str, net: str, data: str, args, folders, work: Path, extra=()) -> list[dict]:
    device = torch.device(args.device)
    if data == "folder":  # a whole PNG decoded per patch: a few batches/s, so fewer of them
        args = argparse.Namespace(**{**vars(args), "steps": max(4, args.steps // 10),
                                     "warmup": max(2, args.warmup // 3),
                                     "loader_batches": max(4, args.loader_batches // 5)})
    run_dir = work / "".join(c if c.isalnum() else "_" for c in name)
    cfg = compose(net, data, args, folders, run_dir, extra)
    datamodule, model, trainer, _ = build(cfg)
    # ABAB (scripts/bench_abab.py): srlab windows inside one fit, a raw window after each
    model.to(device)
    datamodule.setup("fit")
    raw = RawLoop(model, datamodule, next(iter(datamodule.train_dataloader())), cfg, device)
    reset_peak_memory(device)
    raw.run(args.warmup)  # the raw path's warm-up (clocks, cuDNN autotuning) before anything is timed
    raw_peak = peak_memory_mb(device)
    graph_raw = None  # speed.cuda_graph rows: also a hand-written loop replaying its captured step
    if device.type == "cuda" and "speed.cuda_graph=true" in extra:
        graph_raw = RawLoop(model, datamodule, next(iter(datamodule.train_dataloader())), cfg, device)
    timer = Alternate(raw, args.warmup, args.steps, args.windows, graph_raw)
    trainer.callbacks.append(timer)
    reset_peak_memory(device)
    trainer.fit(model, datamodule=datamodule)
    srlab_peak = peak_memory_mb(device)
    del trainer  # its loader workers go before the loader row
    gc.collect()
    rows = [{"name": name, **timer.summary(), "srlab_peak_mb": srlab_peak, "raw_peak_mb": raw_peak,
             "params_m": round(sum(p.numel() for p in model.net.parameters()) / 1e6, 3),
             "steps": args.steps, "batch": args.batch, "patch": int(cfg.data.patch_size),
             "precision": str(cfg.trainer.precision), "workers": datamodule._workers(),
             "ema": bool(raw.ema is not None), "lr_on_device": raw.on_device, "overrides": " ".join(extra)}]
    if args.loader and not extra:
        data_rate = loader_rate(datamodule, device, args.loader_batches)
        raw_rate = rows[0]["raw_batches_per_s"]
        rows.append({"name": f"loader {net}/{data}", "srlab_batches_per_s": round(data_rate, 3),
                     "raw_batches_per_s": raw_rate, "ratio": round(data_rate / raw_rate, 3),
                     "patches_per_s": round(data_rate * args.batch, 1),
                     "net_patches_per_s": round(raw_rate * args.batch, 1),
                     "workers": datamodule._workers()})
    del model, datamodule, raw
    gc.collect()
    if device.type == "cuda":
        torch.cuda.empty_cache()
    return rows


def print_table(result: dict) -> None:
    print(f"\ndevice: {result['device']}  torch {result['torch']}")
    print(f"{'row':<44} {'srlab b/s':>10} {'raw b/s':>10} {'ratio':>7} {'srlab MB':>9} {'raw MB':>9}  min-max")
    for r in result["rows"]:
        mb = "".join(f" {r[k]:>9.0f}" if r.get(k) is not None else f" {'-':>9}"
                     for k in ("srlab_peak_mb", "raw_peak_mb"))
        extra = f"  {r['ms_per_batch']:.1f} ms/batch" if "ms_per_batch" in r else ""
        extra += f"  {r['ratio_min']:.3f}-{r['ratio_max']:.3f} ({r['windows']} windows)" if "ratio_min" in r else ""
        print(f"{r['name']:<44} {r['srlab_batches_per_s']:>10.2f} {r.get('raw_batches_per_s', float('nan')):>10.2f}"
              f" {r.get('ratio', float('nan')):>7.3f}{mb}{extra}")
    for k, v in result.get("notes", {}).items():
        print(f"{k}: {v}")


def main() -> None:
    gpu = torch.cuda.is_available()
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--device", default="cuda" if gpu else "cpu", choices=["cpu", "cuda"])
    default_rows = "unet/samples,unet/folder,unet/store,edsr/samples,edsr/folder,edsr/store"
    default_rows += ",span/samples,compact/samples"  # spandrel's efficient nets; CPU: at --paper-net-cpu-patch
    default_rows += ",diffusion/samples"  # ResShift's training step (experiment=diffusion)
    if gpu:  # the papers' nets and HAT-S: seconds to minutes per step on a CPU, so only on a GPU
        default_rows += ",hat_s/samples,rrdbnet/store,rcan/store,swinir/store,swinir_light/store"
    p.add_argument("--rows", default=default_rows,
                   help=f"net/data pairs; net in {', '.join(NETS)}; data in samples, folder, store")
    p.add_argument("--variants", default="speed.channels_last=false;speed.compile=true" if gpu else "",
                   help="';'-separated override sets, each re-run on the samples rows")
    p.add_argument("--variant-rows", default="unet/samples,edsr/samples",
                   help="the rows the variants are run on")
    p.add_argument("--batch", type=int, default=16)
    p.add_argument("--unet-patch", type=int, default=128)
    p.add_argument("--edsr-patch", type=int, default=192 if gpu else 96,
                   help="HR px (192 = EDSR's 48 px LR at x4); smaller on CPU to fit 10 minutes")
    p.add_argument("--paper-net-cpu-patch", type=int, default=64,
                   help="HR px for rrdbnet/rcan/swinir/swinir_light on the CPU (GPU: the papers' patches)")
    p.add_argument("--warmup", type=int, default=60 if gpu else 3,
                   help="steps before timing (GPU: clocks and cuDNN autotuning settle)")
    p.add_argument("--steps", type=int, default=50 if gpu else 5, help="steps per timed window")
    p.add_argument("--windows", type=int, default=5, help="srlab and raw windows each, alternating (ABAB...)")
    p.add_argument("--images", type=int, default=40 if gpu else 8, help="large images in the folder")
    p.add_argument("--loader", type=int, default=1, help="also time the data path alone (0: no)")
    p.add_argument("--loader-batches", type=int, default=100 if gpu else 10)
    p.add_argument("--degradations", default="bicubic,crapify,realesrgan",
                   help="degradation rows (',' list; empty: none)")
    p.add_argument("--degradation-patch", type=int, default=256, help="HR px of the degradation rows")
    p.add_argument("--degradation-scale", type=int, default=4)
    p.add_argument("--degradation-batches", type=int, default=200 if gpu else 15)
    p.add_argument("--degradation-net", default="unet", help="net whose raw training step the rows compare to ('': none)")
    p.add_argument("--work", default=None, help="folder for images/store/runs (default: a temp dir)")
    p.add_argument("--out", default=str(ROOT / "benchmarks" / "results.json"))
    args = p.parse_args()
    os.environ.setdefault("WANDB_MODE", "offline")
    torch.set_flush_denormal(True)  # CPU: denormal activations make step times data-dependent

    work = Path(args.work or tempfile.mkdtemp(prefix="srlab-bench-"))
    rows = [r.split("/") for r in args.rows.split(",") if r]
    folders, notes = {"n": args.images}, {}
    if any(d in ("folder", "store") for _, d in rows):
        t0 = time.perf_counter()
        folders["folder"] = make_folder(work / "folder", args.images)
        notes["folder"] = f"{args.images} PNGs of {DIV2K_SIZE[1]}x{DIV2K_SIZE[0]}, made in {time.perf_counter() - t0:.0f} s"
    if any(d == "store" for _, d in rows):
        t0 = time.perf_counter()
        prepare_store(folders["folder"], work / "store", progress=False)
        folders["store"] = work / "store"
        notes["srlab-prepare"] = f"{time.perf_counter() - t0:.1f} s for {args.images} images"

    result = {"device": torch.cuda.get_device_name() if args.device == "cuda" else
              f"cpu ({platform.processor() or platform.machine()}, {os.cpu_count()} cores, "
              f"{torch.get_num_threads()} threads)",
              "torch": torch.__version__, "lightning": pl.__version__, "rows": [], "notes": notes}
    jobs = [(f"{net}/{data}", net, data, ()) for net, data in rows]
    jobs += [(f"{row} {variant}", *row.split("/"), tuple(variant.split()))
             for variant in args.variants.split(";") if variant
             for row in args.variant_rows.split(",") if row]
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    if args.degradations:
        result["rows"] += degradation_rows(args, work)
        Path(args.out).write_text(json.dumps(result, indent=2) + "\n")
    for name, net, data, extra in jobs:
        result["rows"] += run_row(name, net, data, args, folders, work, extra)
        print(json.dumps(result["rows"][-1]), flush=True)
        Path(args.out).write_text(json.dumps(result, indent=2) + "\n")  # partial results survive
    print_table(result)
    print(f"wrote {args.out}")
    if not args.work:  # the temp folder holds a few hundred MB of images and a store
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
