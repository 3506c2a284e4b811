"""The book's structure: _toc.yml lists exactly the chapters in book/, chapters carry
their outputs, define no reusable code, and a broken derivation step stops a chapter."""

import json
import re
from pathlib import Path

import matplotlib
import pytest
import yaml

from vaebook.symbolic.text import states_relation
from vaebook.symbolic.derivation import StepError

ROOT = Path(__file__).resolve().parents[1]
BOOK = ROOT / "book"


def _toc_files():
    toc = yaml.safe_load((ROOT / "_toc.yml").read_text())
    files = [toc["root"]]
    for part in toc.get("parts", []):
        files += [c["file"] for c in part["chapters"]]
    return files


def _notebooks():
    return sorted(BOOK.glob("*.ipynb"))


def _code_cells(path):
    nb = json.loads(path.read_text())
    return [c for c in nb["cells"] if c["cell_type"] == "code"]


def test_toc_lists_exactly_the_chapters_in_book():
    listed = set(_toc_files())
    on_disk = {f"book/{p.stem}" for p in BOOK.glob("*.ipynb")} | {
        f"book/{p.stem}" for p in BOOK.glob("*.md")
    }
    assert listed == on_disk, (
        f"in _toc.yml only: {listed - on_disk}; in book/ only: {on_disk - listed}"
    )


@pytest.mark.parametrize("path", _notebooks(), ids=lambda p: p.name)
def test_chapter_has_outputs_and_no_reusable_code(path):
    cells = _code_cells(path)
    assert cells, "a chapter without code checks nothing"
    assert all(c.get("execution_count") for c in cells), "every code cell was executed"
    assert sum(len(c["outputs"]) for c in cells) >= len(cells) // 2, (
        "the chapter carries its committed outputs (nbval compares against them)"
    )
    for c in cells:
        src = "".join(c["source"])
        assert not re.search(r"^\s*(def|class)\s", src, re.M), (
            f"{path.name} defines code; reusable code belongs in the vaebook package:\n{src}"
        )
        for out in c["outputs"]:
            assert out["output_type"] != "error", f"{path.name} has a stored error"
            assert "Traceback" not in json.dumps(out)
            # a warning or a path of the machine that ran it would differ on a reader's
            assert out.get("name") != "stderr", f"{path.name} stores stderr: {out.get('text')}"
            assert not re.search(r"/(work|tmp|root|home|Users)/[A-Za-z]", json.dumps(out))


def _run_cells(sources):
    matplotlib.use("Agg")
    namespace = {"__name__": "__chapter__"}
    for src in sources:
        src = "\n".join(l for l in src.splitlines() if not l.lstrip().startswith(("%", "!")))
        exec(compile(src, "<chapter>", "exec"), namespace)  # noqa: S102


def test_breaking_a_derivation_step_stops_the_chapter():
    """Mutate one expression of the evidence-identity derivation: the chapter must fail."""
    sources = ["".join(c["source"]) for c in _code_cells(BOOK / "03_evidence_identity.ipynb")]
    target = "integral(qz * sp.log(pxz / pz_x))"
    assert sum(target in s for s in sources) == 1
    _run_cells([s for s in sources if "lambdify" not in s][:4])  # intact prefix runs
    broken = [s.replace(target, "integral(qz * sp.log(pxz / N.pz))") for s in sources]
    with pytest.raises(StepError, match="Bayes"):
        _run_cells(broken)


# ----------------------------------------------------------- what the reader is shown

_DISPLAY = re.compile(
    r"\$\$(?P<dollar>.*?)\$\$|```\{math\}(?P<directive>.*?)```"
    r"|(?P<env>\\begin\{(equation|align|gather|multline)\*?\}.*?\\end\{\4\*?\})",
    re.S,
)


def _markdown_sources():
    """(page, markdown text) of every page and notebook Markdown cell in _toc.yml."""
    for name in _toc_files():
        md, nb = ROOT / f"{name}.md", ROOT / f"{name}.ipynb"
        if md.exists():
            yield md.name, md.read_text()
        else:
            for cell in json.loads(nb.read_text())["cells"]:
                if cell["cell_type"] == "markdown":
                    yield nb.name, "".join(cell["source"])


def unmarked_relations(text: str) -> list[str]:
    """The displays in ``text`` that state a relation without being marked as not
    machine-checked (a ``{math}`` directive with ``:class: unchecked``). Displays the
    engine produced reach the page from code ({glue:math}, cell outputs), not from here."""
    bad = []
    for m in _DISPLAY.finditer(text):
        body = m.group("dollar") or m.group("directive") or m.group("env") or ""
        if m.group("directive") is not None:
            options = [l.strip() for l in body.splitlines() if l.strip().startswith(":")]
            if ":class: unchecked" in options:
                continue
            body = "\n".join(l for l in body.splitlines() if not l.strip().startswith(":"))
        if states_relation(body):  # ``:=``, a definition, is not a claim
            bad.append(m.group(0)[:120])
    return bad


def test_the_relation_detector_catches_a_planted_claim():
    assert unmarked_relations("$$\\log p(x) \\geq \\mathcal{L}(q)$$")
    assert unmarked_relations("$$a = b$$ (eq-label)")
    assert unmarked_relations("```{math}\n:label: x\na \\leq b\n```")
    assert unmarked_relations("\\begin{align}a &= b\\end{align}")
    assert not unmarked_relations("```{math}\n:class: unchecked\na = b\n```")
    assert not unmarked_relations("$$\\mathcal{L}(q) := \\int q \\log p$$")
    assert not unmarked_relations("$$\\sum_{n=1}^{N} \\log p(x_n)$$")  # an index range
    assert unmarked_relations("$$\\sum_{n=1}^{N} a_n = b$$")
    assert not unmarked_relations("$$\\int q(z) \\log \\frac{p(x, z)}{q(z)} dz$$")


def test_markdown_displays_are_checked_or_marked():
    """Every display in the book's Markdown that states a relation (=, ≤, ≥, …) is either
    produced by the engine (it then reaches the page from a cell's output or through
    {glue:math}, never typed here) or marked ``:class: unchecked``, the one style the
    introduction explains."""
    bad = [(page, d) for page, text in _markdown_sources() for d in unmarked_relations(text)]
    assert not bad, "displays stating a relation that is neither checked nor marked:\n" + (
        "\n".join(f"{page}: {d}" for page, d in bad)
    )
    intro = (ROOT / "book" / "intro.md").read_text()
    assert "not machine-checked" in intro, "the introduction explains the unchecked style"


#: what a reader should never see in a chapter's output: Python and SymPy reprs,
#: LaTeX escaped for a Python string, the package's internal file and module names
_REPRS = {
    "a SymPy repr": re.compile(
        r"\b(Eq|Ne|Ge|Le|Gt|Lt|Integral|Symbol|Derivative|Tuple|Rational|Matrix|FiniteSet|"
        r"Piecewise|Add|Mul|Pow)\(|\blog\(|\bsqrt\(|\bexp\(|(?<=[\w)])\*\*(?=[\w(])|(?<![\w\\])oo\b|\bzoo\b|\bnan\b"
    ),
    "a Python container": re.compile(r"[{\[]\s*['\"]\w|\bdict_\w+\(|\[\s*\(|<\w[\w.]* object at"),
    "a bare Python boolean or None": re.compile(r"^\s*(True|False|None)\s*$", re.M),
    # a string's repr doubles the backslash of a command (\\frac); a LaTeX row break before
    # a one-letter name (\\A_{21}) is not that
    "a doubled backslash": re.compile(r"(?<!\\)\\\\[A-Za-z]{2,}"),
    "an internal path or name": re.compile(
        r"vaebook/|\w+\.py\b|tests?/|\btest_\w+|x86_64|\d+ threads?\)|<Figure size"
    ),
}

_RENDERED = ("text/markdown", "text/latex", "text/plain")  # the first present is shown


def _shown_text(output) -> str:
    if output["output_type"] == "stream":
        return "".join(output["text"])
    data = output.get("data", {})
    if any(k.startswith("image/") for k in data) or "text/html" in data:
        return ""  # a figure or a table: its text/plain fallback is not shown
    for mime in _RENDERED:
        if mime in data:
            text = "".join(data[mime])
            # source code shown as a fenced block is code the reader is meant to read
            return re.sub(r"^```.*?^```", "", text, flags=re.S | re.M) if mime == "text/markdown" else text
    return ""


def reader_visible_problems(text: str) -> list[str]:
    """What in ``text`` a reader should not be shown (see ``_REPRS``)."""
    return [f"{what}: {m.group(0)!r}" for what, rx in _REPRS.items() for m in rx.finditer(text)]


def test_the_repr_detector_catches_planted_plumbing():
    assert reader_visible_problems("Eq(log(p(x)), ELBO + KL)")
    assert reader_visible_problems("-1/y**2")
    assert not reader_visible_problems("the **bound** holds")
    assert reader_visible_problems("limit: oo")
    assert reader_visible_problems("{'mean': 0.5}")
    assert reader_visible_problems("True")
    assert reader_visible_problems("cannot show \\\\frac{a}{b} >= 0")
    assert reader_visible_problems("see vaebook/vae/objectives.py")
    assert reader_visible_problems("cpu (x86_64, 1 threads)")
    assert not reader_visible_problems("$$\\log p(x) = \\mathcal{L}(q) \\\\ & + 1$$")
    assert not reader_visible_problems("\\begin{matrix}a \\\\A_{21}\\end{matrix}")
    assert not reader_visible_problems("test ELBO −23.29 ± 0.18 nats, 0.516 bits/dim")


@pytest.mark.parametrize("path", _notebooks(), ids=lambda p: p.name)
def test_outputs_have_no_reprs(path):
    """No stored output a reader sees holds a SymPy/Python repr, a doubled backslash or
    an internal file path: results are typeset or said in words."""
    bad = []
    for i, cell in enumerate(_code_cells(path)):
        for out in cell["outputs"]:
            bad += [f"cell {i}: {p}" for p in reader_visible_problems(_shown_text(out))]
    assert not bad, f"{path.name}:\n" + "\n".join(bad)


def named_lambdas(src: str) -> list[str]:
    """Lambdas given a name in ``src`` (``f = lambda``, or inside a tuple, list or dict
    that is assigned): the no-definitions rule without its loophole."""
    import ast

    src = "\n".join(l for l in src.splitlines() if not l.lstrip().startswith(("%", "!")))
    found = []
    for node in ast.walk(ast.parse(src)):
        if isinstance(node, (ast.Assign, ast.AnnAssign, ast.NamedExpr, ast.AugAssign)):
            value = node.value
            if value is not None and any(isinstance(n, ast.Lambda) for n in ast.walk(value)):
                if isinstance(value, (ast.Lambda, ast.Tuple, ast.List, ast.Dict, ast.Set)):
                    found.append(ast.unparse(node)[:80])
    return found


def test_the_lambda_detector_catches_a_named_lambda():
    assert named_lambdas("one = lambda v: v")
    assert named_lambdas("a, b = (lambda v: v), 1")
    assert named_lambdas("fs = {'f': lambda v: v}")
    assert not named_lambdas("sorted(xs, key=lambda v: -v)")


@pytest.mark.parametrize("path", _notebooks(), ids=lambda p: p.name)
def test_no_named_lambda(path):
    found = [l for c in _code_cells(path) for l in named_lambdas("".join(c["source"]))]
    assert not found, f"{path.name} names a lambda; reusable code belongs in vaebook: {found}"
