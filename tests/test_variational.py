"""Jensen certificates, chapters 4-6 (vaebook.chapters.ch04-ch06) against independent oracles
(scipy, numerical integration and optimisation, torch.distributions, Monte Carlo, the SymPy
linear-Gaussian family)."""

import math

import numpy as np
import pytest
import sympy as sp
import torch
from scipy import integrate, optimize, stats
from torch.distributions import Independent, Normal, kl_divergence

from vaebook.chapters.ch04_jensen_bound import log_ratio_coefficients
from vaebook.chapters.ch05_elbo_vs_kl import (
    plot_em_history,
    ppca1_elbo,
    ppca1_log_evidence,
    ppca1_m_step,
    ppca1_mle,
    ppca1_posterior,
    variational_em,
)
from vaebook.chapters.ch06_reconstruction_regularisation import (
    beta_objective,
    beta_optimum,
    gaussian_nll,
    monte_carlo_kl_to_standard_normal,
)
from vaebook.symbolic.certificates import (
    jensen_log_certificate,
    jensen_square_certificate,
)
from vaebook.symbolic.derivation import Derivation, StepError
from vaebook.symbolic.families import FiniteLatent, LinearGaussian, jensen_gap_certificate
from vaebook.vae.objectives import kl_to_standard_normal


def synthetic(n=150, seed=0):
    rng = np.random.default_rng(seed)
    w, b, s = np.array([2.0, -1.0]), np.array([0.5, 1.0]), 0.7
    z = rng.standard_normal(n)
    return np.outer(z, w) + b + s * rng.standard_normal((n, 2))


# ---------------------------------------------------------------- Jensen certificates


def test_jensen_log_certificate_is_the_gap_and_nonnegative_numerically():
    q = sp.symbols("q_1:4", positive=True)
    y = sp.symbols("y_1:4", positive=True)
    cert = jensen_log_certificate(q, y)
    rng = np.random.default_rng(1)
    for _ in range(20):
        qv = rng.dirichlet(np.ones(3))
        yv = rng.exponential(size=3)
        vals = {**dict(zip(q, qv, strict=True)), **dict(zip(y, yv, strict=True))}
        gap = math.log(qv @ yv) - qv @ np.log(yv)
        assert float(cert.expr.subs(vals)) == pytest.approx(gap, abs=1e-12)
        assert gap >= 0


def test_jensen_certificate_rejects_wrong_direction():
    q = sp.symbols("q_1:4", positive=True)
    y = sp.symbols("y_1:4", positive=True)
    m = sum(a * b for a, b in zip(q, y, strict=True))
    d = Derivation(sp.log(m), title="wrong way", family=FiniteLatent(K=3))  # sum of q_k = 1
    with pytest.raises(StepError):
        d.bound(
            sum(a * sp.log(b) for a, b in zip(q, y, strict=True)),
            gap=jensen_log_certificate(q, y),
            relation="<=",
        )


def test_square_certificate_is_the_variance():
    q = sp.symbols("q_1:4", positive=True)
    y = sp.symbols("y_1:4", real=True)
    cert = jensen_square_certificate(q, y)
    qv, yv = np.array([0.2, 0.5, 0.3]), np.array([-1.0, 0.5, 3.0])
    vals = {**dict(zip(q, qv, strict=True)), **dict(zip(y, yv, strict=True))}
    assert float(cert.expr.subs(vals)) == pytest.approx(
        np.cov(yv, aweights=qv, bias=True), rel=1e-12
    )


def test_jensen_gap_certificate_matches_kl_on_finite_family_numerically():
    fam = FiniteLatent(3)
    cert = jensen_gap_certificate(fam).expr
    rng = np.random.default_rng(2)
    qv, pv, lv = rng.dirichlet(np.ones(3)), rng.dirichlet(np.ones(3)), rng.uniform(0.1, 2, 3)
    vals = {
        **dict(zip(fam.q, qv, strict=True)),
        **dict(zip(fam.pi, pv, strict=True)),
        **dict(zip(fam.lik, lv, strict=True)),
    }
    post = pv * lv / (pv @ lv)
    assert float(cert.subs(vals)) == pytest.approx(np.sum(qv * np.log(qv / post)), abs=1e-12)


def test_log_ratio_is_flat_exactly_at_posterior():
    lg = LinearGaussian()
    c = log_ratio_coefficients(lg)
    mp, vp = lg.posterior()
    assert sp.simplify(c[2].subs({lg.m: mp, lg.v: vp})) == 0
    assert sp.simplify(c[1].subs({lg.m: mp, lg.v: vp})) == 0
    assert sp.simplify(c[2].subs({lg.v: 2 * vp})) != 0


# ------------------------------------------------------------- one-factor model, EM


def test_log_evidence_matches_scipy():
    X = synthetic()
    w, b, s2 = np.array([1.0, 0.3]), np.array([0.2, -0.1]), 0.5
    ref = stats.multivariate_normal(b, s2 * np.eye(2) + np.outer(w, w)).logpdf(X)
    assert np.allclose(ppca1_log_evidence(X, w, b, s2), ref, atol=1e-12)


def test_posterior_matches_numerical_integration():
    x, w, b, s2 = np.array([1.3, -0.4]), np.array([1.0, 0.3]), np.array([0.2, -0.1]), 0.5
    joint = lambda z: stats.norm.pdf(z) * np.prod(stats.norm.pdf(x, w * z + b, math.sqrt(s2)))
    Z = integrate.quad(joint, -12, 12)[0]
    mean = integrate.quad(lambda z: z * joint(z), -12, 12)[0] / Z
    var = integrate.quad(lambda z: (z - mean) ** 2 * joint(z), -12, 12)[0] / Z
    m, v = ppca1_posterior(x, w, b, s2)
    assert m[0] == pytest.approx(mean, abs=1e-9) and v == pytest.approx(var, abs=1e-9)
    assert ppca1_log_evidence(x, w, b, s2)[0] == pytest.approx(math.log(Z), abs=1e-9)


def test_elbo_matches_monte_carlo_and_equals_evidence_at_posterior():
    x, w, b, s2 = np.array([1.3, -0.4]), np.array([1.0, 0.3]), np.array([0.2, -0.1]), 0.5
    m, v = 0.3, 0.4
    rng = np.random.default_rng(3)
    z = m + math.sqrt(v) * rng.standard_normal(200_000)
    terms = (
        stats.norm.logpdf(z)
        + stats.norm.logpdf(x[None], np.outer(z, w) + b, math.sqrt(s2)).sum(1)
        - stats.norm.logpdf(z, m, math.sqrt(v))
    )
    se = terms.std() / math.sqrt(len(z))
    assert abs(ppca1_elbo(x, w, b, s2, m, v)[0] - terms.mean()) < 4 * se
    mp, vp = ppca1_posterior(x, w, b, s2)
    assert ppca1_elbo(x, w, b, s2, mp, vp)[0] == pytest.approx(
        ppca1_log_evidence(x, w, b, s2)[0], abs=1e-12
    )
    assert ppca1_elbo(x, w, b, s2, m, v)[0] < ppca1_log_evidence(x, w, b, s2)[0]


def test_elbo_matches_symbolic_family_for_scalar_x():
    lg = LinearGaussian()
    from vaebook.symbolic.notation import ELBO

    vals = {lg.x: 1.2, lg.w: 1.5, lg.b: 0.5, lg.s: 0.8, lg.m: 0.2, lg.v: 0.3}
    ref = float(lg.interpret(ELBO).subs(vals))
    ours = ppca1_elbo([[1.2]], [1.5], [0.5], 0.64, 0.2, 0.3)[0]
    assert ours == pytest.approx(ref, abs=1e-12)


def test_m_step_maximises_expected_complete_log_likelihood():
    X = synthetic(60)
    m, v = ppca1_posterior(X, np.array([1.0, 0.0]), np.zeros(2), 1.0)
    w, b, s2 = ppca1_m_step(X, m, v)

    def neg(theta):  # -sum_n E_q[log p(x_n, z)] up to terms free of theta
        wv, bv, log_s2 = theta[:2], theta[2:4], theta[4]
        return -ppca1_elbo(X, wv, bv, math.exp(log_s2), m, v).sum()

    res = optimize.minimize(neg, np.zeros(5), method="BFGS", options={"gtol": 1e-9})
    assert np.allclose(res.x[:2], w, atol=1e-4) and np.allclose(res.x[2:4], b, atol=1e-4)
    assert math.exp(res.x[4]) == pytest.approx(s2, rel=1e-4)


def test_mle_sign_convention_and_types():
    X = synthetic()
    w, b, s2 = ppca1_mle(-X)  # flipping the data flips the principal axis, not w[0]'s sign
    assert w[0] >= 0 and w.shape == b.shape == (2,) and isinstance(s2, float)
    assert isinstance(w, np.ndarray) and isinstance(b, np.ndarray)
    w_plus, _, s2_plus = ppca1_mle(X)
    np.testing.assert_allclose(w, w_plus, rtol=0, atol=1e-12)  # same axis, same sign rule
    assert s2 == pytest.approx(s2_plus, rel=1e-12)


def test_em_is_monotone_and_converges_to_closed_form_mle():
    X = synthetic()
    hist = variational_em(X, np.array([0.1, 0.1]), np.zeros(2), 3.0, n_iter=200)
    hist.check_monotone()
    w, b, s2 = hist.params[-1]
    w_mle, b_mle, s2_mle = ppca1_mle(X)
    assert np.allclose(w * np.sign(w[0]), w_mle, atol=1e-4)
    assert np.allclose(b, b_mle, atol=1e-8) and s2 == pytest.approx(s2_mle, rel=1e-4)
    ref = (
        stats.multivariate_normal(b_mle, s2_mle * np.eye(2) + np.outer(w_mle, w_mle))
        .logpdf(X)
        .mean()
    )
    assert hist.log_evidence[-1] == pytest.approx(ref, abs=1e-8)
    assert plot_em_history(hist, ref).axes  # draws


def test_check_monotone_catches_a_decrease():
    X = synthetic(30)
    hist = variational_em(X, np.array([0.1, 0.1]), np.zeros(2), 3.0, n_iter=3)
    hist.elbo[3] -= 1.0
    with pytest.raises(AssertionError):
        hist.check_monotone()


# ------------------------------------------------------------------- beta objective


@pytest.mark.parametrize("beta", [0.25, 1.0, 4.0])
def test_beta_optimum_matches_numerical_optimisation(beta):
    lg = LinearGaussian()
    vals = {lg.x: 1.2, lg.w: 1.5, lg.b: 0.5, lg.s: 0.8}
    objective, _, _ = beta_objective(lg, beta)
    f = sp.lambdify((lg.m, lg.v), objective.subs(vals))
    res = optimize.minimize(
        lambda p: -f(p[0], math.exp(p[1])), [0.0, 0.0], method="BFGS", options={"gtol": 1e-10}
    )
    m_opt, v_opt = beta_optimum(lg, sp.nsimplify(beta))
    assert float(m_opt.subs(vals)) == pytest.approx(res.x[0], abs=1e-5)
    assert float(v_opt.subs(vals)) == pytest.approx(math.exp(res.x[1]), rel=1e-5)


def test_beta_one_is_posterior():
    lg = LinearGaussian()
    m_opt, v_opt = beta_optimum(lg, 1)
    mp, vp = lg.posterior()
    assert sp.simplify(m_opt - mp) == 0 and sp.simplify(v_opt - vp) == 0


# ------------------------------------------------------------- likelihoods and KL


def test_gaussian_nll_matches_scipy_and_omissions():
    rng = np.random.default_rng(4)
    x, mu, var = rng.standard_normal(5), rng.standard_normal(5), rng.uniform(0.2, 2, 5)
    assert gaussian_nll(x, mu, var) == pytest.approx(
        -stats.norm.logpdf(x, mu, np.sqrt(var)).sum(), abs=1e-12
    )
    assert gaussian_nll(x, mu, var, keep_constant=False) == pytest.approx(
        gaussian_nll(x, mu, var) - 2.5 * math.log(2 * math.pi), abs=1e-12
    )
    assert gaussian_nll(x, mu, var, keep_log_var=False) == pytest.approx(
        gaussian_nll(x, mu, var) - 0.5 * np.log(var).sum(), abs=1e-12
    )


def test_closed_form_kl_matches_torch_distributions_and_monte_carlo():
    torch.manual_seed(0)
    mu = torch.randn(4, 3, dtype=torch.float64)
    logvar = torch.randn(4, 3, dtype=torch.float64)
    q = Independent(Normal(mu, (0.5 * logvar).exp()), 1)
    p = Independent(Normal(torch.zeros_like(mu), torch.ones_like(mu)), 1)
    assert torch.allclose(kl_to_standard_normal(mu, logvar), kl_divergence(q, p), atol=1e-12)
    est, se = monte_carlo_kl_to_standard_normal(mu[0], logvar[0], 200_000, seed=1)
    assert 0 < se < 0.05
    assert abs(est - float(kl_divergence(q, p)[0])) < 4 * se


def test_finite_family_derivative_in_q_is_the_constrained_partial_derivative():
    from vaebook.symbolic.notation import KL_prior

    fam = FiniteLatent(3)
    interpret = fam.interpret
    grad = interpret(sp.Derivative(KL_prior, fam.q[0]))
    qv, pv = np.array([0.2, 0.5, 0.3]), np.array([0.3, 0.3, 0.4])
    vals = {**dict(zip(fam.q, qv, strict=True)), **dict(zip(fam.pi, pv, strict=True))}
    kl = lambda q: np.sum(q * np.log(q / pv))  # noqa: E731
    h = 1e-6
    fd = (kl(qv + [h, 0, -h]) - kl(qv - [h, 0, -h])) / (2 * h)  # q_1 up, q_3 down
    assert float(grad.subs(vals)) == pytest.approx(fd, abs=1e-8)
    with pytest.raises(ValueError):
        interpret(sp.Derivative(KL_prior, fam.q[2]))


def test_gaussian_integrals_match_numerical_quadrature_and_reject_other_integrands():
    from vaebook.symbolic.gaussian import gaussian_integrals
    from vaebook.symbolic.notation import normal_pdf

    z1, z2 = sp.symbols("z_1 z_2", real=True)
    vals = {"m1": 0.3, "v1": 0.7, "m2": -1.1, "v2": 1.9}
    dens = {
        z1: (sp.Float(vals["m1"]), sp.Float(vals["v1"])),
        z2: (sp.Float(vals["m2"]), sp.Float(vals["v2"])),
    }
    f = (z1**2 * z2 + 3 * z2**2 - z1) * normal_pdf(z1, *dens[z1]) * normal_pdf(z2, *dens[z2])
    exact = float(
        gaussian_integrals(sp.Integral(f, (z1, -sp.oo, sp.oo), (z2, -sp.oo, sp.oo)), dens)
    )
    fn = sp.lambdify((z1, z2), f)
    ref = integrate.dblquad(lambda b, a: fn(a, b), -15, 15, -15, 15)[0]
    assert exact == pytest.approx(ref, abs=1e-7)
    with pytest.raises(ValueError):
        gaussian_integrals(
            sp.Integral(sp.exp(z1) * normal_pdf(z1, 0, 1), (z1, -sp.oo, sp.oo)), {z1: (0, 1)}
        )
