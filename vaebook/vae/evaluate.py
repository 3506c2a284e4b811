"""Evaluating a trained VAE on held-out data: the numbers ``python -m vaebook evaluate`` prints
and the committed runs record (:mod:`vaebook.vae.pretrained`).

Everything comes from one pass of importance sampling (:func:`estimate_log_likelihood`):
the ELBO is its k'=1 bound (the Monte Carlo ELBO averaged over all k draws), IWAE-k' its
k'-sample bounds, and the log-likelihood estimate uses all k draws, so the three are
ordered exactly (ELBO <= IWAE-k' <= estimate). The reconstruction/KL split uses the
closed-form KL: reconstruction = ELBO + KL. Nats per example; bits per dimension
``-value / (D ln 2)``. Seeded: the same model, data and seed give the same numbers.
"""

from __future__ import annotations

import math

import torch

from .models import VAE
from .objectives import (
    active_units,
    bits_per_dim,
    encode_float32,
    estimate_log_likelihood,
    kl_per_latent_dim,
    kl_to_standard_normal,
)

__all__ = ["evaluate"]


def _mean_and_stderr(values: torch.Tensor) -> tuple[float, float]:
    n = values.numel()
    stderr = values.std().item() / math.sqrt(n) if n > 1 else float("nan")
    return values.mean().item(), stderr


@torch.no_grad()
def evaluate(
    model: VAE,
    x: torch.Tensor,
    *,
    k: int = 5000,
    iwae_ks: tuple[int, ...] = (50,),
    seed: int = 0,
    progress: bool = False,
) -> dict:
    """ELBO, reconstruction, KL, IWAE-k' for each k' in ``iwae_ks`` (each dividing k), the
    k-sample log-likelihood estimate (each with its standard error over examples), bits per
    dimension, active units and the KL of each latent dimension, for the rows of x (N, D).
    The global RNG is left as it was."""
    was_training = model.training
    model.eval()
    with torch.random.fork_rng(devices=[x.device] if x.device.type == "cuda" else []):
        torch.manual_seed(seed)
        ll = estimate_log_likelihood(
            model, x, k=k, bound_ks=tuple(sorted({1, *iwae_ks})), progress=progress
        )
    kl = torch.cat(
        [kl_to_standard_normal(*encode_float32(model, xb)) for xb in x.split(1024)]
    ).cpu()  # (N,)
    model.train(was_training)
    elbo, elbo_se = _mean_and_stderr(ll.bounds[1])
    units, activity = active_units(model, x)
    result = {
        "examples": x.shape[0],
        "elbo": elbo,
        "elbo_stderr": elbo_se,
        "reconstruction": elbo + kl.mean().item(),
        "kl": kl.mean().item(),
    }
    for kb in iwae_ks:
        result[f"iwae_{kb}"], result[f"iwae_{kb}_stderr"] = _mean_and_stderr(ll.bounds[kb])
    result.update(
        {
            "log_likelihood": ll.mean,
            "log_likelihood_stderr": ll.stderr,
            "log_likelihood_k": k,
            "bits_per_dim_elbo": bits_per_dim(elbo, x.shape[1]),
            "bits_per_dim_log_likelihood": bits_per_dim(ll.mean, x.shape[1]),
            "active_units": units,
            "posterior_mean_variance": activity.cpu().tolist(),
            "kl_per_latent_dim": kl_per_latent_dim(model, x).cpu().tolist(),
        }
    )
    return result
