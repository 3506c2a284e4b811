"""The linear-Gaussian model (probabilistic PCA) in closed form, in float64.

``z ~ N(0, I_L)``, ``x | z ~ N(W z + b, sigma^2 I_D)`` with ``W`` of shape (D, L). This is
the one numeric implementation of its mathematics; the linear VAE, the ``ppca`` data set's
reference likelihood and the chapters all call it:

- :func:`ppca_marginal` -- the exact marginal ``p(x) = N(b, W W^T + sigma^2 I)`` as a
  ``torch.distributions`` object; :func:`ppca_log_likelihood` -- its log-density per row.
- :func:`ppca_mle` -- the maximum-likelihood fit (Tipping & Bishop, 1999);
  :func:`ppca_mle_log_likelihood` -- the mean log-likelihood it reaches.
"""

from __future__ import annotations

import torch
from torch.distributions import MultivariateNormal


def ppca_marginal(
    mean: torch.Tensor, w: torch.Tensor, sigma2: float | torch.Tensor
) -> MultivariateNormal:
    """``p(x) = N(mean, W W^T + sigma2 I)``, event shape (D,), float64, on the device of ``w``.

    ``mean`` (D,), ``w`` (D, L), ``sigma2`` a scalar (a tensor keeps its gradient)."""
    w = w.double()  # (D, L)
    eye = torch.eye(w.shape[0], dtype=torch.float64, device=w.device)  # (D, D)
    cov = w @ w.T + sigma2 * eye  # (D, D)
    return MultivariateNormal(mean.double(), covariance_matrix=cov)


def ppca_log_likelihood(
    x: torch.Tensor, mean: torch.Tensor, w: torch.Tensor, sigma2: float | torch.Tensor
) -> torch.Tensor:
    """``log N(x; mean, W W^T + sigma2 I)`` per row of x (N, D): (N,), float64."""
    return ppca_marginal(mean, w, sigma2).log_prob(x.double())


def ppca_mle(x: torch.Tensor, latent_dim: int) -> tuple[torch.Tensor, torch.Tensor, float]:
    """Closed-form pPCA maximum-likelihood fit (Tipping & Bishop 1999), in float64.

    Mean = sample mean; sigma^2 = mean of the D - L smallest eigenvalues of the
    sample covariance (1/N); W = U_L (Lambda_L - sigma^2 I)^{1/2} (rotation R = I; each
    column's sign is whatever the eigensolver returns).
    Returns (mean (D,), W (D, L), sigma2).
    """
    x = x.double()
    mean = x.mean(0)  # (D,)
    centred = x - mean  # (N, D)
    cov = centred.T @ centred / x.shape[0]  # (D, D)
    eigvals, eigvecs = torch.linalg.eigh(cov)  # ascending: (D,), (D, D)
    eigvals, eigvecs = eigvals.flip(0), eigvecs.flip(1)  # descending
    sigma2 = eigvals[latent_dim:].mean().item()
    w = eigvecs[:, :latent_dim] * (eigvals[:latent_dim] - sigma2).clamp_min(0).sqrt()  # (D, L)
    return mean, w, sigma2


def ppca_mle_log_likelihood(x: torch.Tensor, latent_dim: int) -> float:
    """Maximum over pPCA models with ``latent_dim`` of the mean log-likelihood of x,
    in nats per example."""
    mean, w, sigma2 = ppca_mle(x, latent_dim)
    return ppca_log_likelihood(x, mean, w, sigma2).mean().item()
