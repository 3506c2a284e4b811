"""Chapter 15 (``book/15_elbo_surgery_and_rate_distortion.ipynb``), the measurements: ELBO
surgery and the data entropy estimated on trained VAEs (torch, with the package's one
Gaussian log-density), and the chapter's figures. The finite families the engine checks the
same identities on are in :mod:`~vaebook.chapters.ch15_finite_families`.

- :func:`aggregate_log_density` -- ``log q(z)`` of the aggregate posterior
  ``q(z) = (1/N) sum_n q(z | x_n)``, a mixture of N diagonal Gaussians, by logsumexp;
- :func:`surgery_estimate` -- the average KL (closed form) and, by stratified Monte Carlo,
  the mutual information and ``KL(q(z) || p(z))``, with standard errors; also
  ``KL(p(z) || q(z))``, the prior mass where the aggregate posterior is thin;
- :func:`aggregate_samples` -- draws from the aggregate posterior;
- :func:`bernoulli_mixture_entropy` -- the entropy of the data distribution the binarised
  digits are drawn from (a mixture of products of Bernoullis), by Monte Carlo;
- :func:`mean_over_seeds` -- a sweep's runs averaged over their seeds;
- :func:`plot_aggregate_posterior_2d`, :func:`plot_rate_distortion_plane` -- the figures.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import matplotlib.pyplot as plt
import numpy as np
import torch

from ..plots import COLORS, figure, style
from ..vae.objectives import (
    diag_gaussian_log_density,
    kl_to_standard_normal,
    mean_and_stderr,
    standard_normal_log_density,
)

__all__ = [
    "aggregate_log_density",
    "SurgeryEstimate",
    "surgery_estimate",
    "aggregate_samples",
    "bernoulli_mixture_entropy",
    "mean_over_seeds",
    "plot_aggregate_posterior_2d",
    "plot_rate_distortion_plane",
]


def aggregate_log_density(
    z: torch.Tensor, mu: torch.Tensor, logvar: torch.Tensor, chunk: int = 1024
) -> torch.Tensor:
    """``log q(z)`` of the aggregate posterior ``q(z) = (1/N) sum_n N(z; mu_n, diag
    exp(logvar_n))``: z (S, L), mu and logvar (N, L) -> (S,), by logsumexp over the N
    components (in chunks of ``chunk`` rows of z)."""
    n = mu.shape[0]
    parts = [
        torch.logsumexp(diag_gaussian_log_density(part[:, None, :], mu, logvar), dim=1)  # (s,)
        for part in z.split(chunk)
    ]
    return torch.cat(parts) - math.log(n)  # (S,)


@dataclass(frozen=True)
class SurgeryEstimate:
    """ELBO surgery measured on a data set of ``n`` points (nats): ``average_kl`` exact (the
    closed-form KL of each point, averaged), the rest Monte Carlo with standard errors."""

    n: int
    average_kl: float
    mutual_information: float
    mutual_information_se: float
    marginal_kl: float
    marginal_kl_se: float
    reverse_marginal_kl: float  # KL(p(z) || q(z)), from draws of the prior
    reverse_marginal_kl_se: float
    largest_sample_information: float  # max over the draws of log q(z|x_n) - log q(z)

    @property
    def log_n(self) -> float:
        return math.log(self.n)

    @property
    def sum_se(self) -> float:
        """Standard error of ``mutual_information + marginal_kl`` (the two estimates come
        from the same draws and their sum is the estimate of ``average_kl``; bounded by the
        sum of the two errors)."""
        return self.mutual_information_se + self.marginal_kl_se


def _stratified(values: torch.Tensor) -> tuple[float, float]:
    """Mean and standard error of ``values`` (S, N): S draws for each of N strata of equal
    weight; the error is ``sqrt(sum_n var_n / S) / N``."""
    s, n = values.shape
    values = values.double()
    within = values.var(dim=0) if s > 1 else torch.full((n,), float("nan"))  # (N,)
    return values.mean().item(), math.sqrt(within.sum().item() / s) / n


@torch.no_grad()
def surgery_estimate(
    mu: torch.Tensor,
    logvar: torch.Tensor,
    samples_per_point: int = 4,
    prior_samples: int = 4000,
    seed: int = 0,
) -> SurgeryEstimate:
    """ELBO surgery of a VAE's encoder outputs ``mu``, ``logvar`` (N, L) on N data points:

    - ``average_kl`` = ``(1/N) sum_n KL(q(z|x_n) || N(0, I))`` in closed form;
    - ``mutual_information`` = ``(1/N) sum_n E_{q(z|x_n)}[log q(z|x_n) - log q(z)]`` and
      ``marginal_kl`` = ``E_{q(z)}[log q(z) - log p(z)]``, from the same
      ``samples_per_point`` draws of each ``q(z | x_n)`` (a stratified sample of the
      aggregate posterior ``q(z)``, :func:`aggregate_log_density`);
    - ``reverse_marginal_kl`` = ``E_{p(z)}[log p(z) - log q(z)]`` from ``prior_samples``
      draws of the prior.

    Each draw of the mutual information is at most ``log N`` (``q(z) >= q(z|x_n) / N``),
    so the estimate is too. Seeded with ``seed`` (the global generator is left alone)."""
    gen = torch.Generator().manual_seed(seed)
    mu, logvar = mu.double(), logvar.double()
    n, dim = mu.shape
    eps = torch.randn((samples_per_point, n, dim), generator=gen, dtype=torch.float64)
    z = mu + (0.5 * logvar).exp() * eps  # (S, N, L)
    log_q_point = diag_gaussian_log_density(z, mu, logvar)  # (S, N)
    log_q = aggregate_log_density(z.reshape(-1, dim), mu, logvar).reshape(samples_per_point, n)
    log_p = standard_normal_log_density(z)  # (S, N)
    information = log_q_point - log_q  # (S, N)
    mi, mi_se = _stratified(information)
    kl, kl_se = _stratified(log_q - log_p)
    z_prior = torch.randn((prior_samples, dim), generator=gen, dtype=torch.float64)
    reverse = standard_normal_log_density(z_prior) - aggregate_log_density(z_prior, mu, logvar)
    rev, rev_se = mean_and_stderr(reverse)
    return SurgeryEstimate(
        n=n,
        average_kl=kl_to_standard_normal(mu, logvar).mean().item(),
        mutual_information=mi,
        mutual_information_se=mi_se,
        marginal_kl=kl,
        marginal_kl_se=kl_se,
        reverse_marginal_kl=rev,
        reverse_marginal_kl_se=rev_se,
        largest_sample_information=information.max().item(),
    )


@torch.no_grad()
def aggregate_samples(
    mu: torch.Tensor, logvar: torch.Tensor, n: int, seed: int = 0
) -> torch.Tensor:
    """``n`` draws (n, L) of the aggregate posterior: a data point chosen uniformly, then
    ``z ~ q(z | x)``; seeded."""
    gen = torch.Generator().manual_seed(seed)
    rows = torch.randint(0, mu.shape[0], (n,), generator=gen)
    eps = torch.randn((n, mu.shape[1]), generator=gen, dtype=mu.dtype)
    return mu[rows] + (0.5 * logvar[rows]).exp() * eps


@torch.no_grad()
def bernoulli_mixture_entropy(
    probs: torch.Tensor, n_samples: int = 20000, seed: int = 0, chunk: int = 2000
) -> tuple[float, float]:
    """Entropy (nats) and its standard error of the mixture ``p*(x) = (1/N) sum_n prod_i
    Bernoulli(x_i; probs[n, i])`` over binary x (probs (N, D), entries in [0, 1]), by Monte
    Carlo: ``-mean log p*(x)`` over ``n_samples`` seeded draws. ``log p*(x)`` is exact: a
    logsumexp over the components, a component with ``probs`` 0 or 1 excluding the values it
    cannot produce."""
    gen = torch.Generator().manual_seed(seed)
    probs = probs.double()
    rows = torch.randint(0, probs.shape[0], (n_samples,), generator=gen)
    x = torch.bernoulli(probs[rows], generator=gen)  # (S, D)
    log_on = torch.where(probs > 0, probs.clamp_min(1e-300).log(), 0.0)  # (N, D)
    log_off = torch.where(probs < 1, (1 - probs).clamp_min(1e-300).log(), 0.0)  # (N, D)
    impossible_on, impossible_off = (probs == 0).double(), (probs == 1).double()
    log_p = []
    for part in x.split(chunk):  # (s, D)
        ll = part @ log_on.T + (1 - part) @ log_off.T  # (s, N) log of each component
        blocked = part @ impossible_on.T + (1 - part) @ impossible_off.T  # (s, N)
        ll = ll.masked_fill(blocked > 0, -math.inf)
        log_p.append(torch.logsumexp(ll, dim=1) - math.log(probs.shape[0]))
    return mean_and_stderr(-torch.cat(log_p))


def mean_over_seeds(
    points: Sequence[dict], keys: Sequence[str], by=("latent_dim", "beta")
) -> list[dict]:
    """The points (dicts) grouped by the fields ``by``, in first-seen order: each group's
    ``by`` values, ``n`` (points) and the mean of every field of ``keys``."""
    groups: dict[tuple, list[dict]] = {}
    for p in points:
        groups.setdefault(tuple(p[k] for k in by), []).append(p)
    return [
        dict(zip(by, key, strict=True))
        | {"n": len(members)}
        | {k: float(np.mean([m[k] for m in members])) for k in keys}
        for key, members in groups.items()
    ]


# -- figures ------------------------------------------------------------------------------
def plot_aggregate_posterior_2d(mu, logvar, limit: float = 3.5, steps: int = 161):
    """A two-dimensional latent space: left, the aggregate posterior's density ``q(z)``
    with the prior's 1-, 2- and 3-sigma circles; right, ``log q(z) / p(z)`` clipped to
    [-3, 3] nats (blue where the aggregate posterior is denser than the prior, red where the
    prior puts mass the data do not use), with the contour ``q(z) = p(z) / 10``."""
    grid = torch.linspace(-limit, limit, steps, dtype=torch.float64)
    zz = torch.cartesian_prod(grid, grid)  # (steps^2, 2), first coordinate slowest
    log_q = aggregate_log_density(zz, mu.double(), logvar.double()).reshape(steps, steps)
    log_p = standard_normal_log_density(zz).reshape(steps, steps)
    g = grid.numpy()
    q, ratio = log_q.exp().numpy().T, (log_q - log_p).numpy().T  # rows: second coordinate
    fig, axes = figure(ncols=2, width=3.4, height=3.2)
    theta = np.linspace(0, 2 * np.pi, 200)
    with style():
        axes[0].pcolormesh(g, g, q, cmap="Greys", shading="auto")
        for r in (1, 2, 3):
            axes[0].plot(
                r * np.cos(theta), r * np.sin(theta), color=COLORS["reverse"], lw=0.9, ls=":"
            )
        axes[0].set_title(r"aggregate posterior $\bar{q}(z)$")
        bound = 3.0
        mesh = axes[1].pcolormesh(
            g,
            g,
            np.clip(ratio, -bound, bound),
            cmap="RdBu",
            vmin=-bound,
            vmax=bound,
            shading="auto",
        )
        axes[1].contour(
            g, g, ratio, levels=[-math.log(10)], colors=[COLORS["true"]], linewidths=0.9
        )
        axes[1].set_title(r"$\log \bar{q}(z) / p(z)$")
        fig.colorbar(mesh, ax=axes[1], shrink=0.85, label="nats")
        for ax in axes:
            ax.set_aspect("equal")
            ax.set_xlabel("$z_1$")
            ax.grid(False)
        axes[0].set_ylabel("$z_2$")
    plt.close(fig)
    return fig


def plot_rate_distortion_plane(points: Sequence[dict], entropy: float, beta_colors: dict):
    """The rate-distortion plane: each point a dict with ``rate``, ``distortion``, ``beta``
    and ``latent_dim`` (one marker per latent size, one colour per beta); dotted lines of
    constant ``D + R`` (= -ELBO, slope -1) and the line ``D + R = H`` below which (in
    expectation over the data) no model with a proper decoder lies, shaded."""
    fig, ax = figure(width=5.6, height=4.2)
    markers = {
        size: m for size, m in zip(sorted({p["latent_dim"] for p in points}), "os^D", strict=False)
    }
    rates = np.array([p["rate"] for p in points])
    dists = np.array([p["distortion"] for p in points])
    r_lim = (0.0, rates.max() * 1.08)
    d_lim = (min(dists.min(), entropy) - 1.5, dists.max() + 1.0)
    with style():
        r = np.linspace(*r_lim, 50)
        totals = rates + dists
        for total in np.arange(np.floor(totals.min()), np.ceil(totals.max()) + 1, 1.0):
            ax.plot(r, total - r, ":", color="0.6", lw=0.8, zorder=1)
        ax.fill_between(r, d_lim[0], entropy - r, color=COLORS["mc"], alpha=0.35, lw=0, zorder=0)
        ax.plot(
            r,
            entropy - r,
            "-",
            color=COLORS["gap"],
            lw=1.3,
            zorder=1,
            label=r"$\mathcal{D} + \mathcal{R} = H$",
        )
        for p in points:
            ax.scatter(
                p["rate"],
                p["distortion"],
                s=30,
                marker=markers[p["latent_dim"]],
                color=beta_colors[p["beta"]],
                zorder=3,
            )
        for beta in sorted({p["beta"] for p in points}):
            ax.scatter([], [], s=30, color=beta_colors[beta], label=rf"$\beta$ = {beta:g}")
        for size, marker in markers.items():
            ax.scatter([], [], s=30, marker=marker, color="0.4", label=f"latent size {size}")
        ax.set_xlim(*r_lim)
        ax.set_ylim(*d_lim)
        ax.set_xlabel(r"rate $\mathcal{R}$, nats")
        ax.set_ylabel(r"distortion $\mathcal{D}$, nats")
        ax.legend(loc="upper left", bbox_to_anchor=(1.0, 1.0), fontsize=8)
    plt.close(fig)
    return fig
