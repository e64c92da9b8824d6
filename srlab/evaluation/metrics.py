"""Paper-convention PSNR / SSIM, so srlab's numbers line up with published tables.

SR papers measure on the Y channel of ITU-R BT.601 "studio" YCbCr (MATLAB `rgb2ycbcr`, not
kornia's full-range version), after clamping the output to [0,1] and rounding to 8 bits,
with `scale` pixels cropped from every border; grayscale sources are measured on their own
values (no Y conversion); PSNR and SSIM are computed per image and averaged over images.
SSIM is the Gaussian SSIM map (window 11, sigma 1.5, K1=0.01, K2=0.03, data range 255)
averaged over the 'valid' region only, as MATLAB's ssim_index does: torchmetrics averages
over reflect-padded borders too, which reads ~0.003 lower on small crops. The map equals the
interior of torchmetrics' (a test checks it); it is filtered separably here for speed.
See ../shared/docs/REFERENCE.md.

`SRMetrics` accumulates per-image sums in torchmetrics states reduced by `sum`, so the mean
is exact under DDP as long as no image is duplicated across ranks (the val sampler sees to
that).
"""
import torch
import torch.nn.functional as F
from torchmetrics import Metric
from torchmetrics.functional.image import structural_similarity_index_measure

# MATLAB rgb2ycbcr: Y = 16 + (65.481 R + 128.553 G + 24.966 B) with R, G, B in [0, 1].
_Y_WEIGHTS = (65.481, 128.553, 24.966)


def quantize(x: torch.Tensor) -> torch.Tensor:
    """[0,1] float -> rounded 8-bit levels in [0,255], as if saved to PNG and read back."""
    return (x.clamp(0, 1) * 255).round()


def rgb_to_y(x255: torch.Tensor) -> torch.Tensor:
    """[N,3,H,W] RGB in [0,255] -> [N,1,H,W] Y in [16,235] (BT.601 studio range)."""
    r, g, b = x255[:, 0:1], x255[:, 1:2], x255[:, 2:3]
    return 16.0 + (_Y_WEIGHTS[0] * r + _Y_WEIGHTS[1] * g + _Y_WEIGHTS[2] * b) / 255.0


def luma(x: torch.Tensor, gray: torch.Tensor | None = None) -> torch.Tensor:
    """Channel papers measure on: Y for colour images, the gray value for grayscale sources.

    x: [N,3,H,W] in [0,1] (quantized here). gray: bool [N] or None (all colour).
    For a gray source the channel mean is used: exact for HR and bicubic (R=G=B), and the
    natural reading of a colour net's output.
    """
    x255 = quantize(x.double())
    y = rgb_to_y(x255)
    if gray is not None and bool(gray.any()):
        y = torch.where(gray.view(-1, 1, 1, 1).to(y.device), x255.mean(dim=1, keepdim=True), y)
    return y


def crop_border(x: torch.Tensor, border: int) -> torch.Tensor:
    return x[..., border:-border, border:-border] if border > 0 else x


def psnr(a: torch.Tensor, b: torch.Tensor, data_range: float = 255.0) -> torch.Tensor:
    """Per-image PSNR of [N,C,H,W] tensors (already quantized/cropped)."""
    mse = ((a - b) ** 2).flatten(1).mean(dim=1).clamp_min(1e-10)
    return 10.0 * torch.log10(data_range**2 / mse)


def gaussian_window(size: int = 11, sigma: float = 1.5, dtype=torch.float64, device=None) -> torch.Tensor:
    x = torch.arange(size, dtype=dtype, device=device) - (size - 1) / 2
    g = torch.exp(-(x**2) / (2 * sigma**2))
    return g / g.sum()


def ssim(a: torch.Tensor, b: torch.Tensor, data_range: float = 255.0) -> torch.Tensor:
    """Per-image Gaussian SSIM (Wang et al. 2004 constants) of [N,1,H,W] tensors, 'valid' region.

    The same map as torchmetrics' (its interior, which is all MATLAB averages), filtered
    separably: float64 11x11 conv2d on CPU costs ~0.5 s per Set14 image, two 11-tap passes
    ~10x less, and validation runs this on every val image.
    """
    if min(a.shape[-2:]) <= 10:  # no 'valid' region: torchmetrics' reflect-padded map
        _, ssim_map = structural_similarity_index_measure(
            a, b, gaussian_kernel=True, sigma=1.5, kernel_size=11, data_range=data_range,
            k1=0.01, k2=0.03, reduction="none", return_full_image=True,
        )
        return ssim_map.flatten(1).mean(dim=1)
    g = gaussian_window(dtype=a.dtype, device=a.device)
    n, c = a.shape[:2]
    stack = torch.cat([a, b, a * a, b * b, a * b]).reshape(5 * n * c, 1, *a.shape[-2:])
    blurred = F.conv2d(F.conv2d(stack, g.view(1, 1, 1, -1)), g.view(1, 1, -1, 1))
    mu_a, mu_b, aa, bb, ab = blurred.reshape(5, n, c, *blurred.shape[-2:])
    c1, c2 = (0.01 * data_range) ** 2, (0.03 * data_range) ** 2
    var_a, var_b, cov = aa - mu_a**2, bb - mu_b**2, ab - mu_a * mu_b
    ssim_map = ((2 * mu_a * mu_b + c1) * (2 * cov + c2)) / ((mu_a**2 + mu_b**2 + c1) * (var_a + var_b + c2))
    return ssim_map.flatten(1).mean(dim=1)


def sr_metrics(sr: torch.Tensor, hr: torch.Tensor, border: int, gray: torch.Tensor | None = None) -> dict:
    """Per-image psnr_y, ssim_y, psnr_rgb of [N,3,H,W] images in [0,1]."""
    sr_y, hr_y = crop_border(luma(sr, gray), border), crop_border(luma(hr, gray), border)
    sr_rgb, hr_rgb = crop_border(quantize(sr.double()), border), crop_border(quantize(hr.double()), border)
    return {"psnr_y": psnr(sr_y, hr_y), "ssim_y": ssim(sr_y, hr_y), "psnr_rgb": psnr(sr_rgb, hr_rgb)}


def y_only_metrics(sr_y: torch.Tensor, hr_y: torch.Tensor, border: int) -> dict:
    """Per-image psnr_y, ssim_y of [N,1,H,W] luma images in [0,1] (the Y-only protocol of
    SRCNN/VDSR, where the net itself only ever sees Y): quantized, cropped, measured."""
    a, b = crop_border(quantize(sr_y.double()), border), crop_border(quantize(hr_y.double()), border)
    return {"psnr_y": psnr(a, b), "ssim_y": ssim(a, b)}


class SRMetrics(Metric):
    """Mean per-image PSNR_Y / SSIM_Y / PSNR_RGB, DDP-exact (sum states)."""

    full_state_update = False
    names = ("psnr_y", "ssim_y", "psnr_rgb")

    def __init__(self, border: int):
        super().__init__()
        self.border = border
        for name in self.names:
            self.add_state(name, default=torch.tensor(0.0, dtype=torch.float64), dist_reduce_fx="sum")
        self.add_state("n", default=torch.tensor(0, dtype=torch.long), dist_reduce_fx="sum")

    def update(self, sr: torch.Tensor, hr: torch.Tensor, gray: torch.Tensor | None = None) -> None:
        values = sr_metrics(sr, hr, self.border, gray)
        for name in self.names:
            setattr(self, name, getattr(self, name) + values[name].sum())
        self.n += sr.shape[0]

    def compute(self) -> dict[str, torch.Tensor]:
        n = self.n.clamp_min(1)
        return {name: (getattr(self, name) / n).float() for name in self.names}
