"""The book's LaTeX printer changes how an expression is printed, never what it is."""

import sympy as sp

from vaebook.symbolic import notation as N
from vaebook.symbolic.derivation import Derivation
from vaebook.symbolic.families import FiniteLatent
from vaebook.symbolic.printing import book_latex, latex_lines, tex_width

m = sp.Symbol("m", real=True)
z = sp.Symbol("z", real=True)


def test_log_of_a_symbol_has_no_parentheses():
    assert book_latex(sp.log(N.px)) == r"\log p(x)"
    assert r"\left(" not in book_latex(sp.log(N.px))
    assert book_latex(sp.log(N.pxz / N.qz)) == r"\log \frac{p(x, z)}{q(z)}"
    assert book_latex(sp.log(z**2 + 1)) == r"\log\left(z^{2} + 1\right)"


def test_positive_terms_first():
    assert book_latex((z - m) ** 2) == r"\left(z - m\right)^{2}"
    assert book_latex(sp.log(N.px) - N.KL_post).startswith(r"\log p(x) - ")
    a, b = sp.symbols("a b")
    assert book_latex(-a - b) == "- a - b"


def test_long_sums_break_into_lines_that_fit():
    q = sp.symbols("q_1:7", positive=True)
    long = sp.Add(*(qk * sp.log(qk / (qk + 1)) for qk in q))
    lines = latex_lines(long, width=40)
    assert len(lines) > 1
    assert all(tex_width(line) <= 40 for line in lines)
    assert lines[1].startswith(("+ ", "- "))


def test_rendered_derivation_still_verifies_and_uses_the_printer():
    fam = FiniteLatent(K=3)
    d = Derivation(sp.log(N.px), title="evidence identity", family=fam)
    d.step(sp.log(N.px) * N.integral(N.qz), because=r"multiply by $\int q(z)\, dz = 1$")
    d.step(N.ELBO + N.KL_post, because="definitions {eq}`eq-elbo-def` and {eq}`eq-kl-post-def`")
    md = d._repr_markdown_()
    assert r"\log p(x)" in md and r"\log{\left(" not in md
    assert "- [2] definitions {eq}`eq-elbo-def`" in md  # MyST reference, rendered as a number
    assert "(eq-elbo-def)" in d.latex()  # inside math: the label as text
    assert d.verdict().startswith("evidence identity: 2 steps verified")


def test_tex_width_unbraced_command_subscript():
    # x_\mu is x_{\mu}: the subscript is the whole command, not a lone backslash
    assert tex_width(r"x_\mu") == tex_width(r"x_{\mu}")
    assert tex_width(r"\partial_\mu\, \mathbb{E}[f(z)]") > 0


def test_typeset_wide_lhs_gets_its_own_line():
    from vaebook.chapters.display import typeset

    wide = r"\mathrm{KL}(\mathcal N(m_1, v_1) \,\|\, \mathcal N(m_2, v_2))" * 2
    tex = typeset((wide, sp.Float(0.25))).tex  # a LaTeX name stands above a number only
    assert tex.startswith(r"\begin{aligned}& " + wide + r" \\ & \quad = ")
    a, b = sp.symbols("alpha_1:3", positive=True)
    long = sp.Add(*(sp.log(a + k * b) for k in range(1, 6)))
    tex = typeset((long, long)).tex  # a checked row (trivially) with a wide SymPy side
    assert tex.startswith(r"\begin{aligned}& ")
