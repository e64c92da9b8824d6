"""How different are the answers a generative SR net gives for one LR image?

SR is one-to-many; a conditional VAE (srlab.nets.cvae_unet) returns one plausible HR image
per latent draw. `sample_spread` draws `n` of them at a temperature and measures, per
pixel, the standard deviation across the draws on the channel papers measure (Y for colour,
the gray value for gray sources; srlab.evaluation.metrics.luma) in 8-bit levels, with `border` pixels
cropped as for PSNR. Its mean per image is `val/sample_diversity` (the VAE approach) and
srlab-eval's `sample_diversity`; the map itself goes into the sample panels, where it should
light up on edges and texture (the ambiguous parts), not on flat regions.

A net without `sample` (any deterministic net) gives the same image every time: spread 0.
"""
import torch
from torch import nn

from srlab.evaluation.metrics import crop_border, luma


def draw(net: nn.Module, lr: torch.Tensor, temperature: float = 1.0) -> torch.Tensor:
    """One SR image per LR image: a prior draw for a net with `sample`, else net(lr)."""
    return net.sample(lr, temperature) if hasattr(net, "sample") else net(lr)


@torch.no_grad()
def sample_spread(net: nn.Module, lr: torch.Tensor, n: int = 8, temperature: float = 1.0,
                  gray: torch.Tensor | None = None, border: int = 0,
                  seed: int = 0) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """-> (per-image mean std [N] in 8-bit levels, std map [N,1,H,W] (uncropped), samples [n,N,3,H,W]).

    The std is the sample standard deviation (n - 1 in the denominator) across the n draws.
    The draws come from generators seeded by `seed` in a forked RNG state: the same number for
    the same net, and the training noise after a validation is what it would have been without
    it (a resumed run stays exact).
    """
    devices = [lr.device] if lr.device.type == "cuda" else []
    with torch.random.fork_rng(devices=devices):
        torch.manual_seed(seed)
        samples = torch.stack([draw(net, lr, temperature).clamp(0, 1) for _ in range(n)])
    ys = torch.stack([luma(s, gray) for s in samples])  # [n,N,1,H,W], quantized 8-bit levels
    std = ys.std(dim=0)
    return crop_border(std, border).flatten(1).mean(dim=1).float(), std.float(), samples
