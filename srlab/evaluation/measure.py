"""What every image-quality measure is to its consumers: a name, a direction, per-image numbers.

Validation, srlab-eval, `best.ckpt` and srlab-compare all need the same three facts about a
measure, so they are stated once, on the measure: `higher_is_better` (PSNR, SSIM) or not
(LPIPS, DISTS, NIQE), whether it needs the HR image (`needs_hr`: NIQE does not, so it can
score any folder), and the keys it reports (`psnr` reports `psnr_y` and `psnr_rgb`; a
one-number measure reports its own config name, `lpips_vgg`). Every measure takes images as
SR papers measure them: [N,C,H,W] in [0,1] (C = 3, or 1 in the Y-only pipeline), clamped and
rounded to 8 bits, `border` pixels cropped, gray sources (`gray`) on their own values.
A new measure is one file with a subclass and one line in configs/measures/default.yaml.
"""
from __future__ import annotations

import torch
from torch import nn

from srlab.evaluation.metrics import crop_border, luma, quantize


class Measure(nn.Module):
    higher_is_better: bool = True
    needs_hr: bool = True
    name: str = ""  # the config name, set by srlab.evaluation.measures.build_measures
    keys: tuple[str, ...] = ()  # what it reports, when not just `name`

    def reports(self) -> tuple[str, ...]:
        return self.keys or (self.name,)

    def measure(self, sr: torch.Tensor, hr: torch.Tensor | None, border: int,
                gray: torch.Tensor | None) -> torch.Tensor | dict[str, torch.Tensor]:
        """Per-image values [N] (reported as `self.name`), or {key: [N]}."""
        raise NotImplementedError

    @torch.no_grad()
    def forward(self, sr: torch.Tensor, hr: torch.Tensor | None, border: int = 0,
                gray: torch.Tensor | None = None) -> dict[str, torch.Tensor]:
        values = self.measure(sr, hr, border, gray)
        return values if isinstance(values, dict) else {self.name: values}


def as_rgb8(x: torch.Tensor, border: int) -> torch.Tensor:
    """[N,C,H,W] in [0,1] -> [N,3,H',W'] float32 in [0,1] on 8-bit levels, border cropped; a
    one-channel (Y or gray) image is repeated to RGB, as the reference LPIPS/DISTS code expects."""
    x = crop_border(quantize(x.float()) / 255.0, border)
    return x.expand(-1, 3, -1, -1) if x.shape[1] == 1 else x


def y8(x: torch.Tensor, border: int, gray: torch.Tensor | None) -> torch.Tensor:
    """[N,C,H,W] in [0,1] -> [N,1,H',W'] float64 8-bit Y (MATLAB rgb2ycbcr of uint8, rounded as
    MATLAB returns it) or the gray value itself, border cropped."""
    y = quantize(x.double()) if x.shape[1] == 1 else luma(x, gray).round()
    return crop_border(y, border)
