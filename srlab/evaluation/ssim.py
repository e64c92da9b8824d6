"""SSIM as SR papers report it (`ssim_y`: Gaussian window 11, sigma 1.5, 'valid' region, on 8-bit
Y with border = scale); higher is better. The arithmetic is metrics.ssim (checked against
torchmetrics' map there); this file only makes it a measure.
"""
from __future__ import annotations

from srlab.evaluation.measure import Measure
from srlab.evaluation.metrics import crop_border, luma, quantize, ssim


class SSIM(Measure):
    higher_is_better = True
    keys = ("ssim_y",)

    def measure(self, sr, hr, border, gray):
        if sr.shape[1] == 1:
            a, b = (crop_border(quantize(x.double()), border) for x in (sr, hr))
        else:
            a, b = (crop_border(luma(x, gray), border) for x in (sr, hr))
        return {"ssim_y": ssim(a, b)}
