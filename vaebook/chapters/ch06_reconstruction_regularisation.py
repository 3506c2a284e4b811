"""Chapter 6 (``book/06_reconstruction_regularisation.ipynb``): reconstruction versus
regularisation.

The beta-weighted objective ``E_q[log p(x|z)] - beta KL(q || p(z))`` on the scalar
linear-Gaussian family and its optimum (:func:`beta_objective`, :func:`beta_optimum`),
decoder log-likelihood helpers, a Monte Carlo KL estimate, and the chapter's figures.
"""

from __future__ import annotations

import math

import matplotlib.pyplot as plt
import numpy as np
import sympy as sp
import torch

from ..plots import COLORS, figure, style
from ..symbolic import notation as N
from ..symbolic.families import LinearGaussian

__all__ = [
    "beta_objective",
    "beta_optimum",
    "gaussian_nll",
    "kl_diag_gaussian_to_standard_normal",
    "monte_carlo_kl_to_standard_normal",
    "plot_beta_optimum",
    "plot_gaussian_nll_variance",
]


def beta_objective(lg: LinearGaussian, beta) -> tuple[sp.Expr, sp.Expr, sp.Expr]:
    """``(objective, reconstruction, kl)`` on the scalar linear-Gaussian family, exact:
    reconstruction ``E_q[log p(x|z)]``, ``kl = KL(q || p(z))`` and
    ``objective = reconstruction - beta * kl`` (eq-recon-beta), functions of ``lg.m, lg.v``."""
    recon = lg.interpret(N.expectation(sp.log(N.px_z)))
    kl = lg.interpret(N.KL_prior)
    return recon - beta * kl, recon, kl


def beta_optimum(lg: LinearGaussian, beta) -> tuple[sp.Expr, sp.Expr]:
    """The unique stationary ``(m*, v*)`` of :func:`beta_objective`, by ``sympy.solve``
    of the two first-order conditions; raises unless there is exactly one solution."""
    objective, _, _ = beta_objective(lg, beta)
    sols = sp.solve([sp.diff(objective, lg.m), sp.diff(objective, lg.v)], [lg.m, lg.v], dict=True)
    if len(sols) != 1:
        raise ValueError(f"expected one stationary point, found {sols}")
    return sp.simplify(sols[0][lg.m]), sp.simplify(sols[0][lg.v])


def gaussian_nll(x, mu, var, *, keep_log_var: bool = True, keep_constant: bool = True):
    """Sum over entries of ``-log N(x; mu, var)`` (eq-recon-gauss-nll):
    ``(x - mu)^2 / (2 var) + 1/2 log var + 1/2 log(2 pi)``.

    ``keep_log_var=False`` drops ``1/2 log var`` and ``keep_constant=False`` drops
    ``1/2 log(2 pi)`` -- to show what each omission does. NumPy arrays, broadcasting.
    """
    x, mu, var = np.asarray(x, float), np.asarray(mu, float), np.asarray(var, float)
    out = (x - mu) ** 2 / (2 * var)
    if keep_log_var:
        out = out + 0.5 * np.log(var)
    if keep_constant:
        out = out + 0.5 * np.log(2 * np.pi)
    return np.sum(out, axis=-1) if out.ndim else out


def kl_diag_gaussian_to_standard_normal(mu: torch.Tensor, logvar: torch.Tensor) -> torch.Tensor:
    """``KL(N(mu, diag exp(logvar)) || N(0, I))`` summed over the last axis (eq-recon-kl-closed):
    ``-1/2 sum_j (1 + logvar_j - mu_j^2 - exp(logvar_j))``. mu, logvar: (..., L) -> (...)."""
    return -0.5 * torch.sum(1 + logvar - mu**2 - logvar.exp(), dim=-1)  # (...)


def monte_carlo_kl_to_standard_normal(
    mu: torch.Tensor, logvar: torch.Tensor, n_samples: int, seed: int = 0
) -> tuple[float, float]:
    """Monte Carlo estimate of ``KL(q || N(0, I))`` for one ``q = N(mu, diag exp(logvar))``
    (mu, logvar: (L,)): the mean of ``log q(z) - log p(z)`` over ``n_samples`` draws
    ``z ~ q`` (seeded), and its standard error. Densities from ``torch.distributions``."""
    from torch.distributions import Independent, Normal

    gen = torch.Generator().manual_seed(seed)
    std = (0.5 * logvar).exp()  # (L,)
    eps = torch.randn((n_samples, mu.shape[-1]), generator=gen, dtype=mu.dtype)  # (S, L)
    z = mu + std * eps  # (S, L)
    q = Independent(Normal(mu, std), 1)
    p = Independent(Normal(torch.zeros_like(mu), torch.ones_like(mu)), 1)
    log_ratio = q.log_prob(z) - p.log_prob(z)  # (S,)
    return float(log_ratio.mean()), float(log_ratio.std() / math.sqrt(n_samples))


def plot_beta_optimum(betas, m_opt, v_opt, recon, kl, m_post, v_post):
    """Left: optimal variational mean and variance against ``beta`` (log axis), with the
    true posterior at ``beta = 1``. Right: reconstruction term and KL term at the optimum."""
    fig, axes = figure(ncols=2, width=4.6, height=3.6)
    with style():
        axes[0].plot(betas, m_opt, color=COLORS["q"], label=r"$m^*(\beta)$")
        axes[0].plot(betas, v_opt, color=COLORS["reverse"], label=r"$v^*(\beta)$")
        axes[0].plot(
            [1, 1],
            [m_post, v_post],
            "*",
            color=COLORS["true"],
            ms=12,
            label=r"true posterior ($\beta = 1$)",
        )
        axes[0].set_xscale("log")
        axes[0].set_xlabel(r"$\beta$")
        axes[0].set_ylabel("optimal parameter of $q$")
        axes[0].set_title("the optimal $q$ moves towards the prior")
        axes[0].legend(fontsize=8)
        axes[1].plot(betas, recon, color=COLORS["q"], label=r"$\mathbb{E}_q[\log p(x|z)]$")
        axes[1].plot(betas, kl, color=COLORS["reverse"], label=r"$\mathrm{KL}(q \| p(z))$")
        axes[1].axvline(1, color="grey", ls=":", lw=1)
        axes[1].set_xscale("log")
        axes[1].set_xlabel(r"$\beta$")
        axes[1].set_ylabel("nats")
        axes[1].set_title("reconstruction versus regularisation")
        axes[1].legend(fontsize=8)
    plt.close(fig)
    return fig


def plot_gaussian_nll_variance(var_grid, full, no_log_var, var_opt):
    """Gaussian negative log-likelihood of fixed residuals against a learned variance:
    the full NLL (minimum at the mean squared residual ``var_opt``) and the NLL without
    its ``1/2 log var`` term (decreasing forever: no minimum)."""
    fig, ax = figure(width=5.6, height=3.8)
    with style():
        ax.plot(
            var_grid, full, color=COLORS["q"], label=r"full $-\log \mathcal{N}(x; \mu, \sigma^2)$"
        )
        ax.plot(
            var_grid,
            no_log_var,
            color=COLORS["reverse"],
            label=r"without $\frac{1}{2} \log \sigma^2$",
        )
        ax.axvline(var_opt, color="grey", ls=":", label=rf"mean squared residual {var_opt:.3g}")
        ax.set_xscale("log")
        full, no_log_var = np.asarray(full), np.asarray(no_log_var)
        low = min(full.min(), no_log_var.min())
        top = np.interp(np.log(var_opt / 10), np.log(var_grid), full)  # show the bowl
        ax.set_ylim(low - 0.05 * (top - low), top)
        ax.set_xlabel(r"decoder variance $\sigma^2$")
        ax.set_ylabel("negative log-likelihood (nats)")
        ax.set_title("a learned variance needs the log term")
        ax.legend(fontsize=8)
    plt.close(fig)
    return fig

