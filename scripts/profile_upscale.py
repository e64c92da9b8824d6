"""Where srlab-upscale's time goes for one image: read / net / blend / write, and tiled vs untiled.

Builds an EDSR-baseline (16 blocks, 64 channels; random weights: timing does not depend on
them) or loads --ckpt, writes a photo-like test image (smooth colour fields: PNG compresses it
like a photo, unlike noise), then runs exactly what `srlab-upscale ... profile=true` runs
(`srlab.cli.upscale.upscale_file`: read, tiled net with device blending, streamed PNG/TIFF write)
and prints the split. --untiled also times whole-image forwards of the same net (they need the
whole image's activations in memory) alternated with tiled runs (`upscale_tiled`: net, blend,
quantise to uint8), best of --repeat each, and reports the tiled throughput relative to it.

    .venv/bin/python scripts/profile_upscale.py --sizes 500x375 1000x750 --untiled     # CPU
    .venv/bin/python scripts/profile_upscale.py --sizes 2000x1500 --device cuda --half  # the issue's job
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

import numpy as np
import torch
from PIL import Image

from srlab.cli.upscale import pick_device, read_input, upscale_file
from srlab.inference.profiling import StageTimer
from srlab.inference.tile_size import auto_tile, auto_tile_batch
from srlab.inference.tiling import upscale_tiled


def photo_like(path: Path, w: int, h: int, seed: int = 0) -> None:
    rng = np.random.default_rng(seed)
    coarse = rng.integers(0, 256, (h // 16 + 2, w // 16 + 2, 3), dtype=np.uint8)
    image = Image.fromarray(coarse).resize((w, h), Image.BICUBIC)
    noise = rng.normal(0, 3, (h, w, 3))  # sensor-like grain
    Image.fromarray(np.clip(np.asarray(image) + noise, 0, 255).astype(np.uint8)).save(path)


def build_net(ckpt: str | None, scale: int) -> torch.nn.Module:
    if ckpt:
        from srlab.inference.checkpoint import load_net

        return load_net(ckpt)[0]
    from srlab.nets.edsr import EDSR

    torch.manual_seed(0)
    return EDSR(scale=scale).eval()


def sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--sizes", nargs="+", default=["500x375"], help="LR sizes WxH")
    parser.add_argument("--ckpt", default=None)
    parser.add_argument("--scale", type=int, default=4)
    parser.add_argument("--device", default="auto")
    parser.add_argument("--half", action="store_true")
    parser.add_argument("--precision", default="fp16", choices=["fp16", "bf16"])
    parser.add_argument("--tile", type=int, default=None, help="LR px; default: srlab-upscale's automatic choice")
    parser.add_argument("--tile-batch", type=int, default=None)
    parser.add_argument("--overlap", type=int, default=32)
    parser.add_argument("--format", default="png", choices=["png", "tiff"])
    parser.add_argument("--png-compression", type=int, default=1)
    parser.add_argument("--untiled", action="store_true", help="also time whole-image forwards against the tiler")
    parser.add_argument("--repeat", type=int, default=2)
    args = parser.parse_args()

    device, dtype = pick_device(args.device, args.half, args.precision)
    net = build_net(args.ckpt, args.scale).to(device=device, dtype=dtype)
    scale = int(net.scale)
    tile_batch = args.tile_batch or auto_tile_batch(device)
    tile = args.tile or auto_tile(net, scale, 3, args.overlap, 1, device, dtype, tile_batch)
    print(f"net={args.ckpt or 'EDSR-baseline (random weights)'} x{scale} device={device} dtype={dtype} "
          f"tile={tile} tile_batch={tile_batch} overlap={args.overlap} format={args.format} "
          f"png_compression={args.png_compression} threads={torch.get_num_threads()}")
    with tempfile.TemporaryDirectory() as tmp:
        for size in args.sizes:
            w, h = map(int, size.lower().split("x"))
            src = Path(tmp) / f"in_{w}x{h}.png"
            photo_like(src, w, h)
            # warm-up on a small crop: kernels, allocator, cuDNN autotuning are not the image's time
            small = read_input(src)
            small = (small[0][:, :min(h, 96), :min(w, 96)], *small[1:])
            upscale_file(net, small, Path(tmp) / "warm.png", scale, tile, args.overlap, device, dtype, tile_batch)
            timer = StageTimer(device)
            start = time.perf_counter()
            with timer("read"):
                loaded = read_input(src)
            dst = Path(tmp) / f"out_{w}x{h}{'.tif' if args.format == 'tiff' else '.png'}"
            upscale_file(net, loaded, dst, scale, tile, args.overlap, device, dtype, tile_batch,
                         args.png_compression, timer=timer)
            wall = time.perf_counter() - start
            print(timer.line(f"{w}x{h} -> {w * scale}x{h * scale}", wall) + f" | file {dst.stat().st_size / 1e6:.1f} MB")
            if args.untiled:  # alternated, best of --repeat: the machine's load moves both alike
                x, tiled, whole = loaded[0][None].to(device, dtype), [], []
                with torch.inference_mode():
                    for _ in range(args.repeat):
                        sync(device)
                        start = time.perf_counter()
                        net(x)
                        sync(device)
                        whole.append(time.perf_counter() - start)
                        start = time.perf_counter()
                        upscale_tiled(net, loaded[0], scale, tile, args.overlap, device, dtype, tile_batch=tile_batch)
                        tiled.append(time.perf_counter() - start)
                print(f"  untiled forward {min(whole):.2f}s, tiled net+blend+quantise {min(tiled):.2f}s "
                      f"(best of {args.repeat}): tiled throughput = {min(whole) / min(tiled):.2f}x untiled")


if __name__ == "__main__":
    main()
