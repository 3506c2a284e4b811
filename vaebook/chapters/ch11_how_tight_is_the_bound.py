"""Chapter 11, how tight is the bound: the ELBO, the IWAE bounds and the log-likelihood
estimate of a trained VAE, and the split of the gap into an approximation and an
amortisation part (Cremer et al., 2018).

- :func:`recorded_bounds` -- a committed run's ELBO, IWAE-k and log-likelihood estimate
  (with standard errors over test examples) as arrays over k.
- :func:`likelihood_with_bounds` -- ``estimate_log_likelihood`` of :mod:`vaebook.vae`
  seeded, with the global RNG left as it was.
- :func:`gaussian_elbo` -- the ELBO of a given diagonal Gaussian ``q`` per data point:
  a Monte Carlo reconstruction term with seeded common random numbers, plus the closed-form
  KL.
- :func:`fit_gaussian_per_point` -- the best diagonal Gaussian for each data point
  separately: Adam on the per-point ELBO, the decoder fixed, seeded. It is what the
  encoder would output if it had no amortisation cost.
- :func:`gaussian_iwae_bound` -- the IWAE-k bound of a given diagonal Gaussian ``q`` per data
  point, averaged over independent groups of k draws (common random numbers for every q of
  the same shape): how good a proposal for importance sampling that q is.
- :func:`mean_and_stderr` -- a mean over examples and its standard error (the package's one,
  from :mod:`vaebook.vae.objectives`).
- :func:`plot_bounds_against_k`, :func:`plot_gap_split`, :func:`plot_active_units` -- the
  figures.

The gradient of the IWAE training objective, for the engine, is in
:mod:`~vaebook.chapters.ch11_iwae_gradient`.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import matplotlib.pyplot as plt
import numpy as np
import torch

from ..plots import COLORS, COLUMN_WIDTH, figure, style
from ..vae.models import VAE
from ..vae.objectives import (
    LikelihoodEstimate,
    estimate_log_likelihood,
    kl_to_standard_normal,
    log_weights,
    mean_and_stderr,
    reconstruction_log_likelihood,
)

__all__ = [
    "BoundCurve",
    "recorded_bounds",
    "likelihood_with_bounds",
    "mean_and_stderr",
    "paired_difference",
    "ordering_violations",
    "gaussian_elbo",
    "gaussian_iwae_bound",
    "PerImageGaussians",
    "fit_gaussian_per_point",
    "plot_bounds_against_k",
    "plot_gap_split",
    "plot_fit_trace",
    "plot_active_units",
]


@dataclass
class BoundCurve:
    """Bounds against k: ``ks`` (k = 1 is the ELBO), their means and standard errors over
    examples, and the log-likelihood estimate (``ll``, ``ll_stderr``, with ``ll_k``
    samples)."""

    ks: np.ndarray
    means: np.ndarray
    stderrs: np.ndarray
    ll: float
    ll_stderr: float
    ll_k: int


def recorded_bounds(metrics: dict, split: str = "test") -> BoundCurve:
    """The ELBO (k = 1) and the IWAE-k bounds a committed run recorded, in increasing k,
    and its log-likelihood estimate."""
    m = metrics[split]
    ks = sorted(int(key[5:]) for key in m if key.startswith("iwae_") and key[5:].isdigit())
    means = [m["elbo"]] + [m[f"iwae_{k}"] for k in ks]
    stderrs = [m["elbo_stderr"]] + [m[f"iwae_{k}_stderr"] for k in ks]
    return BoundCurve(
        np.array([1, *ks]),
        np.array(means),
        np.array(stderrs),
        m["log_likelihood"],
        m["log_likelihood_stderr"],
        m["log_likelihood_k"],
    )


def paired_difference(a: torch.Tensor, b: torch.Tensor) -> tuple[float, float]:
    """Mean of ``a - b`` over examples and its paired standard error, for two quantities
    ``a``, ``b`` (N,) measured on the same N examples: ``std(a - b) / sqrt(N)``. Far smaller
    than the unpaired error when ``a`` and ``b`` vary together from example to example."""
    if a.shape != b.shape or a.dim() != 1 or a.numel() < 2:
        raise ValueError(
            f"need two (N,) tensors with N >= 2, got {tuple(a.shape)}, {tuple(b.shape)}"
        )
    return mean_and_stderr(a.double() - b.double())


def ordering_violations(estimate: LikelihoodEstimate, tol: float = 1e-4) -> int:
    """Number of examples on which the chain ELBO <= IWAE-k1 <= IWAE-k2 <= ... <= estimate
    (increasing k, the estimate last) fails by more than ``tol`` nats. When every bound
    averages nested groups of the same draws (each k divides the next), the chain holds
    for every example by Jensen's inequality, so any violation is a bug in the estimator,
    not bad luck."""
    chain = [estimate.bounds[k] for k in sorted(estimate.bounds)] + [estimate.per_example]
    bad = torch.zeros_like(chain[0], dtype=torch.bool)
    for lower, upper in zip(chain, chain[1:], strict=False):
        bad |= lower > upper + tol
    return int(bad.sum())


def likelihood_with_bounds(
    model: VAE,
    x: torch.Tensor,
    k: int = 5000,
    bound_ks: Sequence[int] = (1,),
    seed: int = 0,
    max_elements: int = 1 << 21,
) -> LikelihoodEstimate:
    """:func:`~vaebook.vae.objectives.estimate_log_likelihood` with k samples and the
    IWAE-k' bounds of ``bound_ks`` from the same draws, seeded (the global RNG is left as it
    was); ``max_elements`` fixed so that the draws do not depend on the machine (the
    default is the one a committed run's CPU evaluation uses, so that with its seed, k and
    bounds the per-example numbers are the ones it recorded the means of)."""
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        return estimate_log_likelihood(
            model, x, k=k, bound_ks=tuple(bound_ks), max_elements=max_elements
        )


def _noise(shape: tuple[int, ...], seed: int, dtype=torch.float32) -> torch.Tensor:
    return torch.randn(shape, generator=torch.Generator().manual_seed(seed), dtype=dtype)


def gaussian_elbo(
    model: VAE,
    x: torch.Tensor,
    mu: torch.Tensor,
    logvar: torch.Tensor,
    samples: int = 2000,
    seed: int = 0,
    chunk: int = 250,
) -> torch.Tensor:
    """The ELBO of ``q = N(mu, diag exp(logvar))`` for each row of x (N, D), (N,):
    ``mean_s log p(x | z_s) - KL(q || N(0, I))``, z_s = mu + sigma * eps_s. The seeded eps
    (``samples`` x N x L) are independent across rows and draws, and the same for every q
    of the same shape, so that two q's are compared on common random numbers; computed in
    chunks of ``chunk`` samples, without gradients."""
    eps = _noise((samples, *mu.shape), seed, mu.dtype)  # (S, N, L)
    total = torch.zeros(x.shape[0], dtype=mu.dtype)
    with torch.no_grad():
        for e in eps.split(chunk):
            z = mu + (0.5 * logvar).exp() * e  # (s, N, L)
            total += reconstruction_log_likelihood(model, z, x).sum(0)
        return total / samples - kl_to_standard_normal(mu, logvar)


def gaussian_iwae_bound(
    model: VAE,
    x: torch.Tensor,
    mu: torch.Tensor,
    logvar: torch.Tensor,
    k: int,
    repeats: int = 100,
    seed: int = 0,
) -> torch.Tensor:
    """The IWAE-k bound of ``q = N(mu, diag exp(logvar))`` as a proposal for each row of x
    (N, D), (N,): ``log (1/k) sum_i w_i`` with ``w_i = p(x, z_i) / q(z_i)`` and
    ``z_i = mu + sigma * eps_i`` (eq-iw-bound), averaged over ``repeats`` independent groups
    of k draws. The seeded eps (``repeats`` x k x N x L) are the same for every q of the
    same shape, so that two q's are compared on common random numbers; without gradients."""
    eps = _noise((repeats, k, *mu.shape), seed, mu.dtype)  # (R, k, N, L)
    total = torch.zeros(x.shape[0], dtype=mu.dtype)
    with torch.no_grad():
        for e in eps:  # (k, N, L): one group of k draws per data point
            z = mu + (0.5 * logvar).exp() * e  # (k, N, L)
            log_w = log_weights(model, x, mu, logvar, z)  # (k, N)
            total += torch.logsumexp(log_w, dim=0) - math.log(k)
    return total / repeats


@dataclass
class PerImageGaussians:
    """Per-point Gaussians ``N(mu, diag exp(logvar))``, (N, L) each, the mean ELBO
    estimate of every optimisation step (``trace``, on that step's own draws, before the
    step's update), and ``snapshots``: ``{step: (mu, logvar)}`` after the steps asked for."""

    mu: torch.Tensor
    logvar: torch.Tensor
    trace: np.ndarray
    snapshots: dict[int, tuple[torch.Tensor, torch.Tensor]]


def fit_gaussian_per_point(
    model: VAE,
    x: torch.Tensor,
    mu: torch.Tensor,
    logvar: torch.Tensor,
    steps: int = 1000,
    samples: int = 64,
    lr: float = 0.02,
    seed: int = 0,
    snapshots: Sequence[int] = (),
) -> PerImageGaussians:
    """Maximise the ELBO of a separate diagonal Gaussian q for each row of x (N, D), the
    model fixed: Adam on ``(mu, logvar)`` from the starting point given (e.g. the encoder's
    output), ``samples`` reparameterised draws per point per step (seeded, a generator of
    its own), the closed-form KL, the learning rate decayed to zero on a cosine schedule.
    Every point's ELBO depends on its own parameters only, so one optimiser over the batch
    is N independent optimisations. ``snapshots``: steps (1..steps) after which a copy of
    the parameters is kept, to measure how much the last steps still change."""
    if any(not 1 <= s <= steps for s in snapshots):
        raise ValueError(f"snapshots must lie in 1..{steps}, got {tuple(snapshots)}")
    gen = torch.Generator().manual_seed(seed)
    mu = mu.detach().clone().requires_grad_(True)
    logvar = logvar.detach().clone().requires_grad_(True)
    opt = torch.optim.Adam([mu, logvar], lr=lr)
    schedule = torch.optim.lr_scheduler.CosineAnnealingLR(opt, steps)
    requires = [p.requires_grad for p in model.parameters()]
    for p in model.parameters():
        p.requires_grad_(False)
    trace, kept = [], {}
    try:
        for step in range(1, steps + 1):
            eps = torch.randn((samples, *mu.shape), generator=gen, dtype=mu.dtype)
            z = mu + (0.5 * logvar).exp() * eps  # (S, N, L)
            elbo = reconstruction_log_likelihood(model, z, x).mean(0) - kl_to_standard_normal(
                mu, logvar
            )  # (N,)
            opt.zero_grad()
            (-elbo.sum()).backward()
            opt.step()
            schedule.step()
            trace.append(elbo.mean().item())
            if step in snapshots:
                kept[step] = (mu.detach().clone(), logvar.detach().clone())
    finally:
        for p, r in zip(model.parameters(), requires, strict=True):
            p.requires_grad_(r)
    return PerImageGaussians(mu.detach(), logvar.detach(), np.array(trace), kept)


# -- figures -----------------------------------------------------------------------------
def plot_bounds_against_k(curves: dict[str, BoundCurve], colours: Sequence[str] | None = None):
    """Mean bound against k (log axis) with error bars (standard errors over examples) for
    each named curve; the log-likelihood estimate as a horizontal line."""
    colours = colours or [COLORS["q"], COLORS["reverse"], COLORS["forward"]]
    fig, ax = figure(width=COLUMN_WIDTH, height=3.3)
    with style():
        for (name, c), colour in zip(curves.items(), colours, strict=False):
            ax.errorbar(
                c.ks,
                c.means,
                yerr=c.stderrs,
                color=colour,
                marker="o",
                ms=5,
                capsize=3,
                lw=1.5,
                label=f"{name}: ELBO (k = 1) and IWAE-k",
            )
            ax.axhline(
                c.ll,
                color=colour,
                ls="--",
                lw=1.2,
                label=f"{name}: log p(x) estimate (k = {c.ll_k})",
            )
        ax.set_xscale("log")
        ax.set_xlabel("k, importance samples per example")
        ax.set_ylabel("nats per example (test)")
        ax.legend(loc="lower right")
    plt.close(fig)
    return fig


def plot_gap_split(names: Sequence[str], amortisation, approximation, amort_se, approx_se):
    """Stacked bars: for each run, the approximation gap (bottom) and the amortisation gap
    (top) in nats per example, with standard errors."""
    fig, ax = figure(width=COLUMN_WIDTH * 0.72, height=3.0)
    x = np.arange(len(names))
    approximation, amortisation = np.asarray(approximation), np.asarray(amortisation)
    with style():
        ax.bar(
            x,
            approximation,
            0.55,
            yerr=approx_se,
            capsize=3,
            color=COLORS["bound"],
            label="approximation gap",
        )
        ax.bar(
            x,
            amortisation,
            0.55,
            bottom=approximation,
            yerr=amort_se,
            capsize=3,
            color=COLORS["gap"],
            label="amortisation gap",
        )
        ax.set_xticks(x, names)
        ax.set_ylabel(r"nats per example")
        ax.set_xlim(-0.6, len(names) - 0.4)
        ax.legend(loc="upper left", bbox_to_anchor=(1.0, 1.0))
    plt.close(fig)
    return fig


def plot_fit_trace(traces: dict[str, np.ndarray], window: int = 20):
    """One panel per named fit: its mean ELBO estimate per optimisation step (each step's
    own draws) minus the value at the first step, thin, and its running mean over
    ``window`` steps; nats per example gained over the starting point."""
    fig, axes = figure(ncols=len(traces), width=3.4, height=2.8)
    axes = np.atleast_1d(axes)
    with style():
        for ax, (name, trace) in zip(axes, traces.items(), strict=True):
            gain = np.asarray(trace) - trace[0]
            steps = np.arange(1, len(gain) + 1)
            ax.plot(steps, gain, color="0.65", lw=0.6, label="each step")
            if len(gain) >= window:
                smooth = np.convolve(gain, np.ones(window) / window, mode="valid")
                ax.plot(
                    steps[window - 1 :],
                    smooth,
                    color=COLORS["q"],
                    lw=1.6,
                    label=f"mean of {window} steps",
                )
            ax.set_xlabel("optimisation step")
            ax.set_title(name)
        axes[0].set_ylabel("ELBO gained, nats per image")
        axes[-1].legend(loc="lower right", fontsize=8)
    plt.close(fig)
    return fig


def plot_active_units(variances: dict[str, Sequence[float]], threshold: float = 0.01):
    """Var_x mu_j(x) of each latent dimension j (sorted, log axis) for each named run, and
    the activity threshold."""
    fig, ax = figure(width=COLUMN_WIDTH * 0.62, height=3.0)
    colours = [COLORS["q"], COLORS["reverse"], COLORS["forward"]]
    with style():
        for (name, v), colour in zip(variances.items(), colours, strict=False):
            v = np.sort(np.asarray(v))[::-1]
            ax.plot(np.arange(1, len(v) + 1), v, marker="o", color=colour, label=name)
        ax.axhline(threshold, color=COLORS["true"], ls=":", lw=1.2, label="threshold 0.01")
        ax.set_yscale("log")
        ax.set_xlabel("latent dimension (sorted)")
        ax.set_ylabel(r"$\mathrm{Var}_x\, \mu_j(x)$")
        ax.legend(loc="upper left", bbox_to_anchor=(1.0, 1.0))
    plt.close(fig)
    return fig
