"""Chapter 14 (``book/14_importance_weighted_bound.ipynb``): the importance-weighted bound.

On the finite family (:class:`~vaebook.symbolic.families.FiniteLatent`, ``K`` states, free
positive ``q_k``, ``pi_k``, ``l_k`` with ``sum_k q_k = sum_k pi_k = 1``) the importance
weight of state k is ``w_k = pi_k l_k / q_k`` (eq-iw-estimate), the estimate of ``p(x)`` from
k independent draws ``z_1..z_k ~ q`` is ``p_hat_k = (1/k) sum_i w_{z_i}`` and the
importance-weighted bound is ``L_k = E[log p_hat_k]`` (Burda et al. 2016). An expectation
over k independent draws is the sum over all ``K**k`` ordered draws weighted by the product
of their ``q``'s; :func:`over_draws` writes it with the ordered draws grouped by the states
drawn (their probabilities add up), which is the same sum for a term that does not depend
on the order of the draws.

Symbolic builders (SymPy, for the engine):

- :func:`importance_weights`, :func:`draws`, :func:`draw_probability`, :func:`estimate`,
  :func:`over_draws` -- the pieces above;
- :func:`iwae_bound` (``L_k``), :func:`mean_estimate` (``E[p_hat_k]``),
  :func:`estimate_variance` (``E[(p_hat_k - p(x))**2]``), :func:`mean_log_weight_form`
  (the ELBO written over k draws), :func:`leave_one_out_form` (``L_k`` written over k + 1
  draws);
- :func:`am_gm_steps`, :func:`leave_one_out_steps` -- the inequality steps, one group of
  draws at a time, each with its certificate (Jensen's inequality for the concave log,
  from :func:`~vaebook.symbolic.certificates.jensen_log_certificate`);
  :func:`evidence_certificate` -- Jensen's inequality over all draws (``L_k <= log p(x)``);
  :func:`chi_square_certificate` -- the variance of the weight as a sum of squares.

Numerical companions (NumPy), used for the figures and tested against Monte Carlo:
:func:`exact_iwae_bound` (``L_k`` from the multinomial distribution of the counts of each
state among the draws), :func:`sample_weights`, :func:`sample_log_estimates`,
:func:`weight_variance`, :func:`chi_square`, :func:`path_between`.

On a trained VAE (torch): :func:`seeded_iwae_bound` -- the IWAE-k bound from k fresh draws,
seeded.

Figures: :func:`plot_bounds_against_k`, :func:`plot_variance_and_bias`,
:func:`plot_nested_and_fresh`.
"""

from __future__ import annotations

import itertools
import math
from collections.abc import Callable, Iterator, Sequence

import matplotlib.pyplot as plt
import numpy as np
import sympy as sp
import torch

from ..plots import COLORS, COLUMN_WIDTH, figure, style
from ..symbolic.certificates import Nonneg, jensen_log_certificate
from ..symbolic.families import FiniteLatent
from ..vae import objectives
from ..vae.models import VAE

__all__ = [
    "importance_weights",
    "draws",
    "draw_probability",
    "estimate",
    "over_draws",
    "iwae_bound",
    "mean_estimate",
    "estimate_variance",
    "mean_log_weight_form",
    "leave_one_out_form",
    "am_gm_steps",
    "leave_one_out_steps",
    "evidence_certificate",
    "chi_square_certificate",
    "describe_draws",
    "exact_iwae_bound",
    "sample_weights",
    "sample_log_estimates",
    "weight_variance",
    "chi_square",
    "path_between",
    "seeded_iwae_bound",
    "plot_bounds_against_k",
    "plot_variance_and_bias",
    "plot_nested_and_fresh",
]


# ---------------------------------------------------------------- symbolic builders


def importance_weights(fam: FiniteLatent) -> list[sp.Expr]:
    """``w_k = p(x, z=k) / q_k = pi_k l_k / q_k`` for each state (the weight of eq-iw-estimate)."""
    return [fam.joint(k) / fam.q[k] for k in range(fam.K)]


def draws(K: int, k: int) -> dict[tuple[int, ...], list[tuple[int, ...]]]:
    """All ``K**k`` ordered draws ``(z_1, ..., z_k)`` (states numbered from 0), grouped by
    the states drawn: ``{sorted states: [the ordered draws with those states]}``."""
    groups: dict[tuple[int, ...], list[tuple[int, ...]]] = {}
    for draw in itertools.product(range(K), repeat=k):
        groups.setdefault(tuple(sorted(draw)), []).append(draw)
    return groups


def draw_probability(fam: FiniteLatent, ordered: Sequence[Sequence[int]]) -> sp.Expr:
    """The probability of drawing one of the ordered draws ``ordered`` independently from q:
    ``sum over draws of prod_i q_{z_i}``."""
    return sp.Add(*(sp.Mul(*(fam.q[j] for j in draw)) for draw in ordered))


def estimate(fam: FiniteLatent, states: Sequence[int]) -> sp.Expr:
    """``p_hat = (1/k) sum_i w_{z_i}`` for the draws ``states`` (eq-iw-estimate)."""
    w = importance_weights(fam)
    return sp.Add(*(w[j] for j in states)) / len(states)


def over_draws(fam: FiniteLatent, k: int, term: Callable[[tuple[int, ...]], sp.Expr]) -> sp.Expr:
    """``E[term(z_1, ..., z_k)]`` over k independent draws from q, for a ``term`` that does
    not depend on the order of the draws: ``sum over the groups of draws of (probability of
    the group) * term(states of the group)`` (:func:`draws`, :func:`draw_probability`)."""
    return sp.Add(
        *(
            draw_probability(fam, ordered) * term(states)
            for states, ordered in draws(fam.K, k).items()
        )
    )


def iwae_bound(fam: FiniteLatent, k: int) -> sp.Expr:
    """``L_k = E[log p_hat_k]`` (eq-iw-bound); ``L_1`` is the ELBO."""
    return over_draws(fam, k, lambda states: sp.log(estimate(fam, states)))


def mean_estimate(fam: FiniteLatent, k: int) -> sp.Expr:
    """``E[p_hat_k]``, the mean of the estimate over k independent draws."""
    return over_draws(fam, k, lambda states: estimate(fam, states))


def estimate_variance(fam: FiniteLatent, k: int) -> sp.Expr:
    """``E[(p_hat_k - p(x))**2]``, the variance of the estimate about ``p(x)``."""
    return over_draws(fam, k, lambda states: (estimate(fam, states) - fam.evidence()) ** 2)


def mean_log_weight_form(fam: FiniteLatent, k: int) -> sp.Expr:
    """The ELBO written over k independent draws: ``E[(1/k) sum_i log w_{z_i}]``."""
    w = importance_weights(fam)
    return over_draws(fam, k, lambda states: sp.Add(*(sp.log(w[j]) for j in states)) / k)


def _leave_one_out(states: tuple[int, ...]) -> list[tuple[int, ...]]:
    """The k + 1 draws of k states left when one of k + 1 draws is left out."""
    return [states[:i] + states[i + 1 :] for i in range(len(states))]


def _leave_one_out_average(fam: FiniteLatent, states: tuple[int, ...]) -> sp.Expr:
    """``(1/(k+1)) sum_i log p_hat(draws without the i-th)`` for k + 1 draws ``states``."""
    subsets = _leave_one_out(states)
    return sp.Add(*(sp.log(estimate(fam, s)) for s in subsets)) / len(subsets)


def leave_one_out_form(fam: FiniteLatent, k: int) -> sp.Expr:
    """``L_k`` written over k + 1 independent draws: the average over the k + 1 ways of
    leaving one draw out of ``log p_hat`` of the k draws left (each is k independent draws
    from q, so each has expectation ``L_k``)."""
    return over_draws(fam, k + 1, lambda states: _leave_one_out_average(fam, states))


def describe_draws(states: Sequence[int]) -> str:
    """``"the draws of states 1, 1 and 2, in any order"`` (states numbered from 1), for the
    note beside a step."""
    names = [str(j + 1) for j in states]
    listed = ", ".join(names[:-1]) + " and " + names[-1]
    return f"the draws of states {listed}, in any order"


def _group_by_group(
    fam: FiniteLatent,
    k: int,
    before: Callable[[tuple[int, ...]], sp.Expr],
    certificate: Callable[[tuple[int, ...]], Nonneg],
) -> Iterator[tuple[sp.Expr, Nonneg, str]]:
    """Replace ``before(states)`` by ``log p_hat(states)`` in ``E[before]`` over k draws, one
    group of draws with more than one state at a time (the groups of a single state have
    ``before == log p_hat`` already); yields ``(expression, certificate, note)`` per step.
    Each step's certificate is ``certificate(states)`` times the probability of the group."""
    groups = draws(fam.K, k)
    replaced: set[tuple[int, ...]] = set()
    for states, ordered in groups.items():
        if len(set(states)) == 1:
            continue
        replaced.add(states)
        expression = over_draws(
            fam,
            k,
            lambda s: sp.log(estimate(fam, s)) if s in replaced else before(s),
        )
        yield (
            expression,
            certificate(states).scale(draw_probability(fam, ordered)),
            describe_draws(states),
        )


def am_gm_steps(fam: FiniteLatent, k: int = 2) -> Iterator[tuple[sp.Expr, Nonneg, str]]:
    """From :func:`mean_log_weight_form` (the ELBO over k draws) up to ``L_k``, one group of
    draws at a time: ``(1/k) sum_i log w_{z_i} <= log((1/k) sum_i w_{z_i})``, the
    arithmetic-geometric mean inequality, certified as Jensen's inequality with the weights
    ``1/k``. Yields ``(expression, certificate, note)`` for :meth:`Derivation.bound`
    (``relation="<="``); the last expression is ``L_k``."""
    w = importance_weights(fam)

    def before(states):
        return sp.Add(*(sp.log(w[j]) for j in states)) / k

    def certificate(states):
        return jensen_log_certificate([sp.Rational(1, k)] * k, [w[j] for j in states])

    return _group_by_group(fam, k, before, certificate)


def leave_one_out_steps(fam: FiniteLatent, k: int) -> Iterator[tuple[sp.Expr, Nonneg, str]]:
    """From :func:`leave_one_out_form` (``L_k`` over k + 1 draws) up to ``L_{k+1}``, one
    group of k + 1 draws at a time: the average over the k + 1 leave-one-out estimates of
    their logs is at most the log of their average, which is ``p_hat_{k+1}`` (Jensen's
    inequality with the uniform weights ``1/(k+1)``). Yields ``(expression, certificate,
    note)``; the last expression is ``L_{k+1}``."""

    def certificate(states):
        subsets = _leave_one_out(states)
        uniform = [sp.Rational(1, len(subsets))] * len(subsets)
        return jensen_log_certificate(uniform, [estimate(fam, s) for s in subsets])

    return _group_by_group(fam, k + 1, lambda s: _leave_one_out_average(fam, s), certificate)


def evidence_certificate(fam: FiniteLatent, k: int) -> Nonneg:
    """Jensen's inequality over all groups of k draws, ``E[log p_hat_k] <= log E[p_hat_k]``:
    :func:`jensen_log_certificate` with the groups' probabilities as weights (they add up to
    ``(sum_j q_j)**k = 1``, the family's normalisation) and ``p_hat`` of each group."""
    groups = draws(fam.K, k)
    return jensen_log_certificate(
        [draw_probability(fam, ordered) for ordered in groups.values()],
        [estimate(fam, states) for states in groups],
    )


def chi_square_certificate(fam: FiniteLatent) -> Nonneg:
    """``p(x)**2 sum_k (p(z=k|x) - q_k)**2 / q_k >= 0`` on the finite family, by the
    assumptions on its symbols (squares over positive ``q_k``): the variance of the weight,
    ``p(x)**2`` times the chi-square divergence of the posterior from q."""
    return Nonneg.by_assumptions(
        fam.evidence() ** 2
        * sp.Add(*((fam.posterior(k) - fam.q[k]) ** 2 / fam.q[k] for k in range(fam.K))),
        note="a square over a positive $q_k$ for each state",
    )


# ------------------------------------------------------------ numerical companions


def _compositions(k: int, K: int) -> np.ndarray:
    """Every vector of K non-negative counts adding up to k, (C(k+K-1, K-1), K)."""
    rows = []
    for bars in itertools.combinations(range(k + K - 1), K - 1):
        edges = (-1, *bars, k + K - 1)
        rows.append([edges[i + 1] - edges[i] - 1 for i in range(K)])
    return np.array(rows, dtype=np.int64)


def exact_iwae_bound(q, pi, lik, k: int) -> float:
    """``L_k = E[log (1/k) sum_i w_{z_i}]`` on a finite model, exactly: the counts of each
    state among k independent draws from q are multinomial, and ``p_hat_k = (1/k) sum_j
    n_j w_j`` depends on the counts only. ``q``, ``pi``, ``lik``: arrays over the K states
    (``q`` and ``pi`` sum to 1)."""
    q, pi, lik = (np.asarray(a, float) for a in (q, pi, lik))
    w = pi * lik / q  # (K,)
    counts = _compositions(k, len(q))  # (C, K)
    log_pmf = (
        math.lgamma(k + 1)
        - np.array([sum(math.lgamma(n + 1) for n in row) for row in counts])
        + counts @ np.log(q)
    )  # (C,)
    return float(np.exp(log_pmf) @ np.log(counts @ w / k))


def sample_weights(q, pi, lik, shape, rng: np.random.Generator) -> np.ndarray:
    """Importance weights ``w_z = pi_z lik_z / q_z`` of states z drawn independently from q,
    an array of the given ``shape``."""
    q, pi, lik = (np.asarray(a, float) for a in (q, pi, lik))
    return (pi * lik / q)[rng.choice(len(q), size=shape, p=q)]


def sample_log_estimates(q, pi, lik, k: int, n: int, rng: np.random.Generator) -> np.ndarray:
    """``n`` independent draws of ``log p_hat_k``, each from k states drawn from q: (n,)."""
    return np.log(sample_weights(q, pi, lik, (n, k), rng).mean(axis=1))


def weight_variance(q, pi, lik) -> float:
    """``Var_q[w] = sum_k q_k (w_k - p(x))**2``, from the definition of a variance."""
    q, pi, lik = (np.asarray(a, float) for a in (q, pi, lik))
    w = pi * lik / q
    return float(q @ (w - pi @ lik) ** 2)


def chi_square(p, q) -> float:
    """The chi-square divergence ``sum_k (p_k - q_k)**2 / q_k`` of p from q."""
    p, q = np.asarray(p, float), np.asarray(q, float)
    return float(((p - q) ** 2 / q).sum())


def path_between(start, end, t) -> np.ndarray:
    """The distributions ``(1 - t) start + t end`` for each t of ``t`` (T,): (T, K)."""
    t = np.asarray(t, float)[:, None]
    return (1 - t) * np.asarray(start, float) + t * np.asarray(end, float)


# --------------------------------------------------------------- a trained VAE


def seeded_iwae_bound(model: VAE, x: torch.Tensor, k: int, seed: int) -> torch.Tensor:
    """The IWAE-k bound of each row of x (N, D) from k fresh draws from q(z|x), as a training
    step computes it (:func:`~vaebook.vae.objectives.iwae_bound`), with its own seed (the
    global RNG is left as it was), without gradients: (N,)."""
    with torch.random.fork_rng(devices=[]), torch.no_grad():
        torch.manual_seed(seed)
        return objectives.iwae_bound(model.eval(), x, k)


# --------------------------------------------------------------------- figures


def plot_bounds_against_k(ks, bounds: dict[str, Sequence[float]], log_evidence: float):
    """``L_k`` against k (log axis) for each named q (``bounds``: label -> values over
    ``ks``), and ``log p(x)`` as a horizontal line."""
    fig, ax = figure(width=COLUMN_WIDTH * 0.75, height=3.2)
    palette = [COLORS["reverse"], COLORS["q"], COLORS["forward"], COLORS["bound"]]
    with style():
        for (label, values), colour in zip(bounds.items(), palette, strict=False):
            ax.plot(ks, values, marker="o", ms=4, color=colour, label=label)
        ax.axhline(log_evidence, color=COLORS["true"], ls="--", lw=1.2, label=r"$\log p(x)$")
        ax.set_xscale("log")
        ax.set_xlabel("$k$, draws from $q$")
        ax.set_ylabel(r"$\mathcal{L}_k$ (nats)")
        ax.legend(loc="lower right")
    plt.close(fig)
    return fig


def plot_variance_and_bias(t, chi2, t_mc, var_mc, bias: dict[str, Sequence[float]]):
    """Left: ``Var_q[w] / p(x)**2`` along a path of q (exact, the chi-square divergence,
    and Monte Carlo estimates at ``t_mc``), log axis. Right: ``log p(x) - L_k`` along the
    same path for each named k (``bias``)."""
    fig, axes = figure(ncols=2, width=3.4, height=3.0)
    with style():
        axes[0].plot(t, chi2, color=COLORS["q"], label=r"$\chi^2(p(z \mid x) \,\|\, q)$")
        axes[0].plot(
            t_mc, var_mc, "o", color=COLORS["reverse"], ms=5, label=r"sample variance of $w / p(x)$"
        )
        axes[0].set_yscale("log")
        axes[0].set_xlabel("$t$ ($q$ = posterior at $t = 0$)")
        axes[0].set_ylabel(r"$\mathrm{Var}_q[w] \,/\, p(x)^2$")
        axes[0].legend(loc="lower right", fontsize="small")
        palette = [COLORS["reverse"], COLORS["q"], COLORS["forward"]]
        for (label, values), colour in zip(bias.items(), palette, strict=False):
            axes[1].plot(t, values, color=colour, label=label)
        axes[1].set_xlabel("$t$ ($q$ = posterior at $t = 0$)")
        axes[1].set_ylabel(r"$\log p(x) - \mathcal{L}_k$ (nats)")
        axes[1].legend(loc="upper left", fontsize="small")
    plt.close(fig)
    return fig


def plot_nested_and_fresh(nested_diff, fresh_diff, k_small: int, k_large: int):
    """Histograms over examples of ``IWAE-k_large - IWAE-k_small``, with the small bound
    from groups of the same draws (nested) and from fresh draws."""
    nested_diff, fresh_diff = np.asarray(nested_diff), np.asarray(fresh_diff)
    fig, ax = figure(width=COLUMN_WIDTH * 0.75, height=3.0)
    lo = min(nested_diff.min(), fresh_diff.min())
    hi = max(nested_diff.max(), fresh_diff.max())
    bins = np.linspace(lo, hi, 41)
    with style():
        ax.hist(
            fresh_diff,
            bins=bins,
            color=COLORS["reverse"],
            alpha=0.6,
            label=f"IWAE-{k_small} from fresh draws",
        )
        ax.hist(
            nested_diff,
            bins=bins,
            color=COLORS["q"],
            alpha=0.6,
            label=f"IWAE-{k_small} from groups of the same draws",
        )
        ax.axvline(0, color=COLORS["true"], lw=1)
        ax.set_xlabel(f"IWAE-{k_large} minus IWAE-{k_small}, per test image (nats)")
        ax.set_ylabel("test images")
        ax.legend(loc="upper left", fontsize="small")
    plt.close(fig)
    return fig
