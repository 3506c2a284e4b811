"""The families' exact expectations agree with independent numerical oracles."""

import math

import numpy as np
import pytest
import sympy as sp
import torch
from scipy import integrate

from vaebook.symbolic import notation as N
from vaebook.symbolic.families import FiniteLatent, LinearGaussian
from vaebook.symbolic.gaussian import gaussian_moment
from vaebook.symbolic.notation import normal_pdf


def _probabilities(rng, K):
    p = rng.random(K) + 0.1
    return p / p.sum()


@pytest.mark.parametrize("K", [2, 3, 5])
def test_finite_family_matches_numpy(K):
    rng = np.random.default_rng(K)
    fam = FiniteLatent(K)
    q, pi, lik = _probabilities(rng, K), _probabilities(rng, K), rng.random(K) + 0.05
    values = {
        **dict(zip(fam.q, q, strict=True)),
        **dict(zip(fam.pi, pi, strict=True)),
        **dict(zip(fam.lik, lik, strict=True)),
    }
    num = lambda e: float(e.xreplace(values))  # noqa: E731

    evidence = float(np.sum(pi * lik))
    posterior = pi * lik / evidence
    assert num(fam.log_evidence()) == pytest.approx(math.log(evidence), rel=1e-12)
    assert num(fam.interpret(N.ELBO)) == pytest.approx(np.sum(q * np.log(pi * lik / q)), rel=1e-12)
    assert num(fam.interpret(N.KL_post)) == pytest.approx(
        np.sum(q * np.log(q / posterior)), rel=1e-12
    )
    assert num(fam.interpret(N.KL_prior)) == pytest.approx(np.sum(q * np.log(q / pi)), rel=1e-12)
    assert num(fam.E_q(N.px_z)) == pytest.approx(np.sum(q * lik), rel=1e-12)
    assert sum(num(fam.posterior(k)) for k in range(K)) == pytest.approx(1.0)
    # the Gibbs certificate equals the KL divergence for normalised q and posterior
    cert = fam.kl_q_posterior_nonneg().expr
    assert num(cert) == pytest.approx(np.sum(q * np.log(q / posterior)), rel=1e-10)


def test_finite_family_rejects_bad_input():
    with pytest.raises(ValueError):
        FiniteLatent(K=1)
    with pytest.raises(ValueError, match="outside an integral"):
        FiniteLatent(K=2).interpret(N.qz)


LG_VALUES = dict(x=1.3, w=-0.7, b=0.4, s=0.6, m=0.2, v=0.45)


def _lg_numbers(lg):
    return {getattr(lg, k): sp.Float(v) for k, v in LG_VALUES.items()}


def _t(v):
    return torch.tensor(v, dtype=torch.float64)


def _quad(f):
    return integrate.quad(f, -np.inf, np.inf, epsabs=1e-12, epsrel=1e-12)[0]


def test_linear_gaussian_evidence_and_posterior_against_torch_and_quadrature():
    lg = LinearGaussian()
    vals = _lg_numbers(lg)
    x, w, b, s = (LG_VALUES[k] for k in "xwbs")
    exact = torch.distributions.Normal(_t(b), _t(math.sqrt(w**2 + s**2))).log_prob(_t(x))
    assert float(lg.log_evidence().xreplace(vals)) == pytest.approx(float(exact), rel=1e-12)
    joint = lambda zz: (
        math.exp(-(zz**2) / 2 - (x - w * zz - b) ** 2 / (2 * s**2)) / (2 * math.pi * s)
    )  # noqa: E731
    evidence = _quad(joint)
    assert float(lg.evidence().xreplace(vals)) == pytest.approx(evidence, rel=1e-9)
    mean, var = (float(e.xreplace(vals)) for e in lg.posterior())
    assert _quad(lambda zz: zz * joint(zz)) / evidence == pytest.approx(mean, rel=1e-8)
    assert _quad(lambda zz: (zz - mean) ** 2 * joint(zz)) / evidence == pytest.approx(var, rel=1e-8)


@pytest.mark.parametrize("name", ["ELBO", "KL_post", "KL_prior"])
def test_linear_gaussian_closed_forms_against_quadrature_and_monte_carlo(name):
    lg = LinearGaussian()
    closed = float(lg.interpret(getattr(N, name)).xreplace(_lg_numbers(lg)))
    x, w, b, s, m, v = (LG_VALUES[k] for k in "xwbsmv")
    mean, var = (float(e.xreplace(_lg_numbers(lg))) for e in lg.posterior())
    Normal = torch.distributions.Normal
    q, prior = Normal(_t(m), _t(math.sqrt(v))), Normal(_t(0.0), _t(1.0))
    post = Normal(_t(mean), _t(math.sqrt(var)))
    lik = lambda zz: Normal(w * zz + b, _t(s)).log_prob(_t(x))  # noqa: E731
    integrands = {
        "ELBO": lambda zz: lik(zz) + prior.log_prob(zz) - q.log_prob(zz),
        "KL_post": lambda zz: q.log_prob(zz) - post.log_prob(zz),
        "KL_prior": lambda zz: q.log_prob(zz) - prior.log_prob(zz),
    }
    f = integrands[name]
    quad = _quad(lambda zz: float(q.log_prob(_t(zz)).exp() * f(_t(zz))))
    assert closed == pytest.approx(quad, abs=1e-7)
    torch.manual_seed(0)
    zs = q.sample((200_000,))
    vals = f(zs)
    assert abs(closed - vals.mean().item()) < 5 * vals.std().item() / math.sqrt(len(zs)) + 1e-9


@pytest.mark.parametrize("n", [0, 1, 2, 3, 4, 5])
def test_gaussian_moments_against_sympy_integration(n):
    y, mean = sp.Symbol("y", real=True), sp.Symbol("mu", real=True)
    var = sp.Symbol("sigma2", positive=True)
    by_integral = sp.integrate(y**n * normal_pdf(y, mean, var), (y, -sp.oo, sp.oo))
    assert sp.simplify(by_integral - gaussian_moment(n, mean, var)) == 0


def test_linear_gaussian_integrates_exp_quadratic_and_general_integrands():
    lg = LinearGaussian()
    # ∫ p(x, z) dz = p(x): a non-polynomial integrand (exp of a quadratic)
    assert sp.simplify(lg.interpret(N.integral(N.pxz)) - lg.evidence()) == 0
    # ∫ q(z) dz = 1 and E_q[z^2] = m^2 + v
    assert lg.interpret(N.integral(N.qz)) == 1
    assert sp.simplify(lg.E_q(lg.z**2) - (lg.m**2 + lg.v)) == 0
