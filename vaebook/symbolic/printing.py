"""How the book prints SymPy expressions: an author's order, not SymPy's.

:class:`BookLatexPrinter` changes only the *printing* of an expression, never the
expression (the object a derivation checks is the object displayed):

* ``log`` of a single symbol or number is ``\\log p(x)``, of a fraction
  ``\\log \\frac{a}{b}``, with parentheses only around sums and products;
* a sum shows its positive terms first: ``z - m`` rather than ``-m + z``,
  ``\\log p(x) - \\mathrm{KL}`` rather than ``-\\mathrm{KL} + \\log p(x)``.

:func:`latex_lines` breaks a sum that is too wide for the page into several lines of an
``aligned`` block (one or more terms per line, continuation lines indented), and
:func:`tex_width` is the rough width estimate it uses.
"""

from __future__ import annotations

import re

import sympy as sp
from sympy.core.function import AppliedUndef
from sympy.printing.latex import LatexPrinter

from .notation import LATEX_NAMES

__all__ = ["BookLatexPrinter", "book_latex", "inline", "tex_width", "latex_lines", "WIDTH"]

#: the width of math that fits the text column (sphinx-book-theme at 1280 px), in the
#: units of :func:`tex_width` (about one italic letter of display math)
WIDTH = 48


def _is_negative_term(term: sp.Expr) -> bool:
    return term.could_extract_minus_sign()


class BookLatexPrinter(LatexPrinter):
    """SymPy's LaTeX printer with the book's conventions (see the module docstring)."""

    def signed_terms(self, expr: sp.Add, order=None) -> list[tuple[str, str]]:
        """``[(sign, tex), ...]`` of a sum's terms in printed order (positive terms
        first, SymPy's order otherwise); the first sign is ``""``."""
        terms = list(self._as_ordered_terms(expr, order=order))
        terms.sort(key=_is_negative_term)  # stable
        out = []
        for i, term in enumerate(terms):
            sign = "+"
            if _is_negative_term(term) and i > 0:
                sign, term = "-", -term
            tex = self._print(term)
            if self._needs_add_brackets(term):
                tex = rf"\left({tex}\right)"
            out.append(("" if i == 0 else sign, tex))
        return out

    def _print_Add(self, expr, order=None):
        return " ".join(
            f"{sign} {tex}" if sign else tex for sign, tex in self.signed_terms(expr, order)
        )

    def _print_log(self, expr, exp=None):
        (arg,) = expr.args
        arg_tex = self._print(arg)
        bare = (arg.is_Symbol or (arg.is_Number and arg.is_positive)) or (
            isinstance(arg, AppliedUndef)
        )
        numer, denom = sp.fraction(arg) if arg.is_Mul or arg.is_Pow else (arg, 1)
        if bare:
            tex = rf"\log {arg_tex}"
        elif denom != 1 and arg_tex.startswith(r"\frac"):
            tex = rf"\log {arg_tex}"
        else:
            tex = rf"\log\left({arg_tex}\right)"
        if exp is not None:
            return rf"\left({tex}\right)^{{{exp}}}"
        return tex


def book_latex(expr, symbol_names=None, **settings) -> str:
    """LaTeX of ``expr`` in the book's notation (``\\log p(x)``, ``\\mathcal{L}(q)``),
    printed by :class:`BookLatexPrinter`; ``symbol_names`` adds display names."""
    names = {**LATEX_NAMES, **(symbol_names or {})}
    return BookLatexPrinter({"symbol_names": names, **settings}).doprint(expr)


def inline(expr) -> str:
    """``expr`` as inline math, ``$...$``: how the engine's messages show an expression,
    so a refusal shown on a page is typeset."""
    return f"${book_latex(sp.sympify(expr))}$"


# --------------------------------------------------------------------- line breaking

_WIDE = {r"\log": 2.5, r"\exp": 2.5, r"\int": 1.5, r"\sum": 2, r"\mathrm": 0, r"\mathcal": 0}
_ZERO = {r"\left", r"\right", r"\mathrm", r"\mathcal", r"\operatorname", r"\text", r"\mathbb"}
_SPACING = {r"\,": 0.2, r"\;": 0.3, r"\quad": 1.5, r"\qquad": 3, r"\ ": 0.3, r"\!": 0}
_RELATIONS = {"=", "<", ">", "+", "-", r"\geq", r"\leq", r"\mid", r"\|"}


def _group(tex: str, i: int) -> tuple[str, int]:
    """The brace group starting at ``tex[i] == '{'``: its content and the index after it."""
    depth = 0
    for j in range(i, len(tex)):
        if tex[j] == "{":
            depth += 1
        elif tex[j] == "}":
            depth -= 1
            if depth == 0:
                return tex[i + 1 : j], j + 1
    return tex[i + 1 :], len(tex)


def tex_width(tex: str, scale: float = 1.0) -> float:
    """A rough width of rendered ``tex`` in italic letters: fractions are as wide as
    their wider part, sub- and superscripts count 0.7, ``\\left``/``\\right`` nothing,
    binary operators and relations 2 (their spacing)."""
    width = 0.0
    i = 0
    while i < len(tex):
        c = tex[i]
        if c == "\\":
            m = re.match(r"\\([A-Za-z]+|.)", tex[i:])
            cmd = "\\" + m.group(1)
            i += len(m.group(0))
            if cmd in (r"\frac", r"\dfrac", r"\tfrac"):
                while i < len(tex) and tex[i] == " ":
                    i += 1
                num, i = _group(tex, i) if tex[i : i + 1] == "{" else (tex[i], i + 1)
                den, i = _group(tex, i) if tex[i : i + 1] == "{" else (tex[i], i + 1)
                inner = 0.8 if scale < 1 else 1.0
                width += max(tex_width(num, scale * inner), tex_width(den, scale * inner)) + 0.4
            elif cmd in _SPACING:
                width += _SPACING[cmd] * scale
            elif cmd in _ZERO:
                pass
            elif cmd in _RELATIONS:
                width += 2 * scale
            else:
                width += _WIDE.get(cmd, 1.0) * scale
        elif c in "_^":
            i += 1
            if tex[i : i + 1] == "{":
                body, i = _group(tex, i)
            elif tex[i : i + 1] == "\\":  # an unbraced command, x_\mu
                m = re.match(r"\\([A-Za-z]+|.)", tex[i:])
                body, i = m.group(0), i + len(m.group(0))
            else:
                body, i = tex[i : i + 1], i + 1
            width += tex_width(body, scale * 0.7)
        elif c in "{} ":
            i += 1
        elif c in "=<>+-":
            width += 2 * scale
            i += 1
        else:
            width += scale
            i += 1
    return width


def latex_lines(expr, symbol_names=None, width: float = WIDTH) -> list[str]:
    """``expr`` as one or more lines of LaTeX, each at most about ``width`` wide.

    A sum too wide for one line is broken between its terms (the printed order of
    :class:`BookLatexPrinter`); the lines after the first start with ``+``/``-`` and
    should be indented by the caller (``\\quad``). Anything else stays one line.
    """
    printer = BookLatexPrinter({"symbol_names": {**LATEX_NAMES, **(symbol_names or {})}})
    whole = printer.doprint(expr)
    if tex_width(whole) <= width:
        return [whole]
    expr = sp.sympify(expr)
    if not isinstance(expr, sp.Add):
        return [whole]
    terms = printer.signed_terms(expr)
    lines: list[str] = []
    current = ""
    for sign, tex in terms:
        piece = f"{sign} {tex}" if sign else tex
        candidate = f"{current} {piece}".strip()
        if current and tex_width(candidate) + 1.5 > width:
            lines.append(current)
            current = piece
        else:
            current = candidate
    lines.append(current)
    return lines
