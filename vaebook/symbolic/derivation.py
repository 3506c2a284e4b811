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
from types import MappingProxyType

import sympy as sp
from sympy.core.function import AppliedUndef

from .certificates import Nonneg, satisfies_assumptions
from .errors import StepError
from .notation import LATEX_NAMES, NOTATION, explicit
from .printing import WIDTH, book_latex, latex_lines
from .text import check_tex_name, check_text

__all__ = ["StepError", "Step", "Derivation", "vanishes", "checked_relation"]


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


_NUMBER_NAME = re.compile(
    r"[-+]?(\d+\.?\d*|\.\d+)([eE][-+]?\d+)?|[-+]?\d+/\d+|[-+]?(oo|inf|infinity|nan|zoo)"
    r"|pi|E|I|\\pi|\\infty|e|i|\\mathrm\{?e\}?|\\mathrm\{?i\}?",
    re.I,
)


def _printed(tex: str) -> str:
    """A printed form with the spacing and grouping that do not show removed."""
    tex = re.sub(r"\\(left|right|big|Big|bigg|Bigg)(?![A-Za-z])", "", tex)
    tex = re.sub(r"\\[,;:!]|\\quad|\\qquad|\\ ", "", tex)
    tex = re.sub(r"\\(mathit|mathrm|operatorname)\{([^{}]*)\}", r"\2", tex)
    return re.sub(r"[\s{}]", "", tex)


_ASSUMPTION_TEX = (
    ("positive", "{} > 0"),
    ("negative", "{} < 0"),
    ("nonnegative", r"{} \geq 0"),
    ("nonpositive", r"{} \leq 0"),
    ("integer", "{} \\in \\mathbb{{Z}}"),
    ("real", r"{} \in \mathbb{{R}}"),
    ("nonzero", r"{} \neq 0"),
)


def _assumption_tex(sym: sp.Symbol, tex: str) -> str | None:
    """The strongest stated assumption of ``sym`` as LaTeX (``x > 0``), or ``None``."""
    facts = sym.assumptions0
    for name, pattern in _ASSUMPTION_TEX:
        if facts.get(name):
            return pattern.format(tex)
    return None


def _facts(sym) -> str:
    facts = getattr(sym, "assumptions0", {})
    shown = [k for k in ("positive", "nonnegative", "negative", "real", "integer") if facts.get(k)]
    return ", ".join(shown) or "no assumptions"


def _listing(items: list[str]) -> str:
    return items[0] if len(items) == 1 else ", ".join(items[:-1]) + " and " + items[-1]


class Derivation:
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
        from .families import Concrete, Family  # families import certificates, not us

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
        object.__setattr__(self, "_steps", ())
        object.__setattr__(self, "_symbols", {})  # name -> the one symbol of that name
        object.__setattr__(self, "_author_symbols", {})  # symbols not the family's
        object.__setattr__(self, "_latex_names", self._check_latex_names(latex_names, family))
        object.__setattr__(self, "_start", sp.sympify(start))
        self._admit(self._start, "the first expression")
        for key, value in family.definitions().items():
            self._admit(key, "a definition of the family")
            self._admit(value, "a definition of the family")
        given = dict(given or {})
        for a, b in given.items():
            self._admit(sp.sympify(a), "a given substitution")
            self._admit(sp.sympify(b), "a given substitution")
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
        return MappingProxyType(self._latex_names)

    def _fingerprint(self) -> tuple:
        return (
            sp.srepr(self._start),
            self._title,
            tuple(
                (sp.srepr(s.expr), s.because, s.relation, sp.srepr(sp.Dict(dict(s.given))), s.note)
                for s in self._steps
            ),
            tuple(f.where for f in self._families),
            tuple(sorted((sp.srepr(k), v) for k, v in self._latex_names.items())),
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

    # -- honest symbols and names --------------------------------------------------
    @staticmethod
    def _check_latex_names(latex_names, family) -> dict:
        names = dict(LATEX_NAMES)
        reserved = {**{s.name: s for s in NOTATION}, **family.symbols()}
        for key, tex in dict(latex_names or {}).items():
            if not isinstance(key, sp.Symbol):
                raise TypeError(f"latex_names renames symbols, not {key!r}")
            if key.name in reserved:
                if tex == names.get(key):
                    continue  # the notation's own name, unchanged
                raise ValueError(
                    f"latex_names may not change how {key} prints: it is "
                    f"{'a notation object' if key in NOTATION else 'a parameter of the ' + family.name}"
                )
            names[key] = check_tex_name(tex, f"the display name of {key}")
        return names

    def _tex_of(self, sym) -> str:
        return book_latex(sym, symbol_names=self._latex_names)

    def _admit(self, expr, what: str) -> None:
        """Refuse a symbol that pretends to be another (see the class docstring)."""
        expr = sp.sympify(expr)
        if not isinstance(expr, sp.Basic):
            return
        reserved = {**{s.name: s for s in NOTATION}, **self._family.symbols()}
        printed = {_printed(self._tex_of(s)): s for s in reserved.values()}
        printed.update({_printed(self._tex_of(s)): s for s in self._symbols.values()})
        objects = expr.atoms(sp.Symbol) | expr.atoms(AppliedUndef)
        for sym in sorted(objects, key=sp.srepr):
            label = f"{what}: the symbol {sym}"
            if isinstance(sym, sp.Dummy):
                raise StepError(f"{label} is a Dummy, which prints like an ordinary symbol")
            name = sym.name if isinstance(sym, sp.Symbol) else str(sym)
            tex = self._tex_of(sym)
            check_tex_name(tex, label + " prints as")
            if _NUMBER_NAME.fullmatch(name.strip()) or _NUMBER_NAME.fullmatch(_printed(tex)):
                raise StepError(f"{label} is named or printed like a number")
            if name in reserved and reserved[name] != sym:
                owner = "the notation's" if reserved[name] in NOTATION else "the family's"
                raise StepError(
                    f"{label} is not {owner} {name}: same name, other assumptions "
                    f"({_facts(sym)} instead of {_facts(reserved[name])})"
                )
            if name in self._symbols and self._symbols[name] != sym:
                raise StepError(
                    f"{label} has the name of another symbol of this derivation "
                    f"with other assumptions ({_facts(sym)} vs {_facts(self._symbols[name])})"
                )
            twin = printed.get(_printed(tex))
            if twin is not None and twin != sym:
                raise StepError(f"{label} prints like {twin}: ${tex}$")
            printed[_printed(tex)] = sym
            if isinstance(sym, sp.Symbol):
                self._symbols[name] = sym
                if name not in reserved:
                    self._author_symbols[name] = sym

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
            numeric = _numerically_zero(diff.xreplace(trusted) if trusted else diff)
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
        where = f"step {n} ({because!r})"
        self._admit(expr, where)
        for a, b in dict(given or {}).items():
            self._admit(sp.sympify(a), where)
            self._admit(sp.sympify(b), where)
        step_given = self._prove_given(given, where)
        concrete = self._interpret(expr, where)
        self._require_zero(
            self._current_concrete - concrete,
            n,
            because,
            given=self._concrete_given({**self._given, **step_given}),
        )
        return self._append(Step(expr, because, "=", step_given), concrete)

    def recheck(self, *families) -> Derivation:
        """Check the same chain of steps again, from scratch, on each of ``families``;
        a step that fails raises :class:`StepError`. Returns this derivation, whose
        verdict then names every family it was checked on."""
        from .families import Family

        self._require_sealed()
        if not families:
            raise TypeError("recheck() needs at least one family")
        for family in families:
            if not isinstance(family, Family):
                raise TypeError(f"recheck() takes families, not {family!r}")
            d = Derivation(
                self._start,
                title=self._title,
                family=family,
                given=dict(self._given_as_passed) or None,
                latex_names={k: v for k, v in self._latex_names.items() if k not in LATEX_NAMES},
            )
            for s in self._steps:
                if s.relation == "=":
                    d.step(s.expr, s.because, given=dict(s.given) or None)
                else:
                    d.bound(s.expr, gap=s.gap, relation=s.relation, note=s.note)
            if family.where not in {f.where for f in self._families}:
                object.__setattr__(self, "_families", self._families + (family,))
            for name, sym in d._author_symbols.items():
                self._author_symbols.setdefault(name, sym)
        self._seal()
        return self

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
        self._admit(expr, f"step {n}")
        self._admit(certificate.expr, f"the certificate of step {n}")
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
        step = Step(expr, reason, relation, gap=gap, certified=certificate.rule, note=note)
        return self._append(step, concrete)

    def _require_zero(self, diff, n, because, what="the two sides differ", given=None):
        given = {**self._family.constraints(), **(given or {})}
        diff = explicit(diff)  # displayed N(y; mean, var) -> its formula
        numeric = _numerically_zero(diff.xreplace(given) if given else diff)
        if numeric is False:
            raise StepError(
                f"{self._title}: step {n} ({because!r}) is false: {what} "
                f"(checked at random parameter values {self._family.where})"
            )
        if not vanishes(diff, given):
            raise StepError(
                f"{self._title}: step {n} ({because!r}) could not be proven: "
                f"the difference does not simplify to 0: {sp.simplify(diff)}"
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

    def assumptions(self) -> list[str]:
        """The assumptions on the author's own symbols that the checks relied on, as
        LaTeX (``x > 0``): those of every free symbol of the chain that is neither the
        notation's nor the family's (whose assumptions the family states)."""
        exprs = [self._start, *(s.expr for s in self._steps)]
        exprs += [sp.sympify(v) for v in self._family.definitions().values()]
        exprs += [sp.sympify(e) for kv in self._given_as_passed.items() for e in kv]
        free = set().union(*(e.free_symbols for e in exprs))
        own = [s for s in self._author_symbols.values() if s in free]
        shown = (_assumption_tex(s, self._tex_of(s)) for s in sorted(own, key=lambda s: s.name))
        return [t for t in shown if t]

    def verdict(self) -> str:
        """``"<title>: <n> steps verified <where>"``, with the assumptions relied on."""
        self._require_sealed()
        n = self.n_verified
        assumed = self.assumptions()
        where = self.checked_where()
        if assumed:  # "for all values of its symbols with x > 0[, where N_1 is as defined]"
            relying = " with " + _listing([f"${a}$" for a in assumed])
            head, sep, tail = where.partition(", where ")
            where = head + relying + sep + tail
        return f"{self.title}: {n} step{'s' if n != 1 else ''} verified {where}"

    def _tex(self, expr) -> str:
        return book_latex(expr, symbol_names=self._latex_names)

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
        lines = latex_lines(expr, symbol_names=self._latex_names, width=budget)
        first = f"{rel}\\ & {lines[0]}" if rel else f"& {lines[0]}"
        rows = [first + (f" && {tag}" if tag else "")]
        rows += [rf"& \quad {line}" for line in lines[1:]]
        return rows

    def latex(self, reasons: bool = True) -> str:
        """An ``aligned`` block: one row per expression (more for a long sum), with the
        reason on the right (or, with ``reasons=False``, the step number, for
        :meth:`_repr_markdown_`, which puts the reasons under the block)."""
        self._require_sealed()
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
        items = ", ".join(f"${self._tex(k)} := {self._tex(v)}$" for k, v in defs.items())
        return f"where {items}.\n\n"

    def _repr_latex_(self) -> str:
        return "$$" + self.latex() + "$$"

    def _repr_markdown_(self) -> str:
        """The chain with numbered steps; under it, each step's reason (typeset, with
        equation references that render as numbers), the definitions it was checked
        with, and the verdict (which names the families)."""
        self._require_sealed()
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
        if self.relation not in ops:
            raise StepError(f"{self.title}: a chain of mixed bounds states no single relation")
        return ops[self.relation](self.start, self.current, evaluate=False)
