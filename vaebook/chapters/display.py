"""Putting checked SymPy results on the page.

:func:`glue_math` stores an expression under a name so a chapter's Markdown can show it
as a numbered, labelled equation with ``{glue:math}`` (MyST-NB) -- the displayed
equation is then the checked SymPy object, never LaTeX typed by hand. :func:`typeset`
shows results as display math.

Neither displays a relation the engine did not check: a relation is shown only when a
checked :class:`~vaebook.symbolic.derivation.Derivation` established it, or (in
:func:`typeset`) when both sides are SymPy expressions that the engine proves equal on
the spot; a named value computed by the package (``\\mathbb{E}[z \\mid x]`` and its
SymPy expression) is shown as computed. A relation typed as LaTeX is refused; a result
quoted without a check belongs in the chapter's Markdown, marked not machine-checked.
"""

from __future__ import annotations

from collections.abc import Sequence

import sympy as sp

from ..symbolic.derivation import Derivation, StepError, checked_relation
from ..symbolic.printing import WIDTH, book_latex, latex_lines, tex_width
from ..symbolic.text import check_tex_label, check_text, states_relation

__all__ = ["markdown_table", "LatexMath", "glue_math", "typeset", "refusal", "Refusal"]


def _tex(obj) -> str:
    if isinstance(obj, str):
        return obj
    if hasattr(obj, "latex") and callable(obj.latex):
        return obj.latex()
    return book_latex(sp.sympify(obj))


_FROM_TYPESET = object()


class LatexMath:
    """A LaTeX string that Jupyter renders as display math (mime type ``text/latex``).
    Made by :func:`typeset` (whose rows are checked or computed) or :func:`glue_math`;
    one built by hand may state no relation."""

    def __init__(self, tex: str, *, _made_by=None):
        if _made_by is not _FROM_TYPESET and states_relation(tex):
            raise TypeError(
                "a relation typed as LaTeX is not checked: display a Derivation, a relation "
                "it established, or typeset() rows; quote an unchecked result in the "
                "chapter's Markdown, marked ':class: unchecked'"
            )
        self.tex = tex

    def _repr_latex_(self) -> str:
        return f"$${self.tex}$$"

    def __repr__(self) -> str:
        return self.tex


def glue_math(name: str, expr, *, display: bool = False) -> LatexMath:
    """Glue ``expr`` under ``name`` for ``{glue:math}``; returns the glued object.

    ``expr`` is a :class:`~vaebook.symbolic.derivation.Derivation` (its chain, steps
    tagged ``[n]``), a relation that a checked derivation established (its
    ``equation()``), a SymPy expression stating no relation, or what :func:`typeset`
    made. A relation no derivation established, or LaTeX that states one, raises
    ``TypeError``.
    """
    from myst_nb import glue  # imported here: only chapters need it

    if isinstance(expr, Derivation):
        # its steps tagged [n]; the reasons (with equation references that must render
        # as numbers) are in the Markdown under the derivation's own output
        obj = LatexMath(expr.latex(reasons=False), _made_by=_FROM_TYPESET)
    elif isinstance(expr, LatexMath):
        obj = expr
    elif isinstance(expr, (sp.Basic, bool, int, float)):
        expr = sp.sympify(expr)
        if isinstance(expr, (sp.Rel, sp.logic.boolalg.BooleanAtom)):
            if not checked_relation(expr):
                raise TypeError(
                    f"glue_math({name!r}, ...): no checked derivation established this "
                    "relation; glue the Derivation or its equation(), or quote the result "
                    "in Markdown, marked ':class: unchecked'"
                )
        else:  # an expression: its symbols must be honest, as in a derivation
            Derivation(expr, title="a displayed expression")
        obj = LatexMath(_tex(expr), _made_by=_FROM_TYPESET)
    else:
        obj = LatexMath(str(expr))  # LaTeX text: refused if it states a relation
    glue(name, obj, display=display)
    return obj


def _check_row(lhs, rhs, relation: str, family) -> None:
    """Refuse a row that states an unchecked relation (see :func:`typeset`)."""
    if isinstance(rhs, str) or not isinstance(sp.sympify(rhs), sp.Basic):
        raise TypeError(
            f"typeset: the right-hand side {rhs!r} must be a SymPy expression or a number; "
            "LaTeX text states what nothing checked"
        )
    rhs = sp.sympify(rhs)
    if isinstance(lhs, str):
        check_tex_label(lhs, "typeset: the name of a value")
        if rhs.free_symbols or not rhs.is_number:
            raise TypeError(
                f"typeset: '{lhs}' with a symbolic right-hand side states a relation that "
                "nothing checks; give the left-hand side as a SymPy expression (checked on "
                "family=...) -- a LaTeX name on the left is for a computed number only"
            )
        return  # a number the package computed, shown under its name
    lhs = sp.sympify(lhs)
    if relation == "=":
        Derivation(lhs, title="a typeset result", family=family).step(
            rhs, because="the two sides of a typeset row"
        )
        return
    ops = {r"\geq": sp.Ge, r"\leq": sp.Le, ">": sp.Gt, "<": sp.Lt}
    if relation not in ops or not checked_relation(ops[relation](lhs, rhs, evaluate=False)):
        raise StepError(
            f"typeset: no checked derivation established {lhs} {relation} {rhs}; "
            "derive it with Derivation.bound"
        )


_TYPESET_RELATIONS = {"=", r"\geq", r"\leq", ">", "<", r"\approx"}


def typeset(*rows, relation: str = "=", family=None) -> LatexMath:
    r"""Results as display math instead of printed Python: each row is
    ``(lhs, rhs)`` or ``(lhs, rhs, note)``, with ``lhs``/``rhs`` SymPy objects (printed
    in the book's notation and order) or LaTeX strings and ``note`` a short text, which
    may hold inline math ``$...$``. Rows are aligned on the relation; a left-hand side
    wider than half the page gets a line of its own, the relation starting the next
    line. Display the result with ``display(...)`` or as a cell's last expression.

    What a row may state: with both sides SymPy expressions, ``lhs = rhs`` is checked on
    ``family`` (default: the expressions as written) before it is shown, and any other
    relation must have been established by a checked derivation; a LaTeX name on the left
    is allowed only with a number on the right (a value the package computed). A symbolic
    right-hand side under a LaTeX name, or LaTeX on the right, is refused
    (``TypeError``); a false row raises ``StepError``.

    >>> t = sp.Symbol("t", positive=True)
    >>> typeset((sp.Derivative(t - 1 - sp.log(t), (t, 2)), 1 / t**2)).tex
    '\\begin{aligned}\\frac{d^{2}}{d t^{2}} \\left(t - \\log t - 1\\right) &= \\frac{1}{t^{2}}\\end{aligned}'
    """
    if relation not in _TYPESET_RELATIONS:
        raise ValueError(f"typeset: relation must be one of {sorted(_TYPESET_RELATIONS)}")
    lines = []
    for row in rows:
        lhs, rhs, *note = row
        _check_row(lhs, rhs, relation, family)
        if note:
            check_text(note[0], "typeset: a row's note")
            if states_relation(note[0]):
                raise ValueError(
                    f"typeset: the note {note[0]!r} states a relation that nothing checked; "
                    "say it in words, or make it a checked row"
                )
        lhs = _tex(lhs)
        note_width = tex_width(note[0]) if note else 0
        wide = tex_width(lhs) > WIDTH / 2  # the left-hand side on a line of its own
        budget = WIDTH - (4 if wide else tex_width(lhs) + 2) - note_width
        parts = latex_lines(sp.sympify(rhs), width=max(budget, 20))
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
    tex = r"\begin{aligned}" + r" \\ ".join(lines) + r"\end{aligned}"
    return LatexMath(tex, _made_by=_FROM_TYPESET)


def markdown_table(header: Sequence[str], rows: Sequence[Sequence]) -> str:
    """A Markdown table: first column left-aligned, the others right-aligned; cells are
    strings (numbers formatted by the caller)."""
    lines = [
        "| " + " | ".join(header) + " |",
        "|:---|" + "|".join("---:" for _ in header[1:]) + "|",
    ]
    lines += ["| " + " | ".join(str(c) for c in row) + " |" for row in rows]
    return "\n".join(lines)


class Refusal:
    """The engine's refusal of a wrong step, for the page: its message as Markdown, with
    the inline math of the reasons it quotes rendered."""

    def __init__(self, error: StepError):
        self.message = str(error)

    def _repr_markdown_(self) -> str:
        return f"**Refused:** {self.message}"

    def __repr__(self) -> str:
        return f"Refused: {self.message}"


def refusal(attempt, *args, **kwargs) -> Refusal:
    """Call ``attempt(*args, **kwargs)``, which must be refused by the engine
    (:class:`~vaebook.symbolic.errors.StepError`), and return the refusal for display.
    An attempt that goes through raises ``AssertionError``: a chapter that shows a wrong
    step being refused fails when it is not.

    >>> import sympy as sp
    >>> from vaebook.symbolic.derivation import Derivation
    >>> x = sp.Symbol("x", positive=True)
    >>> d = Derivation(sp.log(x**2), title="log of a square")
    >>> refusal(d.step, sp.log(x), because="a wrong step").message.split(" is false")[0]
    'log of a square: step 1 (“a wrong step”)'
    """
    try:
        attempt(*args, **kwargs)
    except StepError as err:
        return Refusal(err)
    raise AssertionError(f"the engine accepted what it should refuse: {attempt}")
