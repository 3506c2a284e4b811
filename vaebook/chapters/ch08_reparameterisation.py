"""Gradients of an expectation with respect to the parameters of the distribution
(chapter 8): the score-function (REINFORCE) and the pathwise (reparameterisation)
estimators of ``d/dmu E_{N(mu, sigma^2)}[f(z)]``, their exact variances for a
polynomial ``f`` and a seeded Monte Carlo study of their variances.

For ``z ~ N(mu, sigma^2)`` and one draw, the two estimators are

- score function (chapter 8's score-function identity):
  ``f(z) * d/dmu log N(z; mu, sigma^2) = f(z) (z - mu) / sigma^2``, with ``z`` a sample
  that carries **no** gradient (``Normal.sample``);
- pathwise (chapter 8's pathwise identity): ``d/dmu f(mu + sigma eps) = f'(mu + sigma eps)``,
  ``eps ~ N(0, 1)``, with the gradient flowing through the sample (``Normal.rsample``).

Both are computed here by autograd, not by the formulas above, so comparing them with
the closed forms (:func:`exact_moments`) is a real check.

For the VAE's vector code the chapter derives the single-sample ELBO estimate
``log p(x|z) + log p(z) - log q(z|x)`` at ``z = mu + sigma * eps``;
:func:`trainer_estimates` runs the package's own objective on a trained model to put its
two single-sample estimates beside that derivation: with the closed-form KL (the
trainer's default) and with the single-sample KL, at the same noise ``eps``.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass

import matplotlib.pyplot as plt
import sympy as sp
import torch
from torch.distributions import Normal

from ..plots import COLORS, figure, style
from ..symbolic.families import gaussian_expectation
from ..vae.models import VAE
from ..vae.objectives import elbo_terms, encode_float32

__all__ = [
    "torch_function",
    "exact_moments",
    "ExactMoments",
    "score_function_estimates",
    "pathwise_estimates",
    "ESTIMATORS",
    "variance_with_stderr",
    "replicate_variance",
    "TrainerEstimates",
    "trainer_estimates",
    "plot_variance_study",
]


def torch_function(expr: sp.Expr, z: sp.Symbol) -> Callable[[torch.Tensor], torch.Tensor]:
    """A polynomial ``expr`` in ``z`` as a function of a tensor (pure arithmetic, so
    autograd differentiates through it)."""
    if not sp.sympify(expr).is_polynomial(z):
        raise ValueError(f"expected a polynomial in {z}, got {expr}")
    return sp.lambdify(z, expr, modules=[{}])


@dataclass(frozen=True)
class ExactMoments:
    """Closed forms, as functions of ``mu`` and ``sigma``, for a polynomial ``f``."""

    gradient: sp.Expr  # d/dmu E[f(z)]
    score_mean: sp.Expr  # E[f(z) (z - mu)/sigma^2]
    pathwise_mean: sp.Expr  # E[f'(z)]
    score_variance: sp.Expr  # Var of one score-function draw
    pathwise_variance: sp.Expr  # Var of one pathwise draw


def exact_moments(f: sp.Expr, z: sp.Symbol, mu: sp.Symbol, sigma: sp.Symbol) -> ExactMoments:
    """Means and single-draw variances of both estimators of ``d/dmu E[f(z)]`` for
    ``z ~ N(mu, sigma^2)`` and a polynomial ``f``, all exact (Gaussian moments)."""
    E = lambda g: gaussian_expectation(g, z, mu, sigma**2)  # noqa: E731
    score = f * (z - mu) / sigma**2  # one score-function draw
    path = sp.diff(f, z)  # one pathwise draw, f'(z) with z = mu + sigma eps
    gradient = sp.expand(sp.diff(E(f), mu))
    var = lambda g: sp.factor(sp.expand(E(g**2) - E(g) ** 2))  # noqa: E731
    return ExactMoments(
        gradient,
        sp.expand(sp.cancel(E(sp.expand(score)))),
        E(path),
        var(sp.expand(score)),
        var(path),
    )


# --------------------------------------------------------------------- estimators


def score_function_estimates(
    f: Callable, mu: float, sigma: float, shape: Sequence[int], generator: torch.Generator
) -> torch.Tensor:
    """Independent single-draw score-function estimates ``f(z) d/dmu log N(z; mu, sigma^2)``,
    tensor of ``shape``. The score is computed by autograd through ``log_prob``; ``z``
    is detached, exactly what ``Normal(mu, sigma).sample()`` returns."""
    mu_t = torch.full(tuple(shape), float(mu), dtype=torch.float64, requires_grad=True)  # shape
    eps = torch.randn(tuple(shape), generator=generator, dtype=torch.float64)  # shape
    z = (mu_t + sigma * eps).detach()  # shape; a sample, no gradient
    log_q = Normal(mu_t, sigma).log_prob(z)  # shape
    (score,) = torch.autograd.grad(log_q.sum(), mu_t)  # shape; d/dmu log N(z_i; mu, sigma^2)
    return f(z) * score  # shape


def pathwise_estimates(
    f: Callable, mu: float, sigma: float, shape: Sequence[int], generator: torch.Generator
) -> torch.Tensor:
    """Independent single-draw pathwise estimates ``d/dmu f(mu + sigma eps)``, tensor of
    ``shape``; autograd differentiates through the sample (``rsample``'s construction)."""
    mu_t = torch.full(tuple(shape), float(mu), dtype=torch.float64, requires_grad=True)  # shape
    eps = torch.randn(tuple(shape), generator=generator, dtype=torch.float64)  # shape
    z = mu_t + sigma * eps  # shape; differentiable in mu
    (grad,) = torch.autograd.grad(f(z).sum(), mu_t)  # shape; f'(z_i)
    return grad


ESTIMATORS = {"score function": score_function_estimates, "pathwise": pathwise_estimates}


def variance_with_stderr(x: torch.Tensor) -> tuple[float, float]:
    """Unbiased sample variance of a 1-D tensor and its standard error,
    ``sqrt((m4 - s^4)/N)`` with the sample fourth central moment ``m4``."""
    n = x.numel()
    d2 = (x - x.mean()) ** 2  # (N,)
    v = float(d2.sum() / (n - 1))
    return v, float(((d2**2).mean() - v**2).clamp_min(0).sqrt() / n**0.5)


def replicate_variance(
    estimator: Callable,
    f: Callable,
    mu: float,
    sigma: float,
    n_samples: int,
    replicates: int,
    seed: int,
) -> tuple[float, float]:
    """Variance (and its standard error) over ``replicates`` independent runs of the
    ``n_samples``-draw average of ``estimator``; seeded."""
    g = torch.Generator().manual_seed(seed)
    draws = estimator(f, mu, sigma, (replicates, n_samples), g)  # (R, n)
    return variance_with_stderr(draws.mean(1))  # over (R,)


# ------------------------------------------------- the trainer's single-sample ELBO


@dataclass(frozen=True)
class TrainerEstimates:
    """The package's two single-sample ELBO estimates of each example, ``n_draws`` of them,
    each pair at the same noise ``eps``: with the closed-form KL (the trainer's default,
    ``log p(x|z) - KL(q(z|x) || p(z))``) and with the single-sample KL
    (``log p(x|z) + log p(z) - log q(z|x)``), at ``z = mu + sigma * eps``; and their two
    terms, the reconstruction ``log p(x|z)`` (shared) and the single-sample KL term
    ``log q(z|x) - log p(z)``."""

    elbo_closed_form_kl: torch.Tensor  # (R, B)
    elbo_monte_carlo_kl: torch.Tensor  # (R, B)
    reconstruction: torch.Tensor  # (R, B) log p(x|z) at the draw
    kl_single_sample: torch.Tensor  # (R, B) log q(z|x) - log p(z) at the draw
    mu: torch.Tensor  # (B, L) the encoder's means
    sigma: torch.Tensor  # (B, L) the encoder's standard deviations
    eps: torch.Tensor  # (R, B, L) the noise of each draw


@torch.no_grad()
def trainer_estimates(model: VAE, x: torch.Tensor, n_draws: int, seed: int = 0) -> TrainerEstimates:
    """Run the trainer's objective (:func:`~vaebook.vae.objectives.elbo_terms`) on ``x``
    (B, D) repeated ``n_draws`` times, once with the closed-form KL and once with the
    single-sample KL, from the same seed, so that draw ``r`` of example ``b`` uses the same
    noise in both; that noise is drawn again from the seed, as the objective draws it (one
    standard normal tensor of the encoder's shape and dtype, the first random numbers it
    uses), and returned with the encoder's mean and standard deviation."""
    was_training = model.training
    model.eval()
    x_rep = x.repeat(n_draws, 1)  # (R*B, D): draw r of example b in row r*B + b
    torch.manual_seed(seed)
    closed = elbo_terms(model, x_rep, analytic_kl=True)  # (R*B,) terms
    torch.manual_seed(seed)
    single = elbo_terms(model, x_rep, analytic_kl=False)  # (R*B,) terms
    mu, logvar = encode_float32(model, x_rep)  # (R*B, L) each
    torch.manual_seed(seed)
    eps = torch.randn(mu.shape, dtype=mu.dtype)  # (R*B, L)
    model.train(was_training)
    b, latent = x.shape[0], mu.shape[-1]
    return TrainerEstimates(
        elbo_closed_form_kl=closed.elbo.reshape(n_draws, b),
        elbo_monte_carlo_kl=single.elbo.reshape(n_draws, b),
        reconstruction=single.reconstruction.reshape(n_draws, b),
        kl_single_sample=single.kl.reshape(n_draws, b),
        mu=mu[:b],
        sigma=(0.5 * logvar[:b]).exp(),
        eps=eps.reshape(n_draws, b, latent),
    )


# ------------------------------------------------------------------------- figure


def plot_variance_study(
    n_values,
    by_n: dict,
    exact_by_n: dict,
    sigmas,
    by_sigma: dict,
    exact_sigma_grid,
    exact_by_sigma: dict,
    sigma_fixed: float,
    mu: float,
):
    """Two log-log panels: estimator variance against the number of samples (at
    ``sigma_fixed``) and single-draw variance against ``sigma``; Monte Carlo markers
    over exact curves. Dicts are keyed by estimator name."""
    fig, (ax1, ax2) = figure(2, 1, width=4.8, height=3.6)
    colors = {"score function": COLORS["reverse"], "pathwise": COLORS["q"]}
    with style():
        for name, c in colors.items():
            ax1.plot(n_values, exact_by_n[name], color=c, label=f"{name}, exact")
            ax1.plot(n_values, by_n[name], "o", color=c, mfc="white", label=f"{name}, Monte Carlo")
            ax2.plot(exact_sigma_grid, exact_by_sigma[name], color=c, label=f"{name}, exact")
            ax2.plot(
                sigmas, by_sigma[name], "o", color=c, mfc="white", label=f"{name}, Monte Carlo"
            )
        for ax in (ax1, ax2):
            ax.set_xscale("log")
            ax.set_yscale("log")
            ax.set_ylabel("variance of the gradient estimate")
        ax1.set_xlabel("number of samples $S$")
        ax1.set_title(rf"$\mu = {mu:g}$, $\sigma = {sigma_fixed:g}$")
        ax2.set_xlabel(r"$\sigma$")
        ax2.set_title(rf"one sample, $\mu = {mu:g}$")
        ax1.legend(loc="lower left")
    plt.close(fig)
    return fig
