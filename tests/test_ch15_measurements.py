"""Chapter 15's measurements against independent oracles: the aggregate posterior's density
against ``torch.distributions``' mixture, the surgery estimates against closed forms and
SciPy quadrature, the entropy of a Bernoulli mixture against exact enumeration."""

import itertools
import math

import numpy as np
import pytest
import torch
from scipy import integrate, stats
from torch.distributions import Categorical, Independent, MixtureSameFamily, Normal

from vaebook.chapters.ch15_measurements import (
    aggregate_log_density,
    aggregate_samples,
    bernoulli_mixture_entropy,
    mean_over_seeds,
    plot_aggregate_posterior_2d,
    plot_rate_distortion_plane,
    surgery_estimate,
)


@pytest.fixture(autouse=True)
def one_thread():
    """One torch thread, as in the chapter (small tensors: more threads only contend)."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


# -- the aggregate posterior -------------------------------------------------------------------
def _codes(n=5, dim=3, seed=0):
    gen = torch.Generator().manual_seed(seed)
    mu = torch.randn((n, dim), generator=gen, dtype=torch.float64)
    logvar = 0.5 * torch.randn((n, dim), generator=gen, dtype=torch.float64) - 1.0
    return mu, logvar


def test_aggregate_log_density_is_the_mixture_density():
    mu, logvar = _codes()
    mixture = MixtureSameFamily(
        Categorical(probs=torch.full((5,), 0.2, dtype=torch.float64)),
        Independent(Normal(mu, (0.5 * logvar).exp()), 1),
    )
    z = torch.randn((50, 3), generator=torch.Generator().manual_seed(1), dtype=torch.float64)
    assert torch.allclose(
        aggregate_log_density(z, mu, logvar, chunk=7), mixture.log_prob(z), atol=1e-12
    )


def test_identical_encoders_carry_no_information():
    mu = torch.tensor([[0.3, -0.2]], dtype=torch.float64).repeat(4, 1)
    logvar = torch.tensor([[-0.5, 0.2]], dtype=torch.float64).repeat(4, 1)
    est = surgery_estimate(mu, logvar, samples_per_point=200, prior_samples=100, seed=0)
    assert est.mutual_information == pytest.approx(0.0, abs=1e-12)
    assert est.largest_sample_information == pytest.approx(0.0, abs=1e-12)
    # then the marginal KL is the KL of that one Gaussian, which the rate is exactly
    closed = 0.5 * float((mu[0] ** 2 + logvar[0].exp() - 1 - logvar[0]).sum())
    assert est.average_kl == pytest.approx(closed, rel=1e-12)
    assert abs(est.marginal_kl - closed) < 4 * est.marginal_kl_se


def test_two_point_mixture_against_quadrature():
    means, variances = np.array([-1.0, 0.8]), np.array([0.3, 0.6])
    comps = [stats.norm(m, math.sqrt(v)) for m, v in zip(means, variances, strict=True)]
    prior = stats.norm(0, 1)

    def mixture(z):
        return 0.5 * (comps[0].pdf(z) + comps[1].pdf(z))

    information = 0.5 * sum(
        integrate.quad(lambda z, c=c: c.pdf(z) * (c.logpdf(z) - np.log(mixture(z))), -12, 12)[0]
        for c in comps
    )
    marginal = integrate.quad(
        lambda z: mixture(z) * (np.log(mixture(z)) - prior.logpdf(z)), -12, 12
    )[0]
    reverse = integrate.quad(
        lambda z: prior.pdf(z) * (prior.logpdf(z) - np.log(mixture(z))), -12, 12
    )[0]
    mu = torch.tensor(means, dtype=torch.float64)[:, None]
    logvar = torch.tensor(np.log(variances), dtype=torch.float64)[:, None]
    est = surgery_estimate(mu, logvar, samples_per_point=20000, prior_samples=40000, seed=3)
    assert abs(est.mutual_information - information) < 4 * est.mutual_information_se
    assert abs(est.marginal_kl - marginal) < 4 * est.marginal_kl_se
    assert abs(est.reverse_marginal_kl - reverse) < 4 * est.reverse_marginal_kl_se
    assert est.average_kl == pytest.approx(information + marginal, abs=1e-7)  # surgery
    assert est.mutual_information_se < 0.01 and est.largest_sample_information <= math.log(2)


def test_well_separated_codes_reach_log_n():
    mu = torch.tensor([[-30.0], [0.0], [30.0]], dtype=torch.float64)
    logvar = torch.full((3, 1), -2.0, dtype=torch.float64)
    est = surgery_estimate(mu, logvar, samples_per_point=50, prior_samples=10, seed=0)
    assert est.mutual_information == pytest.approx(math.log(3), abs=1e-9)
    assert est.log_n == pytest.approx(math.log(3))


def test_aggregate_samples_follow_the_mixture():
    mu, logvar = _codes(n=3, dim=2, seed=4)
    z = aggregate_samples(mu, logvar, 200000, seed=0)
    mean = mu.mean(0)
    second = (logvar.exp() + mu**2).mean(0)
    assert torch.allclose(z.mean(0), mean, atol=0.01)
    assert torch.allclose((z**2).mean(0), second, atol=0.02)
    assert torch.equal(
        aggregate_samples(mu, logvar, 5, seed=1), aggregate_samples(mu, logvar, 5, seed=1)
    )


# -- the data entropy --------------------------------------------------------------------------
def test_bernoulli_mixture_entropy_against_enumeration():
    probs = torch.tensor(
        [
            [0.0, 0.5, 1.0, 0.25, 0.9, 0.1],
            [0.5, 0.5, 0.2, 1.0, 0.0, 0.6],
            [0.3, 0.7, 0.7, 0.1, 0.4, 0.0],
        ]
    )
    xs = np.array(list(itertools.product([0, 1], repeat=6)), dtype=float)  # all 64 images
    p = probs.double().numpy()
    component = np.prod(np.where(xs[:, None, :] == 1, p[None], 1 - p[None]), axis=2)  # (64, 3)
    exact = stats.entropy(component.mean(1))
    estimate, se = bernoulli_mixture_entropy(probs, n_samples=50000, seed=0, chunk=999)
    assert abs(estimate - exact) < 4 * se and se < 0.02


# -- tables and figures --------------------------------------------------------------------------
def test_mean_over_seeds():
    points = [
        {"latent_dim": 4, "beta": 1.0, "rate": 1.0, "distortion": 10.0},
        {"latent_dim": 4, "beta": 1.0, "rate": 3.0, "distortion": 12.0},
        {"latent_dim": 16, "beta": 1.0, "rate": 5.0, "distortion": 8.0},
    ]
    rows = mean_over_seeds(points, ["rate", "distortion"])
    assert rows == [
        {"latent_dim": 4, "beta": 1.0, "n": 2, "rate": 2.0, "distortion": 11.0},
        {"latent_dim": 16, "beta": 1.0, "n": 1, "rate": 5.0, "distortion": 8.0},
    ]


def test_figures_draw():
    mu, logvar = _codes(n=6, dim=2)
    fig = plot_aggregate_posterior_2d(mu, logvar, steps=21)
    assert len(fig.axes) == 3  # two panels and a colour bar
    points = [
        {"latent_dim": 4, "beta": 1.0, "rate": 3.0, "distortion": 20.0},
        {"latent_dim": 16, "beta": 4.0, "rate": 0.1, "distortion": 27.0},
    ]
    fig = plot_rate_distortion_plane(points, 19.0, {1.0: "black", 4.0: "red"})
    (ax,) = fig.axes
    assert ax.get_ylim()[0] < 19.0 - 0.1  # the entropy line is in view
