"""KL divergence: the package's closed forms and certificates against independent oracles
(torch.distributions, Monte Carlo, direct evaluation of the definition)."""

import math
import random

import pytest
import sympy as sp
import torch
from torch.distributions import Normal, kl_divergence

from vaebook.symbolic.certificates import log_tangent_lemma
from vaebook.symbolic.derivation import Derivation, StepError
from vaebook.symbolic.families import FiniteLatent, LinearGaussian
from vaebook.symbolic.gaussian import gaussian_kl
from vaebook.symbolic.notation import KL_prior, normal_pdf

m1, m2 = sp.symbols("m_1 m_2", real=True)
v1, v2 = sp.symbols("v_1 v_2", positive=True)
KL_FN = sp.lambdify((m1, v1, m2, v2), gaussian_kl(m1, v1, m2, v2), "math")


@pytest.mark.parametrize("seed", range(5))
def test_gaussian_kl_matches_torch(seed):
    rng = random.Random(seed)
    for _ in range(50):
        a, b = rng.gauss(0, 2), rng.gauss(0, 2)
        va, vb = math.exp(rng.gauss(0, 1)), math.exp(rng.gauss(0, 1))
        ours = KL_FN(a, va, b, vb)
        theirs = float(
            kl_divergence(
                Normal(torch.tensor(a, dtype=torch.float64), math.sqrt(va)),
                Normal(torch.tensor(b, dtype=torch.float64), math.sqrt(vb)),
            )
        )
        assert ours == pytest.approx(theirs, rel=1e-10, abs=1e-12)


def test_gaussian_kl_matches_monte_carlo():
    g = torch.Generator().manual_seed(0)
    for a, va, b, vb in [(0.3, 0.5, -1.0, 2.0), (2.0, 1.5, 0.0, 1.0), (-0.5, 0.2, -0.4, 0.3)]:
        p, q = Normal(a, math.sqrt(va)), Normal(b, math.sqrt(vb))
        y = a + math.sqrt(va) * torch.randn(400_000, generator=g, dtype=torch.float64)  # (S,)
        log_ratio = p.log_prob(y) - q.log_prob(y)  # (S,)
        se = float(log_ratio.std()) / math.sqrt(y.numel())
        assert abs(float(log_ratio.mean()) - KL_FN(a, va, b, vb)) < 5 * se


def test_gaussian_kl_by_sympy_integration():
    """The chapter's derivation route: integrate N1 (log N1 - log N2) over the real line."""
    y = sp.Symbol("y", real=True)
    log_n1, log_n2 = sp.log(normal_pdf(y, m1, v1)), sp.log(normal_pdf(y, m2, v2))
    log_ratio = sp.expand(sp.expand_log(log_n1 - log_n2))
    kl = sp.integrate(normal_pdf(y, m1, v1) * log_ratio, (y, -sp.oo, sp.oo), conds="none")
    assert sp.simplify(kl - gaussian_kl(m1, v1, m2, v2)) == 0


def test_gaussian_kl_is_not_symmetric_and_zero_on_equal_arguments():
    assert sp.simplify(gaussian_kl(m1, v1, m1, v1)) == 0
    assert abs(KL_FN(0, 1, 1, 4) - KL_FN(1, 4, 0, 1)) > 0.5


def test_linear_gaussian_certificate_equals_gaussian_kl():
    cert = LinearGaussian().kl_nonneg(m1, v1, m2, v2)
    assert sp.simplify(sp.expand_log(cert.expr - gaussian_kl(m1, v1, m2, v2), force=True)) == 0


@pytest.mark.parametrize("K", [2, 3, 5])
def test_finite_certificate_equals_kl_when_normalised(K):
    fam = FiniteLatent(K=K)
    cert = fam.kl_nonneg(fam.q, fam.pi)
    kl = fam.interpret(KL_prior)
    g = torch.Generator().manual_seed(K)
    for _ in range(20):
        qv = torch.distributions.Dirichlet(torch.ones(K, dtype=torch.float64)).sample()  # (K,)
        pv = torch.softmax(torch.randn(K, generator=g, dtype=torch.float64) * 2, 0)  # (K,)
        values = {
            **dict(zip(fam.q, qv.tolist(), strict=True)),
            **dict(zip(fam.pi, pv.tolist(), strict=True)),
        }
        c, k = float(cert.expr.subs(values)), float(kl.subs(values))
        direct = float((qv * (qv / pv).log()).sum())
        assert c == pytest.approx(direct, rel=1e-10, abs=1e-12)
        assert k == pytest.approx(direct, rel=1e-10, abs=1e-12)
        assert c >= 0


def test_finite_certificate_differs_from_kl_when_not_normalised():
    """The certificate is KL + sum(pi) - sum(q): equal to KL only for normalised inputs."""
    fam = FiniteLatent(K=2)
    cert = fam.kl_nonneg(fam.q, fam.pi)
    kl = fam.interpret(KL_prior)
    values = {fam.q[0]: 0.5, fam.q[1]: 0.5, fam.pi[0]: 0.9, fam.pi[1]: 0.9}  # pi sums to 1.8
    assert float((cert.expr - kl).subs(values)) == pytest.approx(1.8 - 1.0)
    assert float(kl.subs(values)) < 0  # unnormalised: the "divergence" goes negative


def test_gibbs_derivation_checks_and_rejects_a_false_bound():
    fam = FiniteLatent(K=3)
    d = Derivation(KL_prior, title="Gibbs", family=fam)
    d.bound(0, gap=lambda f: f.kl_q_prior_nonneg())
    assert d.verdict() == "Gibbs: 1 step verified on the finite family (K=3) only"
    assert d.recheck(LinearGaussian()).n_verified == 1
    wrong = Derivation(KL_prior, title="wrong", family=fam)
    with pytest.raises(StepError):  # the certificate of KL(q||pi) does not bound the reverse KL
        wrong.bound(0, gap=fam.kl_nonneg(fam.pi, fam.q))


def test_log_tangent_lemma_is_t_minus_one_minus_log_t():
    t = sp.Symbol("t", positive=True)
    lemma = log_tangent_lemma()
    assert sp.simplify(lemma.expr.xreplace({lemma.variable: t}) - (t - 1 - sp.log(t))) == 0
    assert sp.solve(lemma.expr, lemma.variable) == [1]
    with pytest.raises(StepError):
        lemma.at(-t)  # only positive arguments
