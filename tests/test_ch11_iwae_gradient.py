"""The IWAE gradient builders of chapter 11 against numerical derivatives: each expression
the engine checks is evaluated at numbers and compared with a central finite difference
(mpmath) of the bound it differentiates, computed independently (the log of the mean weight
for one group of draws; the exact multinomial sum of chapter 14 for the bound over draws)."""

import mpmath
import numpy as np
import pytest
import sympy as sp

from vaebook.chapters.ch11_iwae_gradient import (
    decoder_gradient,
    encoder_gradient,
    log_mean_weight_gradient,
)
from vaebook.chapters.ch14_importance_weighted_bound import exact_iwae_bound
from vaebook.symbolic.derivation import Derivation, StepError
from vaebook.symbolic.families import FiniteLatent

mpmath.mp.dps = 30


def _value(family, expr, values, functions=None):
    """``expr`` in the family's meaning, its undefined functions replaced by ``functions``,
    derivatives evaluated, at the numbers ``values``."""
    concrete = family.interpret(expr).xreplace(functions or {})
    return float(concrete.doit().subs(values).evalf(30))


@pytest.mark.parametrize("k", [2, 3])
def test_log_mean_weight_gradient_against_a_finite_difference(k):
    phi = sp.Symbol("phi", real=True)
    forms = log_mean_weight_gradient(k, phi)
    a, b = [0.7, -1.3, 0.4][:k], [0.2, 1.1, -0.5][:k]
    functions = [sp.exp(a[i] * phi + b[i]) * (2 + sp.sin(phi)) for i in range(k)]
    concrete = {
        f: g
        for f, g in zip(
            sorted(forms.start.atoms(sp.Function) - forms.start.atoms(sp.log), key=str),
            functions,
            strict=True,
        )
    }
    at = 0.3
    numeric = mpmath.diff(
        lambda t: mpmath.log(
            sum(mpmath.exp(a[i] * t + b[i]) * (2 + mpmath.sin(t)) for i in range(k)) / k
        ),
        at,
    )
    for side in (forms.start, forms.weighted):
        value = _value(forms.family, side, {phi: at}, concrete)
        assert value == pytest.approx(float(numeric), rel=1e-12)
    Derivation(
        forms.start, title="the gradient", family=forms.family, latex_names=forms.latex_names
    ).step(forms.weighted, because="chain rule")


def _logistic(t):
    return 1 / (1 + mpmath.exp(-t))


@pytest.mark.parametrize("K, k", [(2, 2), (3, 2), (2, 3)])
def test_decoder_gradient_is_the_derivative_of_the_exact_bound(K, k):
    fam = FiniteLatent(K=K)
    theta = sp.Symbol("theta", real=True)
    forms = decoder_gradient(fam, k, theta)
    rng = np.random.default_rng(K * 10 + k)
    q, pi = rng.dirichlet(np.ones(K)), rng.dirichlet(np.ones(K))
    slope, offset = rng.normal(size=K), rng.normal(size=K)
    likelihoods = {  # l_j(theta), a logistic curve each
        f: 1 / (1 + sp.exp(-(float(slope[j]) * theta + float(offset[j]))))
        for j, f in enumerate(
            sorted(
                {f for f in forms.start.atoms(sp.Function) if f.func.__name__.startswith("l_")},
                key=str,
            )
        )
    }
    values = {theta: 0.4, **dict(zip(fam.q, q, strict=True)), **dict(zip(fam.pi, pi, strict=True))}
    numeric = mpmath.diff(
        lambda t: exact_iwae_bound(
            q, pi, [float(_logistic(slope[j] * t + offset[j])) for j in range(K)], k
        ),
        0.4,
        h=1e-5,
    )
    for side in (forms.start, forms.weighted):
        assert _value(fam, side, values, likelihoods) == pytest.approx(float(numeric), rel=1e-6)
    assert forms.score == 0


def test_encoder_gradient_needs_the_score_term():
    fam = FiniteLatent(K=2)
    phi = sp.Symbol("phi", real=True)
    forms = encoder_gradient(fam, 2, phi)
    pi, lik = np.array([0.2, 0.8]), np.array([0.9, 0.05])
    values = {
        phi: 0.25,
        **dict(zip(fam.pi, pi, strict=True)),
        **dict(zip(fam.lik, lik, strict=True)),
    }
    numeric = float(
        mpmath.diff(
            lambda t: exact_iwae_bound([float(_logistic(t)), float(_logistic(-t))], pi, lik, 2),
            0.25,
            h=1e-5,
        )
    )
    start = _value(forms.family, forms.start, values)
    weighted = _value(forms.family, forms.weighted, values)
    score = _value(forms.family, forms.score, values)
    assert start == pytest.approx(numeric, rel=1e-6)
    assert weighted + score == pytest.approx(numeric, rel=1e-6)
    assert abs(score) > 1e-3  # without it the weighted average is another number
    d = Derivation(forms.start, title="encoder", family=forms.family)
    with pytest.raises(StepError, match="differ"):
        d.step(forms.weighted, because="as for the decoder")
    d.step(forms.weighted + forms.score, because="product rule")
    with pytest.raises(ValueError):
        encoder_gradient(FiniteLatent(K=3), 2, phi)
