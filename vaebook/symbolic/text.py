"""What an author may write into a checked display: titles, reasons and notes.

A reason is shown beside a step inside the aligned block of a derivation and, as MyST
Markdown, under it; a title is part of the verdict. :func:`check_text` refuses anything
that could change the page around it -- a new block, display math, an emphasised fake
verdict, unbalanced braces, an environment closed early -- with a message that says what
was refused. Inline math ``$...$`` and equation references ``{eq}`label``` are allowed.
"""

from __future__ import annotations

import re

__all__ = ["check_text", "check_tex_name", "check_tex_label", "states_relation"]

_ROLE = re.compile(r"\{(eq|numref|ref|doc|cite|cite:p|cite:t|prf:ref)\}`[A-Za-z0-9_:.\-/]+`")
# outside inline math: no Markdown or HTML markup, no braces of its own
_TEXT_FORBIDDEN = re.compile(r"[\n\r\t*_#|<>{}`\\~]|\]\(|:::|^\s*[-+]\s")
_MATH_FORBIDDEN = re.compile(
    r"\\\\|&|\\(begin|end|tag|label|eqref|newcommand|renewcommand|def|require|html|href|"
    r"class|style|cssId)\b|\$|\n|`"
)
_VERDICT_WORDS = re.compile(r"\bverifie[sd]\b|\bverif(y|ication)\b", re.I)


def _balanced(tex: str) -> bool:
    depth = 0
    escaped = False
    for c in tex:
        if escaped:
            escaped = False
        elif c == "\\":
            escaped = True
        elif c == "{":
            depth += 1
        elif c == "}":
            depth -= 1
            if depth < 0:
                return False
    return depth == 0


def check_text(text, what: str) -> str:
    """``text`` if it is plain words with inline math and equation references; else
    :class:`ValueError` naming ``what`` and the problem."""
    if not isinstance(text, str):
        raise TypeError(f"{what} must be a string, not {type(text).__name__}")
    if not text.strip():
        raise ValueError(f"{what} is empty")
    if "$$" in text:
        raise ValueError(f"{what} may not contain display math ($$): {text!r}")
    if _VERDICT_WORDS.search(text):
        raise ValueError(
            f"{what} may not speak of verification; the engine's verdict does: {text!r}"
        )
    parts = _ROLE.sub("ROLE", text).split("$")
    if len(parts) % 2 == 0:
        raise ValueError(f"{what} has an unclosed inline math '$': {text!r}")
    for i, part in enumerate(parts):
        if i % 2 == 0:
            bad = _TEXT_FORBIDDEN.search(part)
            if bad:
                raise ValueError(
                    f"{what} may hold words, inline math $...$ and equation references only; "
                    f"{bad.group(0)!r} is not allowed outside the math: {text!r}"
                )
        else:
            bad = _MATH_FORBIDDEN.search(part)
            if bad or not _balanced(part) or not part.strip():
                raise ValueError(
                    f"{what} has inline math that could break the page "
                    f"({bad.group(0) if bad else 'unbalanced braces or empty'}): {text!r}"
                )
    return text


def check_tex_name(tex, what: str) -> str:
    """A LaTeX name for a symbol (``latex_names``): one balanced group of math that states
    nothing -- no relation, no operator between terms, no line break or environment."""
    if not isinstance(tex, str) or not tex.strip():
        raise TypeError(f"{what} must be a non-empty LaTeX string")
    bad = _MATH_FORBIDDEN.search(tex) or re.search(
        r"(?<!\\)[=<>+]|\\(leq?|geq?|neq|approx|equiv|sim|propto|cdot|times|quad|qquad)\b"
        r"|(?<![\\{(\[^_])-|\\mathrm\{(verified|checked)",
        tex,
    )
    if bad or not _balanced(tex):
        raise ValueError(
            f"{what} {tex!r} could print as more than a name "
            f"({bad.group(0) if bad else 'unbalanced braces'})"
        )
    return tex


#: a relation written in LaTeX (``:=``, a definition, is removed before looking)
_TEX_RELATION = re.compile(
    r"(?<![:<>!\\])=(?!:)|\\(leq?|geq?|neq|ne|approx|propto|lt|gt|leqslant|geqslant|equiv)\b"
    r"|<|>|[\u2260\u2264\u2265\u2248\u221d]"
)


def states_relation(tex: str) -> bool:
    """Whether LaTeX ``tex`` states a relation (=, ≤, ≥, <, >, ≠, ≈, ∝)."""
    tex = tex.replace(":=", "").replace(r"\coloneqq", "")
    tex = re.sub(r"\\(left|right|big|Big|bigg|Bigg)?[<>]", "", tex)
    # the index range of a sum or product (\sum_{n=1}^{N}) is notation, not a claim
    tex = re.sub(r"\\(sum|prod)\s*_\{[A-Za-z]\s*=[^{}=<>]*\}", "", tex)
    return bool(_TEX_RELATION.search(tex))


def check_tex_label(tex, what: str) -> str:
    """A LaTeX label for a displayed value (the left side of a typeset row): any math
    that states no relation and cannot break the display around it."""
    if not isinstance(tex, str) or not tex.strip():
        raise TypeError(f"{what} must be a non-empty LaTeX string")
    bad = _MATH_FORBIDDEN.search(tex)
    if bad or not _balanced(tex) or not tex.isascii():
        raise ValueError(
            f"{what} {tex!r} could change the display around it "
            f"({bad.group(0) if bad else 'unbalanced braces or non-ASCII'})"
        )
    if states_relation(tex):
        raise ValueError(f"{what} {tex!r} states a relation that nothing checked")
    return tex
