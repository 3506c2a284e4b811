"""Checked derivations: chains of SymPy expressions in which every step is proven.

A :class:`Derivation` starts from an expression and grows by steps. Each step gives
the next expression and the reason it holds (``because="Bayes' rule"``). Before the
step is accepted the engine **checks** it:

* an equality step ``a = b`` is accepted only if SymPy simplifies ``a - b`` to zero;
* an inequality step ``a >= b`` is accepted only if ``a - b`` simplifies to a
  *certified non-negative* expression (a :class:`Nonneg`), which the caller supplies
  as ``gap=`` and whose non-negativity was itself established by the engine.

Expressions may be written in an abstract notation (``p(x)``, ``q(z)``, integrals over
``z``) that reads like a textbook. A model family (see :mod:`vaebook.symbolic.families`)
then *interprets* that notation as concrete mathematics -- finite sums over latent
states, or closed-form Gaussian integrals -- and the check runs on the interpretation.
The family is the only interpretation there is (no caller-supplied function), its name
is in every verdict, and a substitution a step relies on is proved in the family (unless
it is one of the family's own constraints) and shown with the step. The displayed
expression is the very object that was checked.

A step that does not hold raises :class:`StepError` naming the step; nothing after it
can be added. Before the symbolic proof, every equality step is also evaluated at
random parameter values to 30 digits, so a false step is reported as false rather
than as "could not simplify".
"""

from __future__ import annotations

import random
import re
from collections.abc import Mapping
from dataclasses import dataclass, field

import sympy as sp

from .certificates import Nonneg
from .errors import StepError
from .notation import LATEX_NAMES, explicit
from .printing import WIDTH, book_latex, latex_lines

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

RELATIONS = {"=": "=", ">=": r"\geq", "<=": r"\leq"}


@dataclass
class Step:
    expr: sp.Expr
    because: str  # the reason as displayed (for a bound: the certificate's reason)
    relation: str = "="
    given: Mapping = field(default_factory=dict)  # proven substitutions of this step only
    gap: object = None  # Nonneg, or callable(family) -> Nonneg, for inequality steps
    certified: str = ""  # the certificate's reason, for inequality steps


def _listing(items: list[str]) -> str:
    return items[0] if len(items) == 1 else ", ".join(items[:-1]) + " and " + items[-1]


class Derivation:
    """A chain of expressions, each checked against the one before.

    Parameters
    ----------
    start:
        The first expression (in abstract or concrete notation).
    title:
        What is being derived; used in :meth:`verdict` (``"evidence identity"``).
    family:
        The model family that gives the notation its meaning (an instance of
        :class:`~vaebook.symbolic.families.Family`): its ``interpret``, its trusted
        ``constraints`` (such as the normalisation of a finite family) and its name,
        which every verdict states. Default: :class:`~vaebook.symbolic.families.Concrete`
        (the expressions as written, for every value of their symbols). There is no
        other way to interpret a step: ``interpret=`` and ``where=`` raise ``TypeError``.
    given:
        Substitutions every step may use, ``{a: b}``. Each is proved first (``a - b``
        interpreted in the family vanishes) or the derivation is refused; each is
        shown with every step.
    latex_names:
        ``{symbol: latex}`` used when rendering (``{px: "p(x)"}``).

    Examples
    --------
    >>> x = sp.Symbol("x", positive=True)
    >>> d = Derivation(sp.log(x**2), title="log of a square")
    >>> _ = d.step(2 * sp.log(x), because="log of a power")
    >>> d.verdict()
    'log of a square: 1 step verified for all values of its symbols'
    """

    def __init__(
        self,
        start,
        *,
        title: str,
        family=None,
        given: Mapping | None = None,
        latex_names: Mapping | None = None,
        **unexpected,
    ):
        from .families import Concrete, Family  # families import certificates, not us

        if unexpected:
            raise TypeError(
                f"Derivation() got {', '.join(sorted(unexpected))}: the only interpretation "
                "of a derivation is a model family, family=... (vaebook.symbolic.families)"
            )
        family = Concrete() if family is None else family
        if not isinstance(family, Family):
            raise TypeError(f"family must be a vaebook.symbolic.families.Family, not {family!r}")
        self.start = sp.sympify(start)
        self.title = title
        self.family = family
        self.families = [family]  # every family the chain was checked on (see recheck)
        self.latex_names = {**LATEX_NAMES, **(latex_names or {})}
        self.steps: list[Step] = []
        self._given_as_passed = dict(given or {})
        self._given = self._prove_given(given, "the derivation")
        self._current_concrete = self._interpret(self.start, "the first expression")

    # -- the family -----------------------------------------------------------------
    @property
    def given(self) -> dict:
        """Every substitution the checks may use: the family's constraints and the
        proven ``given`` of the derivation (concrete, as applied)."""
        return {**self.family.constraints(), **self._concrete_given(self._given)}

    def interpret(self, expr) -> sp.Expr:
        """``expr`` in the family's meaning (what the checks compare)."""
        return self.family.interpret(expr)

    def _interpret(self, expr, what: str) -> sp.Expr:
        try:
            return self.family.interpret(expr)
        except (ValueError, NotImplementedError) as err:
            raise StepError(
                f"{self.title}: {what} cannot be checked {self.family.where}: {err}"
            ) from None

    def _concrete_given(self, given: Mapping) -> dict:
        return {self.family.interpret(a): self.family.interpret(b) for a, b in given.items()}

    def _prove_given(self, given: Mapping | None, what: str) -> dict:
        """The substitutions of ``given`` that are not the family's own constraints,
        each proved in the family (interpreted, ``a - b`` vanishes); else StepError."""
        trusted = self.family.constraints()
        proven = {}
        for a, b in dict(given or {}).items():
            a, b = sp.sympify(a), sp.sympify(b)
            if a in trusted and trusted[a] == b:
                continue  # the family's own constraint
            label = f"the substitution {a} = {b} given to {what}"
            diff = self._interpret(a, label) - self._interpret(b, label)
            diff = explicit(diff)
            numeric = _numerically_zero(diff.xreplace(trusted) if trusted else diff)
            if numeric is False or not vanishes(diff, trusted):
                raise StepError(
                    f"{self.title}: {label} is not proven {self.family.where} "
                    f"(only the family's constraints are assumed): "
                    f"{'it is false at random parameter values' if numeric is False else ''}"
                    f"{'' if numeric is False else 'the difference does not simplify to 0'}"
                )
            proven[a] = b
        return proven

    # -- building -------------------------------------------------------------------
    @property
    def current(self) -> sp.Expr:
        return self.steps[-1].expr if self.steps else self.start

    def step(self, expr, because: str, *, given: Mapping | None = None) -> Derivation:
        """Add ``= expr``. ``given`` is a substitution the step relies on (e.g.
        ``{q_1 + q_2 + q_3: 1}``): proved first in the family, then applied to both
        sides, and shown with the step's reason."""
        expr = sp.sympify(expr)
        n = len(self.steps) + 1
        where = f"step {n} ({because!r})"
        step_given = self._prove_given(given, where)
        concrete = self._interpret(expr, where)
        self._require_zero(
            self._current_concrete - concrete,
            n,
            because,
            given=self._concrete_given({**self._given, **step_given}),
        )
        self.steps.append(Step(expr, because, "=", step_given))
        self._current_concrete = concrete
        return self

    def recheck(self, *families) -> Derivation:
        """Check the same chain of steps again, from scratch, on each of ``families``;
        a step that fails raises :class:`StepError`. Returns this derivation, whose
        verdict then names every family it was checked on."""
        if not families:
            raise TypeError("recheck() needs at least one family")
        for family in families:
            d = Derivation(
                self.start,
                title=self.title,
                family=family,
                given=self._given_as_passed or None,
                latex_names=self.latex_names,
            )
            for s in self.steps:
                if s.relation == "=":
                    d.step(s.expr, s.because, given=s.given or None)
                else:
                    d.bound(s.expr, gap=s.gap, relation=s.relation)
            if family.where not in {f.where for f in self.families}:
                self.families.append(family)
        return self

    def bound(self, expr, *, gap, relation: str = ">=", **unexpected) -> Derivation:
        """Add ``>= expr`` (or ``<= expr``): accepted only if the difference between the
        larger and the smaller side equals the certified non-negative ``gap``, whose
        reason is the displayed reason of the step (no free-text ``because=``).

        ``gap`` is a :class:`Nonneg`, or a callable taking the family and returning one
        (so the same derivation can be re-checked on another family, see :meth:`recheck`).
        """
        if unexpected:
            raise TypeError(
                f"bound() got {', '.join(sorted(unexpected))}: the reason of an inequality "
                "is its certificate's reason (gap=...), not free text"
            )
        if relation not in (">=", "<="):
            raise ValueError(f"relation must be '>=' or '<=', got {relation!r}")
        certificate = gap(self.family) if callable(gap) else gap
        if type(certificate) is not Nonneg:
            raise TypeError("gap must be a Nonneg certificate (or a callable returning one)")
        expr = sp.sympify(expr)
        n = len(self.steps) + 1
        reason = certificate.reason
        concrete = self._interpret(expr, f"step {n} ({reason!r})")
        larger_minus_smaller = (
            self._current_concrete - concrete
            if relation == ">="
            else concrete - self._current_concrete
        )
        self._require_zero(
            larger_minus_smaller
            - self._interpret(certificate.expr, f"the certificate of step {n}"),
            n,
            reason,
            what="the difference is not the certified gap",
            given=self._concrete_given(self._given),
        )
        self.steps.append(Step(expr, reason, relation, gap=gap, certified=reason))
        self._current_concrete = concrete
        return self

    def _require_zero(self, diff, n, because, what="the two sides differ", given=None):
        given = {**self.family.constraints(), **(given or {})}
        diff = explicit(diff)  # displayed N(y; mean, var) -> its formula
        numeric = _numerically_zero(diff.xreplace(given) if given else diff)
        if numeric is False:
            raise StepError(
                f"{self.title}: step {n} ({because!r}) is false: {what} "
                f"(checked at random parameter values {self.family.where})"
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
            self._interpret(expected, "the conclusion") - self._current_concrete, self.given
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

    def checked_where(self) -> str:
        """Where the steps were checked: one family (``"on the finite family (K=3)
        only"``) or all of them (``"on 2 families: the ... and the ..."``)."""
        fams = self.families
        if len(fams) == 1:
            return fams[0].where + (" only" if fams[0].model else "")
        if all(f.model for f in fams):
            return f"on {len(fams)} families: " + _listing([f"the {f.name}" for f in fams])
        return _listing([f.where for f in fams])

    def verdict(self) -> str:
        n = self.n_verified
        return f"{self.title}: {n} step{'s' if n != 1 else ''} verified {self.checked_where()}"

    def _tex(self, expr) -> str:
        return book_latex(expr, symbol_names=self.latex_names)

    def _reason(self, s: Step) -> str:
        """The reason of a step as MyST Markdown: its text (which may hold inline math
        ``$...$`` and equation references ``{eq}`label```), then the substitutions it
        uses, typeset."""
        given = {**self._given, **s.given}
        if not given:
            return s.because
        uses = ", ".join(f"${self._tex(sp.Eq(a, b, evaluate=False))}$" for a, b in given.items())
        return f"{s.because} (using {uses})"

    @staticmethod
    def _reason_text(reason: str) -> str:
        r"""A MyST reason as the argument of ``\text{}``: inline math kept, text escaped,
        ``{eq}`label``` written as ``(label)`` (no equation numbers inside math)."""
        reason = re.sub(r"\{eq\}`([^`]*)`", r"(\1)", reason)
        parts = reason.split("$")
        for i in range(0, len(parts), 2):  # outside the inline math
            parts[i] = re.sub(r"([_&%#])", r"\\\1", parts[i])
        return "$".join(parts)

    def _expression_rows(self, rel: str, expr, tag: str) -> list[str]:
        """Rows of an ``aligned`` block for one expression: a sum too wide for the
        column continues on further rows, indented."""
        budget = WIDTH - (2 if rel else 0) - (3 if tag else 0)
        lines = latex_lines(expr, symbol_names=self.latex_names, width=budget)
        first = f"{rel}\\ & {lines[0]}" if rel else f"& {lines[0]}"
        rows = [first + (f" && {tag}" if tag else "")]
        rows += [rf"& \quad {line}" for line in lines[1:]]
        return rows

    def latex(self, reasons: bool = True) -> str:
        """An ``aligned`` block: one row per expression (more for a long sum), with the
        reason on the right (or, with ``reasons=False``, the step number, for
        :meth:`_repr_markdown_`, which puts the reasons under the block)."""
        rows = self._expression_rows("", self.start, "")
        for i, s in enumerate(self.steps, 1):
            if reasons:
                tag = rf"\text{{{self._reason_text(self._reason(s))}}}"
            else:
                tag = rf"\text{{[{i}]}}"  # brackets: not to be confused with equation numbers
            rows += self._expression_rows(RELATIONS[s.relation], s.expr, tag)
        return r"\begin{aligned}" + " \\\\\n".join(rows) + r"\end{aligned}"

    def _definitions_markdown(self) -> str:
        defs = self.family.definitions()
        if not defs:
            return ""
        items = ", ".join(f"${self._tex(k)} = {self._tex(v)}$" for k, v in defs.items())
        return f"where {items}.\n\n"

    def _repr_latex_(self) -> str:
        return "$$" + self.latex() + "$$"

    def _repr_markdown_(self) -> str:
        """The chain with numbered steps; under it, each step's reason (typeset, with
        equation references that render as numbers), the definitions it was checked
        with, and the verdict (which names the families)."""
        reasons = "\n".join(f"- [{i}] {self._reason(s)}" for i, s in enumerate(self.steps, 1))
        return (
            f"$$\n{self.latex(reasons=False)}\n$$\n\n{reasons}\n\n"
            f"{self._definitions_markdown()}*{self.verdict()}.*\n"
        )

    def __repr__(self) -> str:
        return self.verdict()

    def equation(self) -> sp.Expr:
        """``start (rel) end`` as a SymPy relation, for stating the result."""
        ops = {"=": sp.Eq, ">=": sp.Ge, "<=": sp.Le}
        return ops[self.relation](self.start, self.current, evaluate=False)
