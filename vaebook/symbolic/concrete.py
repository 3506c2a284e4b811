"""Families of concrete expressions: derivations written in concrete symbols.

:class:`Concrete`
    Expressions stand for themselves: a step holds for every value of its symbols that
    their assumptions allow. Display symbols may stand for given expressions
    (``definitions``), which a derivation shows with its steps ("where ...").

:class:`GaussianIntegrals`
    :class:`Concrete`, and every integral over the real line is evaluated exactly by
    :func:`~vaebook.symbolic.gaussian.gaussian_integral` -- only integrals proved finite
    under the symbols' assumptions are evaluated; any other integral is refused.
"""

from __future__ import annotations

from collections.abc import Mapping

import sympy as sp

from . import notation as N
from .certificates import satisfies_assumptions
from .families import Family
from .gaussian import gaussian_integral
from .printing import book_latex

__all__ = ["Concrete", "GaussianIntegrals"]


def _as_defined(symbols, tex=book_latex) -> str:
    """``", where $A$ and $B$ are as defined"`` (empty without definitions), each symbol
    typeset by ``tex``."""
    names = [f"${tex(s)}$" for s in symbols]
    if not names:
        return ""
    if len(names) == 1:
        return f", where {names[0]} is as defined"
    return ", where " + ", ".join(names[:-1]) + f" and {names[-1]} are as defined"


class Concrete(Family):
    """Expressions stand for themselves: a step checked here holds for every value of its
    symbols that their assumptions allow.

    ``definitions`` maps display symbols (``N_1``, ``f(z)``) to the expressions they
    stand for; they are substituted before every check and shown with the derivation
    ("where ..."), so the reader sees exactly what was checked. Unevaluated integrals are
    refused (use :class:`GaussianIntegrals`); derivatives are evaluated.
    """

    name = "expressions as written"
    model = False

    def __init__(self, definitions: Mapping | None = None):
        definitions = dict(definitions or {})
        for key in definitions:
            if not isinstance(key, sp.Symbol) or isinstance(key, sp.Dummy):
                raise TypeError(f"a definition names a symbol, not {key!r}")
            if key in N.DEFINITIONS or key == N.z:
                raise ValueError(
                    f"{key} has its meaning in the book's notation; it cannot be redefined "
                    "(a density may be given a formula; define a display symbol of your own)"
                )
        self._definitions = {k: sp.sympify(v) for k, v in definitions.items()}
        # substitute until nothing changes: a definition may use other display symbols
        resolved = self._definitions
        for _ in range(len(resolved) + 1):
            done = {k: v.xreplace(resolved) for k, v in resolved.items()}
            if done == resolved:
                break
            resolved = done
        else:
            raise ValueError("circular definitions")
        self._resolved = resolved
        for key, value in resolved.items():
            missing = satisfies_assumptions(value, key)
            if missing:
                raise ValueError(
                    f"the definition {key} := {self._definitions[key]} contradicts the symbol "
                    f"it defines: cannot show that it is {', '.join(missing)}, as {key} is declared"
                )
        self._frozen = True

    def definitions(self) -> dict:
        return dict(self._definitions)

    @property
    def where(self) -> str:
        return self.describe()

    def describe(self, tex=book_latex) -> str:
        """:attr:`where`, with the defined symbols typeset by ``tex`` (a derivation passes
        its own display names)."""
        return f"for all values of its symbols{_as_defined(self._definitions, tex)}"

    def _substitute(self, expr) -> sp.Expr:
        """The display symbols replaced by what they stand for, the named quantities (ELBO,
        KL) by their defining integrals, the displayed densities by their formulas."""
        return N.explicit(N.expand_definitions(sp.sympify(expr).xreplace(self._resolved)))

    def _integrals(self, expr) -> sp.Expr:
        if expr.has(sp.Integral):
            raise ValueError(
                "an integral cannot be checked on expressions as written; "
                "use the GaussianIntegrals family, which proves it finite"
            )
        return expr

    def interpret(self, expr) -> sp.Expr:
        self._check_derivatives(self._substitute(expr))
        return self._derivatives(self._integrals(self._substitute(expr)))


class GaussianIntegrals(Concrete):
    """:class:`Concrete`, with every integral over the whole real line evaluated exactly
    by :func:`gaussian_integral` (innermost first, one variable at a time, derivatives
    inside the integrand evaluated first). An integrand that is not a polynomial times
    the exponential of a quadratic with provably negative leading coefficient -- so an
    integral not proved finite under the symbols' assumptions -- is refused
    (``ValueError``)."""

    name = "exact Gaussian integrals"

    def describe(self, tex=book_latex) -> str:
        return f"by exact Gaussian integration{_as_defined(self._definitions, tex)}"

    def _integrals(self, expr) -> sp.Expr:
        while True:
            inner = [i for i in expr.atoms(sp.Integral) if not i.args[0].has(sp.Integral)]
            if not inner:
                return expr
            done = {}
            for integral in inner:
                f = self._derivatives(integral.function)
                for lim in integral.limits:  # Fubini, innermost variable first
                    if len(lim) != 3 or tuple(lim[1:]) != (-sp.oo, sp.oo):
                        raise ValueError(f"only integrals over the real line: {integral}")
                    f = gaussian_integral(f, lim[0])
                done[integral] = f
            expr = expr.xreplace(done)

