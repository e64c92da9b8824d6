"""Conditional-VAE U-Net: the VAE approach's net — a U-Net whose bottleneck also gets a latent z.

SR is one-to-many: many HR images downscale to the same LR. A conditional VAE models the
missing detail as a latent z: a posterior encoder sees LR *and* HR and proposes
q(z | LR, HR); the decoder (this U-Net, conditioned on the LR through its input) maps (LR, z)
to SR. Trained with the reconstruction loss + KL(q || N(0, I)), the prior N(0, I) becomes a
distribution over plausible details: `forward(lr)` uses z = 0 (the prior mean, one
deterministic answer — what validation, srlab-eval and srlab-upscale see), `sample(lr, t)`
draws z ~ N(0, t^2 I) for diverse answers.

z lives on the bottleneck grid (H / (space_to_depth * 2^depth)), `latent_channels` deep, and
is concatenated to the bottleneck features and fused by a 1x1 conv, and (inject_every_scale)
also, upsampled, to the input of every decoder stage: at the bottleneck alone the skips let the
decoder bypass it, and z's path to the output is long. The posterior encoder
mirrors the U-Net's encoder on the space-to-depth'd bicubic and HR images. With a residual,
zero-initialised head an untrained net is bicubic whatever z is.
"""
import torch
import torch.nn.functional as F
from torch import nn

from srlab.nets.blocks import conv_block
from srlab.nets.unet import UNet
from srlab.ops.imresize import imresize


class CVAEUNet(UNet):
    def __init__(self, scale: int, channels: int = 64, depth: int = 2, latent_channels: int = 8, residual: bool = True,
                 norm: str | None = None, space_to_depth: int = 1, logvar_init: float | None = -6.0,
                 inject_every_scale: bool = True, detail_gain: float = 8.0):
        super().__init__(scale, channels, depth, residual, norm, space_to_depth)
        self.latent_channels = latent_channels
        widths = [channels * 2**i for i in range(depth + 1)]
        self.inject = nn.Conv2d(widths[-1] + latent_channels, widths[-1], 1)
        self.inject_every_scale = inject_every_scale
        self.detail_gain = float(detail_gain)
        if inject_every_scale:  # every decoder stage also reads z, upsampled (nearest) to its grid
            self.fuse = nn.ModuleList(conv_block(2 * c + latent_channels, c, norm) for c in widths[-2::-1])
        self.posterior = nn.Sequential(
            conv_block(2 * self.io_channels, widths[0], norm),
            *[nn.Sequential(nn.Conv2d(c_in, c_out, 4, stride=2, padding=1), nn.LeakyReLU(0.2, inplace=True))
              for c_in, c_out in zip(widths[:-1], widths[1:])],
            nn.Conv2d(widths[-1], 2 * latent_channels, 3, padding=1),
        )
        if logvar_init is not None:
            self.init_posterior(float(logvar_init))

    def init_posterior(self, logvar: float) -> None:
        """Start the posterior nearly deterministic: logvar = `logvar` everywhere (sigma = e^(logvar/2)).

        With PyTorch's default init logvar ~ 0, so z ~ N(mu ~ 0, 1) is pure noise at the start;
        the decoder (learning fast from the LR alone) learns to ignore it and the KL then pulls
        q onto the prior: posterior collapse. With sigma ~ 0.05 the net starts as an
        auto-encoder of the HR detail through z, the decoder learns to read z, and the KL
        (growing with the warm-up) then buys the noise that makes the prior usable.
        """
        head = self.posterior[-1]
        nn.init.zeros_(head.weight[self.latent_channels:])
        nn.init.constant_(head.bias[self.latent_channels:], logvar)

    def latent_shape(self, lr: torch.Tensor) -> tuple[int, ...]:
        h, w = lr.shape[-2] * self.scale, lr.shape[-1] * self.scale
        m = self.multiple
        return (lr.shape[0], self.latent_channels, -(-h // m), -(-w // m))  # ceil: the padded grid

    def encode(self, lr: torch.Tensor, hr: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Posterior q(z | LR, HR) -> (mu, logvar), each [N, latent_channels, H_b, W_b]."""
        up = imresize(lr, scale=self.scale)
        # what z should carry is what the LR lacks: HR - bicubic (x detail_gain, it is small), beside the bicubic
        x = torch.cat([self.prepare(up), self.prepare(0.5 + self.detail_gain * (hr - up))], dim=1)
        mu, logvar = self.posterior(x).chunk(2, dim=1)
        # Bounded to (-10, 10) so exp(logvar) stays finite, softly: a hard clamp has zero
        # gradient outside the range, and a logvar pushed below -10 early on (sharper z =
        # better reconstruction) then stays there, costing ~4.5 nats of KL per latent forever.
        return mu, 10.0 * torch.tanh(logvar / 10.0)

    def body(self, x: torch.Tensor, z: torch.Tensor | None) -> torch.Tensor:
        skips = self.contract(x)
        if z is None:  # the prior mean, shaped by the bottleneck itself (an exported graph follows any size)
            z = torch.zeros_like(skips[-1][:, :1]).expand(-1, self.latent_channels, -1, -1)
        skips[-1] = self.inject(torch.cat([skips[-1], z], dim=1))  # the latent joins at the bottleneck
        if not self.inject_every_scale:
            return self.expand(skips)
        x = skips[-1]
        for up, fuse, skip in zip(self.up, self.fuse, reversed(skips[:-1])):
            z_here = F.interpolate(z, size=skip.shape[-2:], mode="nearest")
            x = fuse(torch.cat([up(x), skip, z_here], dim=1))
        return self.head(x)

    def forward(self, lr: torch.Tensor, z: torch.Tensor | None = None) -> torch.Tensor:
        return super().forward(lr, z=z)  # z = None: the prior mean (zeros), one deterministic answer

    @torch.no_grad()
    def sample(self, lr: torch.Tensor, temperature: float = 1.0) -> torch.Tensor:
        """One draw from the prior: z ~ N(0, temperature^2 I)."""
        return self(lr, temperature * torch.randn(self.latent_shape(lr), device=lr.device, dtype=lr.dtype))
