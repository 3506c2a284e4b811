"""vaebook.chapters.ch07_forward_reverse_kl against independent oracles: scipy quadrature of the KL
integrands, closed-form moments, torch.distributions, and SymPy's own integrator."""

import math

import mpmath
import numpy as np
import pytest
import sympy as sp
import torch
from scipy import integrate, special, stats
from torch.distributions import Normal, kl_divergence

from vaebook.chapters.ch07_forward_reverse_kl import (
    GaussianMixture1D,
    fit_forward_kl,
    fit_reverse_kl,
    forward_kl,
    plot_kl_fits,
    reverse_kl,
)
from vaebook.symbolic.derivation import Derivation, StepError
from vaebook.symbolic.families import GaussianIntegrals
from vaebook.symbolic.gaussian import gaussian_integral
from vaebook.symbolic.notation import normal_pdf

TARGET = GaussianMixture1D.bimodal(5.0, left_weight=0.3)


def mixture_pdf_scipy(z, p):
    parts = zip(p.weights, p.means, p.stds, strict=True)
    return sum(w * stats.norm.pdf(z, mu, sd) for w, mu, sd in parts)


def mixture_logpdf_scipy(z, p):
    return special.logsumexp(
        [
            math.log(w) + stats.norm.logpdf(z, mu, sd)
            for w, mu, sd in zip(p.weights, p.means, p.stds, strict=False)
        ]
    )


def kl_quad(log_f, log_g, lo=-40, hi=40):
    """KL(f || g) = ∫ f log(f/g) by adaptive quadrature (scipy), from log-densities."""
    integrand = lambda z: math.exp(log_f(z)) * (log_f(z) - log_g(z))  # noqa: E731
    return integrate.quad(
        integrand, lo, hi, points=[-2.5, 0.0, 2.5], limit=400, epsabs=1e-13, epsrel=1e-12
    )[0]


def test_mixture_density_matches_scipy_and_integrates_to_one():
    z = np.linspace(-8, 8, 101)
    assert np.allclose(TARGET.pdf(z), mixture_pdf_scipy(z, TARGET), rtol=1e-12)
    total = integrate.quad(lambda t: mixture_pdf_scipy(t, TARGET), -np.inf, np.inf)[0]
    assert total == pytest.approx(1.0, abs=1e-10)


def test_mixture_moments_match_quadrature():
    mean = integrate.quad(lambda t: t * mixture_pdf_scipy(t, TARGET), -np.inf, np.inf)[0]
    second = integrate.quad(lambda t: t**2 * mixture_pdf_scipy(t, TARGET), -np.inf, np.inf)[0]
    assert TARGET.mean() == pytest.approx(mean, abs=1e-10)
    assert TARGET.variance() == pytest.approx(second - mean**2, abs=1e-9)


@pytest.mark.parametrize("m, s", [(0.0, 1.0), (2.3, 0.6), (-1.0, 3.0), (0.7, 0.2)])
def test_reverse_and_forward_kl_match_scipy_quad(m, s):
    q = lambda t: stats.norm.logpdf(t, m, s)  # noqa: E731
    p = lambda t: mixture_logpdf_scipy(t, TARGET)  # noqa: E731
    expected = kl_quad(q, p)
    assert reverse_kl(m, s, TARGET.log_prob).item() == pytest.approx(expected, rel=1e-7, abs=1e-9)
    assert forward_kl(m, s, TARGET).item() == pytest.approx(kl_quad(p, q), rel=1e-7, abs=1e-9)


def test_reverse_kl_between_gaussians_matches_torch():
    p = GaussianMixture1D((1.0,), (0.5,), (2.0,))
    t = lambda v: torch.tensor(v, dtype=torch.float64)  # noqa: E731
    expected = kl_divergence(Normal(t(1.2), t(0.7)), Normal(t(0.5), t(2.0))).item()
    assert reverse_kl(1.2, 0.7, p.log_prob).item() == pytest.approx(expected, rel=1e-10)
    assert forward_kl(1.2, 0.7, p).item() == pytest.approx(
        kl_divergence(Normal(t(0.5), t(2.0)), Normal(t(1.2), t(0.7))).item(), rel=1e-10
    )


def test_forward_optimum_is_moment_matching():
    fit = fit_forward_kl(TARGET)
    assert fit.mean == pytest.approx(TARGET.mean(), abs=1e-6)
    assert fit.std == pytest.approx(math.sqrt(TARGET.variance()), abs=1e-6)
    # and it is a minimum: moving away increases KL(p||q)
    for dm, ds in [(0.1, 0), (-0.1, 0), (0, 0.1), (0, -0.1)]:
        assert forward_kl(fit.mean + dm, fit.std + ds, TARGET).item() > fit.kl


def test_reverse_fit_of_a_gaussian_target_recovers_it():
    p = GaussianMixture1D((1.0,), (1.7,), (0.45,))
    fit = fit_reverse_kl(p, starts=[(0.0, 1.0)])
    assert fit.mean == pytest.approx(1.7, abs=1e-6)
    assert fit.std == pytest.approx(0.45, abs=1e-6)
    assert abs(fit.kl) < 1e-10


def test_reverse_fit_is_mode_seeking_and_ignores_normalising_constant():
    fit = fit_reverse_kl(TARGET)
    assert fit.mean == pytest.approx(2.5, abs=0.1)  # the heavier (right) mode
    assert fit.std < math.sqrt(TARGET.variance())
    shifted = fit_reverse_kl(TARGET, log_density=lambda t: TARGET.log_prob(t) + 5.0)
    assert shifted.mean == pytest.approx(fit.mean, abs=1e-8)
    assert fit.kl - shifted.kl == pytest.approx(5.0, abs=1e-10)


def test_gaussian_integral_matches_mpmath_quadrature():
    z = sp.Symbol("z", real=True)
    m, s = sp.Rational(1, 3), sp.Rational(3, 2)
    for f in [normal_pdf(z, m, s**2) * (z**3 - 2 * z), sp.exp(-(z**2) + z) * z**2]:
        expected = mpmath.quad(sp.lambdify(z, f, "mpmath"), [-mpmath.inf, 0, mpmath.inf])
        assert float(gaussian_integral(f, z)) == pytest.approx(float(expected), rel=1e-12)
    with pytest.raises(ValueError):
        gaussian_integral(sp.exp(z**2), z)  # diverges
    with pytest.raises(ValueError):
        gaussian_integral(sp.sin(z) * sp.exp(-(z**2)), z)


def test_gaussian_integrals_interpretation_checks_and_rejects():
    z, m = sp.Symbol("z", real=True), sp.Symbol("m", real=True)
    s = sp.Symbol("s", positive=True)
    Q = sp.Symbol("q(z)", positive=True)
    interp = GaussianIntegrals({Q: normal_pdf(z, m, s**2)})
    start = sp.Integral(Q * z**2, (z, -sp.oo, sp.oo))
    d = Derivation(start, title="second moment", family=interp)
    d.step(m**2 + s**2, because="variance plus squared mean")
    with pytest.raises(StepError):
        d.step(m**2, because="wrong")


def test_plot_kl_fits_returns_a_figure():
    fits_r, fits_f = [fit_reverse_kl(TARGET)], [fit_forward_kl(TARGET)]
    fig = plot_kl_fits([TARGET], fits_r, fits_f, ["d = 5"], ncols=1)
    assert len(fig.axes) == 1 and fig.axes[0].get_title() == "d = 5"
