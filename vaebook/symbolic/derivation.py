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

from collections.abc import Mapping
from dataclasses import dataclass, field
from types import MappingProxyType

import sympy as sp

from .certificates import Nonneg
from .errors import StepError
from .names import SymbolTable
from .notation import LATEX_NAMES, explicit
from .printing import inline
from .proof import numerically_zero, vanishes
from .render import DerivationDisplay
from .text import check_text

__all__ = ["StepError", "Step", "Derivation", "vanishes", "checked_relation"]


# ------------------------------------------------------------------------ derivations

@dataclass(frozen=True)
class Step:
    """One checked step (immutable)."""

    expr: sp.Expr
    because: str  # the reason as displayed (for a bound: the certificate's reason)
    relation: str = "="
    given: Mapping = field(default_factory=lambda: MappingProxyType({}))  # proven, this step only
    gap: object = None  # Nonneg, or callable(family) -> Nonneg, for inequality steps
    certified: str = ""  # the certificate's rule, for inequality steps
    note: str = ""  # the author's words beside a certificate's rule


# ------------------------------------------------------------------ honest symbols

#: every relation a checked derivation established: ``srepr(relation) -> verdict``, so a
#: display can tell a checked relation from one written by hand (:func:`checked_relation`)
_CHECKED: dict[str, str] = {}


def checked_relation(relation) -> str | None:
    """The verdict of the checked derivation that established ``relation`` (a SymPy
    ``Eq``/``Ge``/``Le`` of its first and last expression), or ``None`` if no derivation
    did."""
    try:
        return _CHECKED.get(sp.srepr(sp.sympify(relation)))
    except (sp.SympifyError, TypeError):
        return None


class Derivation(DerivationDisplay):
    """A chain of expressions, each checked against the one before.

    Parameters
    ----------
    start:
        The first expression (in abstract or concrete notation).
    title:
        What is being derived; used in :meth:`verdict` (``"evidence identity"``). Plain
        words and inline math (see :func:`~vaebook.symbolic.text.check_text`).
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
        ``{symbol: latex}`` used when rendering (``{N1: r"\\mathcal{N}_1"}``), for the
        author's own symbols only: the notation and the family's parameters print as
        they are, and no two symbols may print alike.

    Every symbol that enters the chain is honest: it is the notation's or the family's
    own symbol when it carries such a name, no two symbols share a name or a printed
    form, and none is named or printed like a number. The assumptions the verdict relies
    on beyond the family's (``x > 0``) are stated in it.

    A derivation only grows through :meth:`step`, :meth:`bound` and :meth:`recheck`, each
    of which checks; its chain (``start``, ``steps``, ``family``, ``families``) is
    read-only, and what is displayed is exactly what was checked.

    Examples
    --------
    >>> x = sp.Symbol("x", positive=True)
    >>> d = Derivation(sp.log(x**2), title="log of a square")
    >>> _ = d.step(2 * sp.log(x), because="log of a power")
    >>> d.verdict()
    'log of a square: 1 step verified for all values of its symbols with $x > 0$'
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
        from .families import Concrete, Family  # families import the certificates, not us

        if unexpected:
            raise TypeError(
                f"Derivation() got {', '.join(sorted(unexpected))}: the only interpretation "
                "of a derivation is a model family, family=... (vaebook.symbolic.families)"
            )
        family = Concrete() if family is None else family
        if not isinstance(family, Family):
            raise TypeError(f"family must be a vaebook.symbolic.families.Family, not {family!r}")
        object.__setattr__(self, "_title", check_text(title, "the title of a derivation"))
        object.__setattr__(self, "_family", family)
        object.__setattr__(self, "_families", (family,))
        object.__setattr__(self, "_shadows", ())  # the chain on each re-checked family
        object.__setattr__(self, "_steps", ())
        object.__setattr__(self, "_names", SymbolTable(family, latex_names))
        object.__setattr__(self, "_start", sp.sympify(start))
        self._names.admit(self._start, "the first expression")
        for key, value in family.definitions().items():
            self._names.admit(key, "a definition of the family")
            self._names.admit(value, "a definition of the family")
        given = dict(given or {})
        for a, b in given.items():
            self._names.admit(sp.sympify(a), "a given substitution")
            self._names.admit(sp.sympify(b), "a given substitution")
        object.__setattr__(self, "_given_as_passed", MappingProxyType(given))
        object.__setattr__(self, "_given", self._prove_given(given, "the derivation"))
        object.__setattr__(
            self, "_current_concrete", self._interpret(self._start, "the first expression")
        )
        self._seal()

    # -- read-only state ----------------------------------------------------------
    def __setattr__(self, name, value):
        raise AttributeError(
            f"a checked derivation cannot be changed ({name}); build a new Derivation"
        )

    __delattr__ = __setattr__

    def __reduce__(self):
        raise TypeError("a checked derivation cannot be copied; build it again")

    __copy__ = __deepcopy__ = __reduce__

    @property
    def start(self) -> sp.Expr:
        return self._start

    @property
    def title(self) -> str:
        return self._title

    @property
    def family(self):
        """The family the chain was first checked on."""
        return self._family

    @property
    def families(self) -> tuple:
        """Every family the chain was checked on (see :meth:`recheck`)."""
        return self._families

    @property
    def steps(self) -> tuple[Step, ...]:
        return self._steps

    @property
    def latex_names(self) -> Mapping:
        return MappingProxyType(self._names.names)

    def _fingerprint(self) -> tuple:
        return (
            sp.srepr(self._start),
            self._title,
            tuple(
                (sp.srepr(s.expr), s.because, s.relation, sp.srepr(sp.Dict(dict(s.given))), s.note)
                for s in self._steps
            ),
            tuple(f.where for f in self._families),
            tuple(sorted((sp.srepr(k), v) for k, v in self._names.names.items())),
        )

    def _seal(self) -> None:
        """Record what was checked; every display compares against it."""
        object.__setattr__(self, "_sealed", self._fingerprint())
        if self._steps and self.relation != "mixed":
            _CHECKED[sp.srepr(self.equation())] = self.verdict()

    def _require_sealed(self) -> None:
        if self._fingerprint() != self._sealed:
            raise StepError(
                f"{self._title}: the derivation was changed after it was checked; "
                "nothing is displayed that was not checked"
            )

    # -- the family -----------------------------------------------------------------
    @property
    def given(self) -> dict:
        """Every substitution the checks may use: the family's constraints and the
        proven ``given`` of the derivation (concrete, as applied)."""
        return {**self._family.constraints(), **self._concrete_given(self._given)}

    def interpret(self, expr) -> sp.Expr:
        """``expr`` in the family's meaning (what the checks compare)."""
        return self._family.interpret(expr)

    def _interpret(self, expr, what: str) -> sp.Expr:
        try:
            return self._family.interpret(expr)
        except (ValueError, NotImplementedError) as err:
            raise StepError(
                f"{self._title}: {what} cannot be checked {self._family.where}: {err}"
            ) from None

    def _concrete_given(self, given: Mapping) -> dict:
        return {self._family.interpret(a): self._family.interpret(b) for a, b in given.items()}

    def _prove_given(self, given: Mapping | None, what: str) -> MappingProxyType:
        """The substitutions of ``given`` that are not the family's own constraints,
        each proved in the family (interpreted, ``a - b`` vanishes); else StepError."""
        trusted = self._family.constraints()
        proven = {}
        for a, b in dict(given or {}).items():
            a, b = sp.sympify(a), sp.sympify(b)
            if a in trusted and trusted[a] == b:
                continue  # the family's own constraint
            label = f"the substitution {a} = {b} given to {what}"
            diff = self._interpret(a, label) - self._interpret(b, label)
            diff = explicit(diff)
            numeric = numerically_zero(diff.xreplace(trusted) if trusted else diff)
            if numeric is False or not vanishes(diff, trusted):
                raise StepError(
                    f"{self._title}: {label} is not proven {self._family.where} "
                    f"(only the family's constraints are assumed): "
                    f"{'it is false at random parameter values' if numeric is False else ''}"
                    f"{'' if numeric is False else 'the difference does not simplify to 0'}"
                )
            proven[a] = b
        return MappingProxyType(proven)

    # -- building -------------------------------------------------------------------
    @property
    def current(self) -> sp.Expr:
        return self._steps[-1].expr if self._steps else self._start

    def _append(self, step: Step, concrete) -> Derivation:
        self._require_sealed()
        self._check_on_rechecked(step)
        object.__setattr__(self, "_steps", self._steps + (step,))
        object.__setattr__(self, "_current_concrete", concrete)
        self._seal()
        return self

    def step(self, expr, because: str, *, given: Mapping | None = None) -> Derivation:
        """Add ``= expr``. ``given`` is a substitution the step relies on (e.g.
        ``{q_1 + q_2 + q_3: 1}``): proved first in the family, then applied to both
        sides, and shown with the step's reason."""
        self._require_sealed()
        expr = sp.sympify(expr)
        n = len(self._steps) + 1
        check_text(because, f"the reason of step {n}")
        where = f"step {n} (“{because}”)"
        self._names.admit(expr, where)
        for a, b in dict(given or {}).items():
            self._names.admit(sp.sympify(a), where)
            self._names.admit(sp.sympify(b), where)
        step_given = self._prove_given(given, where)
        concrete = self._interpret(expr, where)
        self._require_zero(
            self._current_concrete - concrete,
            n,
            because,
            given=self._concrete_given({**self._given, **step_given}),
        )
        return self._append(Step(expr, because, "=", step_given), concrete)

    def _on(self, family) -> Derivation:
        """The same chain, checked from scratch on ``family`` (StepError if a step fails)."""
        d = Derivation(
            self._start,
            title=self._title,
            family=family,
            given=dict(self._given_as_passed) or None,
            latex_names={k: v for k, v in self._names.names.items() if k not in LATEX_NAMES},
        )
        for s in self._steps:
            d._extend(s)
        return d

    def _extend(self, s: Step) -> None:
        """Add step ``s`` (checked on this derivation's family)."""
        if s.relation == "=":
            self.step(s.expr, s.because, given=dict(s.given) or None)
        else:
            self.bound(s.expr, gap=s.gap, relation=s.relation, note=s.note)

    def recheck(self, *families) -> Derivation:
        """Check the same chain of steps again, from scratch, on each of ``families``;
        a step that fails raises :class:`StepError`. Returns this derivation, whose
        verdict then names every family it was checked on; a step added later is checked
        on all of them, or refused."""
        from .families import Family

        self._require_sealed()
        if not families:
            raise TypeError("recheck() needs at least one family")
        for family in families:
            if not isinstance(family, Family):
                raise TypeError(f"recheck() takes families, not {family!r}")
            if family.where in {f.where for f in self._families}:
                continue
            d = self._on(family)
            object.__setattr__(self, "_families", self._families + (family,))
            object.__setattr__(self, "_shadows", self._shadows + (d,))
            for name, sym in d._names.author_symbols.items():
                self._names.author_symbols.setdefault(name, sym)
        self._seal()
        return self

    def _check_on_rechecked(self, step: Step) -> None:
        """A new step must hold on every family the chain was re-checked on, or the
        verdict would claim more than was checked."""
        for i, shadow in enumerate(self._shadows):
            try:
                shadow._extend(step)
            except StepError as err:
                # the families before this one took the step: rebuild them without it
                rebuilt = tuple(self._on(s.family) for s in self._shadows[:i])
                object.__setattr__(self, "_shadows", rebuilt + self._shadows[i:])
                raise StepError(
                    f"{self._title}: step {len(self._steps) + 1} holds {self._family.where} "
                    f"but not {shadow.family.where}, on which this derivation was also "
                    f"checked: {err}"
                ) from None

    def bound(self, expr, *, gap, relation: str = ">=", note: str = "", **unexpected) -> Derivation:
        """Add ``>= expr`` (or ``<= expr``): accepted only if the difference between the
        larger and the smaller side equals the certified non-negative ``gap``, whose
        rule is the displayed reason of the step (no free-text ``because=``); ``note``
        adds the author's words after it, marked as the author's.

        ``gap`` is a :class:`Nonneg`, or a callable taking the family and returning one
        (so the same derivation can be re-checked on another family, see :meth:`recheck`).
        """
        self._require_sealed()
        if unexpected:
            raise TypeError(
                f"bound() got {', '.join(sorted(unexpected))}: the reason of an inequality "
                "is its certificate's rule (gap=...); the author's words go in note=..."
            )
        if relation not in (">=", "<="):
            raise ValueError(f"relation must be '>=' or '<=', got {relation!r}")
        certificate = gap(self._family) if callable(gap) else gap
        if type(certificate) is not Nonneg:
            raise TypeError("gap must be a Nonneg certificate (or a callable returning one)")
        if note:
            certificate = certificate.with_note(note)
        expr = sp.sympify(expr)
        n = len(self._steps) + 1
        reason = certificate.reason
        self._names.admit(expr, f"step {n}")
        self._names.admit(certificate.expr, f"the certificate of step {n}")
        concrete = self._interpret(expr, f"step {n} (“{reason}”)")
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
        step = Step(expr, reason, relation, gap=gap, certified=certificate.rule, note=note)
        return self._append(step, concrete)

    def _require_zero(self, diff, n, because, what="the two sides differ", given=None):
        given = {**self._family.constraints(), **(given or {})}
        diff = explicit(diff)  # displayed N(y; mean, var) -> its formula
        numeric = numerically_zero(diff.xreplace(given) if given else diff)
        if numeric is False:
            raise StepError(
                f"{self._title}: step {n} (“{because}”) is false: {what} "
                f"(checked at random parameter values {self._family.where})"
            )
        if not vanishes(diff, given):
            raise StepError(
                f"{self._title}: step {n} (“{because}”) could not be proven: "
                f"the difference does not simplify to 0: {inline(sp.simplify(diff))}"
            )

    def conclude(self, expected) -> Derivation:
        """Check that the chain ended on ``expected`` (literally the same expression)."""
        self._require_sealed()
        expected = sp.sympify(expected)
        if sp.srepr(expected) != sp.srepr(self.current) and not vanishes(
            self._interpret(expected, "the conclusion") - self._current_concrete, self.given
        ):
            raise StepError(f"{self._title}: the derivation ends on {self.current}, not {expected}")
        return self

    def __repr__(self) -> str:
        return self.verdict()

    def equation(self) -> sp.Expr:
        """``start (rel) end`` as a SymPy relation, for stating the result."""
        ops = {"=": sp.Eq, ">=": sp.Ge, "<=": sp.Le}
        if self.relation not in ops:
            raise StepError(f"{self.title}: a chain of mixed bounds states no single relation")
        return ops[self.relation](self.start, self.current, evaluate=False)
