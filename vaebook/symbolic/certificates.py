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
from sympy.calculus.util import continuous_domain
from sympy.core.function import AppliedUndef

from .errors import StepError
from .notation import expand_definitions, explicit
from .printing import inline
from .text import check_text

__all__ = [
    "Nonneg",
    "second_derivative_sign",
    "convex_minimum",
    "log_tangent_lemma",
    "jensen_log_certificate",
    "jensen_square_certificate",
    "sign_form",
    "satisfies_assumptions",
]


_RULE = object()  # private: only the checked rules of this module may create a Nonneg

#: the assumptions a value must satisfy to stand for a symbol that carries them
_CHECKED_ASSUMPTIONS = (
    "positive",
    "nonnegative",
    "negative",
    "nonpositive",
    "nonzero",
    "zero",
    "real",
    "extended_real",
    "integer",
    "rational",
    "finite",
)


def sign_form(expr) -> sp.Expr:
    """The explicit form of ``expr`` on which a sign is decided: named quantities expanded
    and every displayed density (:class:`~vaebook.symbolic.notation.Normal`) replaced by
    its formula, so a notation object cannot vouch for its own sign. An integral, a
    derivative or an undefined function has no sign by assumptions and is refused."""
    form = explicit(expand_definitions(sp.sympify(expr)))
    if form.has(sp.Integral, sp.Derivative) or form.atoms(AppliedUndef):
        raise StepError(
            f"the sign of {inline(form)} is not decided by the symbols' assumptions "
            "(it holds an integral, a derivative or an undefined function)"
        )
    return form


def satisfies_assumptions(value, symbol: sp.Symbol) -> list[str]:
    """The assumptions of ``symbol`` (positive, real, integer, ...) that ``value`` cannot
    be shown to satisfy, decided on :func:`sign_form`; empty when it satisfies them all."""
    facts = symbol.assumptions0
    if not any(name in facts for name in _CHECKED_ASSUMPTIONS):
        return []
    form = sign_form(value)
    return [
        ("not " if not facts[name] else "") + name
        for name in _CHECKED_ASSUMPTIONS
        if name in facts and getattr(form, f"is_{name}") is not facts[name]
    ]


class Nonneg:
    """An expression proven to be non-negative, with the rule that proves it (displayed as
    the reason of the inequality step that uses it) and, optionally, an author's note.

    Cannot be constructed directly (``Nonneg(expr, "...")`` raises ``TypeError``),
    copied, subclassed or modified: it is created only by the checked rules --
    :meth:`by_assumptions`, :func:`convex_minimum` (and its instance
    :func:`log_tangent_lemma`), and the closure rules ``+`` and :meth:`total` (sums of
    non-negatives), :meth:`scale` (non-negative multiple) and :meth:`at` (substituting,
    for the variable of a lemma, a value that satisfies its assumptions). Every sign is
    decided on the explicit form of the expression (:func:`sign_form`). An author's words
    never replace the rule: they are shown after it, marked as the author's.
    """

    __slots__ = ("_expr", "_rule_text", "_note", "_variable")

    def __new__(cls, *args, _rule=None, **kwargs):
        if _rule is not _RULE:
            raise TypeError(
                "a Nonneg certificate cannot be built by hand; use Nonneg.by_assumptions, "
                "convex_minimum, log_tangent_lemma or the Jensen/KL certificates"
            )
        return super().__new__(cls)

    def __init__(self, expr, rule: str, variable=None, note: str = "", *, _rule=None):
        object.__setattr__(self, "_expr", sp.sympify(expr))
        object.__setattr__(self, "_rule_text", str(rule))
        object.__setattr__(self, "_note", str(note))
        object.__setattr__(self, "_variable", variable)

    def __init_subclass__(cls, **kwargs):
        raise TypeError("Nonneg cannot be subclassed")

    def __setattr__(self, name, value):
        raise AttributeError("a Nonneg certificate is immutable")

    __delattr__ = __setattr__

    def __reduce__(self):
        raise TypeError("a Nonneg certificate cannot be copied or pickled")

    __copy__ = __deepcopy__ = __reduce__

    @property
    def expr(self) -> sp.Expr:
        """The expression proven to be ``>= 0``."""
        return self._expr

    @property
    def rule(self) -> str:
        """The checked rule that proves it."""
        return self._rule_text

    @property
    def note(self) -> str:
        """The author's words about it ("" if none)."""
        return self._note

    @property
    def reason(self) -> str:
        """The displayed reason of a bound: the rule, then the author's note, marked."""
        return self.rule + (f" (the author's note: {self.note})" if self.note else "")

    @property
    def variable(self) -> sp.Symbol | None:
        """The free variable of a lemma, for :meth:`at`."""
        return self._variable

    def __repr__(self) -> str:
        return f"Nonneg({self.expr}, {self.reason!r})"

    @classmethod
    def _rule(cls, expr, rule: str, variable=None, note: str = "") -> Nonneg:
        return cls(expr, rule, variable, note, _rule=_RULE)

    def _named(self, rule: str) -> Nonneg:
        """The same proven fact under a more descriptive rule (for this module's rules)."""
        return Nonneg._rule(self.expr, rule, self.variable, self.note)

    def with_note(self, note: str) -> Nonneg:
        """The same fact with the author's words added (shown after the rule, marked as
        the author's); the rule itself cannot be replaced."""
        check_text(note, "an author's note")
        return Nonneg._rule(self.expr, self.rule, self.variable, note)

    @classmethod
    def by_assumptions(cls, expr, note: str = "") -> Nonneg:
        """Non-negative because SymPy's assumption system says so (squares, positives),
        decided on the explicit form of ``expr``; ``note`` names the fact in the author's
        words (``"a probability times a square"``)."""
        expr = sp.sympify(expr)
        if sign_form(expr).is_nonnegative is not True:
            raise StepError(
                f"cannot certify {inline(expr)} $\\geq 0$ from the symbols' assumptions"
            )
        if note:
            check_text(note, "an author's note")
        return cls._rule(expr, "non-negative by the assumptions on its symbols", note=note)

    def at(self, value) -> Nonneg:
        """The lemma at ``variable = value``; ``value`` must satisfy every assumption of
        the variable (for :func:`log_tangent_lemma`: be provably positive)."""
        if self.variable is None:
            raise StepError("this fact has no free variable to instantiate")
        value = sp.sympify(value)
        missing = satisfies_assumptions(value, self.variable)
        if missing:
            raise StepError(
                f"the lemma holds for {inline(self.variable)} with its assumptions; "
                f"cannot show that {inline(value)} is {', '.join(missing)}"
            )
        return Nonneg._rule(self.expr.xreplace({self.variable: value}), self.rule, note=self.note)

    def scale(self, factor) -> Nonneg:
        factor = sp.sympify(factor)
        if sign_form(factor).is_nonnegative is not True:
            raise StepError(f"cannot scale a non-negative fact by {inline(factor)}: sign unknown")
        return Nonneg._rule(factor * self.expr, self.rule, note=self.note)

    def __add__(self, other: Nonneg) -> Nonneg:
        if type(other) is not Nonneg:
            return NotImplemented
        rules = self.rule if self.rule == other.rule else f"{self.rule}; {other.rule}"
        notes = "; ".join(n for n in dict.fromkeys((self.note, other.note)) if n)
        return Nonneg._rule(self.expr + other.expr, rules, note=notes)

    @staticmethod
    def total(facts: Sequence[Nonneg], note: str = "") -> Nonneg:
        """The sum of certified facts (its rule: their rules); ``note`` is the author's
        description of the sum, shown after the rules."""
        facts = list(facts)
        if not facts or any(type(f) is not Nonneg for f in facts):
            raise TypeError("total() takes a non-empty sequence of Nonneg certificates")
        out = facts[0]
        for f in facts[1:]:
            out = out + f
        return out.with_note(note) if note else out

    @staticmethod
    def _total_named(facts: Sequence[Nonneg], rule: str) -> Nonneg:
        """The sum of certified facts under this module's name for the rule."""
        return Nonneg.total(facts)._named(rule)


def _domain(x) -> sp.Set:
    """The interval a real variable ranges over, from its assumptions."""
    if not isinstance(x, sp.Symbol) or isinstance(x, sp.Dummy):
        raise StepError(f"a convexity argument needs a variable (a Symbol), not {x!r}")
    if x.is_real is not True:
        raise StepError(
            f"a convexity argument needs a real variable; {inline(x)} is not declared real "
            "(a complex variable has no order)"
        )
    if x.is_integer:
        raise StepError(
            f"a convexity argument needs a continuous variable; {inline(x)} is an integer"
        )
    if x.is_positive:
        return sp.Interval.open(0, sp.oo)
    if x.is_nonnegative:
        return sp.Interval(0, sp.oo)
    if x.is_negative:
        return sp.Interval.open(-sp.oo, 0)
    if x.is_nonpositive:
        return sp.Interval(-sp.oo, 0)
    return sp.S.Reals


def second_derivative_sign(f, x: sp.Symbol) -> int:
    """+1 if ``f'' > 0`` (strictly convex), -1 if ``f'' < 0`` (strictly concave) for all
    ``x`` allowed by its assumptions; raises if SymPy cannot decide."""
    d2 = sp.simplify(sp.diff(sign_form(f), x, 2))
    if d2.is_positive:
        return 1
    if d2.is_negative:
        return -1
    raise StepError(f"cannot decide the sign of the second derivative {inline(d2)}")


def convex_minimum(f, x: sp.Symbol, note: str = "") -> Nonneg:
    """``f(x) - f(x0) >= 0`` for a strictly convex ``f`` with stationary point ``x0``.

    Checked: ``x`` is a real variable ranging over one interval (from its assumptions:
    the real line, or a half-line); ``f``, ``f'`` and ``f''`` are real and continuous on
    all of it (no singular point); ``f'' > 0`` there; ``f'(x0) = 0`` has exactly one
    solution, and it lies in the interval. A strictly convex function on an interval lies
    above its value at a stationary point of that interval. ``note`` is the author's name
    for the fact, shown after the rule.
    """
    domain = _domain(x)
    f = sign_form(f)
    if f.is_real is not True and f.is_extended_real is not True:
        raise StepError(f"cannot show that {inline(f)} is real for every allowed {inline(x)}")
    derivatives = [f, sp.diff(f, x), sp.diff(f, x, 2)]
    for g in derivatives:
        try:
            where = continuous_domain(g, x, domain)
        except (NotImplementedError, ValueError, TypeError):
            raise StepError(
                f"cannot show that {inline(g)} is continuous for every allowed {inline(x)}"
            ) from None
        if where != domain:
            raise StepError(
                f"{g} is not continuous on the whole domain of {x} ({domain}): "
                f"a singular point splits it"
            )
    if second_derivative_sign(f, x) != 1:
        raise StepError(f"{inline(f)} is not convex in {inline(x)}")
    stationary = sp.solveset(sp.Eq(derivatives[1], 0), x, domain)
    if not isinstance(stationary, sp.FiniteSet) or len(stationary) != 1:
        raise StepError(f"expected one stationary point of {f} in {domain}, found {stationary}")
    (x0,) = stationary
    if domain.contains(x0) is not sp.true:
        raise StepError(f"cannot show that the stationary point {x0} lies in {domain}")
    value = f.subs(x, x0)
    expr = sp.simplify(f - value) if value != 0 else f
    if note:
        check_text(note, "an author's note")
    rule = (
        f"${sp.latex(f)}$ is strictly convex in ${sp.latex(x)}$ with its minimum at "
        f"${sp.latex(x)} = {sp.latex(x0)}$"
    )
    return Nonneg._rule(expr, rule, x, note)


def log_tangent_lemma() -> Nonneg:
    """``t - 1 - log t >= 0`` for every ``t > 0``: the tangent-line bound of the log.

    Proven, not assumed: ``t - 1 - log t`` has second derivative ``1/t**2 > 0`` and its
    only stationary point is ``t = 1``, where it is 0 (see :func:`convex_minimum`).
    """
    t = sp.Symbol("t", positive=True)
    return convex_minimum(t - 1 - sp.log(t), t)._named(
        r"$h(t) = t - 1 - \log t \geq 0$ (strictly convex in $t > 0$, minimum $0$ at $t = 1$)"
    )


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
    return Nonneg._total_named(
        [h.at(yk / m).scale(qk) for qk, yk in zip(q, y, strict=True)],
        r"Jensen's inequality for the concave $\log$ (weights $\lambda_k$ summing to 1): "
        r"the gap is "
        r"$\sum_k \lambda_k\, h(y_k / m) \geq 0$ with $m = \sum_k \lambda_k y_k$ and "
        r"$h(t) = t - 1 - \log t$",
    )


def jensen_square_certificate(q, y) -> Nonneg:
    """Certificate of ``sum_k q_k y_k**2 - (sum_k q_k y_k)**2 >= 0`` (Jensen for the
    convex ``y**2``, the inequality the other way round): the difference is the variance
    ``sum_k q_k (y_k - m)**2`` when ``sum_k q_k = 1``. ``y`` real, ``q`` positive."""
    m = sp.Add(*(qk * yk for qk, yk in zip(q, y, strict=True)))
    return Nonneg._total_named(
        [Nonneg.by_assumptions(qk * (yk - m) ** 2) for qk, yk in zip(q, y, strict=True)],
        r"Jensen's inequality for the convex $y^2$ (weights $\lambda_k$ summing to 1): the gap "
        r"is the variance "
        r"$\sum_k \lambda_k (y_k - m)^2 \geq 0$ with $m = \sum_k \lambda_k y_k$",
    )
