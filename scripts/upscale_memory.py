"""Peak memory of tiled upscaling at two image sizes: is it flat apart from the image buffers?

Each size runs in a fresh child process (peak RSS only ever grows, so one process per
measurement). The child builds the net, makes a synthetic LR image, warms up on a small crop,
records ru_maxrss (baseline), upscales the whole image with `srlab.tiling.upscale_tiled` and
records ru_maxrss again. Reported per size: peak RSS, baseline, the uint8 output buffer (the
one allocation that must grow with the image), and what remains: peak - baseline - output,
the tiler's working memory, which should not grow with the image (it grows only with the
width, through the overlap band: 3 x overlap*scale x width*scale floats).

    .venv/bin/python scripts/upscale_memory.py                    # tiny random net, 1000 & 3000 px, x4
    .venv/bin/python scripts/upscale_memory.py --net unet         # srlab U-Net (slow on CPU at 3000 px)
    .venv/bin/python scripts/upscale_memory.py --ckpt best.ckpt --sizes 500 1500
"""

from __future__ import annotations

import argparse
import json
import resource
import subprocess
import sys
import time

MiB = 1024 * 1024


def build_net(kind: str, scale: int, ckpt: str | None):
    import torch
    from torch import nn

    torch.manual_seed(0)
    if ckpt:
        from srlab.checkpoint import load_net

        return load_net(ckpt)[0]
    if kind == "unet":
        from srlab.nets.unet import UNet

        net = UNet(scale=scale, channels=16, depth=3)
        nn.init.normal_(net.head.weight, std=0.02)  # an untrained residual U-Net is plain bicubic
        return net
    # tiny ESPCN-like net: 3 convs at LR size, then pixel shuffle
    net = nn.Sequential(nn.Conv2d(3, 32, 5, padding=2), nn.Tanh(), nn.Conv2d(32, 16, 3, padding=1), nn.Tanh(),
                        nn.Conv2d(16, 3 * scale**2, 3, padding=1), nn.PixelShuffle(scale), nn.Sigmoid())
    net.scale = scale
    return net


def child(args) -> None:
    import torch

    from srlab.tiling import upscale_tiled

    net = build_net(args.net, args.scale, args.ckpt)
    scale = int(net.scale)
    lr = torch.rand(3, args.child, args.child)
    upscale_tiled(net, lr[:, :args.tile + 8, :args.tile + 8], scale, tile=args.tile, overlap=args.overlap)
    baseline = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024
    start = time.perf_counter()
    out = upscale_tiled(net, lr, scale, tile=args.tile, overlap=args.overlap)
    seconds = time.perf_counter() - start
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024
    print(json.dumps({"size": args.child, "scale": scale, "peak": peak, "baseline": baseline, "seconds": seconds,
                      "input": lr.numel() * 4, "output": out.numel() * out.element_size()}))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--sizes", type=int, nargs=2, default=[1000, 3000], help="LR image sides (square)")
    parser.add_argument("--scale", type=int, default=4)
    parser.add_argument("--net", choices=["tiny", "unet"], default="tiny")
    parser.add_argument("--ckpt", default=None, help="use this checkpoint's net instead")
    parser.add_argument("--tile", type=int, default=256)
    parser.add_argument("--overlap", type=int, default=32)
    parser.add_argument("--child", type=int, default=None, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        return child(args)
    results = []
    for size in args.sizes:
        cmd = [sys.executable, __file__, "--child", str(size)] + sys.argv[1:]
        run = subprocess.run(cmd, capture_output=True, text=True)
        if run.returncode != 0:
            sys.exit(f"child for {size} px failed:\n{run.stderr}")
        results.append(json.loads(run.stdout.strip().splitlines()[-1]))
    print(f"net={args.ckpt or args.net} x{results[0]['scale']} tile={args.tile} overlap={args.overlap}")
    print(f"{'LR size':>9} {'peak RSS':>10} {'baseline':>10} {'input':>8} {'uint8 out':>10} {'tiler':>8} {'time':>7}")
    for r in results:
        r["tiler"] = r["peak"] - r["baseline"] - r["output"]
        print(f"{r['size']:>9} {r['peak'] / MiB:>8.0f}Mi {r['baseline'] / MiB:>8.0f}Mi {r['input'] / MiB:>6.0f}Mi "
              f"{r['output'] / MiB:>8.0f}Mi {r['tiler'] / MiB:>6.0f}Mi {r['seconds']:>6.1f}s")
    small, big = results
    print(f"ratio {big['size']}/{small['size']}: pixels x{(big['size'] / small['size'])**2:.0f}, "
          f"peak RSS x{big['peak'] / small['peak']:.2f}, "
          f"peak - baseline x{(big['peak'] - big['baseline']) / max(small['peak'] - small['baseline'], 1):.2f}, "
          f"tiler working memory {small['tiler'] / MiB:.0f} -> {big['tiler'] / MiB:.0f} MiB")


if __name__ == "__main__":
    main()
