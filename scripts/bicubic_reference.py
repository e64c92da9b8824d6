"""Print bicubic PSNR_Y on Set5/Set14 (x2, x3, x4) next to the published numbers.

Why: a sanity check that `srlab.imresize` plus the paper metric conventions (REFERENCE.md)
reproduce the bicubic baseline every SR paper reports. Temporary: srlab-eval will replace it.
Usage: .venv/bin/python scripts/bicubic_reference.py [path/to/benchmarks]
"""

import sys
from pathlib import Path

import numpy as np
import torch
from PIL import Image

from srlab.imresize import imresize

PUBLISHED = {"Set5": {2: 33.66, 3: 30.39, 4: 28.42}, "Set14": {2: 30.24, 3: 27.55, 4: 26.00}}


def psnr_y(sr: np.ndarray, hr: np.ndarray, border: int) -> float:
    """Paper PSNR: uint8 HxWxC (or HxW gray) arrays, Y of MATLAB rgb2ycbcr, border cropped."""

    def y(a):
        a = a.astype(np.float64)
        if a.ndim == 2:  # gray images are measured on their own values (MATLAB scripts)
            return a
        return 16 + (65.481 * a[..., 0] + 128.553 * a[..., 1] + 24.966 * a[..., 2]) / 255

    a, b = y(sr), y(hr)
    a, b = a[border:-border, border:-border], b[border:-border, border:-border]
    return float(10 * np.log10(255**2 / np.mean((a - b) ** 2)))


def bicubic_psnr(path: Path, scale: int) -> float:
    hr = np.asarray(Image.open(path))
    h, w = hr.shape[0] - hr.shape[0] % scale, hr.shape[1] - hr.shape[1] % scale
    hr = hr[:h, :w]
    t = torch.from_numpy(hr).double() / 255
    t = t.permute(2, 0, 1) if t.ndim == 3 else t
    lr = imresize(t, 1 / scale)
    lr = (lr.clamp(0, 1) * 255).round() / 255  # LR is an 8-bit image, as MATLAB/PNG makes it
    sr = (imresize(lr, scale).clamp(0, 1) * 255).round().to(torch.uint8)
    sr = sr.permute(1, 2, 0).numpy() if sr.ndim == 3 else sr.numpy()
    return psnr_y(sr, hr, scale)


def table(root: Path) -> dict:
    return {
        (name, s): float(np.mean([bicubic_psnr(p, s) for p in sorted((root / name / "HR").glob("*.png"))]))
        for name in PUBLISHED
        for s in (2, 3, 4)
    }


def main() -> None:
    root = Path(sys.argv[1]) if len(sys.argv) > 1 else Path(__file__).resolve().parents[2] / "shared" / "benchmarks"
    if not root.is_dir():
        sys.exit(f"no benchmark folder at {root}; pass its path as the first argument")
    print(f"{'set':6} {'scale':>5} {'ours':>7} {'published':>9} {'diff':>6}")
    for (name, s), ours in table(root).items():
        pub = PUBLISHED[name][s]
        print(f"{name:6} {'x' + str(s):>5} {ours:7.2f} {pub:9.2f} {ours - pub:+6.3f}")


if __name__ == "__main__":
    main()
