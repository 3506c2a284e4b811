"""Why the evidence ``p(x) = ∫ p(x|z) p(z) dz`` is out of reach for a neural decoder.

Chapter 1 (``book/01_latent_variable_models.ipynb``) computes the evidence of one
observation under a small decoder with fixed random weights in two ways, and counts what
each costs:

* :func:`grid_quadrature` -- a tensor-product midpoint rule over ``[-c, c]^L`` with
  the prior density as weight. With ``n`` points per axis it needs ``n^L`` decoder
  evaluations (eq. ``eq-lvm-grid``): exponential in the latent dimension ``L``.
* :func:`naive_monte_carlo` -- draw ``z_s ~ p(z)`` and average ``p(x|z_s)``
  (eq. ``eq-lvm-mc``). Unbiased, with relative standard error
  ``sqrt(rho / S)``, ``rho = E_p(z)[p(x|z)^2] / p(x)^2 - 1``, which is large when
  the posterior is much narrower than the prior.

The prior is always ``p(z) = N(0, I_L)`` (``L`` latent dimensions, as in the book's
notation). Likelihoods are given as a callable
``log_likelihood(z) -> (N,)`` for a batch ``z`` of shape ``(N, L)`` and a fixed
observation, so the same code runs on the nonlinear decoder (:class:`TanhDecoder`) and
on a linear-Gaussian decoder whose evidence is known in closed form
(:class:`LinearGaussianDecoder`, the tests' oracle). Everything is float64.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import numpy as np
import torch
from torch.distributions import Bernoulli, Normal

from ..plots import COLORS, figure, style
from ..vae.ppca import ppca_log_likelihood

__all__ = [
    "TanhDecoder",
    "LinearGaussianDecoder",
    "CountingLikelihood",
    "grid_quadrature",
    "grid_log_evidence",
    "MonteCarloEstimate",
    "naive_monte_carlo",
    "repeated_monte_carlo",
    "relative_variance",
    "PosteriorGrid",
    "posterior_on_grid",
    "plot_grid_cost",
    "plot_monte_carlo_spread",
    "plot_posterior_against_prior",
]

LogLikelihood = Callable[[torch.Tensor], torch.Tensor]  # (N, L) -> (N,)


# --------------------------------------------------------------------------- decoders


class TanhDecoder:
    """A one-hidden-layer tanh MLP from ``z in R^L`` to Bernoulli logits over pixels.

    ``logits(z) = tanh(z W1 + b1) W2 + b2`` with weights drawn once from a seeded
    normal distribution and never trained; ``p(x|z) = prod_j Bernoulli(x_j; sigmoid(logits_j))``.

    Args:
        latent_dim: ``L``, dimension of ``z``.
        n_pixels: number of binary pixels ``D`` in ``x``.
        hidden: width ``H`` of the hidden layer.
        scale: standard deviation of the first-layer weights (larger: sharper
            likelihood, narrower posterior).
        seed: seed of the weights (and of nothing else).
    """

    def __init__(
        self,
        latent_dim: int,
        n_pixels: int = 8,
        hidden: int = 16,
        scale: float = 1.0,
        seed: int = 0,
    ):
        g = torch.Generator().manual_seed(seed)
        self.latent_dim, self.n_pixels, self.hidden = latent_dim, n_pixels, hidden
        self.W1 = torch.randn(latent_dim, hidden, generator=g, dtype=torch.float64)  # (L, H)
        self.W1 *= scale
        self.b1 = 0.5 * torch.randn(hidden, generator=g, dtype=torch.float64)  # (H,)
        self.W2 = torch.randn(hidden, n_pixels, generator=g, dtype=torch.float64)  # (H, D)
        self.W2 *= 3.0 / math.sqrt(hidden)
        self.b2 = torch.zeros(n_pixels, dtype=torch.float64)  # (D,)

    def logits(self, z: torch.Tensor) -> torch.Tensor:
        """Bernoulli logits for a batch: ``(N, L) -> (N, D)``."""
        return torch.tanh(z @ self.W1 + self.b1) @ self.W2 + self.b2  # (N, D)

    def likelihood(self, z: torch.Tensor) -> torch.distributions.Distribution:
        """``p(x | z)`` for a batch ``z`` of shape ``(N, L)``: batch shape ``(N, D)``."""
        return Bernoulli(logits=self.logits(z), validate_args=False)

    def sample_observation(self, seed: int = 0) -> torch.Tensor:
        """One ``x`` from the model: ``z ~ N(0, I)``, then ``x ~ p(x | z)``. Shape ``(D,)``."""
        g = torch.Generator().manual_seed(seed)
        z = torch.randn(1, self.latent_dim, generator=g, dtype=torch.float64)  # (1, L)
        probs = torch.sigmoid(self.logits(z))[0]  # (D,)
        u = torch.rand(self.n_pixels, generator=g, dtype=torch.float64)  # (D,)
        return (u < probs).double()  # (D,)

    def log_likelihood_fn(self, x: torch.Tensor) -> LogLikelihood:
        """``z -> log p(x | z)`` for the fixed observation ``x`` of shape ``(D,)``."""
        return lambda z: self.likelihood(z).log_prob(x).sum(-1)  # (N, L) -> (N,)


class LinearGaussianDecoder:
    """``p(x | z) = N(x; z W + b, s^2 I)``: the decoder whose evidence is exact,
    ``p(x) = N(x; b, W^T W + s^2 I)`` (the L-dimensional linear-Gaussian model)."""

    def __init__(self, W: torch.Tensor, b: torch.Tensor, s: float):
        self.W, self.b, self.s = W.double(), b.double(), float(s)  # (L, D), (D,), scalar

    def log_likelihood_fn(self, x: torch.Tensor) -> LogLikelihood:
        return lambda z: Normal(z @ self.W + self.b, self.s).log_prob(x).sum(-1)  # (N,)

    def log_evidence(self, x: torch.Tensor) -> float:
        """Exact ``log p(x)`` (:func:`~vaebook.vae.ppca.ppca_log_likelihood`; its ``W`` is
        the transpose of this one's)."""
        return float(ppca_log_likelihood(x, self.b, self.W.T, self.s**2))


class CountingLikelihood:
    """Wraps a ``log_likelihood`` callable and counts the decoder evaluations (one per
    row of ``z``) it was asked for."""

    def __init__(self, fn: LogLikelihood):
        self.fn, self.evaluations = fn, 0

    def __call__(self, z: torch.Tensor) -> torch.Tensor:
        self.evaluations += z.shape[0]
        return self.fn(z)


# ------------------------------------------------------------------------ quadrature


def _midpoint_rule(n: int, half_width: float) -> tuple[torch.Tensor, torch.Tensor]:
    """Nodes and log-weights of the midpoint rule for ``∫ f(z) N(z; 0, 1) dz`` on
    ``[-c, c]`` (``c`` = ``half_width``): ``omega_i = (2c/n) N(z_i; 0, 1)``. Shapes ``(n,)``, ``(n,)``."""
    h = 2 * half_width / n
    nodes = -half_width + h * (torch.arange(n, dtype=torch.float64) + 0.5)  # (n,)
    log_w = math.log(h) + Normal(0.0, 1.0).log_prob(nodes)  # (n,)
    return nodes, log_w


def _gauss_hermite_rule(n: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Nodes and log-weights of ``n``-point Gauss-Hermite quadrature for
    ``∫ f(z) N(z; 0, 1) dz`` (exact for polynomials of degree ``2n - 1``)."""
    nodes, weights = np.polynomial.hermite_e.hermegauss(n)  # weight exp(-z^2/2)
    log_w = np.log(weights) - 0.5 * math.log(2 * math.pi)
    return torch.as_tensor(nodes, dtype=torch.float64), torch.as_tensor(log_w, dtype=torch.float64)


def grid_quadrature(
    log_integrand: LogLikelihood,
    latent_dim: int,
    n_per_axis: int,
    half_width: float = 6.0,
    chunk: int = 1 << 16,
    rule: str = "midpoint",
) -> float:
    """``log ∫ exp(log_integrand(z)) N(z; 0, I_L) dz`` by the tensor-product midpoint
    rule on ``[-c, c]^L`` (``c`` = ``half_width``; eq. ``eq-lvm-grid``)::

        p(x) ≈ sum_{i_1..i_L} omega_{i_1} ... omega_{i_L} p(x | z_{i_1}, ..., z_{i_L})

    It calls ``log_integrand`` on exactly ``n_per_axis ** latent_dim`` points, in
    chunks of at most ``chunk`` rows; the sum is accumulated in log space.
    ``rule="gauss-hermite"`` uses Gauss-Hermite nodes and weights instead (same
    ``n^L`` cost, far higher accuracy for smooth integrands; ``half_width`` unused).
    """
    if rule == "midpoint":
        nodes, log_w = _midpoint_rule(n_per_axis, half_width)
    elif rule == "gauss-hermite":
        nodes, log_w = _gauss_hermite_rule(n_per_axis)
    else:
        raise ValueError(f"unknown rule {rule!r}; choose 'midpoint' or 'gauss-hermite'")
    total = n_per_axis**latent_dim
    radix = n_per_axis ** torch.arange(latent_dim - 1, -1, -1)  # (L,) mixed-radix digits
    partial = []
    for start in range(0, total, chunk):
        flat = torch.arange(start, min(start + chunk, total))  # (C,)
        idx = (flat[:, None] // radix) % n_per_axis  # (C, L) grid index per axis
        z = nodes[idx]  # (C, L)
        log_terms = log_integrand(z) + log_w[idx].sum(-1)  # (C,)
        partial.append(torch.logsumexp(log_terms, 0))
    return float(torch.logsumexp(torch.stack(partial), 0))


def grid_log_evidence(
    log_likelihood: LogLikelihood,
    latent_dim: int,
    n_per_axis: int,
    half_width: float = 6.0,
    rule: str = "midpoint",
) -> tuple[float, int]:
    """``(log p(x) by grid quadrature, number of decoder evaluations it took)``."""
    counted = CountingLikelihood(log_likelihood)
    value = grid_quadrature(counted, latent_dim, n_per_axis, half_width, rule=rule)
    return value, counted.evaluations


def relative_variance(
    log_likelihood: LogLikelihood,
    latent_dim: int,
    n_per_axis: int,
    half_width: float = 6.0,
    rule: str = "midpoint",
) -> float:
    """``rho = E_p(z)[p(x|z)^2] / p(x)^2 - 1``, by grid quadrature: the variance of a
    single naive Monte Carlo term relative to the squared evidence. The relative
    standard error of the ``S``-sample estimate is ``sqrt(rho / S)``."""
    log_m1 = grid_quadrature(log_likelihood, latent_dim, n_per_axis, half_width, rule=rule)
    log_m2 = grid_quadrature(
        lambda z: 2 * log_likelihood(z), latent_dim, n_per_axis, half_width, rule=rule
    )
    return math.expm1(log_m2 - 2 * log_m1)


# ----------------------------------------------------------------------- Monte Carlo


@dataclass(frozen=True)
class MonteCarloEstimate:
    """A naive Monte Carlo estimate of the evidence, in log space."""

    log_evidence: float  # log of the sample mean of p(x | z_s)
    relative_std_error: float  # sample std of p(x|z_s) / (sample mean * sqrt(S))
    n_samples: int


def naive_monte_carlo(
    log_likelihood: LogLikelihood, latent_dim: int, n_samples: int, generator: torch.Generator
) -> MonteCarloEstimate:
    """``p(x) ≈ (1/S) sum_s p(x | z_s)`` with ``z_s ~ N(0, I_L)`` (eq. ``eq-lvm-mc``)."""
    z = torch.randn(n_samples, latent_dim, generator=generator, dtype=torch.float64)  # (S, L)
    log_lik = log_likelihood(z)  # (S,)
    top = log_lik.max()
    ratios = torch.exp(log_lik - top)  # (S,) p(x|z_s) / max_s p(x|z_s), no underflow
    mean = ratios.mean()
    rse = ratios.std() / (mean * math.sqrt(n_samples)) if n_samples > 1 else float("nan")
    return MonteCarloEstimate(float(top + mean.log()), float(rse), n_samples)


def repeated_monte_carlo(
    log_likelihood: LogLikelihood, latent_dim: int, n_samples: int, n_repeats: int, seed: int = 0
) -> torch.Tensor:
    """``n_repeats`` independent ``S``-sample naive estimates of ``log p(x)``, shape
    ``(n_repeats,)``, drawn in one batch from a generator seeded with ``seed``."""
    g = torch.Generator().manual_seed(seed)
    z = torch.randn(n_repeats * n_samples, latent_dim, generator=g, dtype=torch.float64)  # (R*S, L)
    log_lik = log_likelihood(z).reshape(n_repeats, n_samples)  # (R, S)
    return torch.logsumexp(log_lik, dim=1) - math.log(n_samples)  # (R,)


# ------------------------------------------------ the posterior against the prior (L = 2)


@dataclass(frozen=True)
class PosteriorGrid:
    """The posterior ``p(z | x)`` of a two-dimensional code on a square grid, and the
    smallest set of grid cells that holds ``level`` of its mass (its highest-density
    region, up to the grid).

    ``axis`` (n,) are the cell centres along each axis; ``log_density`` (n, n) is
    ``log p(z | x)`` at ``(axis[j], axis[i])`` in row ``i``, column ``j`` (``z_1`` along the
    columns, ``z_2`` along the rows, as an image); ``region`` (n, n) marks the cells of the
    region; ``prior_mass`` is the prior probability of the region, by the same midpoint
    rule."""

    axis: torch.Tensor
    log_density: torch.Tensor
    region: torch.Tensor
    level: float
    prior_mass: float

    def contains(self, z: torch.Tensor) -> torch.Tensor:
        """Whether each point of ``z`` (S, 2) lies in a cell of the region: (S,) bool
        (points outside the grid are outside the region)."""
        spacing = float(self.axis[1] - self.axis[0])
        start = float(self.axis[0]) - spacing / 2
        col = torch.floor((z[:, 0] - start) / spacing).long()  # (S,) cell along z_1
        row = torch.floor((z[:, 1] - start) / spacing).long()  # (S,) cell along z_2
        n = self.axis.numel()
        inside = (col >= 0) & (col < n) & (row >= 0) & (row < n)  # (S,)
        hit = torch.zeros_like(inside)
        hit[inside] = self.region[row[inside], col[inside]]
        return hit


def posterior_on_grid(
    log_likelihood: LogLikelihood,
    n_per_axis: int = 300,
    half_width: float = 4.0,
    level: float = 0.9,
) -> PosteriorGrid:
    """``p(z | x) = p(x | z) N(z; 0, I_2) / p(x)`` on the midpoint grid of
    ``[-c, c]^2`` (``c`` = ``half_width``), normalised over the grid (``n_per_axis ** 2``
    decoder evaluations), and its ``level`` highest-density region: the cells of largest
    posterior density, taken until their posterior mass reaches ``level``."""
    spacing = 2 * half_width / n_per_axis
    axis = -half_width + spacing * (torch.arange(n_per_axis, dtype=torch.float64) + 0.5)  # (n,)
    z2, z1 = torch.meshgrid(axis, axis, indexing="ij")  # (n, n) each: row i, column j
    z = torch.stack([z1.reshape(-1), z2.reshape(-1)], dim=-1)  # (n*n, 2)
    log_prior = Normal(0.0, 1.0).log_prob(z).sum(-1)  # (n*n,)
    log_joint = log_likelihood(z) + log_prior  # (n*n,)
    log_cell_mass = log_joint - torch.logsumexp(log_joint, 0)  # (n*n,) posterior mass per cell
    order = torch.argsort(log_cell_mass, descending=True)  # (n*n,)
    cumulative = torch.cumsum(log_cell_mass[order].exp(), 0)  # (n*n,)
    taken = int(torch.searchsorted(cumulative, torch.tensor(level, dtype=torch.float64))) + 1
    region = torch.zeros(n_per_axis * n_per_axis, dtype=torch.bool)
    region[order[:taken]] = True
    prior_mass = float((log_prior.exp() * spacing**2)[region].sum())
    return PosteriorGrid(
        axis=axis,
        log_density=(log_cell_mass - 2 * math.log(spacing)).reshape(n_per_axis, n_per_axis),
        region=region.reshape(n_per_axis, n_per_axis),
        level=level,
        prior_mass=prior_mass,
    )


# -------------------------------------------------------------------------- figures


def plot_grid_cost(dims: Sequence[int], n_fixed: int, sweeps: dict, target: float = 1e-2):
    """Left: decoder evaluations ``n^L`` for a fixed per-axis resolution (log scale).
    Right: relative error of the quadrature estimate of ``p(x)`` against the number of
    evaluations, one curve per latent dimension ``L``.

    ``sweeps[L]`` is a pair of arrays ``(evaluations, relative_error)``.
    """
    fig, (ax0, ax1) = figure(ncols=2, width=4.6, height=3.6)
    palette = [COLORS[k] for k in ("q", "reverse", "forward", "gap", "bound", "true")]
    with style():
        dims = list(dims)
        ax0.semilogy(
            dims,
            [n_fixed**latent for latent in dims],
            "o-",
            color=COLORS["grid"],
            label=f"{n_fixed} points per axis",
        )
        ax0.set_xticks(dims)
        ax0.set_xlabel("latent dimensions $L$")
        ax0.set_ylabel("decoder evaluations")
        ax0.set_title("cost of a grid: $G^L$")
        ax0.legend()
        for color, latent in zip(palette, sweeps, strict=False):
            evals, err = sweeps[latent]
            ax1.loglog(evals, err, "o-", ms=3, color=color, label=f"$L = {latent}$")
        ax1.axhline(target, color="grey", ls="--", lw=1, label=f"{target:.0%} error")
        ax1.set_xlabel("decoder evaluations")
        ax1.set_ylabel(r"relative error of $p(x)$")
        ax1.set_title("grid quadrature: error vs cost")
        ax1.legend()
    _close(fig)
    return fig


def plot_monte_carlo_spread(
    ratios: np.ndarray,
    n_samples_hist: int,
    sample_sizes: Sequence[int],
    rms_errors: dict,
    predicted: dict,
):
    """Left: histogram of naive estimates divided by the exact ``p(x)``.
    Right: root-mean-square relative error against the sample size ``S``, measured
    (markers) and predicted ``sqrt(rho / S)`` (dashed), one colour per ``L``."""
    fig, (ax0, ax1) = figure(ncols=2, width=4.6, height=3.6)
    palette = [COLORS[k] for k in ("q", "reverse", "forward", "gap", "bound", "true")]
    with style():
        ax0.hist(ratios, bins=40, color=COLORS["grid"], alpha=0.8)
        ax0.axvline(1.0, color=COLORS["true"], lw=1.5, label="exact $p(x)$")
        ax0.axvline(
            float(np.mean(ratios)),
            color=COLORS["reverse"],
            ls="--",
            lw=1.5,
            label="mean of estimates",
        )
        ax0.set_xlabel(r"estimate / exact $p(x)$")
        ax0.set_ylabel("count")
        ax0.set_title(f"naive Monte Carlo, $S = {n_samples_hist}$")
        ax0.legend()
        S = np.asarray(sample_sizes, dtype=float)
        for color, latent in zip(palette, rms_errors, strict=False):
            ax1.loglog(S, rms_errors[latent], "o", color=color, label=f"$L = {latent}$")
            ax1.loglog(S, np.sqrt(predicted[latent] / S), "--", lw=1, color=color)
        ax1.set_xlabel("samples $S$")
        ax1.set_ylabel("relative error (RMS)")
        ax1.set_title(r"error vs samples; dashed: $\sqrt{\rho / S}$")
        ax1.legend()
    _close(fig)
    return fig


def plot_posterior_against_prior(grids: dict, prior_draws: torch.Tensor):
    """One panel per entry of ``grids`` (``{title: PosteriorGrid}``): the posterior density
    (shaded), the boundary of its highest-density region (black), circles of the prior
    ``N(0, I_2)`` at radii 1 and 2 (grey, dashed), and the same ``prior_draws`` (S, 2) in every
    panel, filled where they fall in the region and open where they miss it."""
    fig, axes = figure(ncols=len(grids), width=3.4, height=3.4)
    axes = np.atleast_1d(axes)
    angle = np.linspace(0.0, 2 * np.pi, 200)
    with style():
        for ax, (title, grid) in zip(axes, grids.items(), strict=True):
            axis = grid.axis.numpy()
            ax.imshow(grid.log_density.exp().numpy(), origin="lower", cmap="Blues",
                      extent=(axis[0], axis[-1], axis[0], axis[-1]), interpolation="bilinear")
            ax.contour(axis, axis, grid.region.numpy().astype(float), levels=[0.5],
                       colors=COLORS["true"], linewidths=1.2)
            for radius in (1.0, 2.0):
                ax.plot(radius * np.cos(angle), radius * np.sin(angle), "--", lw=1,
                        color="grey")
            inside = grid.contains(prior_draws).numpy()
            draws = prior_draws.numpy()
            ax.plot(draws[inside, 0], draws[inside, 1], "o", ms=3.5, color=COLORS["reverse"])
            ax.plot(draws[~inside, 0], draws[~inside, 1], "o", ms=3.5, mfc="none",
                    color=COLORS["reverse"], alpha=0.7)
            ax.set_title(title)
            ax.set_xlabel("$z_1$")
            ax.set_aspect("equal")
            ax.grid(False)
        axes[0].set_ylabel("$z_2$")
    _close(fig)
    return fig


def _close(fig) -> None:
    """Close ``fig`` so the notebook shows it once, as the cell's value."""
    import matplotlib.pyplot as plt

    plt.close(fig)
