"""Chapter 11 (``book/11_how_tight_is_the_bound.ipynb``): the gradient of the IWAE training
objective, for the engine (SymPy).

With k draws and their importance weights ``w_i = p(x, z_i) / q(z_i | x)``, the gradient of
``log((1/k) sum_i w_i)`` in any parameter is ``sum_i wtilde_i d log w_i`` with the normalised
weights ``wtilde_i = w_i / sum_j w_j``. Its expectation is the gradient of the bound ``L_k``
when the draws do not depend on the parameter (a decoder parameter; an encoder parameter
after reparameterisation, the noise fixed); when they do, a score term is added.

- :func:`log_mean_weight_gradient` -- one group of k weights, each an arbitrary positive
  function of one parameter;
- :func:`decoder_gradient`, :func:`encoder_gradient` -- the expectation over draws on the
  finite family, the draws independent of the parameter, or dependent on it (a logistic
  ``q`` on two states), built from the finite-family sums of
  :mod:`~vaebook.chapters.ch14_importance_weighted_bound`.
"""

from __future__ import annotations

from dataclasses import dataclass

import sympy as sp

from ..symbolic.families import Concrete, FiniteLatent
from .ch14_importance_weighted_bound import estimate, importance_weights, iwae_bound, over_draws

__all__ = ["GradientForms", "log_mean_weight_gradient", "decoder_gradient", "encoder_gradient"]


@dataclass
class GradientForms:
    """Two sides of a gradient identity for the engine: ``start`` (the derivative of a bound),
    ``weighted`` (the normalised-weight average of the derivatives of the log-weights),
    ``score`` (the extra term when the draws depend on the parameter; zero otherwise), and
    the ``family`` and display ``latex_names`` to check them with."""

    start: sp.Expr
    weighted: sp.Expr
    score: sp.Expr
    family: Concrete | FiniteLatent
    latex_names: dict


def _normalised_average(weights, parameter, normalised=None) -> sp.Expr:
    """``sum_i (w_i / sum_j w_j) d/d(parameter) log w_i`` (``normalised``: display symbols for
    the ``w_i / sum_j w_j``, else written out)."""
    total = sp.Add(*weights)
    shares = normalised or [w / total for w in weights]
    return sp.Add(
        *(s * sp.Derivative(sp.log(w), parameter) for s, w in zip(shares, weights, strict=True))
    )


def log_mean_weight_gradient(k: int, parameter: sp.Symbol) -> GradientForms:
    """One group of k draws: ``d/d(parameter) log((1/k) sum_i w_i)`` and
    ``sum_i wtilde_i d/d(parameter) log w_i``, with each weight ``w_i`` an arbitrary positive
    function of the parameter and ``wtilde_i := w_i / sum_j w_j`` (display symbols defined in
    the family): the gradient of the IWAE bound for fixed reparameterisation noise."""
    weights = [sp.Function(f"w_{i + 1}", positive=True)(parameter) for i in range(k)]
    shares = [sp.Symbol(f"wtilde_{i + 1}") for i in range(k)]
    total = sp.Add(*weights)
    return GradientForms(
        start=sp.Derivative(sp.log(total / k), parameter),
        weighted=_normalised_average(weights, parameter, shares),
        score=sp.S.Zero,
        family=Concrete({s: w / total for s, w in zip(shares, weights, strict=True)}),
        latex_names={s: rf"\tilde{{w}}_{{{i + 1}}}" for i, s in enumerate(shares)},
    )


def decoder_gradient(fam: FiniteLatent, k: int, theta: sp.Symbol) -> GradientForms:
    """``d/dtheta L_k`` on the finite family with every likelihood ``l_j`` a positive function
    of ``theta`` (a decoder parameter: the draws from q do not depend on it), and
    ``E[sum_i wtilde_i d/dtheta log w_{z_i}]`` over k independent draws (:func:`over_draws`);
    checked on ``fam`` itself."""
    functions = {l: sp.Function(f"l_{j + 1}", positive=True)(theta) for j, l in enumerate(fam.lik)}
    w = [wj.xreplace(functions) for wj in importance_weights(fam)]
    return GradientForms(
        start=sp.Derivative(iwae_bound(fam, k).xreplace(functions), theta),
        weighted=over_draws(fam, k, lambda s: _normalised_average([w[j] for j in s], theta)),
        score=sp.S.Zero,
        family=fam,
        latex_names={},
    )


def encoder_gradient(fam: FiniteLatent, k: int, phi: sp.Symbol) -> GradientForms:
    """``d/dphi L_k`` on the finite family with two states and ``q_1 := 1/(1 + e^-phi)``,
    ``q_2 := 1/(1 + e^phi)`` (an encoder parameter: the draws depend on it), the
    normalised-weight average ``E[sum_i wtilde_i d/dphi log w_{z_i}]``, and the score term
    ``E[log p_hat_k sum_i d/dphi log q(z_i)]`` that the draws' dependence on phi adds."""
    if fam.K != 2:
        raise ValueError(f"the encoder's logistic parameter is written for two states, not {fam.K}")
    w = importance_weights(fam)
    q1, q2 = fam.q
    return GradientForms(
        start=sp.Derivative(iwae_bound(fam, k), phi),
        weighted=over_draws(fam, k, lambda s: _normalised_average([w[j] for j in s], phi)),
        score=over_draws(
            fam,
            k,
            lambda s: (
                sp.log(estimate(fam, s))
                * sp.Add(*(sp.Derivative(sp.log(fam.q[j]), phi) for j in s))
            ),
        ),
        family=Concrete({q1: 1 / (1 + sp.exp(-phi)), q2: 1 / (1 + sp.exp(phi))}),
        latex_names={},
    )
