"""KL divergence of a diagonal Gaussian posterior from the standard normal prior (the VAE term).

KL(N(mu, exp(logvar)) || N(0, I)) = 0.5 * sum(mu^2 + exp(logvar) - 1 - logvar), summed over
the latent dims of each image and averaged over the batch. `per_values` divides by a number
of values (the VAE passes the HR values per image) so the term is in the same per-value
units as a mean pixel loss: then kl_weight plays the part of 2 sigma^2 of a Gaussian
likelihood with noise sigma, and does not change meaning with the patch size.

`free_bits` (Kingma et al. 2016, "Improved variational inference with inverse autoregressive
flow"): a latent channel whose KL, averaged over the batch and its positions, is below
`free_bits` nats per latent value is charged `free_bits` instead, a constant with no gradient.
The optimiser then has no reason to push a channel's information below that floor, which is
what stops a weak latent from being squeezed back onto the prior. The value returned is the
charged (training) KL; call with free_bits=0 for the true KL.
"""
import torch


def gaussian_kl(mu: torch.Tensor, logvar: torch.Tensor, per_values: int = 1, free_bits: float = 0.0) -> torch.Tensor:
    kl = 0.5 * (mu**2 + logvar.exp() - 1.0 - logvar)
    if free_bits > 0:
        per_channel = kl.transpose(0, 1).flatten(1).mean(dim=1)  # nats per latent value, per channel
        positions = kl[0, 0].numel()
        return per_channel.clamp_min(free_bits).sum() * positions / per_values
    return kl.flatten(1).sum(dim=1).mean() / per_values
