"""What a reader of the built book can take away (loaded from ``_config.yml``).

* **The download menu** (sphinx-book-theme's download button, on every page) offers the
  whole book as one PDF (``vaebook.pdf`` at the site's root, written there by
  ``tools/build_pdf.py`` after the HTML build), this page's notebook on a chapter page
  (the committed ``.ipynb``, outputs included), and printing this page. The Markdown
  source of a page that is not a notebook (the introduction, the references) is not
  offered: it is build input (``{cite}``, ``{bibliography}``), not something to run.
* **"Run this chapter locally"**: a collapsed note under the title of every chapter (every
  notebook page) with the README's two commands, read from README.md at build time by the
  same markers ``.ci/run`` reads (so the note, the README and CI cannot drift apart), and
  the command that opens the chapter.
"""

from __future__ import annotations

import html
from pathlib import Path

from docutils import nodes
from sphinx.application import Sphinx

PDF_NAME = "vaebook.pdf"  # tools/build_pdf.py copies the PDF to <html outdir>/vaebook.pdf
README_MARKERS = {"build": "<!-- build-command -->", "test": "<!-- test-command -->"}


def readme_commands(readme: Path) -> dict[str, str]:
    """The line of the ```bash block after each marker of README.md (as .ci/run reads it)."""
    lines = readme.read_text(encoding="utf-8").splitlines()
    found = {}
    for key, marker in README_MARKERS.items():
        try:
            i = lines.index(marker)
        except ValueError:
            continue
        for j in range(i + 1, len(lines) - 1):
            if lines[j].startswith("```bash"):
                found[key] = lines[j + 1].strip()
                break
    return found


def _repository_root(app: Sphinx) -> Path | None:
    for folder in (Path(app.srcdir), *Path(app.srcdir).parents):
        if (folder / "README.md").is_file():
            return folder
    return None


def _is_notebook(app: Sphinx, docname: str) -> bool:
    return Path(app.env.doc2path(docname)).suffix == ".ipynb"


def _code(text: str) -> str:
    # div.highlight pre: sphinx-copybutton gives it a copy button, the theme its style
    return f'<div class="highlight"><pre>{html.escape(text)}</pre></div>'


def _run_locally_note(app: Sphinx, docname: str) -> str:
    root = _repository_root(app)
    commands = readme_commands(root / "README.md") if root else {}
    source = Path(app.env.doc2path(docname))
    relative = source.relative_to(root).as_posix() if root else source.name
    parts = [
        '<details class="vaebook-run-locally">',
        "<summary>Run this chapter locally</summary>",
        "<p>This chapter is a Jupyter notebook (download it, outputs included, from the "
        "download menu at the top of the page). To run it, take the book's repository and run "
        "the README's two commands from its root, on Python 3.11; the first builds the book "
        "(and sets up <code>.venv</code>), the second runs every test, re-executing every "
        "chapter:</p>",
    ]
    for key in ("build", "test"):
        if key in commands:
            parts.append(_code(commands[key]))
    parts.append(
        "<p>Then open this chapter and run its cells in order:</p>"
        + _code(f". .venv/bin/activate && jupyter notebook {relative}")
    )
    parts.append("</details>")
    return "\n".join(parts)


def add_run_locally_note(app: Sphinx, doctree: nodes.document, docname: str) -> None:
    # at doctree-resolved (each write), not doctree-read: the README is read afresh for every
    # build without being a dependency of every chapter (a README edit would otherwise make
    # every chapter be read, and so executed, again)
    if app.builder.format != "html" or not _is_notebook(app, docname):
        return
    title = next(iter(doctree.findall(nodes.title)), None)
    if title is None:
        return
    note = nodes.raw("", _run_locally_note(app, docname), format="html")
    title.parent.insert(title.parent.index(title) + 1, note)


def edit_download_menu(app: Sphinx, pagename, templatename, context, doctree) -> None:
    groups = [b for b in context.get("header_buttons", []) if b.get("label") == "download-buttons"]
    if not groups:
        return
    buttons = groups[0]["buttons"]
    notebook = context.get("page_source_suffix") == ".ipynb"
    kept = []
    for button in buttons:
        label = button.get("label")
        if label == "download-source-button" and not notebook:
            continue  # the introduction's / references' Markdown source is build input
        if label == "download-source-button":
            button = {
                **button,
                "text": "this chapter (.ipynb)",
                "icon": "fas fa-code",
                "tooltip": "Download this chapter as a notebook, with its outputs",
            }
        if label == "download-pdf-button":
            button = {**button, "text": "print this page", "tooltip": "Print this page"}
        kept.append(button)
    whole_book = {
        "type": "link",
        "url": context["pathto"](PDF_NAME, 1),
        "text": "the whole book (.pdf)",
        "tooltip": "Download the whole book as one PDF",
        "icon": "fas fa-book",
        "label": "download-book-pdf-button",
    }
    buttons[:] = [whole_book, *kept]
    groups[0]["tooltip"] = "Download"


def setup(app: Sphinx):
    app.connect("doctree-resolved", add_run_locally_note)
    # after sphinx-book-theme's add_header_buttons (priority 501)
    app.connect("html-page-context", edit_download_menu, priority=502)
    return {"parallel_read_safe": True, "parallel_write_safe": True}
