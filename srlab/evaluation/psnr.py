"""PSNR as SR papers report it (`psnr_y`), and on RGB (`psnr_rgb`); higher is better.

The arithmetic and its conventions (BT.601 studio Y, border = scale, 8-bit rounding, gray
images on their own values) live in metrics.py, checked there against the published bicubic
rows; this file only makes it a measure. A one-channel input is the Y-only (SRCNN/VDSR)
pipeline: `psnr_y` alone.
"""
from __future__ import annotations

import torch

from srlab.evaluation.measure import Measure
from srlab.evaluation.metrics import crop_border, luma, psnr, quantize


class PSNR(Measure):
    higher_is_better = True
    keys = ("psnr_y", "psnr_rgb")

    def measure(self, sr, hr, border, gray):
        if sr.shape[1] == 1:
            return {"psnr_y": psnr(*(crop_border(quantize(x.double()), border) for x in (sr, hr)))}
        sr_y, hr_y = (crop_border(luma(x, gray), border) for x in (sr, hr))
        rgb = [crop_border(quantize(x.double()), border) for x in (sr, hr)]
        return {"psnr_y": psnr(sr_y, hr_y), "psnr_rgb": psnr(*rgb)}
