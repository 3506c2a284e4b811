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
    plot_posterior_against_prior,
    posterior_on_grid,
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


def exact_linear_posterior(dec, x):
    """Mean and covariance of p(z | x) for p(z) = N(0, I), p(x | z) = N(z W + b, s^2 I):
    precision I + W W^T / s^2 (W is (L, D)), by numpy's linear algebra."""
    W, b, s2 = dec.W.numpy(), dec.b.numpy(), dec.s**2
    cov = np.linalg.inv(np.eye(W.shape[0]) + W @ W.T / s2)
    return cov @ W @ (x.numpy() - b) / s2, cov


def test_posterior_grid_matches_the_exact_linear_gaussian_posterior():
    dec, x = linear_problem(2, P=3, seed=5)
    mean, cov = exact_linear_posterior(dec, x)
    grid = posterior_on_grid(dec.log_likelihood_fn(x), n_per_axis=300, half_width=5.0)
    axis = grid.axis.numpy()
    z2, z1 = np.meshgrid(axis, axis, indexing="ij")
    mass = np.exp(grid.log_density.numpy()) * (axis[1] - axis[0]) ** 2
    assert mass.sum() == pytest.approx(1.0, abs=1e-12)
    grid_mean = np.array([(mass * z1).sum(), (mass * z2).sum()])
    np.testing.assert_allclose(grid_mean, mean, atol=2e-3)
    grid_var = np.array([(mass * (z1 - mean[0]) ** 2).sum(), (mass * (z2 - mean[1]) ** 2).sum()])
    np.testing.assert_allclose(grid_var, np.diag(cov), rtol=5e-3)
    # the density itself, against scipy's Gaussian at the cell centres
    exact = stats.multivariate_normal(mean, cov).logpdf(np.stack([z1, z2], -1))
    top = exact > exact.max() - 6  # where the posterior has its mass
    np.testing.assert_allclose(grid.log_density.numpy()[top], exact[top], atol=1e-3)


def test_highest_density_region_of_a_gaussian_posterior_is_its_ellipse():
    """For a Gaussian posterior the region holding 90% of the mass is the ellipse whose
    squared Mahalanobis radius is the chi-square(2) 90% quantile (scipy); its prior mass
    is estimated independently by Monte Carlo from 10^6 prior draws."""
    dec, x = linear_problem(2, P=3, seed=5)
    mean, cov = exact_linear_posterior(dec, x)
    grid = posterior_on_grid(dec.log_likelihood_fn(x), n_per_axis=300, half_width=5.0, level=0.9)
    radius2 = stats.chi2.ppf(0.9, df=2)
    precision = np.linalg.inv(cov)

    def mahalanobis2(points):
        d = points - mean
        return np.einsum("si,ij,sj->s", d, precision, d)

    draws = torch.randn(1_000_000, 2, generator=torch.Generator().manual_seed(3), dtype=DT)
    inside_ellipse = mahalanobis2(draws.numpy()) <= radius2
    assert grid.prior_mass == pytest.approx(inside_ellipse.mean(), abs=5e-3)
    # membership agrees with the ellipse away from its boundary (the grid cells straddle it)
    contained = grid.contains(draws).numpy()
    m2 = mahalanobis2(draws.numpy())
    clear = (m2 < 0.9 * radius2) | (m2 > 1.1 * radius2)
    assert np.array_equal(contained[clear], inside_ellipse[clear])
    assert contained.mean() == pytest.approx(grid.prior_mass, abs=5e-3)


def test_points_off_the_grid_are_outside_the_region():
    dec, x = linear_problem(2, P=3, seed=5)
    grid = posterior_on_grid(dec.log_likelihood_fn(x), n_per_axis=50, half_width=3.0)
    far = torch.tensor([[10.0, 0.0], [0.0, -10.0], [-3.5, 3.5]], dtype=DT)
    assert not grid.contains(far).any()


def test_posterior_figure_builds():
    dec, x = linear_problem(2, P=3, seed=5)
    grid = posterior_on_grid(dec.log_likelihood_fn(x), n_per_axis=40)
    draws = torch.randn(20, 2, generator=torch.Generator().manual_seed(0), dtype=DT)
    fig = plot_posterior_against_prior({"a": grid, "b": grid}, draws)
    assert len(fig.axes) == 2
