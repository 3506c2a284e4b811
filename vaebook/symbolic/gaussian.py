"""Exact Gaussian integrals: the one implementation the families and chapters use.

- :func:`gaussian_moment` and :func:`gaussian_expectation`: ``E[y^n]`` and ``E[poly(y)]``
  for ``y ~ N(mean, var)``, from the moments of a standard normal;
- :func:`gaussian_integral`: ``∫ polynomial × exp(quadratic)`` over the real line, only
  when the quadratic's leading coefficient is provably negative (the integral finite);
- :func:`gaussian_integrals`: iterated integrals against given Gaussian densities;
- :func:`gaussian_kl`: ``KL(N(m1, v1) || N(m2, v2))`` in closed form.

The Gaussian density itself is :func:`vaebook.symbolic.notation.normal_pdf`.
"""

from __future__ import annotations

import sympy as sp

from .notation import normal_pdf
from .printing import inline

__all__ = [
    "gaussian_moment",
    "gaussian_expectation",
    "gaussian_integral",
    "gaussian_integrals",
    "gaussian_kl",
]


def gaussian_moment(n: int, mean, var) -> sp.Expr:
    """``E[y^n]`` for ``y ~ N(mean, var)``: expand ``(mean + sqrt(var) e)^n`` and use
    ``E[e^j] = (j-1)!!`` for even ``j`` (0 for odd ``j``) of a standard normal ``e``."""
    e = sp.Symbol("e", real=True)
    poly = sp.Poly(sp.expand((mean + sp.sqrt(var) * e) ** n), e)
    return sp.expand(
        sum(c * (sp.factorial2(j - 1) if j % 2 == 0 else 0) for (j,), c in poly.terms())
    )


def gaussian_expectation(poly, y: sp.Symbol, mean, var) -> sp.Expr:
    """``E[poly(y)]`` for ``y ~ N(mean, var)``, exactly: the polynomial's coefficients
    times the moments :func:`gaussian_moment`. The one implementation of a Gaussian
    expectation of a polynomial (the families, :func:`gaussian_integral` and the
    chapters use it). Raises ``ValueError`` if ``poly`` is not a polynomial in ``y``."""
    poly = sp.expand(sp.sympify(poly))
    if not poly.is_polynomial(y):
        raise ValueError(f"not a polynomial in {inline(y)}: {inline(poly)}")
    terms = sp.Poly(poly, y).terms()
    return sp.expand(sp.Add(*(c * gaussian_moment(j, mean, var) for (j,), c in terms)))


def gaussian_integral(f, var: sp.Symbol) -> sp.Expr:
    """``∫_{-oo}^{oo} f d(var)`` exactly, for ``f`` a sum of terms
    ``polynomial(var) * exp(a var^2 + b var + c)`` with ``a < 0`` (provably).

    Each term is ``sqrt(pi/-a) exp(c - b^2/(4a)) E[polynomial(y)]`` with
    ``y ~ N(-b/(2a), -1/(2a))``, the moments from :func:`gaussian_moment`.
    Raises ``ValueError`` for any other integrand.
    """
    total = sp.Integer(0)
    for term in sp.Add.make_args(sp.expand(sp.expand_log(sp.expand(sp.sympify(f))))):
        factors = sp.Mul.make_args(term)
        exps = [u for u in factors if isinstance(u, sp.exp)]
        rest = sp.Mul(*[u for u in factors if not isinstance(u, sp.exp)])
        exponent = sp.expand(sp.Add(*[u.args[0] for u in exps]))
        if not (rest.is_polynomial(var) and exponent.is_polynomial(var)):
            raise ValueError(
                "not a polynomial times the exponential of a quadratic in "
                f"{inline(var)}: {inline(term)}"
            )
        if sp.degree(exponent, var) != 2:
            raise ValueError(f"the exponent is not quadratic in {inline(var)}: {inline(exponent)}")
        a, b, c = (exponent.coeff(var, j) for j in (2, 1, 0))
        if not a.is_negative:
            raise ValueError(
                f"cannot show the integral converges: the coefficient of {inline(var**2)} "
                f"is {inline(a)}, not provably negative"
            )
        moments = gaussian_expectation(rest, var, -b / (2 * a), -1 / (2 * a))
        total += sp.sqrt(sp.pi / -a) * sp.exp(c - b**2 / (4 * a)) * moments
    return total


def gaussian_kl(m1, v1, m2, v2) -> sp.Expr:
    """``KL(N(m1, v1) || N(m2, v2))`` in closed form (derived in the KL chapter)."""
    return (sp.log(v2 / v1) + (v1 + (m1 - m2) ** 2) / v2 - 1) / 2


def gaussian_integrals(expr, densities: dict) -> sp.Expr:
    """Evaluate every ``Integral(f, (z_j, -oo, oo), ...)`` in ``expr`` exactly, as iterated
    one-dimensional Gaussian integrals (Fubini), innermost variable first.

    ``densities`` maps each integration variable ``z_j`` to ``(mean_j, var_j)``. For each
    variable the integrand must be ``N(z_j; mean_j, var_j)`` times a polynomial in
    ``z_j`` (after expanding logarithms); its Gaussian expectation is then
    :func:`gaussian_expectation`. Anything else raises ``ValueError``.
    """

    def one(f, var):
        mean, v = densities[var]
        g = sp.expand(sp.expand_log(f / normal_pdf(var, mean, v), force=True))
        if not g.is_polynomial(var):
            raise ValueError(
                f"the integrand is not a Gaussian density in {inline(var)} times a polynomial"
            )
        return gaussian_expectation(g, var, mean, v)

    def evaluate(integral):
        f = integral.function
        for lim in integral.limits:
            if len(lim) != 3 or lim[1] != -sp.oo or lim[2] != sp.oo:
                raise ValueError(f"only integrals over the real line: {lim}")
            f = one(f, lim[0])
        return f

    return sp.sympify(expr).replace(lambda e: isinstance(e, sp.Integral), evaluate)
