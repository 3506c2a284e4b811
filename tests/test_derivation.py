"""The derivation engine accepts true steps, rejects false ones, and says which."""

import pytest
import sympy as sp

from vaebook.symbolic import notation as N
from vaebook.symbolic.certificates import (
    Nonneg,
    convex_minimum,
    log_tangent_lemma,
    second_derivative_sign,
)
from vaebook.symbolic.derivation import Derivation, StepError, vanishes
from vaebook.symbolic.families import FiniteLatent, LinearGaussian

x, y = sp.symbols("x y", positive=True)
a = sp.Symbol("a", real=True)


def test_true_steps_are_counted_and_rendered():
    d = Derivation(sp.log(x * y), title="log of a product")
    d.step(sp.log(x) + sp.log(y), because="log of a product")
    d.step(sp.log(y) + sp.log(x), because="commute")
    assert d.n_verified == 2
    assert d.verdict() == (
        "log of a product: 2 steps verified for all values of its symbols with $x > 0$ and $y > 0$"
    )
    tex = d.latex()
    assert tex.count(r"\text{") == 2 and r"\begin{aligned}" in tex
    assert d._repr_latex_().startswith("$$")


def test_a_false_step_raises_naming_the_step():
    d = Derivation(sp.log(x * y), title="broken").step(sp.log(x) + sp.log(y), because="ok")
    with pytest.raises(StepError, match=r"broken: step 2 \(“wrong”\) is false"):
        d.step(sp.log(x) - sp.log(y), because="wrong")
    assert d.n_verified == 1  # the false step was not added


def test_a_step_that_cannot_be_proven_is_not_accepted(monkeypatch):
    # a true identity the simplifier cannot prove must be refused, not waved through
    import vaebook.symbolic.derivation as D

    monkeypatch.setattr(D, "vanishes", lambda expr, given=None: False)
    d = Derivation(sp.sin(a) ** 2 + sp.cos(a) ** 2, title="trig")
    with pytest.raises(StepError, match="could not be proven"):
        d.step(1, because="Pythagoras")


def test_vanishes_uses_assumptions_and_given():
    assert vanishes(sp.log(x * y) - sp.log(x) - sp.log(y))
    # for real (possibly negative) symbols the log rule does not hold, and is not "proven"
    b, c = sp.symbols("b c", real=True)
    assert not vanishes(sp.log(b * c) - sp.log(b) - sp.log(c))
    q1, q2 = sp.symbols("q1 q2", positive=True)
    assert not vanishes(q1 + q2 - 1)
    assert vanishes(q1 + q2 - 1, given={q2: 1 - q1})


def test_log_tangent_lemma_is_proven_and_instantiates():
    h = log_tangent_lemma()
    t = h.variable
    assert sp.simplify(h.expr - (t - 1 - sp.log(t))) == 0
    inst = h.at(x / y).scale(y)
    assert sp.simplify(inst.expr - (x - y - y * sp.log(x / y))) == 0
    with pytest.raises(StepError):
        h.at(a)  # a real symbol is not known to be positive
    with pytest.raises(StepError):
        h.scale(a)  # nor non-negative


def test_convexity_checks():
    assert second_derivative_sign(sp.log(x), x) == -1
    assert second_derivative_sign(sp.exp(a), a) == 1
    with pytest.raises(StepError):
        convex_minimum(sp.log(x), x, "log is not convex")
    with pytest.raises(StepError):
        second_derivative_sign(sp.sin(a), a)
    f = convex_minimum((a - 2) ** 2 + 3, a, "parabola")
    assert sp.simplify(f.expr - (a - 2) ** 2) == 0


def test_nonneg_by_assumptions():
    assert Nonneg.by_assumptions(a**2).expr == a**2
    with pytest.raises(StepError):
        Nonneg.by_assumptions(a)


def test_bound_requires_the_certified_gap():
    d = Derivation(x**2 + 1, title="bound")
    d.bound(1, gap=Nonneg.by_assumptions(x**2, "a square"))
    assert d.relation == ">=" and d.n_verified == 1
    assert "a square" in d.latex()  # the certificate's reason is the displayed reason
    wrong = Derivation(x**2 + 2, title="bound")
    with pytest.raises(StepError, match="not the certified gap"):
        wrong.bound(1, gap=Nonneg.by_assumptions(x**2))
    with pytest.raises(TypeError):
        wrong.bound(1, gap=x**2)


def test_evidence_identity_on_both_families_and_a_broken_step():
    steps = [
        (sp.log(N.px) * N.integral(N.qz), "q integrates to one"),
        (N.integral(N.qz * sp.log(N.px)), "constant inside"),
        (N.integral(N.qz * sp.log(N.pxz / N.pz_x)), "Bayes"),
        (N.ELBO + N.KL_post, "definitions"),
    ]
    for family in (FiniteLatent(K=3), LinearGaussian()):
        d = Derivation(sp.log(N.px), title="evidence identity", family=family)
        for expr, why in steps:
            d.step(expr, because=why)
        assert d.n_verified == 4
    # swap the posterior for the prior in Bayes' rule: must fail on both families
    for family in (FiniteLatent(K=3), LinearGaussian()):
        d = Derivation(sp.log(N.px), title="evidence identity", family=family)
        d.step(N.integral(N.qz * sp.log(N.px)), because="constant inside")
        with pytest.raises(StepError, match="step 2"):
            d.step(N.integral(N.qz * sp.log(N.pxz / N.pz)), because="Bayes, misremembered")


def test_recheck_reproduces_inequalities_per_family():
    d = Derivation(sp.log(N.px), title="lower bound", family=FiniteLatent(K=2))
    d.step(N.ELBO + N.KL_post, because="evidence identity")
    d.bound(N.ELBO, gap=lambda fam: fam.kl_q_posterior_nonneg())
    assert d.verdict().endswith("verified on the finite family (K=2) only")
    d2 = d.recheck(LinearGaussian())
    assert d2.n_verified == 2 and d2.relation == ">=" and "linear-Gaussian" in d2.verdict()
    assert d.verdict() == (
        "lower bound: 2 steps verified on 2 families: "
        "the finite family (K=2) and the linear-Gaussian family"
    )
    # the prior's KL is not the gap of this bound: refused
    bad = Derivation(sp.log(N.px), title="lower bound", family=FiniteLatent(K=2))
    bad.step(N.ELBO + N.KL_post, because="evidence identity")
    with pytest.raises(StepError):
        bad.bound(N.ELBO, gap=lambda fam: fam.kl_q_prior_nonneg())


def test_conclude_and_equation():
    d = Derivation(sp.log(x**3), title="power").step(3 * sp.log(x), because="power")
    d.conclude(3 * sp.log(x))
    assert d.equation() == sp.Eq(sp.log(x**3), 3 * sp.log(x), evaluate=False)
    with pytest.raises(StepError):
        d.conclude(2 * sp.log(x))


def test_displayed_normal_density_is_checked_by_its_formula():
    from vaebook.symbolic.notation import Normal, explicit, normal_pdf
    from vaebook.symbolic.printing import book_latex as latex

    m = sp.Symbol("m", real=True)
    v = sp.Symbol("v", positive=True)
    assert explicit(Normal(a, m, v)) == normal_pdf(a, m, v)
    assert latex(Normal(a, m, v)) == r"\mathcal{N}\left(a;\, m,\, v\right)"
    d = Derivation(normal_pdf(a, m, v), title="density").step(Normal(a, m, v), because="notation")
    assert d.n_verified == 1
    with pytest.raises(StepError):
        d.step(Normal(a, m, 2 * v), because="wrong variance")
