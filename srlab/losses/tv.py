"""Total variation regulariser.

Penalises differences between neighbouring pixels of the output, which suppresses noise and
checkerboard artefacts (e.g. from transposed convolutions or a GAN). It looks at `sr` only:
`hr` is accepted so every loss term has the same forward(sr, hr) signature, and ignored.
"""

import kornia
import torch
from torch import nn


class TVLoss(nn.Module):
    """Anisotropic L1 total variation of sr: mean |dx| + mean |dy|, averaged over images/channels.

    Means, not kornia's default sums, so the weight does not depend on the patch size.
    """

    def forward(self, sr: torch.Tensor, hr: torch.Tensor | None = None) -> torch.Tensor:
        return kornia.losses.total_variation(sr, reduction="mean").mean()
