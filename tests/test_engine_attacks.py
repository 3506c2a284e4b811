"""Ways a careless (or hostile) author could make the engine print a false step as
"verified", each refused: one test per attack, each showing the attack fails."""

import copy
import math

import mpmath
import pytest
import sympy as sp

from vaebook.symbolic import notation as N
from vaebook.symbolic.certificates import Nonneg, jensen_log_certificate, log_tangent_lemma
from vaebook.symbolic.derivation import Derivation, StepError
from vaebook.symbolic.families import (
    Concrete,
    Family,
    FiniteLatent,
    GaussianIntegrals,
    LinearGaussian,
)
from vaebook.symbolic.gaussian import gaussian_expectation
from vaebook.symbolic.notation import normal_pdf

x = sp.Symbol("x", positive=True)


# 1. a non-negativity certificate built by hand
def test_attack_1_a_hand_built_certificate_is_refused():
    fam = FiniteLatent(K=3)
    minus_kl = -fam.interpret(N.KL_prior)
    with pytest.raises(TypeError, match="cannot be built by hand"):
        Nonneg(minus_kl, "trust me")
    with pytest.raises(TypeError):
        Nonneg.__new__(Nonneg, minus_kl, "trust me")
    genuine = fam.kl_q_prior_nonneg()
    with pytest.raises(TypeError):  # no copy/replace loophole
        copy.replace(genuine, expr=minus_kl) if hasattr(copy, "replace") else copy.copy(genuine)
    with pytest.raises(TypeError):
        copy.deepcopy(genuine)
    with pytest.raises(AttributeError):
        genuine.expr = minus_kl
    with pytest.raises(TypeError):

        class Forged(Nonneg):  # noqa: F841 - subclassing is refused at class creation
            pass

    # the false bound "KL <= 0" therefore has no certificate, and the true one does
    d = Derivation(0, title="KL is non-positive?", family=fam)
    with pytest.raises(StepError):
        d.bound(N.KL_prior, gap=genuine, relation=">=")  # 0 >= KL: the gap is not -KL
    assert d.n_verified == 0


# 2. a false substitution passed as given=
def test_attack_2_an_unproven_substitution_is_refused_and_a_proven_one_is_shown():
    fam = FiniteLatent(K=3)
    q, lik = fam.q, fam.lik
    with pytest.raises(StepError, match="not proven"):
        Derivation(lik[0], title="false given", family=fam, given={lik[0]: 2})
    d = Derivation(x, title="false given on a step")
    with pytest.raises(StepError, match="not proven"):
        d.step(2, because="x is 2", given={x: 2})
    assert d.n_verified == 0
    # the family's own constraints are trusted; a true substitution is proved and shown
    d = Derivation(fam.interpret(N.integral(N.qz)), title="q sums to 1", family=fam)
    d.step(1, because="normalisation", given={q[0] + q[1] + q[2]: 1})
    assert "using $q_{1} + q_{2} + q_{3} = 1$" in d._repr_markdown_()
    assert "using $q_{1} + q_{2} + q_{3} = 1$" in d.latex()
    ok = Derivation(q[-1], title="constraint", family=fam, given=fam.constraints())
    ok.step(1 - q[0] - q[1], because="normalisation of q")
    assert ok.n_verified == 1


# 3. a caller-supplied interpretation that is not a model family
def test_attack_3_only_a_model_family_interprets():
    zero = lambda e: sp.Integer(0)  # noqa: E731 - "interprets" every expression as 0
    with pytest.raises(TypeError, match="model family"):
        Derivation(x, title="anything", interpret=zero)
    with pytest.raises(TypeError, match="model family"):
        Derivation(x, title="anything", where="on every model")
    with pytest.raises(TypeError):
        Derivation(x, title="anything", family=zero)
    with pytest.raises(TypeError, match="defined in"):

        class Zero(Family):  # noqa: F841 - a family outside the families module
            def interpret(self, expr):
                return sp.Integer(0)

    with pytest.raises(StepError):
        Derivation(x, title="anything").step(x + 1, because="interpreted as 0")


# 4. an integral that converges only under conditions
def test_attack_4_an_integral_not_proved_finite_is_refused():
    lg = LinearGaussian()
    v = lg.v
    # ∫ p(z)^2 / q(z) dz is infinite for v <= 1/2: no closed form may be accepted
    z = lg.z
    f = normal_pdf(z, 0, 1) ** 2 / normal_pdf(z, lg.m, v)
    at_v = lambda vv: mpmath.quad(  # noqa: E731
        sp.lambdify(z, f.subs({lg.m: 0, v: vv}), "mpmath"), [-mpmath.inf, 0, mpmath.inf]
    )
    assert math.isfinite(float(at_v(1)))  # finite for v = 1 ...
    assert float(at_v(sp.Rational(2, 5))) > 1e10 or not math.isfinite(float(at_v(0.4)))
    closed = sp.sqrt(v) / sp.sqrt(2 * v - 1) * sp.exp(lg.m**2 / (2 * v - 1))  # valid for v > 1/2
    with pytest.raises(StepError, match="cannot be checked.*converges"):
        Derivation(N.integral(N.pz**2 / N.qz), title="chi-square integral", family=lg)
    d = Derivation(closed, title="chi-square integral, backwards", family=lg)
    with pytest.raises(StepError, match="cannot be checked"):
        d.step(N.integral(N.pz**2 / N.qz), because="complete the square")
    assert d.n_verified == 0
    # the same for a caller's integral over the real line
    m, s = sp.Symbol("m", real=True), sp.Symbol("s", positive=True)
    with pytest.raises(StepError, match="cannot be checked"):
        Derivation(
            sp.Integral(sp.exp(-(z**2) / s + z**2 / 2), (z, -sp.oo, sp.oo)),
            title=r"diverges for $s \geq 2$",
            family=GaussianIntegrals(),
        )
    with pytest.raises(StepError, match="cannot be checked"):  # no integrals as written
        Derivation(sp.Integral(normal_pdf(z, m, s**2), (z, -sp.oo, sp.oo)), title="as written")
    # a provably finite one is accepted
    ok = Derivation(
        sp.Integral(normal_pdf(z, m, s**2) * z**2, (z, -sp.oo, sp.oo)),
        title="second moment",
        family=GaussianIntegrals(),
    ).step(m**2 + s**2, because="variance plus squared mean")
    assert ok.n_verified == 1


@pytest.fixture
def jensen_setup():
    fam = FiniteLatent(K=3)
    y = sp.symbols("y_1:4", positive=True)
    mean_y = sum(qk * yk for qk, yk in zip(fam.q, y, strict=True))
    mean_log_y = sum(qk * sp.log(yk) for qk, yk in zip(fam.q, y, strict=True))
    return fam, y, mean_y, mean_log_y


# 5. an inequality whose free-text reason contradicts its certificate
def test_attack_5_the_reason_of_a_bound_is_its_certificate(jensen_setup):
    fam, y, mean_y, mean_log_y = jensen_setup
    cert = jensen_log_certificate(fam.q, y)
    d = Derivation(sp.log(mean_y), title="Jensen", family=fam)
    with pytest.raises(TypeError, match="certificate"):
        d.bound(mean_log_y, because="log is convex", gap=cert)
    assert d.n_verified == 0
    d.bound(mean_log_y, gap=cert)
    assert d.steps[0].because == cert.reason
    assert "concave" in cert.reason and "convex" not in cert.reason.replace("concave", "")
    assert "log is convex" not in d._repr_markdown_()
    assert "concave" in d._repr_markdown_() and "concave" in d.latex()
    # a lemma's reason says what was proved
    assert "minimum $0$ at $t = 1$" in log_tangent_lemma().reason


# 6. a step that holds in one family only
def test_attack_6_the_verdict_names_every_family_checked():
    # a "step" true on the finite family with K = 2 only: E_q[1] written as q_1 + q_2
    fam2 = FiniteLatent(K=2)
    d = Derivation(N.integral(N.qz), title="q has two states", family=fam2)
    d.step(fam2.q[0] + fam2.q[1], because="sum over the states")
    assert d.verdict() == "q has two states: 1 step verified on the finite family (K=2) only"
    assert "only" in d._repr_markdown_()
    with pytest.raises(StepError):  # it does not hold with K = 3
        d.recheck(FiniteLatent(K=3))
    assert d.verdict().endswith("(K=2) only")  # a failed recheck adds nothing
    # a true identity, re-checked: the verdict names all the families
    e = Derivation(N.ELBO, title="split", family=FiniteLatent(K=3))
    e.step(N.expectation(sp.log(N.px_z)) - N.KL_prior, because="reconstruction - KL")
    e.recheck(FiniteLatent(K=4), LinearGaussian())
    assert e.verdict() == (
        "split: 1 step verified on 3 families: the finite family (K=3), "
        "the finite family (K=4) and the linear-Gaussian family"
    )
    # concrete derivations say what they were checked with, definitions shown
    n1 = sp.Symbol("N_1", positive=True)
    y, m = sp.symbols("y m", real=True)
    c = Derivation(sp.log(n1), title="log density", family=Concrete({n1: normal_pdf(y, m, 1)}))
    c.step(-((y - m) ** 2) / 2 - sp.log(2 * sp.pi) / 2, because="log of a Gaussian")
    assert c.verdict().endswith(", where $N_{1}$ is as defined")
    assert "where $N_{1} := " in c._repr_markdown_()


def test_the_one_gaussian_expectation_against_quadrature():
    """The single polynomial-expectation function against mpmath quadrature (an
    independent oracle), not against another copy of the moment formula."""
    y = sp.Symbol("y", real=True)
    poly = 3 * y**4 - y**3 + 2 * y - 5
    for mean, var in [(0.3, 0.7), (-1.2, 2.5), (0.0, 1.0)]:
        exact = float(gaussian_expectation(poly, y, sp.Float(mean), sp.Float(var)))
        integrand = sp.lambdify(y, poly * normal_pdf(y, mean, var), "mpmath")
        ref = float(mpmath.quad(integrand, [-mpmath.inf, mean, mpmath.inf]))
        assert exact == pytest.approx(ref, rel=1e-12, abs=1e-12)
    with pytest.raises(ValueError):
        gaussian_expectation(sp.exp(y), y, 0, 1)


# 7. a step added after a re-check, which the verdict would otherwise claim for every family
def test_attack_7_a_step_after_a_recheck_must_hold_on_every_family():
    fam2 = FiniteLatent(K=2)
    d = Derivation(N.integral(N.qz), title="q sums to one", family=fam2).step(
        1, because="normalisation"
    )
    d.recheck(FiniteLatent(K=3))
    with pytest.raises(StepError, match="but not on the finite family \\(K=3\\)"):
        d.step(fam2.q[0] + fam2.q[1], because="two states")  # true for K = 2 only
    assert d.n_verified == 1
    assert d.verdict() == (
        "q sums to one: 1 step verified on 2 families: the finite family (K=2) and the "
        "finite family (K=3)"
    )
    d.step(sp.Integer(1) + 0, because="nothing changes")  # true on both: accepted on both
    assert d.n_verified == 2
