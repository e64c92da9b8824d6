"""Adversarial losses for the GAN approach: what the generator and the critic each minimise.

Every kind maps critic logits (any shape; a patch critic gives a map) to two scalars:
`generator(fake, real)` and `critic(real, fake)`. `real` is passed to the generator side too
because the relativistic kind needs it (ESRGAN: the critic judges whether a real image is
*more* realistic than the average fake, and the generator profits from both sides).

- vanilla: non-saturating BCE (Goodfellow et al. 2014), -log D(G(z)) for the generator.
- lsgan: least squares with targets 1/0 (Mao et al. 2017).
- hinge: the critic's hinge at margins +-1, the generator pushes the fake logits up
  (Miyato et al. 2018, used with spectral norm).
- ragan: relativistic average BCE (Jolicoeur-Martineau 2018; ESRGAN, Wang et al. 2018), each
  side averaged over its two halves as BasicSR does.
At all-zero logits (a critic that cannot tell): vanilla D = 2 log 2, G = log 2; lsgan D = 1,
G = 1; hinge D = 2, G = 0; ragan D = G = log 2 — checked in the tests.
"""
import torch
import torch.nn.functional as F
from torch import nn

from srlab.errors import SrlabError

KINDS = ("vanilla", "lsgan", "hinge", "ragan")


class AdversarialLoss(nn.Module):
    def __init__(self, kind: str = "ragan"):
        super().__init__()
        if kind not in KINDS:
            raise SrlabError(f"adversarial kind {kind!r} is not one of {', '.join(KINDS)}")
        self.kind = kind

    def generator(self, fake: torch.Tensor, real: torch.Tensor | None = None) -> torch.Tensor:
        """What the generator minimises. `real` (the critic on HR, detached) is used by ragan only."""
        if self.kind == "vanilla":
            return F.softplus(-fake).mean()  # -log sigmoid(fake)
        if self.kind == "lsgan":
            return ((fake - 1) ** 2).mean()
        if self.kind == "hinge":
            return -fake.mean()
        if real is None:
            raise SrlabError("ragan needs the critic's logits on real images for the generator loss")
        real = real.detach()
        return 0.5 * (F.softplus(real - fake.mean()).mean() + F.softplus(-(fake - real.mean())).mean())

    def critic(self, real: torch.Tensor, fake: torch.Tensor) -> torch.Tensor:
        """What the critic minimises; `fake` must come from a detached SR image."""
        if self.kind == "vanilla":
            return F.softplus(-real).mean() + F.softplus(fake).mean()
        if self.kind == "lsgan":
            return ((real - 1) ** 2).mean() + (fake**2).mean()
        if self.kind == "hinge":
            return F.relu(1 - real).mean() + F.relu(1 + fake).mean()
        return 0.5 * (F.softplus(-(real - fake.mean())).mean() + F.softplus(fake - real.mean()).mean())
