"""Certified non-negative facts: the only way a bound enters a derivation.

A :class:`Nonneg` is an expression proven to be ``>= 0``. It is produced only by the
checked rules below -- SymPy's assumption system (:meth:`Nonneg.by_assumptions`), the
minimum of a strictly convex function (:func:`convex_minimum`, and its instance
:func:`log_tangent_lemma`), sums, non-negative multiples and instantiation at a positive
value -- and by the Jensen certificates built from them; it cannot be constructed,
copied or altered by hand. An inequality step of a
:class:`~vaebook.symbolic.derivation.Derivation` is accepted only when the difference of
its two sides equals such a certificate.
"""

from __future__ import annotations

from collections.abc import Sequence

import sympy as sp

from .errors import StepError

__all__ = [
    "Nonneg",
    "second_derivative_sign",
    "convex_minimum",
    "log_tangent_lemma",
    "jensen_log_certificate",
    "jensen_square_certificate",
]


_RULE = object()  # private: only the checked rules of this module may create a Nonneg


class Nonneg:
    """An expression proven to be non-negative, with the reason (displayed as the reason
    of the inequality step that uses it).

    Cannot be constructed directly (``Nonneg(expr, "...")`` raises ``TypeError``),
    copied, subclassed or modified: it is created only by the checked rules --
    :meth:`by_assumptions`, :func:`convex_minimum` (and its instance
    :func:`log_tangent_lemma`), and the closure rules ``+`` (sum of non-negatives),
    :meth:`scale` (non-negative multiple) and :meth:`at` (substituting a positive
    expression for the positive variable of a lemma).
    """

    __slots__ = ("_expr", "_reason", "_variable")

    def __new__(cls, *args, _rule=None, **kwargs):
        if _rule is not _RULE:
            raise TypeError(
                "a Nonneg certificate cannot be built by hand; use Nonneg.by_assumptions, "
                "convex_minimum, log_tangent_lemma or the Jensen/KL certificates"
            )
        return super().__new__(cls)

    def __init__(self, expr, reason: str, variable=None, *, _rule=None):
        object.__setattr__(self, "_expr", sp.sympify(expr))
        object.__setattr__(self, "_reason", str(reason))
        object.__setattr__(self, "_variable", variable)

    def __init_subclass__(cls, **kwargs):
        raise TypeError("Nonneg cannot be subclassed")

    def __setattr__(self, name, value):
        raise AttributeError("a Nonneg certificate is immutable")

    __delattr__ = __setattr__

    def __reduce__(self):
        raise TypeError("a Nonneg certificate cannot be copied or pickled")

    @property
    def expr(self) -> sp.Expr:
        """The expression proven to be ``>= 0``."""
        return self._expr

    @property
    def reason(self) -> str:
        """Why it is non-negative (the displayed reason of a bound)."""
        return self._reason

    @property
    def variable(self) -> sp.Symbol | None:
        """The free variable of a lemma, for :meth:`at`."""
        return self._variable

    def __repr__(self) -> str:
        return f"Nonneg({self.expr}, {self.reason!r})"

    @classmethod
    def _rule(cls, expr, reason: str, variable=None) -> Nonneg:
        return cls(expr, reason, variable, _rule=_RULE)

    def _named(self, reason: str) -> Nonneg:
        """The same proven fact under a more descriptive reason (for this module's rules)."""
        return Nonneg._rule(self.expr, reason, self.variable)

    @classmethod
    def by_assumptions(cls, expr, reason: str = "") -> Nonneg:
        """Non-negative because SymPy's assumption system says so (squares, positives).
        ``reason`` names the fact (``"a probability times a square"``)."""
        expr = sp.sympify(expr)
        if expr.is_nonnegative is not True:
            raise StepError(f"cannot certify {expr} >= 0 from the symbols' assumptions")
        return cls._rule(expr, reason or "non-negative by the assumptions on its symbols")

    def at(self, value) -> Nonneg:
        """The lemma at ``variable = value``; ``value`` must be provably positive."""
        if self.variable is None:
            raise StepError("this fact has no free variable to instantiate")
        value = sp.sympify(value)
        if value.is_positive is not True:
            raise StepError(f"lemma needs {self.variable} > 0, cannot show {value} > 0")
        return Nonneg._rule(self.expr.xreplace({self.variable: value}), self.reason)

    def scale(self, factor) -> Nonneg:
        factor = sp.sympify(factor)
        if factor.is_nonnegative is not True:
            raise StepError(f"cannot scale a non-negative fact by {factor}: sign unknown")
        return Nonneg._rule(factor * self.expr, self.reason)

    def __add__(self, other: Nonneg) -> Nonneg:
        if not isinstance(other, Nonneg):
            return NotImplemented
        reasons = self.reason if self.reason == other.reason else f"{self.reason}; {other.reason}"
        return Nonneg._rule(self.expr + other.expr, reasons)

    @staticmethod
    def total(facts: Sequence[Nonneg], reason: str | None = None) -> Nonneg:
        """The sum of certified facts; ``reason`` (if given) describes the sum."""
        out = facts[0]
        for f in facts[1:]:
            out = out + f
        return out if reason is None else out._named(reason)


def second_derivative_sign(f, x: sp.Symbol) -> int:
    """+1 if ``f'' > 0`` (strictly convex), -1 if ``f'' < 0`` (strictly concave) for all
    ``x`` allowed by its assumptions; raises if SymPy cannot decide."""
    d2 = sp.simplify(sp.diff(f, x, 2))
    if d2.is_positive:
        return 1
    if d2.is_negative:
        return -1
    raise StepError(f"cannot decide the sign of the second derivative {d2}")


def convex_minimum(f, x: sp.Symbol, reason: str) -> Nonneg:
    """``f(x) - f(x0) >= 0`` for a strictly convex ``f`` with stationary point ``x0``.

    Checked: ``f'' > 0`` on the domain of ``x`` and ``f'(x0) = 0`` has exactly one
    solution. A strictly convex function lies above its value at a stationary point.
    """
    if second_derivative_sign(f, x) != 1:
        raise StepError(f"{f} is not convex in {x}")
    stationary = sp.solve(sp.Eq(sp.diff(f, x), 0), x)
    if len(stationary) != 1:
        raise StepError(f"expected one stationary point of {f}, found {stationary}")
    x0 = stationary[0]
    expr = sp.simplify(f - f.subs(x, x0)) if f.subs(x, x0) != 0 else f
    return Nonneg._rule(expr, f"{reason} (convex in {x}, minimum at {x} = {x0})", x)


def log_tangent_lemma() -> Nonneg:
    """``t - 1 - log t >= 0`` for every ``t > 0``: the tangent-line bound of the log.

    Proven, not assumed: ``t - 1 - log t`` has second derivative ``1/t**2 > 0`` and its
    only stationary point is ``t = 1``, where it is 0 (see :func:`convex_minimum`).
    """
    t = sp.Symbol("t", positive=True)
    return convex_minimum(t - 1 - sp.log(t), t, reason=r"$h(t) = t - 1 - \log t \geq 0$")


# ------------------------------------------------------------------ Jensen certificates


def jensen_log_certificate(q, y) -> Nonneg:
    """Certificate of ``log(sum_k q_k y_k) - sum_k q_k log y_k >= 0`` (eq-jensen-finite).

    With ``m = sum_k q_k y_k`` the difference equals ``sum_k q_k h(y_k / m)``, where
    ``h(t) = t - 1 - log t >= 0`` (:func:`log_tangent_lemma`), provided
    ``sum_k q_k = 1``: expanding, ``sum_k q_k y_k / m = 1`` cancels ``sum_k q_k = 1`` and
    ``sum_k q_k log m = log m``. ``q`` and ``y`` are sequences of positive expressions.
    """
    m = sp.Add(*(qk * yk for qk, yk in zip(q, y, strict=True)))
    h = log_tangent_lemma()
    return Nonneg.total(
        [h.at(yk / m).scale(qk) for qk, yk in zip(q, y, strict=True)],
        reason=r"Jensen's inequality for the concave $\log$: the gap is "
        r"$\sum_k q_k\, h(y_k / m) \geq 0$ with $m = \sum_k q_k y_k$ and "
        r"$h(t) = t - 1 - \log t$",
    )


def jensen_square_certificate(q, y) -> Nonneg:
    """Certificate of ``sum_k q_k y_k**2 - (sum_k q_k y_k)**2 >= 0`` (Jensen for the
    convex ``y**2``, the inequality the other way round): the difference is the variance
    ``sum_k q_k (y_k - m)**2`` when ``sum_k q_k = 1``. ``y`` real, ``q`` positive."""
    m = sp.Add(*(qk * yk for qk, yk in zip(q, y, strict=True)))
    return Nonneg.total(
        [
            Nonneg.by_assumptions(qk * (yk - m) ** 2, "a probability times a square")
            for qk, yk in zip(q, y, strict=True)
        ],
        reason=r"Jensen's inequality for the convex $y^2$: the gap is the variance "
        r"$\sum_k q_k (y_k - m)^2 \geq 0$ with $m = \sum_k q_k y_k$",
    )
