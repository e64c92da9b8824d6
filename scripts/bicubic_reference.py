"""Print bicubic PSNR_Y on Set5/Set14 (x2, x3, x4) next to the published numbers.

Why: a sanity check that `srlab.imresize` plus the paper metric conventions (REFERENCE.md)
reproduce the bicubic baseline every SR paper reports, under two pipelines (see bicubic_psnr).
Temporary: srlab-eval will replace it.
Usage: .venv/bin/python scripts/bicubic_reference.py [path/to/benchmarks]
"""

import sys
from pathlib import Path

import numpy as np
import torch
from PIL import Image

from srlab.imresize import imresize

PUBLISHED = {"Set5": {2: 33.66, 3: 30.39, 4: 28.42}, "Set14": {2: 30.24, 3: 27.55, 4: 26.00}}


def y_channel(a: np.ndarray) -> np.ndarray:
    """Y of MATLAB rgb2ycbcr on [0, 255] values; gray (HxW) images keep their own values."""
    a = a.astype(np.float64)
    if a.ndim == 2:
        return a
    return 16 + (65.481 * a[..., 0] + 128.553 * a[..., 1] + 24.966 * a[..., 2]) / 255


def psnr(a: np.ndarray, b: np.ndarray, border: int) -> float:
    d = (a - b)[border:-border, border:-border]
    return float(10 * np.log10(255**2 / np.mean(d**2)))


def bicubic_psnr(path: Path, scale: int, y_first: bool) -> float:
    """y_first=False: REFERENCE.md convention (resize RGB, SR to uint8, measure Y).
    y_first=True: the SRCNN-era MATLAB pipeline the published numbers come from
    (uint8 Y = rgb2ycbcr(uint8), resize Y in float, SR to uint8)."""
    hr = np.array(Image.open(path))
    hr = hr[: hr.shape[0] - hr.shape[0] % scale, : hr.shape[1] - hr.shape[1] % scale]
    if y_first:
        gt = np.round(y_channel(hr))
        t = torch.from_numpy(gt) / 255
    else:
        gt = y_channel(hr)
        t = torch.from_numpy(hr.astype(np.float64) / 255)
        t = t.permute(2, 0, 1) if t.ndim == 3 else t
    sr = (imresize(imresize(t, 1 / scale), scale).clamp(0, 1) * 255).round()
    sr = sr.permute(1, 2, 0).numpy() if sr.ndim == 3 else sr.numpy()
    return psnr(sr if y_first else y_channel(sr), gt, scale)


def table(root: Path, y_first: bool) -> dict:
    return {
        (name, s): float(np.mean([bicubic_psnr(p, s, y_first) for p in sorted((root / name / "HR").glob("*.png"))]))
        for name in PUBLISHED
        for s in (2, 3, 4)
    }


def main() -> None:
    root = Path(sys.argv[1]) if len(sys.argv) > 1 else Path(__file__).resolve().parents[2] / "shared" / "benchmarks"
    if not root.is_dir():
        sys.exit(f"no benchmark folder at {root}; pass its path as the first argument")
    for y_first, title in ((False, "RGB -> resize -> Y (REFERENCE.md)"), (True, "Y only (SRCNN-era MATLAB)")):
        print(f"\n{title}\n{'set':6} {'scale':>5} {'ours':>7} {'published':>9} {'diff':>6}")
        for (name, s), ours in table(root, y_first).items():
            pub = PUBLISHED[name][s]
            print(f"{name:6} {'x' + str(s):>5} {ours:7.3f} {pub:9.2f} {ours - pub:+6.3f}")

if __name__ == "__main__":
    main()
