"""The book's structure: _toc.yml lists exactly the chapters in book/, chapters carry
their outputs, define no reusable code, and a broken derivation step stops a chapter."""

import json
import re
from pathlib import Path

import matplotlib
import pytest
import yaml

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
