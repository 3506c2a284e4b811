"""Why the evidence ``p(x) = ∫ p(x|z) p(z) dz`` is out of reach for a neural decoder.

Chapter 1 (``book/01_latent_variable_models.ipynb``) computes the evidence of one
observation under a small decoder with fixed random weights in two ways, and counts what
each costs:

* :func:`grid_quadrature` -- a tensor-product midpoint rule over ``[-L, L]^d`` with
  the prior density as weight. With ``n`` points per axis it needs ``n^d`` decoder
  evaluations (eq. ``eq-lvm-grid``): exponential in the latent dimension ``d``.
* :func:`naive_monte_carlo` -- draw ``z_s ~ p(z)`` and average ``p(x|z_s)``
  (eq. ``eq-lvm-mc``). Unbiased, with relative standard error
  ``sqrt(rho / S)``, ``rho = E_p(z)[p(x|z)^2] / p(x)^2 - 1``, which is large when
  the posterior is much narrower than the prior.

The prior is always ``p(z) = N(0, I_d)``. Likelihoods are given as a callable
``log_likelihood(z) -> (N,)`` for a batch ``z`` of shape ``(N, d)`` and a fixed
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
    "plot_grid_cost",
    "plot_monte_carlo_spread",
]

LogLikelihood = Callable[[torch.Tensor], torch.Tensor]  # (N, d) -> (N,)


# --------------------------------------------------------------------------- decoders


class TanhDecoder:
    """A one-hidden-layer tanh MLP from ``z in R^d`` to Bernoulli logits over pixels.

    ``logits(z) = tanh(z W1 + b1) W2 + b2`` with weights drawn once from a seeded
    normal distribution and never trained; ``p(x|z) = prod_j Bernoulli(x_j; sigmoid(logits_j))``.

    Args:
        latent_dim: ``d``, dimension of ``z``.
        n_pixels: number of binary pixels ``P`` in ``x``.
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
        self.W1 = torch.randn(latent_dim, hidden, generator=g, dtype=torch.float64)  # (d, H)
        self.W1 *= scale
        self.b1 = 0.5 * torch.randn(hidden, generator=g, dtype=torch.float64)  # (H,)
        self.W2 = torch.randn(hidden, n_pixels, generator=g, dtype=torch.float64)  # (H, P)
        self.W2 *= 3.0 / math.sqrt(hidden)
        self.b2 = torch.zeros(n_pixels, dtype=torch.float64)  # (P,)

    def logits(self, z: torch.Tensor) -> torch.Tensor:
        """Bernoulli logits for a batch: ``(N, d) -> (N, P)``."""
        return torch.tanh(z @ self.W1 + self.b1) @ self.W2 + self.b2  # (N, P)

    def likelihood(self, z: torch.Tensor) -> torch.distributions.Distribution:
        """``p(x | z)`` for a batch ``z`` of shape ``(N, d)``: batch shape ``(N, P)``."""
        return Bernoulli(logits=self.logits(z), validate_args=False)

    def sample_observation(self, seed: int = 0) -> torch.Tensor:
        """One ``x`` from the model: ``z ~ N(0, I)``, then ``x ~ p(x | z)``. Shape ``(P,)``."""
        g = torch.Generator().manual_seed(seed)
        z = torch.randn(1, self.latent_dim, generator=g, dtype=torch.float64)  # (1, d)
        probs = torch.sigmoid(self.logits(z))[0]  # (P,)
        u = torch.rand(self.n_pixels, generator=g, dtype=torch.float64)  # (P,)
        return (u < probs).double()  # (P,)

    def log_likelihood_fn(self, x: torch.Tensor) -> LogLikelihood:
        """``z -> log p(x | z)`` for the fixed observation ``x`` of shape ``(P,)``."""
        return lambda z: self.likelihood(z).log_prob(x).sum(-1)  # (N, d) -> (N,)


class LinearGaussianDecoder:
    """``p(x | z) = N(x; z W + b, s^2 I)``: the decoder whose evidence is exact,
    ``p(x) = N(x; b, W^T W + s^2 I)`` (the d-dimensional linear-Gaussian model)."""

    def __init__(self, W: torch.Tensor, b: torch.Tensor, s: float):
        self.W, self.b, self.s = W.double(), b.double(), float(s)  # (d, P), (P,), scalar

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
    ``[-L, L]``: ``w_i = h N(z_i; 0, 1)``. Shapes ``(n,)``, ``(n,)``."""
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
    """``log ∫ exp(log_integrand(z)) N(z; 0, I_d) dz`` by the tensor-product midpoint
    rule on ``[-L, L]^d`` (eq. ``eq-lvm-grid``)::

        p(x) ≈ sum_{i_1..i_d} w_{i_1} ... w_{i_d} p(x | z_{i_1}, ..., z_{i_d})

    It calls ``log_integrand`` on exactly ``n_per_axis ** latent_dim`` points, in
    chunks of at most ``chunk`` rows; the sum is accumulated in log space.
    ``rule="gauss-hermite"`` uses Gauss-Hermite nodes and weights instead (same
    ``n^d`` cost, far higher accuracy for smooth integrands; ``half_width`` unused).
    """
    if rule == "midpoint":
        nodes, log_w = _midpoint_rule(n_per_axis, half_width)
    elif rule == "gauss-hermite":
        nodes, log_w = _gauss_hermite_rule(n_per_axis)
    else:
        raise ValueError(f"unknown rule {rule!r}; choose 'midpoint' or 'gauss-hermite'")
    total = n_per_axis**latent_dim
    radix = n_per_axis ** torch.arange(latent_dim - 1, -1, -1)  # (d,) mixed-radix digits
    partial = []
    for start in range(0, total, chunk):
        flat = torch.arange(start, min(start + chunk, total))  # (C,)
        idx = (flat[:, None] // radix) % n_per_axis  # (C, d) grid index per axis
        z = nodes[idx]  # (C, d)
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
    """``p(x) ≈ (1/S) sum_s p(x | z_s)`` with ``z_s ~ N(0, I_d)`` (eq. ``eq-lvm-mc``)."""
    z = torch.randn(n_samples, latent_dim, generator=generator, dtype=torch.float64)  # (S, d)
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
    z = torch.randn(n_repeats * n_samples, latent_dim, generator=g, dtype=torch.float64)  # (R*S, d)
    log_lik = log_likelihood(z).reshape(n_repeats, n_samples)  # (R, S)
    return torch.logsumexp(log_lik, dim=1) - math.log(n_samples)  # (R,)


# -------------------------------------------------------------------------- figures


def plot_grid_cost(dims: Sequence[int], n_fixed: int, sweeps: dict, target: float = 1e-2):
    """Left: decoder evaluations ``n^d`` for a fixed per-axis resolution (log scale).
    Right: relative error of the quadrature estimate of ``p(x)`` against the number of
    evaluations, one curve per ``d``.

    ``sweeps[d]`` is a pair of arrays ``(evaluations, relative_error)``.
    """
    fig, (ax0, ax1) = figure(ncols=2, width=4.6, height=3.6)
    palette = [COLORS[k] for k in ("q", "reverse", "forward", "gap", "bound", "true")]
    with style():
        dims = list(dims)
        ax0.semilogy(
            dims,
            [n_fixed**d for d in dims],
            "o-",
            color=COLORS["grid"],
            label=f"{n_fixed} points per axis",
        )
        ax0.set_xticks(dims)
        ax0.set_xlabel("latent dimension $d$")
        ax0.set_ylabel("decoder evaluations")
        ax0.set_title("cost of a grid: $n^d$")
        ax0.legend()
        for color, d in zip(palette, sweeps, strict=False):
            evals, err = sweeps[d]
            ax1.loglog(evals, err, "o-", ms=3, color=color, label=f"$d = {d}$")
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
    (markers) and predicted ``sqrt(rho / S)`` (dashed), one colour per ``d``."""
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
        for color, d in zip(palette, rms_errors, strict=False):
            ax1.loglog(S, rms_errors[d], "o", color=color, label=f"$d = {d}$")
            ax1.loglog(S, np.sqrt(predicted[d] / S), "--", lw=1, color=color)
        ax1.set_xlabel("samples $S$")
        ax1.set_ylabel("relative error (RMS)")
        ax1.set_title(r"error vs samples; dashed: $\sqrt{\rho / S}$")
        ax1.legend()
    _close(fig)
    return fig


def _close(fig) -> None:
    """Close ``fig`` so the notebook shows it once, as the cell's value."""
    import matplotlib.pyplot as plt

    plt.close(fig)
