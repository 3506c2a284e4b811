"""Putting checked SymPy results on the page.

:func:`glue_math` stores an expression under a name so a chapter's Markdown can show it
as a numbered, labelled equation with ``{glue:math}`` (MyST-NB) -- the displayed
equation is then the checked SymPy object, never LaTeX typed by hand.
"""

from __future__ import annotations

import sympy as sp

from ..symbolic.notation import latex

__all__ = ["LatexMath", "glue_math"]


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
        tex = expr.latex()
    elif isinstance(expr, sp.Basic):
        tex = latex(expr)
    else:
        tex = str(expr)
    obj = LatexMath(tex)
    glue(name, obj, display=display)
    return obj
