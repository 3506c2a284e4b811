"""Putting checked SymPy results on the page.

:func:`glue_math` stores an expression under a name so a chapter's Markdown can show it
as a numbered, labelled equation with ``{glue:math}`` (MyST-NB) -- the displayed
equation is then the checked SymPy object, never LaTeX typed by hand.
"""

from __future__ import annotations

from collections.abc import Sequence

import sympy as sp

from ..symbolic.notation import latex
from ..symbolic.printing import WIDTH, latex_lines, tex_width

__all__ = ["markdown_table", "LatexMath", "glue_math", "typeset"]


def _tex(obj) -> str:
    if isinstance(obj, str):
        return obj
    if hasattr(obj, "latex") and callable(obj.latex):
        return obj.latex()
    return latex(sp.sympify(obj))


class LatexMath:
    """A LaTeX string that Jupyter renders as display math (mime type ``text/latex``)."""

    def __init__(self, tex: str):
        self.tex = tex

    def _repr_latex_(self) -> str:
        return f"$${self.tex}$$"

    def __repr__(self) -> str:
        return self.tex


def glue_math(name: str, expr, *, display: bool = False) -> LatexMath:
    """Glue ``expr`` (a SymPy expression/relation, an object with ``latex()``, or a
    LaTeX string) under ``name`` for ``{glue:math}``; returns the glued object."""
    from myst_nb import glue  # imported here: only chapters need it

    if hasattr(expr, "latex") and callable(expr.latex):
        # a Derivation: its steps tagged [n]; the reasons (with equation references that
        # must render as numbers) are in the Markdown under the derivation's own output
        tex = expr.latex(reasons=False)
    elif isinstance(expr, sp.Basic):
        tex = latex(expr)
    else:
        tex = str(expr)
    obj = LatexMath(tex)
    glue(name, obj, display=display)
    return obj


def typeset(*rows, relation: str = "=") -> LatexMath:
    r"""Results as display math instead of printed Python: each row is
    ``(lhs, rhs)`` or ``(lhs, rhs, note)``, with ``lhs``/``rhs`` SymPy objects (printed
    in the book's notation and order) or LaTeX strings and ``note`` a short text, which
    may hold inline math ``$...$``. Rows are aligned on the relation; a left-hand side
    wider than half the page gets a line of its own, the relation starting the next
    line. Display the result with ``display(...)`` or as a cell's last expression.

    >>> typeset((r"h(t)", sp.Symbol("t") - 1), relation="=").tex
    '\\begin{aligned}h(t) &= t - 1\\end{aligned}'
    """
    lines = []
    for row in rows:
        lhs, rhs, *note = row
        rhs = rhs if isinstance(rhs, str) or not hasattr(rhs, "latex") else _tex(rhs)
        lhs = _tex(lhs)
        note_width = tex_width(note[0]) if note else 0
        wide = tex_width(lhs) > WIDTH / 2  # the left-hand side on a line of its own
        budget = WIDTH - (4 if wide else tex_width(lhs) + 2) - note_width
        parts = [rhs] if isinstance(rhs, str) else latex_lines(rhs, width=max(budget, 20))
        if wide:
            lines.append(f"& {lhs}")
            line = rf"& \quad {relation} {parts[0]}"
        else:
            line = f"{lhs} &{relation} {parts[0]}"
        if note:
            line += rf" && \text{{{note[0]}}}"
        lines.append(line)
        indent = r"\qquad" if wide else r"\quad"
        lines += [rf"& {indent} {part}" for part in parts[1:]]
    return LatexMath(r"\begin{aligned}" + r" \\ ".join(lines) + r"\end{aligned}")


def markdown_table(header: Sequence[str], rows: Sequence[Sequence]) -> str:
    """A Markdown table: first column left-aligned, the others right-aligned; cells are
    strings (numbers formatted by the caller)."""
    lines = [
        "| " + " | ".join(header) + " |",
        "|:---|" + "|".join("---:" for _ in header[1:]) + "|",
    ]
    lines += ["| " + " | ".join(str(c) for c in row) + " |" for row in rows]
    return "\n".join(lines)
