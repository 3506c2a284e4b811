"""How an equality is proved: random evaluation to 30 digits (a false step is reported as
false), then SymPy's simplification to zero (:func:`vanishes`)."""

from __future__ import annotations

import random
from collections.abc import Mapping

import sympy as sp

__all__ = ["vanishes", "numerically_zero"]


def _numeric_values(expr: sp.Expr, seed: int) -> dict:
    """Random values for the free symbols of ``expr`` that respect their assumptions."""
    rng = random.Random(seed)
    values = {}
    for s in sorted(expr.free_symbols, key=lambda s: s.name):
        if s.is_positive or s.is_nonnegative:
            # small enough that "1 - (sum of the others)" stays a positive probability
            values[s] = sp.Rational(rng.randint(5, 35), 100)
        else:
            values[s] = sp.Rational(rng.randint(-150, 150), 100)
    return values


def numerically_zero(expr: sp.Expr, trials: int = 4) -> bool | None:
    """``True``/``False`` if random evaluation decides whether ``expr`` is 0, else ``None``.

    A trial point outside the expression's real domain (a complex or infinite value,
    e.g. a probability written as ``1 - others`` that came out negative) decides nothing.
    """
    decided = None
    for t in range(trials):
        try:
            value = complex(sp.N(expr.subs(_numeric_values(expr, seed=t)), 30))
        except (TypeError, ValueError, ZeroDivisionError):
            continue
        if value != value or abs(value) == float("inf") or abs(value.imag) > 1e-20:
            continue
        if abs(value.real) > 1e-20:
            return False
        decided = True
    return decided


def vanishes(expr: sp.Expr, given: Mapping | None = None) -> bool:
    """Prove ``expr == 0`` symbolically (all assumptions taken from the symbols).

    Tries, in order of cost: expansion, expansion of logarithms (valid because the
    symbols carry their positivity assumptions) and :func:`sympy.simplify`. ``given``
    is a substitution (such as ``q_K = 1 - sum of the other q_k``) applied *after*
    the logarithms are expanded, while the symbols still carry their assumptions.
    """
    expr = sp.sympify(expr)
    if expr == 0:
        return True
    candidates = (
        lambda e: sp.expand(sp.expand_log(e)),
        lambda e: sp.expand(sp.expand_log(sp.expand(e), deep=True)),
        lambda e: sp.simplify(sp.expand_log(e)),
        lambda e: sp.expand(sp.expand_log(sp.simplify(e))),
    )
    for transform in candidates:
        e = transform(expr)
        if given:
            e = sp.expand(e.xreplace(dict(given)))
            if e != 0:
                e = sp.simplify(e)
        if e == 0:
            return True
    return False
