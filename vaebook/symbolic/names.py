"""Honest symbols: what a derivation lets into its chain, and how it prints them.

A :class:`SymbolTable` belongs to one derivation. It admits a symbol only if it is the
notation's or the family's own symbol when it carries such a name, shares its name and its
printed form with no other symbol, and is neither named nor printed like a number; it
refuses display names that would rename the notation or a family parameter, or print as
more than a name. It also states the assumptions on the author's own symbols that a
verdict relies on.
"""

from __future__ import annotations

import re
from collections.abc import Mapping

import sympy as sp
from sympy.core.function import AppliedUndef

from .errors import StepError
from .notation import LATEX_NAMES, NOTATION
from .printing import book_latex
from .text import check_tex_name

__all__ = ["SymbolTable"]


_NUMBER_NAME = re.compile(
    r"[-+]?(\d+\.?\d*|\.\d+)([eE][-+]?\d+)?|[-+]?\d+/\d+|[-+]?(oo|inf|infinity|nan|zoo)"
    r"|pi|E|I|\\pi|\\infty|e|i|\\mathrm\{?e\}?|\\mathrm\{?i\}?",
    re.I,
)


_GREEK = {
    "alpha", "beta", "gamma", "delta", "epsilon", "varepsilon", "zeta", "eta", "theta",
    "vartheta", "iota", "kappa", "lambda", "mu", "nu", "xi", "pi", "rho", "varrho", "sigma",
    "tau", "upsilon", "phi", "varphi", "chi", "psi", "omega", "Gamma", "Delta", "Theta",
    "Lambda", "Xi", "Pi", "Sigma", "Upsilon", "Phi", "Psi", "Omega",
}  # fmt: skip
#: commands a symbol may print with: letters, accents, the notation's delimiters
_NAME_COMMANDS = _GREEK | {
    "mathcal", "mathrm", "operatorname", "text", "mathbf", "boldsymbol", "hat", "bar",
    "tilde", "dot", "ddot", "vec", "mid", "ell", "prime", "star", "ast", "left", "right",
    "mathit", ",", ";", "|", " ",
}  # fmt: skip
_NAME_CHARS = re.compile(r"[A-Za-z0-9_^{}()\[\],;.'|*\s\\-]*")


def check_symbol_tex(tex: str, label: str) -> None:
    """A symbol prints as letters, digits, Greek letters, accents, sub- and superscripts and
    the notation's delimiters -- nothing invisible, coloured, struck, Unicode or
    number-like (``\\frac``, ``\\mathbb{1}``, ``\\imath``), and no empty group."""
    if not tex.isascii():
        raise StepError(f"{label} prints with non-ASCII characters: {tex!r}")
    if not _NAME_CHARS.fullmatch(tex):
        raise StepError(f"{label} prints with characters a name does not have: {tex!r}")
    for cmd in re.findall(r"\\([A-Za-z]+|.)", tex):
        if cmd not in _NAME_COMMANDS:
            raise StepError(f"{label} prints with \\{cmd}, which a symbol's name may not use")
    if re.search(r"\{\s*\}", tex) or re.search(r"[_^]\s*(?![{\w\\*'])", tex):
        raise StepError(f"{label} prints with an empty group or script: {tex!r}")
    if re.match(r"\s*[0-9.]", tex):
        raise StepError(f"{label} prints like a number times something: {tex!r}")


def _printed(tex: str) -> str:
    """A printed form with the spacing and grouping that do not show removed."""
    tex = re.sub(r"\\(left|right|big|Big|bigg|Bigg)(?![A-Za-z])", "", tex)
    tex = re.sub(r"\\[,;:!]|\\quad|\\qquad|\\ ", "", tex)
    tex = re.sub(r"\\(mathit|mathrm|operatorname|text)\{([^{}]*)\}", r"\2", tex)
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


class SymbolTable:
    """The symbols of one derivation on one family, and their display names."""

    def __init__(self, family, latex_names: Mapping | None = None):
        self.family = family
        self.reserved = {**{s.name: s for s in NOTATION}, **family.symbols()}
        self.defined = set(family.definitions())  # display symbols, checked against definitions
        self.names = self._check_latex_names(latex_names)
        self.symbols: dict = {}  # name -> the one symbol of that name
        self.author_symbols: dict = {}  # symbols neither the notation's nor the family's

    def _check_latex_names(self, latex_names) -> dict:
        names = dict(LATEX_NAMES)
        for key, tex in dict(latex_names or {}).items():
            if not isinstance(key, sp.Symbol):
                raise TypeError(f"latex_names renames symbols, not {key!r}")
            if key.name in self.reserved:
                if tex == names.get(key):
                    continue  # the notation's own name, unchanged
                owner = "a notation object" if key in NOTATION else "a family parameter"
                raise ValueError(f"latex_names may not change how {key} prints: it is {owner}")
            names[key] = check_tex_name(tex, f"the display name of {key}")
        return names

    def tex(self, expr) -> str:
        return book_latex(expr, symbol_names=self.names)

    def admit(self, expr, what: str) -> None:
        """Refuse a symbol of ``expr`` that pretends to be another (module docstring)."""
        expr = sp.sympify(expr)
        if not isinstance(expr, sp.Basic):
            return
        printed: dict = {}
        for known in (*self.reserved.values(), *self.symbols.values()):
            printed.setdefault(_printed(self.tex(known)), known)
        odd = expr.atoms(sp.Wild, sp.Indexed, sp.IndexedBase, sp.MatrixSymbol)
        if odd:
            raise StepError(
                f"{what}: {sorted(map(str, odd))} are not plain symbols (pattern, indexed or "
                "matrix symbols print like others); use sp.Symbol"
            )
        objects = expr.atoms(sp.Symbol) | expr.atoms(AppliedUndef)
        for sym in sorted(objects, key=sp.srepr):
            label = f"{what}: the symbol {sym}"
            if isinstance(sym, sp.Dummy):
                raise StepError(f"{label} is a Dummy, which prints like an ordinary symbol")
            name = sym.name if isinstance(sym, sp.Symbol) else str(sym)
            tex = self.tex(sym)
            check_tex_name(tex, label + " prints as")
            check_symbol_tex(tex, label)
            if _NUMBER_NAME.fullmatch(name.strip()) or _NUMBER_NAME.fullmatch(_printed(tex)):
                raise StepError(f"{label} is named or printed like a number")
            if name in self.reserved and self.reserved[name] != sym:
                owner = "the notation's" if self.reserved[name] in NOTATION else "the family's"
                raise StepError(
                    f"{label} is not {owner} {name}: same name, other assumptions "
                    f"({_facts(sym)} instead of {_facts(self.reserved[name])})"
                )
            if name in self.symbols and self.symbols[name] != sym:
                raise StepError(
                    f"{label} has the name of another symbol of this derivation "
                    f"with other assumptions ({_facts(sym)} vs {_facts(self.symbols[name])})"
                )
            twin = printed.get(_printed(tex))
            if twin is not None and twin != sym:
                raise StepError(f"{label} prints like {twin}: ${tex}$")
            printed[_printed(tex)] = sym
            if isinstance(sym, sp.Symbol):
                self.symbols[name] = sym
                if name not in self.reserved:
                    self.author_symbols[name] = sym

    def assumptions(self, exprs) -> list[str]:
        """The assumptions (LaTeX, ``x > 0``) of the author's symbols free in ``exprs``."""
        free = set().union(*(sp.sympify(e).free_symbols for e in exprs))
        own = [s for s in self.author_symbols.values() if s in free and s not in self.defined]
        own.sort(key=lambda s: s.name)
        return [t for t in (_assumption_tex(s, self.tex(s)) for s in own) if t]
