"""KL divergence of a diagonal Gaussian posterior from the standard normal prior (the VAE term).

KL(N(mu, exp(logvar)) || N(0, I)) = 0.5 * sum(mu^2 + exp(logvar) - 1 - logvar), summed over
the latent dims of each image and averaged over the batch. `per_values` divides by a number
of values (the VAE passes the HR values per image) so the term is in the same per-value
units as a mean pixel loss: then kl_weight plays the part of 2 sigma^2 of a Gaussian
likelihood with noise sigma, and does not change meaning with the patch size.
"""
import torch


def gaussian_kl(mu: torch.Tensor, logvar: torch.Tensor, per_values: int = 1) -> torch.Tensor:
    kl = 0.5 * (mu**2 + logvar.exp() - 1.0 - logvar)
    return kl.flatten(1).sum(dim=1).mean() / per_values
