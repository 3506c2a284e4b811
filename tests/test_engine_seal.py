"""Acceptance test for the sealed derivation engine (issue 13, section 1).

Written as a careless or hostile chapter author would write chapter code: only the
public API (no monkeypatching, no subclassing of engine internals, no attribute whose
name starts with ``_`` other than the ``_repr_*_`` hooks Jupyter itself calls). Every
``test_class<N>_...`` test is an attempt to put FALSE mathematics on the page as
"verified", or to render something other than what was checked; it passes only if the
engine refuses (``StepError``, ``TypeError``, ``ValueError``; ``AttributeError`` for
mutation) or, for rendering, if the false thing does not reach the page.

The eight classes of issue 13, section 1:

1. signs claimed by notation objects;      5. displayed names;
2. definitions that contradict the symbol;  6. derivatives;
3. convexity arguments outside the domain;  7. reasons and titles;
4. symbols that pretend;                    8. after the check.

Then: the reversed ELBO bound by other routes, glue_math / typeset showing unchecked
relations, conclude; and ``test_legit_...``: honest uses from the chapters that must
keep working (the sealing must not over-refuse).
"""

from __future__ import annotations

import re
import types

import pytest
import sympy as sp

from vaebook.chapters.display import LatexMath, glue_math, typeset
from vaebook.symbolic.certificates import (
    Nonneg,
    convex_minimum,
    jensen_log_certificate,
    jensen_square_certificate,
    log_tangent_lemma,
)
from vaebook.symbolic.derivation import Derivation, Step, StepError
from vaebook.symbolic.families import (
    Concrete,
    FiniteLatent,
    GaussianIntegrals,
    LinearGaussian,
    jensen_gap_certificate,
)
from vaebook.symbolic.notation import (
    ELBO,
    KL_post,
    KL_prior,
    Normal,
    expectation,
    integral,
    normal_pdf,
    px,
    pxz,
    pz,
    pz_x,
    qz,
    z,
)

#: what a refusal may raise
REFUSED = (StepError, TypeError, ValueError)
#: what a refused mutation may raise (dataclasses.FrozenInstanceError is an AttributeError)
MUTATION_REFUSED = (AttributeError, TypeError, ValueError, StepError)

y = sp.Symbol("y", real=True)
a, b = sp.symbols("a b", real=True)


def kl_gap(fam):
    """The honest certificate of KL(q || p(z|x)) >= 0 on a model family."""
    return fam.kl_q_posterior_nonneg()


def lower_bound(fam=None):
    """The honest chain log p(x) = ELBO + KL >= ELBO (chapter 3)."""
    fam = FiniteLatent(K=3) if fam is None else fam
    return (
        Derivation(sp.log(px), title="ELBO is a lower bound", family=fam)
        .step(ELBO + KL_post, because="evidence identity")
        .bound(ELBO, gap=kl_gap)
    )


def renders(d) -> dict:
    """Everything a chapter can put on the page from a derivation."""
    return {
        "markdown": d._repr_markdown_(),
        "latex": d.latex(),
        "latex tagged": d.latex(reasons=False),
        "latex repr": d._repr_latex_(),
        "verdict": d.verdict(),
        "repr": repr(d),
        "equation": str(d.equation()),
        "glued derivation": glue_math("seal-test-d", d).tex,
        "glued equation": glue_math("seal-test-eq", d.equation()).tex,
    }


def assert_mutation_refused_or_inert(d, mutate):
    """``mutate(d)`` after the check must be refused, or every rendering must refuse or
    show exactly what was rendered before (what was checked)."""
    before = renders(d)
    try:
        mutate(d)
    except MUTATION_REFUSED:
        return
    for name, render in {
        "markdown": lambda: d._repr_markdown_(),
        "latex": lambda: d.latex(),
        "latex tagged": lambda: d.latex(reasons=False),
        "latex repr": lambda: d._repr_latex_(),
        "verdict": lambda: d.verdict(),
        "repr": lambda: repr(d),
        "equation": lambda: str(d.equation()),
        "glued derivation": lambda: glue_math("seal-test-d", d).tex,
        "glued equation": lambda: glue_math("seal-test-eq", d.equation()).tex,
    }.items():
        try:
            after = render()
        except REFUSED:
            continue
        assert after == before[name], f"{name} shows what was not checked:\n{after}"


def _unescaped_braces(tex: str) -> int:
    tex = tex.replace(r"\\", "  ").replace(r"\{", "").replace(r"\}", "")
    return tex.count("{") - tex.count("}")


def honest_one_step(title="log of a square", because="log of a power"):
    x = sp.Symbol("x", positive=True)
    return Derivation(sp.log(x**2), title=title).step(2 * sp.log(x), because=because)


def assert_no_injection(build, fakes=()):
    """``build()`` (a one-step derivation with an author's reason or title) must be
    refused, or render as one aligned block of two rows, one display, one verdict line,
    balanced braces, and none of the ``fakes``."""
    try:
        d = build()
    except REFUSED:
        return
    honest = honest_one_step()
    tex, md = d.latex(), d._repr_markdown_()
    assert tex.count(r"\begin{aligned}") == 1 and tex.count(r"\end{aligned}") == 1, tex
    assert tex.startswith(r"\begin{aligned}") and tex.endswith(r"\end{aligned}"), tex
    assert tex.count("\\\\") == honest.latex().count("\\\\"), f"a row was injected:\n{tex}"
    assert "$$" not in tex, tex
    assert _unescaped_braces(tex) == 0, f"unbalanced braces:\n{tex}"
    assert md.count("$$") == honest._repr_markdown_().count("$$"), f"display injected:\n{md}"
    assert md.count("\n\n") == honest._repr_markdown_().count("\n\n"), f"block injected:\n{md}"
    assert not re.search(r"^\s*#", md, flags=re.M), f"heading injected:\n{md}"
    verdict_lines = [ln for ln in md.splitlines() if ln.startswith("*")]
    assert len(verdict_lines) == 1, f"more than one verdict line:\n{md}"
    for fake in fakes:
        assert fake not in md and fake not in tex and fake not in d.verdict(), fake


# ============================================================================ class 1
# Signs claimed by notation objects: a density with a non-positive or complex variance
# (or a complex argument) is not a density; a sign is decided on the explicit form.


def test_class1_normal_with_negative_variance_claims_no_sign():
    with pytest.raises(REFUSED):
        Nonneg.by_assumptions(Normal(y, a, -1), "a density is positive")


def test_class1_normal_with_complex_variance_claims_no_sign():
    with pytest.raises(REFUSED):
        Nonneg.by_assumptions(Normal(y, a, sp.I), "a density is positive")


def test_class1_normal_with_variance_of_unknown_sign_claims_no_sign():
    c = sp.Symbol("c", real=True)  # may be negative
    with pytest.raises(REFUSED):
        Nonneg.by_assumptions(Normal(y, a, c), "a density is positive")


def test_class1_normal_of_a_complex_argument_claims_no_sign():
    w = sp.Symbol("w")  # complex: N(w; 0, 1) = exp(-w^2/2)/sqrt(2 pi) is complex
    with pytest.raises(REFUSED):
        Nonneg.by_assumptions(Normal(w, 0, 1), "a density is positive")


def test_class1_square_of_a_negative_variance_normal_proves_0_geq_positive():
    # N(y; 0, -1)^2 = -exp(y^2)/(2 pi) < 0, but SymPy is told it is positive:
    # the page would show  0 >= e^{y^2} / (2 pi)  "verified for all values"
    with pytest.raises(REFUSED):
        fake = Normal(y, 0, -1) ** 2
        Derivation(0, title="zero dominates").bound(
            sp.exp(y**2) / (2 * sp.pi), gap=Nonneg.by_assumptions(fake, "a density squared")
        )


def test_class1_reversed_elbo_on_3_families_by_scaling_with_a_fake_density():
    # scale(2 pi N(0; 0, -1)^2) multiplies the honest KL certificate by -1
    def minus_kl(fam):
        return fam.kl_q_posterior_nonneg().scale(2 * sp.pi * Normal(0, 0, -1) ** 2)

    with pytest.raises(REFUSED):
        d = Derivation(ELBO, title="the ELBO is an upper bound", family=FiniteLatent(K=3))
        d.bound(sp.log(px), gap=minus_kl)
        d.recheck(FiniteLatent(K=4), LinearGaussian())  # "verified on 3 families"


def test_class1_lemma_at_a_fake_positive_value():
    # h(t) >= 0 needs t > 0; N(y; 0, -1)^2 is negative
    with pytest.raises(REFUSED):
        log_tangent_lemma().at(Normal(y, 0, -1) ** 2)


def test_class1_family_parameter_as_variance_decided_on_the_explicit_form():
    # on the linear-Gaussian family w is any real number: N(x; b, w)^2 is negative for w < 0,
    # so  log p(x) + N(x; b, w)^2 >= log p(x)  is false there
    lg = LinearGaussian()
    with pytest.raises(REFUSED):
        fake = Normal(lg.x, lg.b, lg.w) ** 2
        Derivation(sp.log(px) + fake, title="adding a density", family=lg).bound(
            sp.log(px), gap=Nonneg.by_assumptions(fake, "a density squared")
        )


def test_class1_kl_and_integrals_claim_no_sign_by_assumptions():
    # a KL (named or as its integral) is non-negative by Gibbs' inequality, not by assumptions
    for kl in (KL_post, KL_prior, integral(qz * sp.log(qz / pz_x)), expectation(sp.log(qz / pz))):
        with pytest.raises(REFUSED):
            Nonneg.by_assumptions(kl, "a KL divergence")
    with pytest.raises(REFUSED):
        Nonneg.by_assumptions(sp.Integral(Normal(z, 0, -1) ** 2, (z, -sp.oo, sp.oo)))


# ============================================================================ class 2
# Definitions that contradict the symbol they define.


def test_class2_positive_symbol_defined_as_a_difference_proves_a_geq_b():
    s = sp.Symbol("s", positive=True)
    with pytest.raises(REFUSED):
        Derivation(b + s, title="a >= b", family=Concrete({s: a - b})).bound(
            b, gap=Nonneg.by_assumptions(s)
        )


def test_class2_positive_symbol_defined_as_a_negative_number():
    s = sp.Symbol("s", positive=True)
    with pytest.raises(REFUSED):
        Derivation(s, title="-1 >= 0", family=Concrete({s: -1})).bound(
            0, gap=Nonneg.by_assumptions(s)
        )


def test_class2_real_symbol_defined_as_i_proves_minus_1_geq_0():
    r = sp.Symbol("r", real=True)
    with pytest.raises(REFUSED):
        Derivation(r**2, title="square", family=Concrete({r: sp.I})).bound(
            0, gap=Nonneg.by_assumptions(r**2)
        )


def test_class2_real_symbol_defined_as_sqrt_of_a_real():
    # r := sqrt(a) is imaginary for a < 0, so "r^2 >= 0" says a >= 0 for every real a
    r = sp.Symbol("r", real=True)
    with pytest.raises(REFUSED):
        Derivation(r**2, title="square", family=Concrete({r: sp.sqrt(a)})).bound(
            0, gap=Nonneg.by_assumptions(r**2)
        )


def test_class2_positive_integer_defined_as_one_half_proves_n_geq_1():
    n = sp.Symbol("n", integer=True, positive=True)
    with pytest.raises(REFUSED):
        Derivation(n, title="n >= 1", family=Concrete({n: sp.Rational(1, 2)})).bound(
            1, gap=Nonneg.by_assumptions(n - 1)
        )


def test_class2_chained_definitions_checked_through():
    s = sp.Symbol("s", positive=True)
    t = sp.Symbol("t", real=True)
    with pytest.raises(REFUSED):
        Derivation(b + s, title="a >= b", family=Concrete({s: t, t: a - b})).bound(
            b, gap=Nonneg.by_assumptions(s)
        )


def test_class2_gaussian_integrals_definitions_checked_too():
    s = sp.Symbol("s", positive=True)
    with pytest.raises(REFUSED):
        Derivation(b + s, title="a >= b", family=GaussianIntegrals({s: a - b})).bound(
            b, gap=Nonneg.by_assumptions(s)
        )


def test_class2_positive_symbol_defined_as_a_fake_density():
    # D := N(y; 0, -1)^2 = -exp(y^2)/(2 pi): the definition's sign is decided on its formula
    d_sym = sp.Symbol("D", positive=True)
    with pytest.raises(REFUSED):
        Derivation(d_sym, title="D >= 0", family=Concrete({d_sym: Normal(y, 0, -1) ** 2})).bound(
            0, gap=Nonneg.by_assumptions(d_sym)
        )


# ============================================================================ class 3
# Convexity arguments outside their domain.


def test_class3_complex_variable_proves_x_squared_geq_0():
    x = sp.Symbol("x")  # complex: x = i gives -1
    with pytest.raises(REFUSED):
        Derivation(x**2, title="squares").bound(0, gap=convex_minimum(x**2, x, "a square"))


def test_class3_imaginary_variable():
    x = sp.Symbol("x", imaginary=True)  # (x - i)^2 < 0 for x = 2i
    with pytest.raises(REFUSED):
        convex_minimum(x**2 - 2 * sp.I * x, x, "a shifted square")


def test_class3_singular_point_splits_the_domain_x_plus_inverse_square():
    # 1/x^2 + x: f'' = 6/x^4 > 0 on each half-line, one stationary point at 2^(1/3),
    # but f(-1) = 0 is below f(2^(1/3)) = 1.89
    x = sp.Symbol("x", real=True, nonzero=True)
    with pytest.raises(REFUSED):
        cert = convex_minimum(x + x**-2, x, "convex")
        Derivation(x + x**-2, title="lower bound").bound(x + x**-2 - cert.expr, gap=cert)


def test_class3_singular_point_splits_the_domain_x_minus_log_x_squared():
    x = sp.Symbol("x", real=True, nonzero=True)  # f(-1) = -1 < f(2) = 2 - log 4
    with pytest.raises(REFUSED):
        convex_minimum(x - sp.log(x**2), x, "convex")


def test_class3_piecewise_convex_on_two_intervals():
    # f'' = 2 on both pieces, one stationary point (x = 0), but f jumps to -6 at x = 1
    x = sp.Symbol("x", real=True)
    f = sp.Piecewise((x**2, x < 1), ((x - 1) ** 2 + 2 * (x - 1) - 6, True))
    with pytest.raises(REFUSED):
        convex_minimum(f, x, "convex piecewise")


def test_class3_other_variable_complex():
    # convex in x > 0, but the other variable is complex: (x - w)^2 < 0 for w = x + i
    x = sp.Symbol("x", positive=True)
    w = sp.Symbol("w")
    with pytest.raises(REFUSED):
        convex_minimum(x**2 - 2 * x * w, x, "convex in x")


# ============================================================================ class 4
# Symbols that pretend (a notation object, a family parameter, a number, another
# symbol of the same name); non-default assumptions stated in the verdict.


def test_class4_symbol_named_like_the_evidence_proves_p_x_leq_0():
    fake_px = sp.Symbol("p(x)", negative=True)  # prints like the evidence p(x)
    with pytest.raises(REFUSED):
        Derivation(fake_px, title="evidence").bound(
            0, relation="<=", gap=Nonneg.by_assumptions(-fake_px)
        )


def test_class4_symbol_named_like_a_family_parameter_with_other_assumptions():
    lg = LinearGaussian()
    m_pos = sp.Symbol("m", positive=True)  # not the family's (real) mean m
    with pytest.raises(REFUSED):
        Derivation(m_pos, title="mean of q", family=lg).bound(0, gap=Nonneg.by_assumptions(m_pos))


def test_class4_complex_m_is_not_the_family_m():
    lg = LinearGaussian()
    m_c = sp.Symbol("m")  # no real=True
    with pytest.raises(REFUSED):
        Derivation(expectation(z - m_c), title="centred mean", family=lg).step(
            lg.m - m_c, because="the mean of $q$ is $m$"
        )


def test_class4_complex_z_is_not_the_latent_variable():
    # a z without real=True is a constant for the integral: "E_q[z^2] = z^2" would pass
    z_c = sp.Symbol("z")
    for fam in (LinearGaussian(), FiniteLatent(K=3)):
        with pytest.raises(REFUSED):
            Derivation(integral(qz * z_c**2), title="second moment", family=fam).step(
                z_c**2, because="moments of $q$"
            )


def test_class4_symbol_named_like_a_number_proves_0_geq_1():
    one = sp.Symbol("1", negative=True)
    with pytest.raises(REFUSED):
        Derivation(0, title="numbers").bound(one, gap=Nonneg.by_assumptions(-one))


def test_class4_symbol_named_like_pi_proves_pi_leq_0():
    fake_pi = sp.Symbol("pi", negative=True)  # prints as \pi
    with pytest.raises(REFUSED):
        Derivation(fake_pi, title="pi").bound(0, relation="<=", gap=Nonneg.by_assumptions(-fake_pi))


def test_class4_dummy_of_the_same_name_proves_x_equals_x_plus_1():
    x = sp.Symbol("x", real=True)
    x_dummy = sp.Dummy("x", real=True)
    with pytest.raises(REFUSED):
        Derivation(x_dummy, title="successor", family=Concrete({x_dummy: x + 1})).step(
            x + 1, because="definition"
        )


def test_class4_same_name_other_assumptions_proves_abs_x_equals_x():
    x_real = sp.Symbol("x", real=True)
    x_nonneg = sp.Symbol("x", nonnegative=True)
    with pytest.raises(REFUSED):
        Derivation(
            sp.Abs(x_real), title="absolute value", family=Concrete({x_nonneg: sp.Abs(x_real)})
        ).step(x_nonneg, because="drop the bars")


def test_class4_symbol_named_elbo_proves_elbo_geq_0():
    fake_elbo = sp.Symbol("ELBO", nonnegative=True)
    with pytest.raises(REFUSED):
        Derivation(fake_elbo, title="ELBO sign", family=FiniteLatent(K=3)).bound(
            0, gap=Nonneg.by_assumptions(fake_elbo)
        )


def test_class4_symbol_printed_like_the_kl_proves_kl_leq_0():
    fake_kl = sp.Symbol(r"\mathrm{KL}\left(q(z) \,\|\, p(z)\right)", negative=True)
    with pytest.raises(REFUSED):
        Derivation(fake_kl, title="KL sign", family=FiniteLatent(K=3)).bound(
            0, relation="<=", gap=Nonneg.by_assumptions(-fake_kl)
        )


def test_class4_symbol_printed_like_the_log_evidence_proves_log_p_geq_0():
    fake_log_px = sp.Symbol(r"\log p(x)", nonnegative=True)  # prints like log p(x)
    with pytest.raises(REFUSED):
        Derivation(fake_log_px, title="log-evidence").bound(
            0, gap=Nonneg.by_assumptions(fake_log_px)
        )


def neg_claim(sym, **kw):
    """``sym <= 0`` for a symbol declared negative (its certificate: the assumptions)."""
    return Derivation(sym, title="sign", **kw).bound(
        0, relation="<=", gap=Nonneg.by_assumptions(-sym)
    )


@pytest.mark.parametrize(
    "name",
    ["p(x)\u200b", r"p(x)_{}", "\U0001d45d(\U0001d465)", r"\textrm{p}(x)", r"\text{p(x)}"],
    ids=["zero-width-space", "empty-subscript", "math-italic-unicode", "textrm", "text"],
)
def test_class4_lookalikes_of_the_evidence_prove_p_x_leq_0(name):
    with pytest.raises(REFUSED):
        neg_claim(sp.Symbol(name, negative=True))


@pytest.mark.parametrize(
    "name",
    ["\u2112(q)", r"\mathscr{L}(q)", r"\unicode{x2112}(q)"],
    ids=["unicode-script-L", "mathscr", "mathjax-unicode"],
)
def test_class4_lookalikes_of_the_elbo_reverse_the_bound(name):
    fake_l = sp.Symbol(name, real=True)
    t = sp.Symbol("t", real=True)
    with pytest.raises(REFUSED):
        d = Derivation(
            fake_l, title="ELBO above", family=Concrete({fake_l: sp.log(px) + t**2})
        ).bound(sp.log(px), gap=Nonneg.by_assumptions(t**2))
        glue_math("seal-lookalike-elbo", d.equation())


@pytest.mark.parametrize(
    "name", ["\u00bd", r"\frac{1}{2}", r"\mathbb{1}"], ids=["unicode-half", "frac", "mathbb-1"]
)
def test_class4_lookalikes_of_numbers_prove_a_number_leq_0(name):
    with pytest.raises(REFUSED):
        neg_claim(sp.Symbol(name, negative=True))


def test_class4_lookalike_of_the_imaginary_unit_proves_i_squared_geq_0():
    fake_i = sp.Symbol(r"\imath", real=True)
    with pytest.raises(REFUSED):
        Derivation(fake_i**2, title="square").bound(0, gap=Nonneg.by_assumptions(fake_i**2))


@pytest.mark.parametrize(
    "name",
    [r"\hphantom{g}", r"\vphantom{g}", r"\textcolor{white}{g}", r"\cancel{g}"],
)
def test_class4_invisible_or_struck_symbol_names_prove_2_geq_3(name):
    # 2 g >= 3 g for g < 0; with g invisible the page shows  2 >= 3
    g = sp.Symbol(name, negative=True)
    with pytest.raises(REFUSED):
        Derivation(2 * g, title="numbers").bound(3 * g, gap=Nonneg.by_assumptions(-g))


def test_class4_wild_and_indexed_print_like_family_parameters():
    fam = FiniteLatent(K=3)
    for fake_q1 in (sp.Wild("q_1", negative=True), sp.IndexedBase("q", negative=True)[1]):
        with pytest.raises(REFUSED):
            Derivation(-fake_q1, title="probability", family=fam).bound(
                0, gap=Nonneg.by_assumptions(-fake_q1)
            )


def test_class4_symbol_printed_like_a_family_parameter():
    fake_q1 = sp.Symbol("q_{1}", negative=True)  # prints like the probability q_1
    with pytest.raises(REFUSED):
        Derivation(-fake_q1, title="probability", family=FiniteLatent(K=3)).bound(
            0, gap=Nonneg.by_assumptions(-fake_q1)
        )


def test_class4_symbol_printed_like_the_elbo_defined_above_log_p():
    # prints as \mathcal{L}(q); glued, the definition is not on the page
    fake_l = sp.Symbol(r"\mathcal{L}(q)", real=True)
    t = sp.Symbol("t", real=True)
    with pytest.raises(REFUSED):
        d = Derivation(
            fake_l, title="ELBO above", family=Concrete({fake_l: sp.log(px) + t**2})
        ).bound(sp.log(px), gap=Nonneg.by_assumptions(t**2))
        glue_math("seal-fake-elbo", d.equation())


def test_class4_verdict_states_the_positivity_it_relies_on():
    x = sp.Symbol("x", positive=True)
    try:
        d = Derivation(x, title="x is non-negative").bound(0, gap=Nonneg.by_assumptions(x))
    except REFUSED:
        return
    v = d.verdict()
    assert any(s in v for s in ("positive", "> 0", "0 <", r"\geq 0", ">= 0")), v


# ============================================================================ class 5
# Displayed names: renaming may not change how a notation object or a family parameter
# prints, nor make a symbol print as a number or another symbol.


def test_class5_rename_the_kl_to_0_shows_a_tight_bound():
    with pytest.raises(REFUSED):
        Derivation(
            sp.log(px), title="tight", family=FiniteLatent(K=3), latex_names={KL_post: "0"}
        ).step(ELBO + KL_post, because="evidence identity")


def test_class5_rename_a_family_parameter_shows_variance_1():
    lg = LinearGaussian()
    with pytest.raises(REFUSED):
        Derivation(
            expectation((z - lg.m) ** 2), title="variance", family=lg, latex_names={lg.v: "1"}
        ).step(lg.v, because="variance of $q$")


def test_class5_swap_evidence_and_elbo_names_shows_the_reversed_bound():
    # prints  log e^{L(q)} = log p(x) + KL >= log p(x),  i.e. L(q) >= log p(x), "on 2 families"
    names = {px: r"e^{\mathcal{L}(q)}", ELBO: r"\log p(x)"}
    with pytest.raises(REFUSED):
        d = (
            Derivation(sp.log(px), title="ELBO", family=FiniteLatent(K=3), latex_names=names)
            .step(ELBO + KL_post, because="evidence identity")
            .bound(ELBO, gap=kl_gap)
        )
        d.recheck(LinearGaussian())


@pytest.mark.parametrize(
    "name",
    [r"\phantom{g}", r"\hphantom{g}", r"\color{white}{g}", r"\textcolor{white}{g}"],
)
def test_class5_invisible_display_name_proves_2_geq_3(name):
    g = sp.Symbol("g", negative=True)  # 2 g >= 3 g; g invisible: "2 >= 3"
    with pytest.raises(REFUSED):
        Derivation(2 * g, title="numbers", latex_names={g: name}).bound(
            3 * g, gap=Nonneg.by_assumptions(-g)
        )


def test_class5_display_name_lookalike_of_a_family_parameter():
    g = sp.Symbol("g", negative=True)  # prints like the probability q_1: "q_1 <= 0"
    with pytest.raises(REFUSED):
        neg_claim(g, family=FiniteLatent(K=3), latex_names={g: r"\mathit{q}_{1}"})


def test_class5_rename_a_symbol_to_a_number():
    t = sp.Symbol("t", positive=True)
    with pytest.raises(REFUSED):
        Derivation(t, title="sign", latex_names={t: "-1"}).bound(0, gap=Nonneg.by_assumptions(t))


def test_class5_rename_a_symbol_to_the_imaginary_unit():
    x = sp.Symbol("x", real=True)
    with pytest.raises(REFUSED):
        Derivation(x**2, title="square", latex_names={x: "i"}).bound(
            0, gap=Nonneg.by_assumptions(x**2)
        )


def test_class5_rename_one_symbol_to_print_as_another():
    # b printed as "a": (a - b)^2 >= 0 shows as (a - a)^2 >= 0 ... and a - b = c as a - a = c
    c = sp.Symbol("c", real=True)
    with pytest.raises(REFUSED):
        Derivation(
            a - b, title="difference", family=Concrete({c: a - b}), latex_names={b: "a"}
        ).step(c, because="definition of $c$")


# ============================================================================ class 6
# Derivatives only with respect to parameters in the family's explicit form; never a
# density, a notation object or the latent variable; the same in given=.


def test_class6_derivative_in_a_density_finite():
    with pytest.raises(REFUSED):
        Derivation(sp.Derivative(ELBO, qz), title="stationary", family=FiniteLatent(K=3)).step(
            0, because="the ELBO is stationary in $q(z)$"
        )


def test_class6_derivative_in_a_density_linear_gaussian():
    with pytest.raises(REFUSED):
        Derivation(sp.Derivative(ELBO, qz), title="stationary", family=LinearGaussian()).step(
            0, because="the ELBO is stationary in $q(z)$"
        )


def test_class6_derivative_in_a_parameter_of_another_family():
    lg = LinearGaussian()  # m is not a parameter of the finite family: "dL/dm = 0"
    with pytest.raises(REFUSED):
        Derivation(sp.Derivative(ELBO, lg.m), title="optimum", family=FiniteLatent(K=3)).step(
            0, because="the ELBO is stationary in $m$"
        )


def test_class6_derivative_in_a_parameter_absent_from_the_explicit_form():
    c = sp.Symbol("c", real=True)
    with pytest.raises(REFUSED):
        Derivation(sp.Derivative(ELBO, c), title="optimum", family=LinearGaussian()).step(
            0, because="the ELBO is stationary in $c$"
        )


def test_class6_derivative_in_the_latent_variable():
    for fam in (FiniteLatent(K=3), LinearGaussian()):
        with pytest.raises(REFUSED):
            Derivation(sp.Derivative(ELBO, z), title="flat in z", family=fam).step(
                0, because="the ELBO does not change with $z$"
            )
    with pytest.raises(REFUSED):
        Derivation(
            integral(qz * sp.Derivative(sp.log(qz), z)), title="score", family=LinearGaussian()
        ).step(0, because="the score has mean zero")


def test_class6_derivative_in_a_notation_object_on_concrete():
    with pytest.raises(REFUSED):
        Derivation(sp.Derivative(ELBO + KL_post, KL_post), title="dKL").step(1, because="linear")
    with pytest.raises(REFUSED):
        Derivation(sp.Derivative(sp.log(px), px), title="dlogp").step(1 / px, because="d log")


def test_class6_derivative_in_a_density_as_given():
    # shown beside every step as "using dL/dq(z) = 0"
    with pytest.raises(REFUSED):
        d = Derivation(
            sp.log(px),
            title="stationary",
            family=FiniteLatent(K=3),
            given={sp.Derivative(ELBO, qz): 0},
        )
        d.step(ELBO + KL_post, because="evidence identity")


def test_class6_derivative_in_a_foreign_parameter_as_a_step_given():
    lg = LinearGaussian()
    d = Derivation(sp.log(px), title="stationary", family=FiniteLatent(K=3))
    with pytest.raises(REFUSED):
        d.step(ELBO + KL_post, because="evidence identity", given={sp.Derivative(ELBO, lg.m): 0})


def test_class6_derivative_in_a_normal_object():
    lg = LinearGaussian()
    dens = Normal(lg.x, 0, 1)
    with pytest.raises(REFUSED):
        Derivation(sp.Derivative(sp.log(dens), dens), title="d log N").step(1 / dens, because="x")


# ============================================================================ class 7
# Reasons and titles: the reason of a bound is the certificate's rule; no reason or
# title can inject markup (new blocks, display math, a fake verdict, unbalanced braces).

FAKE_VERDICT = "verified on 3 families"


def test_class7_reason_injects_a_row_into_the_aligned_block():
    payload = r"ok} \\ \leq\ & 0 && \text{forged"
    assert_no_injection(lambda: honest_one_step(because=payload), fakes=[r"\leq\ & 0"])


def test_class7_reason_injects_a_row_from_inline_math():
    payload = r"$x} \\ \leq\ & 0 && \text{forged$"
    assert_no_injection(lambda: honest_one_step(because=payload), fakes=[r"\leq\ & 0"])


def test_class7_reason_injects_display_math():
    payload = r"ok $$\mathcal{L}(q) \geq \log p(x)$$"
    assert_no_injection(lambda: honest_one_step(because=payload))


def test_class7_reason_injects_a_fake_verdict_line():
    payload = f"ok\n\n*ELBO is an upper bound: 9 steps {FAKE_VERDICT}.*"
    assert_no_injection(lambda: honest_one_step(because=payload), fakes=[FAKE_VERDICT])


def test_class7_reason_closes_the_aligned_block():
    payload = (
        r"ok}\end{aligned}$$ $$\begin{aligned}& \mathcal{L}(q) \\ \geq\ & \log p(x) "
        r"&& \text{forged"
    )
    assert_no_injection(lambda: honest_one_step(because=payload))


def test_class7_reason_with_unbalanced_braces():
    assert_no_injection(lambda: honest_one_step(because="ok}}"))
    assert_no_injection(lambda: honest_one_step(because="ok{"))


def test_class7_title_injects_a_fake_verdict():
    title = f"log of a square.*\n\n*ELBO is an upper bound: 9 steps {FAKE_VERDICT}"
    assert_no_injection(lambda: honest_one_step(title=title), fakes=[FAKE_VERDICT])


def test_class7_title_injects_display_math_and_a_heading():
    assert_no_injection(
        lambda: honest_one_step(title=r"log $$\mathcal{L}(q) \geq \log p(x)$$ square")
    )
    assert_no_injection(lambda: honest_one_step(title="log\n# The ELBO is an upper bound"))


def test_class7_certificate_reason_injects_a_row():
    x = sp.Symbol("x", real=True)
    payload = r"ok} \\ \leq\ & -1 && \text{forged"

    def build():
        return Derivation(x**2, title="log of a square").bound(
            0, gap=Nonneg.by_assumptions(x**2, payload)
        )

    assert_no_injection(build, fakes=[r"\leq\ & -1"])


def test_class7_lemma_reason_injects_a_fake_verdict():
    x = sp.Symbol("x", real=True)
    payload = f"a square\n\n*ELBO is an upper bound: 9 steps {FAKE_VERDICT}.*"

    def build():
        cert = convex_minimum(x**2, x, payload)
        return Derivation(x**2, title="log of a square").bound(0, gap=cert)

    assert_no_injection(build, fakes=[FAKE_VERDICT])


def test_class7_total_cannot_replace_the_certificates_rule():
    # Nonneg.total(..., reason=) puts the author's "log is convex" where the rule belongs
    fam = FiniteLatent(K=3)
    ys = sp.symbols("y_1:4", positive=True)
    mean_y = sp.Add(*(qk * yk for qk, yk in zip(fam.q, ys, strict=True)))
    mean_log_y = sp.Add(*(qk * sp.log(yk) for qk, yk in zip(fam.q, ys, strict=True)))
    try:
        cert = Nonneg.total([jensen_log_certificate(fam.q, ys)], reason="because log is convex")
        d = Derivation(sp.log(mean_y), title="Jensen", family=fam).bound(mean_log_y, gap=cert)
    except REFUSED:
        return
    md = d._repr_markdown_()
    assert "Jensen's inequality for the concave" in md, md


def test_class7_by_assumptions_reason_cannot_replace_the_rule():
    # the rule is "the assumptions on its symbols"; the author's words may only be added
    x = sp.Symbol("x", real=True)
    try:
        d = Derivation(x**2, title="square").bound(
            0, gap=Nonneg.by_assumptions(x**2, "Cauchy-Schwarz inequality")
        )
    except REFUSED:
        return
    md = d._repr_markdown_()
    assert "assumption" in md, md


# ============================================================================ class 8
# After the check: nothing can be changed without being checked again; what is
# rendered is exactly what was checked.


def test_class8_append_a_false_step():
    assert_mutation_refused_or_inert(
        lower_bound(), lambda d: d.steps.append(Step(sp.log(px), "trust me", ">="))
    )


def test_class8_replace_a_step():
    assert_mutation_refused_or_inert(
        lower_bound(), lambda d: d.steps.__setitem__(-1, Step(sp.log(px) + 1, "x", ">="))
    )


def test_class8_assign_the_steps():
    assert_mutation_refused_or_inert(
        lower_bound(), lambda d: setattr(d, "steps", [Step(ELBO, "upper bound", ">=")])
    )


def test_class8_reorder_the_steps_reverses_the_bound():
    # log p(x) >= ELBO = ELBO + KL
    assert_mutation_refused_or_inert(lower_bound(), lambda d: d.steps.reverse())


def test_class8_replace_the_start():
    assert_mutation_refused_or_inert(lower_bound(), lambda d: setattr(d, "start", ELBO))


def test_class8_flip_the_relation_of_a_step():
    # log p(x) = ELBO + KL <= ELBO
    def flip(d):
        d.steps[-1].relation = "<="

    assert_mutation_refused_or_inert(lower_bound(), flip)


def test_class8_edit_the_expression_of_a_step():
    def edit(d):
        d.steps[-1].expr = sp.log(px) + KL_post

    assert_mutation_refused_or_inert(lower_bound(), edit)


def test_class8_edit_the_reason_or_given_of_a_step():
    def reason(d):
        d.steps[-1].because = "log is convex"

    def given(d):
        d.steps[0].given = {KL_post: 0}

    assert_mutation_refused_or_inert(lower_bound(), reason)
    assert_mutation_refused_or_inert(lower_bound(), given)


def test_class8_claim_more_families():
    assert_mutation_refused_or_inert(
        lower_bound(), lambda d: d.families.extend([FiniteLatent(K=4), LinearGaussian()])
    )
    assert_mutation_refused_or_inert(
        lower_bound(), lambda d: setattr(d, "family", LinearGaussian())
    )
    assert_mutation_refused_or_inert(
        lower_bound(), lambda d: setattr(d, "families", [FiniteLatent(K=5), LinearGaussian()])
    )


def test_class8_rename_after_the_check():
    assert_mutation_refused_or_inert(
        lower_bound(), lambda d: d.latex_names.__setitem__(KL_post, "0")
    )


def test_class8_retitle_with_a_fake_verdict():
    d = lower_bound()
    try:
        d.title = f"ELBO.*\n\n*ELBO is an upper bound: 9 steps {FAKE_VERDICT}"
    except MUTATION_REFUSED:
        return
    for render in (d.verdict, d._repr_markdown_, lambda: repr(d)):
        try:
            out = render()
        except REFUSED:
            continue
        assert FAKE_VERDICT not in out, out


# ================================================================== reversed ELBO etc.
# ELBO >= log p(x) by routes not covered above; glue_math/typeset; conclude; recheck.


def test_reversed_elbo_by_redefining_the_elbo_in_concrete():
    # ELBO := log p(x) + t^2 contradicts the ELBO's definition; glued without the "where"
    t = sp.Symbol("t", real=True)
    with pytest.raises(REFUSED):
        d = Derivation(ELBO, title="ELBO above", family=Concrete({ELBO: sp.log(px) + t**2})).bound(
            sp.log(px), gap=Nonneg.by_assumptions(t**2)
        )
        glue_math("seal-reversed", d.equation())


def test_tight_bound_by_redefining_the_elbo_in_concrete():
    with pytest.raises(REFUSED):
        d = Derivation(ELBO, title="tight", family=Concrete({ELBO: sp.log(px)})).step(
            sp.log(px), because="the bound is tight"
        )
        glue_math("seal-tight", d.equation())


def test_glue_math_refuses_a_bare_relation():
    with pytest.raises(REFUSED):
        glue_math("seal-ge", sp.Ge(ELBO, sp.log(px), evaluate=False))
    with pytest.raises(REFUSED):
        glue_math("seal-eq", sp.Eq(ELBO, sp.log(px), evaluate=False))
    with pytest.raises(REFUSED):
        glue_math("seal-le", sp.Le(sp.log(px), ELBO, evaluate=False))


def test_glue_math_refuses_a_latex_relation():
    for tex in (
        r"\mathcal{L}(q) \geq \log p(x)",
        r"\mathcal{L}(q) = \log p(x)",
        r"\mathrm{KL} \le 0",
    ):
        with pytest.raises(REFUSED):
            glue_math("seal-tex", tex)
    with pytest.raises(REFUSED):
        glue_math("seal-latexmath", LatexMath(r"\mathcal{L}(q) \geq \log p(x)"))


def test_glue_math_refuses_a_symbol_whose_name_states_a_relation():
    for name in (
        r"\mathcal{L}(q) \geq \log p(x)",
        "\u2112(q) \u2265 log p(x)",
        r"\renewcommand{\leq}{\geq} g",  # would flip every later bound on the page
    ):
        with pytest.raises(REFUSED):
            glue_math("seal-named-relation", sp.Symbol(name))


def test_glue_math_refuses_an_object_that_only_looks_like_a_derivation():
    fake = types.SimpleNamespace(latex=lambda reasons=True: r"\mathcal{L}(q) \geq \log p(x)")
    with pytest.raises(REFUSED):
        glue_math("seal-duck", fake)


def test_typeset_checks_two_sympy_sides():
    with pytest.raises(StepError):
        typeset((ELBO, sp.log(px)))
    x = sp.Symbol("x", real=True)
    with pytest.raises(StepError):
        typeset((sp.log(x**2), 2 * sp.log(x)))  # false for x < 0


def test_typeset_refuses_an_unchecked_inequality():
    with pytest.raises(REFUSED):
        typeset((ELBO, sp.log(px)), relation=r"\geq")


def test_typeset_refuses_a_sympy_side_related_to_a_latex_string():
    with pytest.raises(REFUSED):
        typeset((KL_post, "0"))  # "KL = 0", nothing checked
    with pytest.raises(REFUSED):
        typeset((ELBO, r"\log p(x)"), relation=r"\geq")


def test_typeset_refuses_notation_as_a_latex_name_of_a_computed_value():
    # the "name" on the left is the notation's log p(x): "log p(x) = L(q)", never checked
    with pytest.raises(REFUSED):
        typeset((r"\log p(x)", ELBO))


def test_typeset_refuses_a_relation_smuggled_into_a_name_or_a_note():
    with pytest.raises(REFUSED):
        typeset((r"\mathcal{L}(q) \geq \log p(x),\ n", 3))
    with pytest.raises(REFUSED):
        typeset((r"n", 3, r"$\mathcal{L}(q) \geq \log p(x)$"))


def test_typeset_refuses_markup_in_the_relation():
    with pytest.raises(REFUSED):
        typeset((r"n", 3), relation=r"= 3 \\ \mathcal{L}(q) &\geq \log p(x) \\ n &=")


def test_typeset_refuses_markup_in_a_name_or_a_note():
    with pytest.raises(REFUSED):  # a row injected by the name
        typeset((r"n \\ \mathcal{L}(q) &\geq \log p(x) \\ m", 3))
    with pytest.raises(REFUSED):  # a row injected by the note
        typeset((r"n", 3, r"x} \\ \mathcal{L}(q) &\geq \log p(x) && \text{"))
    with pytest.raises(REFUSED):  # a macro that flips every later bound on the page
        typeset((r"n", 3, r"$\renewcommand{\leq}{\geq}$"))
    with pytest.raises(REFUSED):
        typeset((r"\renewcommand{\leq}{\geq} n", 3))


def test_typeset_refuses_a_family_that_redefines_the_elbo():
    with pytest.raises(REFUSED):
        typeset((ELBO, sp.log(px)), family=Concrete({ELBO: sp.log(px)}))


def test_conclude_refuses_another_end():
    d = lower_bound()
    with pytest.raises(REFUSED):
        d.conclude(ELBO + KL_post)  # the expression before the bound
    with pytest.raises(REFUSED):
        d.conclude(sp.Ge(ELBO, sp.log(px), evaluate=False))


def test_recheck_cannot_add_a_family_by_a_step_true_only_there():
    fam2 = FiniteLatent(K=2)
    d = Derivation(integral(qz), title="two states", family=fam2).step(
        fam2.q[0] + fam2.q[1], because="sum over the states"
    )
    with pytest.raises(StepError):
        d.recheck(FiniteLatent(K=3))
    assert d.verdict().endswith("(K=2) only")


# ================================================================ legitimate use
# Honest chapter code must keep working.


def test_legit_evidence_identity_on_two_families():
    d = (
        Derivation(sp.log(px), title="evidence identity", family=FiniteLatent(K=3))
        .step(sp.log(px) * integral(qz), because=r"multiply by $\int q(z)\, dz = 1$")
        .step(integral(qz * sp.log(px)), because=r"$\log p(x)$ does not depend on $z$")
        .step(
            integral(qz * sp.log(pxz / pz_x)),
            because=r"Bayes' rule: $p(x) = p(x, z) / p(z \mid x)$",
        )
        .step(
            integral(qz * sp.log(sp.Mul(pxz / qz, qz / pz_x, evaluate=False))),
            because="multiply and divide by $q(z)$",
        )
        .step(
            integral(qz * sp.log(pxz / qz)) + integral(qz * sp.log(qz / pz_x)),
            because="log of a product is a sum of logs",
        )
        .step(ELBO + KL_post, because="definitions {eq}`eq-elbo-def` and {eq}`eq-kl-post-def`")
    )
    d.recheck(LinearGaussian())
    assert d.n_verified == 6
    assert "2 families" in d.verdict()
    md = d._repr_markdown_()
    assert "{eq}`eq-elbo-def`" in md and md.rstrip().endswith(".*")
    glue_math("seal-legit-identity", d)
    glue_math("seal-legit-identity-eq", d.equation())


def test_legit_lower_bound_with_the_gibbs_certificate():
    d = lower_bound().recheck(LinearGaussian())
    assert d.verdict() == (
        "ELBO is a lower bound: 2 steps verified on 2 families: the finite family (K=3) "
        "and the linear-Gaussian family"
    )
    assert "Gibbs" in d._repr_markdown_()
    glue_math("seal-legit-lower-bound", d.equation())


def test_legit_jensen_bound_via_jensen_gap_certificate():
    d = (
        Derivation(sp.log(px), title="ELBO via Jensen", family=FiniteLatent(K=3))
        .step(sp.log(integral(pxz)), because=r"marginalisation: $p(x) = \int p(x, z)\, dz$")
        .step(
            sp.log(integral(sp.Mul(qz, pxz / qz, evaluate=False))),
            because="multiply and divide by $q(z)$",
        )
        .bound(integral(qz * sp.log(pxz / qz)), gap=jensen_gap_certificate)
        .step(ELBO, because="definition of the ELBO {eq}`eq-elbo-def`")
    )
    d.recheck(FiniteLatent(K=4), LinearGaussian())
    assert "3 families" in d.verdict()
    assert "concave" in d._repr_markdown_()


def test_legit_jensen_certificates_on_finite_weights():
    fam = FiniteLatent(K=3)
    q = fam.q
    ys = sp.symbols("y_1:4", positive=True)
    yr = sp.symbols("y_1:4", real=True)
    mean_y = sp.Add(*(qk * yk for qk, yk in zip(q, ys, strict=True)))
    mean_log_y = sp.Add(*(qk * sp.log(yk) for qk, yk in zip(q, ys, strict=True)))
    Derivation(sp.log(mean_y), title="Jensen for log", family=fam).bound(
        mean_log_y, gap=jensen_log_certificate(q, ys)
    )
    mean_yr = sp.Add(*(qk * yk for qk, yk in zip(q, yr, strict=True)))
    Derivation(
        sp.Add(*(qk * yk**2 for qk, yk in zip(q, yr, strict=True))),
        title="Jensen's inequality for the square",
        family=fam,
    ).bound(mean_yr**2, gap=jensen_square_certificate(q, yr))
    # the wrong direction is still refused
    with pytest.raises(StepError):
        Derivation(sp.log(mean_y), title="wrong way", family=fam).bound(
            mean_log_y, gap=jensen_log_certificate(q, ys), relation="<="
        )


def test_legit_gibbs_chain_with_family_certificate():
    fam = FiniteLatent(K=3)
    q, pi = fam.q, fam.pi
    states = range(3)
    d = (
        Derivation(KL_prior, title="Gibbs' inequality", family=fam)
        .step(sp.Add(*[q[k] * sp.log(q[k] / pi[k]) for k in states]), because="definition")
        .step(
            -sp.Add(*[q[k] * sp.log(pi[k] / q[k]) for k in states]),
            because=r"$\log \frac{a}{b} = -\log \frac{b}{a}$",
        )
        .step(
            sp.Add(*[q[k] * (pi[k] / q[k] - 1 - sp.log(pi[k] / q[k])) for k in states]),
            because=r"add $\sum_k \pi_k - \sum_k q_k = 0$",
        )
        .bound(0, gap=fam.kl_nonneg(q, pi))
    )
    assert d.n_verified == 4
    general = Derivation(KL_prior, title="Gibbs (family certificate)", family=fam)
    general.bound(0, gap=lambda f: f.kl_q_prior_nonneg())
    general.recheck(FiniteLatent(K=6), LinearGaussian())
    assert "3 families" in general.verdict()


def test_legit_concrete_positive_symbols_defined_as_positive_densities():
    # chapter 2: display symbols N_1, N_2 stand for Gaussian densities (shown with "where")
    m1, m2 = sp.symbols("m_1 m_2", real=True)
    v1, v2 = sp.symbols("v_1 v_2", positive=True)
    n1, n2 = sp.symbols("N_1 N_2", positive=True)
    log_ratio = sp.log(v2 / v1) / 2 + (y - m2) ** 2 / (2 * v2) - (y - m1) ** 2 / (2 * v1)
    because = r"$\log \mathcal{N}(y; m, v) = -\frac{(y - m)^2}{2v} - \frac{1}{2}\log(2\pi v)$"
    d = Derivation(
        sp.log(n1) - sp.log(n2),
        title="log-ratio of two Gaussian densities",
        family=Concrete({n1: normal_pdf(y, m1, v1), n2: normal_pdf(y, m2, v2)}),
    ).step(log_ratio, because=because)
    assert "as defined" in d.verdict()
    # the same with the displayed densities themselves (no display symbols to rename)
    e = Derivation(
        sp.log(Normal(y, m1, v1)) - sp.log(Normal(y, m2, v2)),
        title="log-ratio of two Gaussian densities",
    ).step(log_ratio, because=because)
    assert r"\mathcal{N}" in e.latex()
    # a positive symbol defined as a positive expression, then used as positive
    s = sp.Symbol("s", positive=True)
    Derivation(b + s, title="shift", family=Concrete({s: a**2 + 1})).bound(
        b, gap=Nonneg.by_assumptions(s, "a positive quantity")
    )


def test_legit_exact_posterior_with_display_symbols_for_normals():
    # chapter 1: the joint and the evidence of the linear-Gaussian model as display symbols
    # standing for Gaussian densities (the book's own p(x, z), p(x) cannot be redefined)
    lg = LinearGaussian()
    x, w, bb, s = lg.x, lg.w, lg.b, lg.s
    joint, evidence = sp.symbols("P_xz P_x", positive=True)
    meaning = {
        joint: Normal(z, 0, 1) * Normal(x, w * z + bb, s**2),
        evidence: Normal(x, bb, w**2 + s**2),
    }
    m_post, v_post = lg.posterior()
    d = (
        Derivation(
            sp.log(joint) - sp.log(evidence), title="exact posterior", family=Concrete(meaning)
        )
        .step(
            -(z**2) / 2
            - (x - w * z - bb) ** 2 / (2 * s**2)
            + (x - bb) ** 2 / (2 * (w**2 + s**2))
            - sp.log(2 * sp.pi * s**2 / (w**2 + s**2)) / 2,
            because="logs of the Gaussian densities",
        )
        .step(
            -((z - m_post) ** 2) / (2 * v_post) - sp.log(2 * sp.pi * v_post) / 2,
            because="complete the square in $z$",
        )
        .step(sp.log(Normal(z, m_post, v_post)), because="log of a Gaussian density")
    )
    assert d.n_verified == 3


def test_legit_evidence_of_the_linear_gaussian_model():
    lg = LinearGaussian()
    x, w, bb, s = lg.x, lg.w, lg.b, lg.s
    d = (
        Derivation(integral(pxz), title="evidence of the linear-Gaussian model", family=lg)
        .step(
            integral(Normal(z, 0, 1) * Normal(x, w * z + bb, s**2)),
            because=r"$p(x, z) = p(z)\, p(x \mid z)$",
        )
        .step(Normal(x, bb, w**2 + s**2), because="Gaussian integral over $z$")
    )
    assert d.n_verified == 2
    glue_math("seal-legit-evidence", d.equation())


def test_legit_convex_minimum_and_lemma():
    lemma = log_tangent_lemma()
    assert lemma.variable.is_positive
    x = sp.Symbol("x", real=True)
    cert = convex_minimum(x**2 - 2 * x, x, "a parabola")
    Derivation(x**2 - 2 * x, title="parabola").bound(-1, gap=cert)
    t = sp.Symbol("t", positive=True)
    Derivation(t - 1, title="tangent line of log").bound(sp.log(t), gap=lemma)


def test_legit_derivative_in_a_parameter_of_the_explicit_form():
    lg = LinearGaussian()
    d = Derivation(sp.Derivative(ELBO, lg.m), title="gradient of the ELBO in m", family=lg).step(
        -lg.m + lg.w * (lg.x - lg.w * lg.m - lg.b) / lg.s**2, because="differentiate"
    )
    assert d.n_verified == 1


def test_legit_pathwise_gradient_with_gaussian_integrals():
    # chapter 8: derivatives in mu and sigma of Gaussian integrals, display symbols
    zz, eps, mu = sp.symbols("z epsilon mu", real=True)
    sigma = sp.Symbol("sigma", positive=True)
    nz = sp.Symbol("N_z", positive=True)
    ne = sp.Symbol("N_epsilon", positive=True)
    fam = GaussianIntegrals({nz: normal_pdf(zz, mu, sigma**2), ne: normal_pdf(eps, 0, 1)})
    z_line, eps_line = (zz, -sp.oo, sp.oo), (eps, -sp.oo, sp.oo)
    d = (
        Derivation(
            sp.Derivative(sp.Integral(nz * zz**2, z_line), mu),
            title="pathwise gradient of E[z^2] in mu",
            family=fam,
        )
        .step(
            sp.Derivative(sp.Integral(ne * (mu + sigma * eps) ** 2, eps_line), mu),
            because=r"change of variables $z = \mu + \sigma \varepsilon$",
        )
        .step(sp.Integral(ne * 2 * (mu + sigma * eps), eps_line), because="chain rule")
        .step(2 * mu, because=r"$\mathbb{E}[\varepsilon] = 0$")
    )
    assert d.n_verified == 3


def test_legit_growing_a_derivation_after_rendering():
    d = Derivation(sp.log(px), title="grow", family=FiniteLatent(K=3))
    d.step(ELBO + KL_post, because="evidence identity")
    first = d._repr_markdown_()
    d.bound(ELBO, gap=kl_gap)  # a new checked step, through the API
    assert d.n_verified == 2 and d._repr_markdown_() != first
    assert r"\geq" in d.latex()


def test_legit_typeset_checked_rows_and_computed_values():
    x = sp.Symbol("x", positive=True)
    typeset((sp.log(x**2), 2 * sp.log(x)))
    typeset((r"\text{gap (nats)}", 0.2531))
    glue_math("seal-legit-expr", sp.log(x) + 1)  # an expression, not a relation
