"""vaebook.chapters.ch08_reparameterisation against independent oracles: SymPy's integrator for the
exact moments, autograd estimators against the closed-form score and derivative, and Monte Carlo
against the exact variances."""

import numpy as np
import pytest
import sympy as sp
import torch

from vaebook.chapters.ch08_reparameterisation import (
    ESTIMATORS,
    exact_moments,
    pathwise_estimates,
    plot_variance_study,
    replicate_variance,
    score_function_estimates,
    torch_function,
    variance_with_stderr,
)
from vaebook.symbolic.gaussian import gaussian_expectation
from vaebook.symbolic.notation import normal_pdf

z, mu = sp.symbols("z mu", real=True)
sigma = sp.Symbol("sigma", positive=True)
F = z**2 + 3 * z**3


def sympy_expectation(g):
    return sp.integrate(g * normal_pdf(z, mu, sigma**2), (z, -sp.oo, sp.oo), conds="none")


def test_gaussian_expectation_matches_sympy_integrate():
    g = z**4 - 2 * z
    assert sp.simplify(gaussian_expectation(g, z, mu, sigma**2) - sympy_expectation(g)) == 0


def test_exact_moments_are_unbiased_and_match_sympy():
    m = exact_moments(F, z, mu, sigma)
    gradient = sp.diff(sympy_expectation(F), mu)
    for e in (m.gradient, m.score_mean, m.pathwise_mean):
        assert sp.simplify(e - gradient) == 0
    # single-draw variances against direct integration at a numeric point
    point = {mu: sp.Rational(1, 2), sigma: sp.Rational(3, 4)}
    score = F * (z - mu) / sigma**2
    var_sf = sympy_expectation(score**2) - sympy_expectation(score) ** 2
    var_pw = sympy_expectation(sp.diff(F, z) ** 2) - sympy_expectation(sp.diff(F, z)) ** 2
    assert sp.simplify((m.score_variance - var_sf).subs(point)) == 0
    assert sp.simplify((m.pathwise_variance - var_pw).subs(point)) == 0


def test_exact_moments_detect_a_biased_estimator():
    # a wrong "score" (missing 1/sigma^2) is not unbiased: the check can fail
    m = exact_moments(F, z, mu, sigma)
    wrong = gaussian_expectation(sp.expand(F * (z - mu)), z, mu, sigma**2)
    assert sp.simplify(wrong - m.gradient) != 0


def test_autograd_estimators_equal_closed_form_draws():
    f = torch_function(F, z)
    mu0, s0 = 0.3, 0.7
    g1, g2 = torch.Generator().manual_seed(5), torch.Generator().manual_seed(5)
    sf = score_function_estimates(f, mu0, s0, (1000,), g1)
    pw = pathwise_estimates(f, mu0, s0, (1000,), g2)
    eps = torch.randn(1000, generator=torch.Generator().manual_seed(5), dtype=torch.float64)
    zz = mu0 + s0 * eps
    assert torch.allclose(sf, (zz**2 + 3 * zz**3) * (zz - mu0) / s0**2)
    assert torch.allclose(pw, 2 * zz + 9 * zz**2)
    assert not sf.requires_grad and not pw.requires_grad


def test_torch_function_rejects_non_polynomials():
    with pytest.raises(ValueError):
        torch_function(sp.sin(z), z)


@pytest.mark.parametrize("name", list(ESTIMATORS))
def test_monte_carlo_mean_and_variance_match_exact(name):
    m = exact_moments(F, z, mu, sigma)
    f = torch_function(F, z)
    point = {mu: 0.5, sigma: 0.4}
    draws = ESTIMATORS[name](f, 0.5, 0.4, (200_000,), torch.Generator().manual_seed(11))
    stderr = draws.std().item() / np.sqrt(draws.numel())
    assert abs(draws.mean().item() - float(m.gradient.subs(point))) < 4 * stderr
    v, se = variance_with_stderr(draws)
    exact_expr = m.score_variance if name == "score function" else m.pathwise_variance
    exact = float(exact_expr.subs(point))
    assert abs(v - exact) < 4 * se
    # variance of the n-sample mean is the single-draw variance over n
    vn, sen = replicate_variance(ESTIMATORS[name], f, 0.5, 0.4, 16, replicates=4000, seed=3)
    assert abs(vn - exact / 16) < 4 * sen


def test_variance_with_stderr_against_numpy():
    x = torch.randn(10_000, generator=torch.Generator().manual_seed(0), dtype=torch.float64) * 3
    v, se = variance_with_stderr(x)
    assert v == pytest.approx(np.var(x.numpy(), ddof=1), rel=1e-12)
    assert 0.0 < se < 0.1 * v


def test_plot_variance_study_returns_a_two_panel_figure():
    fig = plot_variance_study(
        [1, 2],
        {"score function": [2, 1], "pathwise": [1, 0.5]},
        {"score function": [2, 1], "pathwise": [1, 0.5]},
        [0.5, 1],
        {"score function": [3, 4], "pathwise": [1, 2]},
        [0.5, 1],
        {"score function": [3, 4], "pathwise": [1, 2]},
        sigma_fixed=1.0,
        mu=0.5,
    )
    assert len(fig.axes) == 2 and fig.axes[0].get_xscale() == "log"
