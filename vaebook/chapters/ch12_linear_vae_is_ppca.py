"""Chapter 12: the linear VAE is probabilistic PCA.

The linear VAE (:class:`vaebook.vae.models.LinearVAE`) has ``q(z|x) = N(A x + c, diag s^2)``
and ``p(x|z) = N(W z + b, sigma^2 I)``. Everything in its ELBO is a Gaussian expectation of
a quadratic, so the chapter computes it exactly instead of by sampling
(:func:`linear_vae_elbo`):

``E_q ||x - W z - b||^2 = ||x - W mu - b||^2 + tr(W diag(s^2) W^T)``,

``E_q[log p(x|z)] = -D/2 log(2 pi sigma^2) - E_q ||x - W z - b||^2 / (2 sigma^2)`` and the
KL of :func:`vaebook.vae.objectives.kl_to_standard_normal`. ``tests/test_ch12_*`` checks it
against Monte Carlo and against the evidence identity ``log p(x) - KL(q || p(z|x))``.

Also here: the exact posterior of the decoder's model (:func:`exact_posterior`) and the
residual of Bayes' rule with it (:func:`bayes_rule_residual`), the gradient of the pPCA
log-likelihood at a fit (:func:`ppca_gradient`, zero at the Tipping--Bishop solution), principal
angles between subspaces (:func:`principal_angles`; the tests compare it with
``scipy.linalg.subspace_angles``), the principal subspace of a data set
(:func:`top_eigenvectors`), a Markdown table and the chapter's figure.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import matplotlib.pyplot as plt
import numpy as np
import torch
from torch.distributions import Independent, MultivariateNormal, Normal

from ..plots import COLORS, figure, style
from ..vae.models import LinearVAE
from ..vae.ppca import ppca_log_likelihood
from .display import markdown_table

__all__ = [
    "bayes_rule_residual",
    "exact_posterior",
    "ppca_gradient",
    "linear_vae_elbo",
    "markdown_table",
    "plot_training_history",
    "principal_angles",
    "top_eigenvectors",
]

LOG_2PI = math.log(2 * math.pi)


@torch.no_grad()
def linear_vae_elbo(model: LinearVAE, x: torch.Tensor) -> dict[str, torch.Tensor]:
    """The linear VAE's ELBO per row of x (N, D), exactly (no sampling), in float64:
    ``{"elbo", "reconstruction", "kl"}``, each (N,), with
    reconstruction ``E_q[log p(x|z)]`` and kl ``KL(q(z|x) || N(0, I))``."""
    x = x.double()  # (N, D)
    a = model.encoder.weight.double()  # (L, D)
    c = model.encoder.bias.double()  # (L,)
    s2 = model.encoder_logvar.double().exp()  # (L,) posterior variances (shared by all x)
    w = model.decoder.weight.double()  # (D, L)
    b = model.decoder.bias.double()  # (D,)
    sigma2 = (2 * model.log_decoder_std.double()).exp()  # () decoder variance
    mu = x @ a.T + c  # (N, L) posterior means
    residual = x - mu @ w.T - b  # (N, D)
    spread = (w**2 @ s2).sum()  # tr(W diag(s2) W^T) = sum_j s2_j ||w_j||^2, ()
    expected_sq = (residual**2).sum(-1) + spread  # (N,) E_q ||x - W z - b||^2
    d = x.shape[1]
    reconstruction = -0.5 * d * (LOG_2PI + sigma2.log()) - expected_sq / (2 * sigma2)  # (N,)
    kl = 0.5 * (mu**2 + s2 - 1 - s2.log()).sum(-1)  # (N,)
    return {"elbo": reconstruction - kl, "reconstruction": reconstruction, "kl": kl}


@torch.no_grad()
def exact_posterior(model: LinearVAE, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """The exact posterior ``p(z|x) = N(M^-1 W^T (x - b), sigma^2 M^-1)``,
    ``M = W^T W + sigma^2 I``, of the linear VAE's generative model, float64: means (N, L)
    and the covariance (L, L), the same for every x."""
    w = model.decoder.weight.double()  # (D, L)
    b = model.decoder.bias.double()  # (D,)
    sigma2 = (2 * model.log_decoder_std.double()).exp()  # ()
    m = w.T @ w + sigma2 * torch.eye(w.shape[1], dtype=torch.float64)  # (L, L)
    m_inv = torch.linalg.inv(m)  # (L, L), symmetric
    means = (x.double() - b) @ w @ m_inv  # (N, L)
    return means, sigma2 * m_inv


@torch.no_grad()
def bayes_rule_residual(model: LinearVAE, x: torch.Tensor, z: torch.Tensor) -> float:
    """Largest ``|log p(x|z) + log p(z) - log p(z|x) - log p(x)|`` over the rows of x (N, D)
    and the codes z (S, L), float64: zero when :func:`exact_posterior` is the posterior and
    the marginal ``N(b, W W^T + sigma^2 I)`` the evidence. Each density is a
    ``torch.distributions`` object, so the check does not reuse the formulas it tests."""
    x, z = x.double(), z.double()  # (N, D), (S, L)
    w = model.decoder.weight.double()  # (D, L)
    b = model.decoder.bias.double()  # (D,)
    sigma = model.log_decoder_std.double().exp()  # ()
    means, cov = exact_posterior(model, x)  # (N, L), (L, L)
    zz = z[:, None, :]  # (S, 1, L)
    likelihood = Independent(Normal(zz @ w.T + b, sigma), 1).log_prob(x)  # (S, N)
    prior = Independent(Normal(torch.zeros_like(zz), 1.0), 1).log_prob(zz)  # (S, 1)
    posterior = MultivariateNormal(means, covariance_matrix=cov).log_prob(zz)  # (S, N)
    evidence = model.exact_log_likelihood(x)  # (N,)
    return (likelihood + prior - posterior - evidence).abs().max().item()


def ppca_gradient(
    x: torch.Tensor, mean: torch.Tensor, w: torch.Tensor, sigma2: float
) -> dict[str, float]:
    """The largest absolute partial derivative of the mean pPCA log-likelihood of the rows
    of x (N, D), ``mean log N(x; mean, W W^T + sigma2 I)``, with respect to each parameter,
    by automatic differentiation in float64: ``{"mean", "W", "sigma2"}``. All three vanish
    at a stationary point such as the maximum-likelihood fit."""
    params = {
        "mean": mean.detach().double().clone().requires_grad_(True),
        "W": w.detach().double().clone().requires_grad_(True),
        "sigma2": torch.tensor(float(sigma2), dtype=torch.float64, requires_grad=True),
    }
    ppca_log_likelihood(x, params["mean"], params["W"], params["sigma2"]).mean().backward()
    return {name: p.grad.abs().max().item() for name, p in params.items()}


def top_eigenvectors(x: torch.Tensor | np.ndarray, k: int) -> np.ndarray:
    """The ``k`` leading eigenvectors (columns, (D, k)) of the sample covariance of the rows
    of x, in float64: the principal subspace."""
    x = np.asarray(x, dtype=np.float64)
    centred = x - x.mean(0)
    eigvals, eigvecs = np.linalg.eigh(centred.T @ centred / x.shape[0])  # ascending
    return eigvecs[:, ::-1][:, :k]


def _orthonormal_basis(a: np.ndarray) -> np.ndarray:
    q, r = np.linalg.qr(np.asarray(a, dtype=np.float64))
    if np.any(np.abs(np.diag(r)) < 1e-12 * max(1.0, np.abs(r).max())):
        raise ValueError("the columns are linearly dependent")
    return q


def principal_angles(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Principal angles (radians, largest first) between the column spaces of a (D, p) and
    b (D, q), both of full column rank: ``min(p, q)`` angles.

    Cosines are the singular values of ``Q_a^T Q_b`` (orthonormal bases); small angles,
    where the cosine loses precision, are taken from the sines, the singular values of
    ``Q_b - Q_a Q_a^T Q_b`` (Bjorck and Golub, 1973)."""
    qa, qb = _orthonormal_basis(a), _orthonormal_basis(b)
    if qa.shape[1] < qb.shape[1]:
        qa, qb = qb, qa  # qb is the smaller subspace: min(p, q) angles
    cosines = np.clip(np.linalg.svd(qa.T @ qb, compute_uv=False), -1.0, 1.0)  # descending
    sines = np.clip(np.linalg.svd(qb - qa @ (qa.T @ qb), compute_uv=False), 0.0, 1.0)
    # i-th largest cosine <-> i-th smallest angle <-> i-th smallest sine
    small_to_large = np.where(
        cosines**2 > 0.5, np.arcsin(np.sort(sines)), np.arccos(cosines)
    )  # ascending angles
    return small_to_large[::-1]


def plot_training_history(
    history: Sequence[dict], mle_test: float, zoom_from: int = 50, window: int = 25
):
    """Left: the test ELBO (one-sample Monte Carlo, as logged each epoch) and the exact test
    log-likelihood of the linear VAE against the epoch (log axis), with the
    maximum-likelihood pPCA value. Right: from epoch ``zoom_from`` on, both minus that
    value, and the ELBO's running mean over ``window`` epochs."""
    epoch = np.array([row["epoch"] for row in history])
    elbo = np.array([row["test_elbo"] for row in history])
    exact = np.array([row["test_exact_log_likelihood"] for row in history])
    fig, axes = figure(ncols=2, width=3.5, height=3.1)
    with style():
        ax = axes[0]
        ax.plot(epoch, exact, color=COLORS["true"], label=r"exact $\log p_\theta(x)$")
        ax.plot(epoch, elbo, color=COLORS["bound"], lw=1.2, label="ELBO (1 draw)")
        ax.axhline(mle_test, color=COLORS["forward"], ls="--", lw=1.5, label="pPCA MLE")
        ax.set_xscale("log")
        ax.set_xlabel("epoch")
        ax.set_ylabel("test set, nats per example")
        ax.set_title("training")
        ax.legend(loc="lower right")
        ax = axes[1]
        keep = epoch >= zoom_from
        ax.plot(epoch[keep], elbo[keep] - mle_test, color=COLORS["bound"], lw=0.8, alpha=0.5)
        if keep.sum() >= window:
            smooth = np.convolve(elbo[keep], np.ones(window) / window, mode="valid")
            ax.plot(
                epoch[keep][window - 1 :],
                smooth - mle_test,
                color=COLORS["reverse"],
                lw=1.5,
                label=f"ELBO, mean of {window} epochs",
            )
        ax.plot(
            epoch[keep], exact[keep] - mle_test, color=COLORS["true"], label=r"$\log p_\theta(x)$"
        )
        ax.axhline(0.0, color=COLORS["forward"], ls="--", lw=1.5)
        ax.set_xlabel("epoch")
        ax.set_ylabel("minus the pPCA MLE, nats")
        ax.set_title(f"from epoch {zoom_from}, relative to the MLE")
        ax.legend(loc="lower right", fontsize=8)
    plt.close(fig)
    return fig
