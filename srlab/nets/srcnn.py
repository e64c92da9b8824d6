"""SRCNN (Dong et al. 2014/2016, arXiv 1501.00092): the first CNN for SR, three convs on bicubic.

The LR image is bicubic-upscaled to HR size, then three convs do, in the paper's words,
patch extraction (k1 x k1, 64 maps), non-linear mapping (k2 x k2, 32 maps) and
reconstruction (k3 x k3 back to the image). Defaults are the 2016 paper's 9-5-5 net, which
beats the original 9-1-5.

What differs from the paper, and why:
- 'same' (zero) padding instead of valid convs. The paper's net shrinks the image by
  k1 + k2 + k3 - 3 = 16 px and scores only the centre; here the output has the input's
  size, so it drops into srlab's loaders, metrics and tiling unchanged and border pixels
  are measured too (they are the net's weak spot; hiding them flatters it).
- RGB in and out, not the Y channel only: every srlab net maps RGB to RGB.
- `residual=True` (srlab's convention, after VDSR): the last conv starts at zero and the net
  adds detail to the bicubic image, so an untrained SRCNN *is* bicubic. The paper predicts
  the image itself; `residual=False` gives that back.
- `space_to_depth` as in the other pre-upsampling nets (see srlab.nets.blocks): f > 1 runs
  the convs at 1/f resolution on 3 f^2 channels, which also widens each kernel's reach f-fold.
- The body sees the image minus 0.5 (PreUpsamplingNet does it for every pre-upsampling net):
  uncentred, at srlab's default lr 1e-3 the 64/32-wide net can kill every mid-layer ReLU
  within ~6 steps and then sits at bicubic for good (measured; seed-dependent). See
  srlab.nets.blocks.
- Trained with Adam (srlab's approach), not the paper's SGD with a 10x smaller last-layer rate.
"""
import torch
from torch import nn

from srlab.nets.blocks import PreUpsamplingNet


class SRCNN(PreUpsamplingNet):
    def __init__(self, scale: int, channels: int = 64, mid_channels: int = 32,
                 kernel_sizes: tuple[int, int, int] = (9, 5, 5), residual: bool = True, space_to_depth: int = 1):
        super().__init__(scale, residual, multiple=1, space_to_depth=space_to_depth)
        k1, k2, k3 = (int(k) for k in kernel_sizes)
        # padding="same" also handles even kernels (the paper tried 9-1-5, 9-3-5, 11-1-7 ...)
        self.features = nn.Sequential(
            nn.Conv2d(self.io_channels, channels, k1, padding="same"), nn.ReLU(inplace=True),  # patch extraction
            nn.Conv2d(channels, mid_channels, k2, padding="same"), nn.ReLU(inplace=True),  # non-linear mapping
        )
        self.head = nn.Conv2d(mid_channels, self.io_channels, k3, padding="same")  # reconstruction
        self.zero_head()

    def body(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.features(x))  # x is centred by PreUpsamplingNet (dead ReLUs)
