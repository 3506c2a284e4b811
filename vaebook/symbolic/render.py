"""How a checked derivation is put on the page: an ``aligned`` block with the steps
numbered, the reasons under it as MyST Markdown (typeset, with equation references), the
definitions it was checked with (written with ``:=``) and its verdict.

:class:`DerivationDisplay` is the display half of
:class:`~vaebook.symbolic.derivation.Derivation`; every method first makes sure the
derivation is unchanged since it was checked, so what is shown is what was checked.
"""

from __future__ import annotations

import re

import sympy as sp

from .printing import WIDTH, book_latex, latex_lines

__all__ = ["DerivationDisplay", "RELATIONS"]

RELATIONS = {"=": "=", ">=": r"\geq", "<=": r"\leq"}


def _listing(items: list[str]) -> str:
    return items[0] if len(items) == 1 else ", ".join(items[:-1]) + " and " + items[-1]


class DerivationDisplay:
    """Rendering of a derivation (mixed into :class:`~vaebook.symbolic.derivation.Derivation`)."""

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

        def where(f) -> str:  # a concrete family's defined symbols in this page's names
            return f.describe(self._tex) if hasattr(f, "describe") else f.where

        if len(fams) == 1:
            return where(fams[0]) + (" only" if fams[0].model else "")
        if all(f.model for f in fams):
            return f"on {len(fams)} families: " + _listing([f"the {f.name}" for f in fams])
        return _listing([where(f) for f in fams])

    def assumptions(self) -> list[str]:
        """The assumptions on the author's own symbols that the checks relied on, as
        LaTeX (``x > 0``): those of every free symbol of the chain that is neither the
        notation's nor the family's (whose assumptions the family states)."""
        exprs = [self._start, *(s.expr for s in self._steps)]
        exprs += [sp.sympify(v) for v in self._family.definitions().values()]
        exprs += [sp.sympify(e) for kv in self._given_as_passed.items() for e in kv]
        return self._names.assumptions(exprs)

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
        return book_latex(expr, symbol_names=self._names.names)

    def _reason(self, s) -> str:
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
        lines = latex_lines(expr, symbol_names=self._names.names, width=budget)
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

