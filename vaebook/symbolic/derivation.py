"""Checked derivations: chains of SymPy expressions in which every step is proven.

A :class:`Derivation` starts from an expression and grows by steps. Each step gives
the next expression and the reason it holds (``because="Bayes' rule"``). Before the
step is accepted the engine **checks** it:

* an equality step ``a = b`` is accepted only if SymPy simplifies ``a - b`` to zero;
* an inequality step ``a >= b`` is accepted only if ``a - b`` simplifies to a
  *certified non-negative* expression (a :class:`Nonneg`), which the caller supplies
  as ``gap=`` and whose non-negativity was itself established by the engine.

Expressions may be written in an abstract notation (``p(x)``, ``q(z)``, integrals over
``z``) that reads like a textbook. A model family (see :mod:`vaebook.families`) then
*interprets* that notation as concrete mathematics -- finite sums over latent states,
or closed-form Gaussian integrals -- and the check runs on the interpretation. The
displayed expression is the very object that was checked.

A step that does not hold raises :class:`StepError` naming the step; nothing after it
can be added. Before the symbolic proof, every equality step is also evaluated at
random parameter values to 30 digits, so a false step is reported as false rather
than as "could not simplify".
"""

from __future__ import annotations

import random
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field

import sympy as sp

from .certificates import Nonneg
from .errors import StepError
from .notation import LATEX_NAMES, explicit

__all__ = ["StepError", "Step", "Derivation", "vanishes"]




# --------------------------------------------------------------------------- checking


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


def _numerically_zero(expr: sp.Expr, trials: int = 4) -> bool | None:
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








# ------------------------------------------------------------------------ derivations

Interpretation = Callable[[sp.Expr], sp.Expr]

RELATIONS = {"=": "=", ">=": r"\geq", "<=": r"\leq"}


@dataclass
class Step:
    expr: sp.Expr
    because: str
    relation: str = "="
    given: Mapping = field(default_factory=dict)
    gap: object = None  # Nonneg, or callable(family) -> Nonneg, for inequality steps
    certified: str = ""  # why the gap of an inequality step is non-negative


class Derivation:
    """A chain of expressions, each checked against the one before.

    Parameters
    ----------
    start:
        The first expression (in abstract or concrete notation).
    title:
        What is being derived; used in :meth:`verdict` (``"evidence identity"``).
    family:
        A model family (:mod:`vaebook.families`): supplies ``interpret``, ``given``
        (its normalisation constraints) and ``where``.
    interpret:
        Maps an expression to the concrete mathematics it stands for (a family's
        ``interpret``); identity by default.
    given:
        Substitutions every step may rely on (applied after logarithms are expanded).
    where:
        Words describing the interpretation, used in the verdict
        (``"on the finite family"``).
    latex_names:
        ``{symbol: latex}`` used when rendering (``{px: "p(x)"}``).

    Examples
    --------
    >>> x = sp.Symbol("x", positive=True)
    >>> d = Derivation(sp.log(x**2), title="log of a square")
    >>> _ = d.step(2 * sp.log(x), because="log of a power")
    >>> d.verdict()
    'log of a square: 1 step verified'
    """

    def __init__(
        self,
        start,
        *,
        title: str,
        family=None,
        interpret: Interpretation | None = None,
        given: Mapping | None = None,
        where: str | None = None,
        latex_names: Mapping | None = None,
    ):
        self.start = sp.sympify(start)
        self.title = title
        if family is not None:
            interpret = interpret or family.interpret
            given = {**family.constraints(), **(given or {})}
            where = f"on the {family.name}" if where is None else where
        self.interpret = interpret or (lambda e: e)
        self.given = dict(given or {})
        self.where = where or ""
        self.latex_names = {**LATEX_NAMES, **(latex_names or {})}
        self.family = family
        self.steps: list[Step] = []
        self._current_concrete = self.interpret(self.start)

    # -- building -------------------------------------------------------------------
    @property
    def current(self) -> sp.Expr:
        return self.steps[-1].expr if self.steps else self.start

    def step(self, expr, because: str, *, given: Mapping | None = None) -> Derivation:
        """Add ``= expr``. ``given`` is an explicit substitution the step relies on
        (e.g. ``{Sum(q): 1}``); it is applied to both sides and shown with the reason."""
        expr = sp.sympify(expr)
        n = len(self.steps) + 1
        concrete = self.interpret(expr)
        self._require_zero(self._current_concrete - concrete, n, because, given=given)
        self.steps.append(Step(expr, because, "=", dict(given or {})))
        self._current_concrete = concrete
        return self

    def recheck(self, family, **kwargs) -> Derivation:
        """The same chain of steps, checked again from scratch on another ``family``."""
        d = Derivation(
            self.start, title=self.title, family=family, latex_names=self.latex_names, **kwargs
        )
        for s in self.steps:
            if s.relation == "=":
                d.step(s.expr, s.because, given=s.given or None)
            else:
                d.bound(s.expr, s.because, gap=s.gap, relation=s.relation)
        return d

    def bound(self, expr, because: str, *, gap, relation: str = ">=") -> Derivation:
        """Add ``>= expr`` (or ``<= expr``): accepted only if the difference between the
        larger and the smaller side equals the certified non-negative ``gap``.

        ``gap`` is a :class:`Nonneg`, or a callable taking the family and returning one
        (so the same derivation can be re-checked on another family, see :meth:`recheck`).
        """
        if relation not in (">=", "<="):
            raise ValueError(f"relation must be '>=' or '<=', got {relation!r}")
        certificate = gap(self.family) if callable(gap) else gap
        if not isinstance(certificate, Nonneg):
            raise TypeError("gap must be a Nonneg certificate (or a callable returning one)")
        expr = sp.sympify(expr)
        n = len(self.steps) + 1
        concrete = self.interpret(expr)
        larger_minus_smaller = (
            self._current_concrete - concrete
            if relation == ">="
            else concrete - self._current_concrete
        )
        self._require_zero(
            larger_minus_smaller - self.interpret(certificate.expr),
            n,
            because,
            what=f"the difference is not the certified gap ({certificate.reason})",
        )
        self.steps.append(Step(expr, because, relation, gap=gap, certified=certificate.reason))
        self._current_concrete = concrete
        return self

    def _require_zero(self, diff, n, because, what="the two sides differ", given=None):
        given = {**self.given, **(given or {})}
        diff = explicit(diff)  # displayed N(y; mean, var) -> its formula
        numeric = _numerically_zero(diff.xreplace(given) if given else diff)
        if numeric is False:
            raise StepError(
                f"{self.title}: step {n} ({because!r}) is false: {what} "
                f"(checked at random parameter values)"
            )
        if not vanishes(diff, given):
            raise StepError(
                f"{self.title}: step {n} ({because!r}) could not be proven: "
                f"the difference does not simplify to 0: {sp.simplify(diff)}"
            )

    def conclude(self, expected) -> Derivation:
        """Check that the chain ended on ``expected`` (literally the same expression)."""
        expected = sp.sympify(expected)
        if sp.srepr(expected) != sp.srepr(self.current) and not vanishes(
            self.interpret(expected) - self._current_concrete, self.given
        ):
            raise StepError(f"{self.title}: the derivation ends on {self.current}, not {expected}")
        return self

    # -- reporting --------------------------------------------------------------------
    @property
    def n_verified(self) -> int:
        return len(self.steps)

    @property
    def relation(self) -> str:
        """The relation between start and end: '=' if all steps are equalities."""
        rels = {s.relation for s in self.steps} - {"="}
        if len(rels) > 1:
            return "mixed"
        return rels.pop() if rels else "="

    def verdict(self) -> str:
        n = self.n_verified
        where = f" {self.where}" if self.where else ""
        return f"{self.title}: {n} step{'s' if n != 1 else ''} verified{where}"

    def _reason(self, s: Step) -> str:
        return f"{s.because} (the gap is non-negative: {s.certified})" if s.certified else s.because

    def latex(self, reasons: bool = True) -> str:
        """An ``aligned`` block: one line per expression, with the reason on the right
        (or, with ``reasons=False``, the step number, for :meth:`_repr_markdown_`)."""
        lx = lambda e: sp.latex(e, symbol_names=self.latex_names)  # noqa: E731
        lines = [f"& {lx(self.start)}"]
        for i, s in enumerate(self.steps, 1):
            if reasons:
                reason = self._reason(s).replace("_", r"\_").replace("&", r"\&").replace("%", r"\%")
                tag = rf"\text{{{reason}}}"
            else:
                tag = rf"\text{{[{i}]}}"  # brackets: not to be confused with equation numbers
            lines.append(rf"{RELATIONS[s.relation]}\ & {lx(s.expr)} && {tag}")
        return r"\begin{aligned}" + r" \\ ".join(lines) + r"\end{aligned}"

    def _repr_latex_(self) -> str:
        return "$$" + self.latex() + "$$"

    def _repr_markdown_(self) -> str:
        """The chain with numbered steps, and the numbered reasons below it."""
        reasons = "\n".join(f"- [{i}] {self._reason(s)}" for i, s in enumerate(self.steps, 1))
        return f"$$\n{self.latex(reasons=False)}\n$$\n\n{reasons}\n\n*{self.verdict()}.*\n"

    def __repr__(self) -> str:
        return self.verdict()

    def equation(self) -> sp.Expr:
        """``start (rel) end`` as a SymPy relation, for stating the result."""
        ops = {"=": sp.Eq, ">=": sp.Ge, "<=": sp.Le}
        return ops[self.relation](self.start, self.current, evaluate=False)
