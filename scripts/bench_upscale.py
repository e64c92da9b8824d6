"""srlab-upscale on CPU: peak RSS at 1, 4 and 16 Mpx inputs, and tiled vs untiled throughput.

Memory: each size runs in a fresh child process (peak RSS only ever grows): it builds the net,
warms up on a small image, records the RSS high-water mark (baseline, /proc VmHWM), then runs the CLI's own per-image
path (`srlab.cli.upscale.upscale_file`: read, tiled net, device blending, PNG streamed to disk by a
writer thread) on a photo-like input and records the high-water mark again. Reported: peak, baseline,
the float LR image (read_input's, the one buffer that grows with the image), and the uint8
output that the pre-streaming path kept whole in memory (for comparison; now never allocated).
Throughput: net+blend of the tiled path vs one whole-image forward of the same net (same
process, same image, best of 2).

    .venv/bin/python scripts/bench_upscale.py                       # tiny net, x4, 1/4/16 Mpx
    .venv/bin/python scripts/bench_upscale.py --mpx 1 4 --tile 256
"""

from __future__ import annotations

import argparse
import json
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

MiB = 1024 * 1024


def tiny_net(scale: int):
    """An ESPCN-like net (3 convs at LR size, pixel shuffle): cheap enough for 16 Mpx on 2 cores."""
    import torch
    from torch import nn

    torch.manual_seed(0)
    net = nn.Sequential(nn.Conv2d(3, 32, 5, padding=2), nn.Tanh(), nn.Conv2d(32, 16, 3, padding=1), nn.Tanh(),
                        nn.Conv2d(16, 3 * scale**2, 3, padding=1), nn.PixelShuffle(scale), nn.Sigmoid()).eval()
    net.scale = scale
    return net


def peak_rss() -> int:
    """This process's RSS high-water mark (VmHWM: unlike ru_maxrss, not inherited from the
    parent at fork/exec, and the parent here held the large test images)."""
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) * 1024
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024


def child(args) -> None:
    import torch

    from srlab.cli.upscale import read_input, upscale_file
    from srlab.inference.profiling import StageTimer
    from srlab.inference.tile_size import auto_tile
    from srlab.inference.tiling import upscale_tiled

    net, src = tiny_net(args.scale), Path(args.child)
    cpu = torch.device("cpu")
    tile = args.tile or auto_tile(net, args.scale, 3, args.overlap, 1, cpu, torch.float32)
    out = src.with_name("out.png")
    warm = read_input(src.with_name("warm.png"))
    upscale_file(net, warm, out, args.scale, tile, args.overlap, cpu, torch.float32)
    baseline = peak_rss()
    timer, start = StageTimer(), time.perf_counter()
    with timer("read"):
        loaded = read_input(src)
    upscale_file(net, loaded, out, args.scale, tile, args.overlap, cpu, torch.float32, timer=timer,
                 auto_height=not args.tile)
    wall = time.perf_counter() - start
    peak = peak_rss()
    h, w = loaded[0].shape[-2:]
    result = {"w": w, "h": h, "tile": tile, "peak": peak, "baseline": baseline, "wall": wall,
              "split": dict(timer.seconds), "input": loaded[0].numel() * 4, "old_output": h * w * args.scale**2 * 3}
    if args.ratio:  # after the peak was read: the untiled forward needs the whole image's activations
        x = loaded[0][None]
        tiled, whole = [], []
        with torch.inference_mode():
            for _ in range(2):
                t = time.perf_counter()
                upscale_tiled(net, x, args.scale, tile, args.overlap)
                tiled.append(time.perf_counter() - t)
                t = time.perf_counter()
                net(x)
                whole.append(time.perf_counter() - t)
        result.update(tiled=min(tiled), whole=min(whole))
    print(json.dumps(result))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--mpx", type=float, nargs="+", default=[1, 4, 16], help="LR megapixels (4:3)")
    parser.add_argument("--scale", type=int, default=4)
    parser.add_argument("--tile", type=int, default=None, help="LR px; default: srlab-upscale's automatic choice")
    parser.add_argument("--overlap", type=int, default=32)
    parser.add_argument("--ratio-mpx", type=float, default=1, help="also time tiled vs untiled at this size")
    parser.add_argument("--child", default=None, help=argparse.SUPPRESS)
    parser.add_argument("--ratio", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        return child(args)
    sys.path.insert(0, str(Path(__file__).parent))
    from profile_upscale import photo_like

    results = []
    with tempfile.TemporaryDirectory() as tmp:
        photo_like(Path(tmp) / "warm.png", 160, 120)
        for mpx in args.mpx:
            w = int((mpx * 1e6 * 4 / 3) ** 0.5)
            h = int(w * 3 / 4)
            photo_like(Path(tmp) / "in.png", w, h)
            cmd = [sys.executable, __file__, "--child", str(Path(tmp) / "in.png"), "--scale", str(args.scale),
                   "--overlap", str(args.overlap)] + (["--tile", str(args.tile)] if args.tile else []) \
                + (["--ratio"] if mpx == args.ratio_mpx else [])
            run = subprocess.run(cmd, capture_output=True, text=True)
            if run.returncode != 0:
                sys.exit(f"child for {mpx} Mpx failed:\n{run.stderr}")
            results.append(json.loads(run.stdout.strip().splitlines()[-1]))
    print(f"tiny net x{args.scale}, overlap {args.overlap}, PNG level 1 streamed; tile {results[0]['tile']}")
    print(f"{'LR size':>11} {'peak RSS':>9} {'baseline':>9} {'peak-base':>9} {'LR float':>9} "
          f"{'old uint8 out':>13} {'read':>6} {'net':>6} {'blend':>6} {'write':>6} {'wall':>6}")
    for r in results:
        s = r["split"]
        print(f"{r['w']:>5}x{r['h']:<5} {r['peak'] / MiB:>7.0f}Mi {r['baseline'] / MiB:>7.0f}Mi "
              f"{(r['peak'] - r['baseline']) / MiB:>7.0f}Mi {r['input'] / MiB:>7.0f}Mi {r['old_output'] / MiB:>11.0f}Mi "
              + " ".join(f"{s.get(k, 0):>5.1f}s" for k in ("read", "net", "blend", "write")) + f" {r['wall']:>5.1f}s")
        if "tiled" in r:
            print(f"  {r['w']}x{r['h']}: tiled net+blend {r['tiled']:.2f}s, untiled forward {r['whole']:.2f}s: "
                  f"tiled throughput {r['whole'] / r['tiled']:.2f}x untiled")


if __name__ == "__main__":
    main()
