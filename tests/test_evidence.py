"""vaebook.chapters.ch01_latent_variable_models against independent oracles: closed-form linear-
Gaussian evidence, scipy.integrate.quad, and the law of large numbers for the naive Monte Carlo
estimator."""

import math

import numpy as np
import pytest
import torch
from scipy import integrate, stats

from vaebook.chapters.ch01_latent_variable_models import (
    CountingLikelihood,
    LinearGaussianDecoder,
    TanhDecoder,
    grid_log_evidence,
    grid_quadrature,
    naive_monte_carlo,
    plot_grid_cost,
    plot_monte_carlo_spread,
    relative_variance,
    repeated_monte_carlo,
)

DT = torch.float64


def linear_problem(d, P=3, seed=0):
    g = torch.Generator().manual_seed(seed)
    W = torch.randn(d, P, generator=g, dtype=DT)
    b = torch.randn(P, generator=g, dtype=DT)
    dec = LinearGaussianDecoder(W, b, s=0.7)
    x = torch.randn(P, generator=g, dtype=DT)
    return dec, x


@pytest.mark.parametrize("d", [1, 2, 3])
def test_linear_gaussian_closed_form_matches_scipy(d):
    """The closed form the grid tests below rely on: N(x; b, W^T W + s^2 I), by scipy."""
    dec, x = linear_problem(d, seed=20 + d)
    cov = (dec.W.T @ dec.W).numpy() + 0.7**2 * np.eye(3)
    ref = stats.multivariate_normal(dec.b.numpy(), cov).logpdf(x.numpy())
    assert dec.log_evidence(x) == pytest.approx(ref, abs=1e-12)


@pytest.mark.parametrize("d,n", [(1, 400), (2, 120), (3, 40)])
def test_grid_matches_closed_form_linear_gaussian(d, n):
    dec, x = linear_problem(d, seed=d)
    value, evals = grid_log_evidence(dec.log_likelihood_fn(x), d, n)
    assert evals == n**d
    assert value == pytest.approx(dec.log_evidence(x), abs=1e-6)


@pytest.mark.parametrize("d", [1, 2])
def test_gauss_hermite_matches_closed_form(d):
    dec, x = linear_problem(d, seed=10 + d)
    value = grid_quadrature(dec.log_likelihood_fn(x), d, 80, rule="gauss-hermite")
    assert value == pytest.approx(dec.log_evidence(x), abs=1e-6)


def test_closed_form_oracle_is_not_trivially_matched():
    """The grid is a real approximation: a coarse grid is measurably wrong."""
    dec, x = linear_problem(2, seed=2)
    coarse, _ = grid_log_evidence(dec.log_likelihood_fn(x), 2, 3)
    assert abs(coarse - dec.log_evidence(x)) > 1e-3


def test_grid_matches_scipy_quad_for_tanh_decoder():
    dec = TanhDecoder(1, seed=3)
    x = dec.sample_observation(seed=7)
    f = dec.log_likelihood_fn(x)

    def integrand(z):
        zt = torch.tensor([[z]], dtype=DT)
        return math.exp(float(f(zt))) * stats.norm.pdf(z)

    exact, _ = integrate.quad(integrand, -12, 12, epsabs=1e-14, epsrel=1e-12, limit=200)
    value = grid_quadrature(f, 1, 2000)
    assert math.exp(value) == pytest.approx(exact, rel=1e-8)


def test_cost_counting():
    dec = TanhDecoder(3, seed=0)
    counted = CountingLikelihood(dec.log_likelihood_fn(dec.sample_observation()))
    grid_quadrature(counted, 3, 7, chunk=50)  # several chunks
    assert counted.evaluations == 7**3
    _, evals = grid_log_evidence(dec.log_likelihood_fn(dec.sample_observation()), 3, 5)
    assert evals == 125


def test_decoder_shapes_and_determinism():
    a, b = TanhDecoder(2, n_pixels=5, seed=4), TanhDecoder(2, n_pixels=5, seed=4)
    z = torch.zeros(6, 2, dtype=DT)
    assert a.logits(z).shape == (6, 5)
    assert torch.equal(a.logits(z), b.logits(z))
    x = a.sample_observation(seed=1)
    assert x.shape == (5,) and set(x.tolist()) <= {0.0, 1.0}
    assert a.log_likelihood_fn(x)(z).shape == (6,)


def test_monte_carlo_is_unbiased_against_quadrature():
    """The mean of many independent naive estimates of p(x) agrees with the grid value
    within a few standard errors (and the standard error is the predicted sqrt(rho/S))."""
    d = 2
    dec = TanhDecoder(d, seed=2)
    f = dec.log_likelihood_fn(dec.sample_observation(seed=102))
    truth = math.exp(grid_quadrature(f, d, 300))
    S, R = 50, 2000
    estimates = torch.exp(repeated_monte_carlo(f, d, S, R, seed=0)).numpy() / truth  # (R,)
    se = estimates.std(ddof=1) / math.sqrt(R)
    assert abs(estimates.mean() - 1) < 4 * se
    rho = relative_variance(f, d, 300)
    assert estimates.std(ddof=1) == pytest.approx(math.sqrt(rho / S), rel=0.15)


def test_naive_monte_carlo_single_estimate():
    d = 1
    dec, x = linear_problem(d, seed=5)
    f = dec.log_likelihood_fn(x)
    est = naive_monte_carlo(f, d, 20000, torch.Generator().manual_seed(0))
    truth = dec.log_evidence(x)
    assert est.n_samples == 20000
    assert 0 < est.relative_std_error < 0.1
    assert abs(math.expm1(est.log_evidence - truth)) < 4 * est.relative_std_error


def test_relative_variance_closed_form_linear_gaussian():
    """rho = E[p(x|z)^2]/p(x)^2 - 1; for d = 1, P = 1 both moments are Gaussian integrals."""
    w, b, s, x = 1.3, 0.2, 0.5, 0.9
    dec = LinearGaussianDecoder(torch.tensor([[w]]), torch.tensor([b]), s)
    f = dec.log_likelihood_fn(torch.tensor([x], dtype=DT))
    # ∫ N(x; wz+b, s^2)^2 N(z; 0, 1) dz = N(x; b, w^2 + s^2/2) / (2 sqrt(pi) s)
    m2 = stats.norm.pdf(x, b, math.sqrt(w**2 + s**2 / 2)) / (2 * math.sqrt(math.pi) * s)
    m1 = stats.norm.pdf(x, b, math.sqrt(w**2 + s**2))
    assert relative_variance(f, 1, 2000) == pytest.approx(m2 / m1**2 - 1, rel=1e-6)


def test_unknown_rule_raises():
    with pytest.raises(ValueError):
        grid_quadrature(lambda z: z.sum(-1), 1, 3, rule="simpson")


def test_figures_build():
    fig = plot_grid_cost([1, 2], 10, {1: (np.array([2, 4]), np.array([0.1, 0.01]))})
    assert len(fig.axes) == 2
    fig = plot_monte_carlo_spread(
        np.array([0.5, 1.0, 1.5]), 10, [10, 100], {1: np.array([0.3, 0.1])}, {1: 1.0}
    )
    assert len(fig.axes) == 2
