"""Evaluating a VAE on held-out data: the numbers ``python -m vaebook evaluate`` prints and
the committed runs record (:func:`evaluate`), and the trainer's cheaper test-set figures
after each epoch (:func:`epoch_test_metrics`) and at the end (:func:`iwae_mean`). Each
draws with a private seed: the training RNG is left as it was.

:func:`evaluate`: everything comes from one pass of importance sampling
(:func:`~vaebook.vae.objectives.estimate_log_likelihood`): the ELBO is its k'=1 bound (the
Monte Carlo ELBO averaged over all k draws), IWAE-k' its k'-sample bounds, and the
log-likelihood estimate uses all k draws, so the three are ordered exactly (ELBO <= IWAE-k'
<= estimate). The reconstruction/KL split uses the closed-form KL: reconstruction = ELBO +
KL. Nats per example; bits per dimension ``-value / (D ln 2)``. Seeded: the same model, data
and seed give the same numbers.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

import torch

from .models import VAE
from .objectives import (
    active_units,
    bits_per_dim,
    elbo_terms,
    encode_float32,
    estimate_log_likelihood,
    iwae_bound,
    kl_per_latent_dim,
    kl_to_standard_normal,
    mean_and_stderr,
)

__all__ = ["evaluate", "epoch_test_metrics", "iwae_mean", "seeded"]


@contextmanager
def seeded(seed: int, device: torch.device) -> Iterator[None]:
    """Draw with ``seed`` inside the block, on the CPU and ``device``; the global RNG states
    are restored after it."""
    with torch.random.fork_rng(devices=[device] if device.type == "cuda" else []):
        torch.manual_seed(seed)
        yield


@torch.no_grad()
def epoch_test_metrics(model: VAE, x: torch.Tensor, seed: int, chunk: int = 2048) -> dict:
    """Test-set ELBO (one draw per example), its terms, active units and, for a model whose
    marginal is exact (the linear VAE), the exact log-likelihood; nats per example."""
    was_training = model.training
    model.eval()
    with seeded(seed, x.device):
        terms = [elbo_terms(model, xb) for xb in x.split(chunk)]
    model.train(was_training)
    recon = torch.cat([t.reconstruction for t in terms])  # (N,)
    kl = torch.cat([t.kl for t in terms])  # (N,)
    units, _ = active_units(model, x)
    metrics = {
        "test_elbo": (recon - kl).mean().item(),
        "test_reconstruction": recon.mean().item(),
        "test_kl": kl.mean().item(),
        "active_units": units,
    }
    if hasattr(model, "exact_log_likelihood"):
        metrics["test_exact_log_likelihood"] = model.exact_log_likelihood(x).mean().item()
    return metrics


@torch.no_grad()
def iwae_mean(model: VAE, x: torch.Tensor, k: int, seed: int, chunk: int = 256) -> float:
    """Mean over the rows of x of the IWAE bound with k samples (the model in eval mode)."""
    with seeded(seed, x.device):
        return torch.cat([iwae_bound(model.eval(), xb, k) for xb in x.split(chunk)]).mean().item()


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
    with seeded(seed, x.device):
        ll = estimate_log_likelihood(
            model, x, k=k, bound_ks=tuple(sorted({1, *iwae_ks})), progress=progress
        )
    kl = torch.cat(
        [kl_to_standard_normal(*encode_float32(model, xb)) for xb in x.split(1024)]
    ).cpu()  # (N,)
    model.train(was_training)
    elbo, elbo_se = mean_and_stderr(ll.bounds[1])
    units, activity = active_units(model, x)
    result = {
        "examples": x.shape[0],
        "elbo": elbo,
        "elbo_stderr": elbo_se,
        "reconstruction": elbo + kl.mean().item(),
        "kl": kl.mean().item(),
    }
    for kb in iwae_ks:
        result[f"iwae_{kb}"], result[f"iwae_{kb}_stderr"] = mean_and_stderr(ll.bounds[kb])
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
