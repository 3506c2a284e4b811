"""The whole-book PDF (``python tools/build_pdf.py``, after the HTML build), read back.

Run by ``.ci/run`` with the other browser tests, after the HTML build and the PDF build:

    pytest browser_tests

It fails, never skips, when the PDF, the HTML build or Poppler's ``pdftotext`` /
``pdfimages`` (Debian's ``poppler-utils``) is missing. Environment: ``BOOK_HTML`` (the
built site, default ``_build/html``), ``BOOK_PDF`` (default ``_build/pdf/vaebook.pdf``).

What is checked, against the book's sources and the HTML build (not against numbers
written here):

* the PDF is the one the site links to (``_build/html/vaebook.pdf``, byte for byte); every
  page is A4; the page count is at least the title page, the contents and one page per part
  and per chapter, and at least the last page the contents names;
* a title page (the book's title from ``_config.yml``), then the contents: every chapter
  of ``_toc.yml``, by the first heading of its notebook or Markdown file, with a page number,
  and that page starts or shows that chapter;
* every chapter title is in the text; every figure caption number ("Fig. 3.1") and every
  equation number ("(3.2)") of the HTML pages is in the text, and every bibliography
  entry of the references page;
* no raw TeX (``\\frac``, ``\\mathcal``, ``$$``, ``\\(``, ``\\begin{``) and no MathJax error text;
* as many images as the HTML pages have images (the figures);
* code stays hidden where the HTML hides it: no line of a ``hide-input`` / ``remove-input``
  cell's code is in the text (a line that also appears in shown code or outputs excepted),
  and no "Show the code" toggle;
* derivations fit the page: no word of the text extends into the side margins.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import shutil
import subprocess
from functools import cache
from html import unescape
from pathlib import Path

import pytest
import yaml
from test_pages import toc_pages

ROOT = Path(__file__).resolve().parents[1]
SITE = Path(os.environ.get("BOOK_HTML", ROOT / "_build" / "html")).resolve()
PDF = Path(os.environ.get("BOOK_PDF", ROOT / "_build" / "pdf" / "vaebook.pdf")).resolve()
A4 = (595.28, 841.89)  # points
SIDE_MARGIN_PT = 17 / 25.4 * 72  # tools/pdf.css: 17 mm left and right
RAW_TEX = [
    r"\frac",
    r"\mathcal",
    "$$",
    r"\(",
    r"\)",
    r"\[",
    r"\]",
    r"\begin{",
    r"\end{",
    r"\mathbb",
    r"\mathrm",
    r"\left",
    r"\right",
    r"\sum_",
    r"\int_",
]
MATHJAX_ERRORS = [
    "Math input error",
    "Undefined control sequence",
    "Missing close brace",
    "Missing open brace",
    "Extra close brace",
    "Extra open brace",
    "Misplaced &",
    "Missing argument for",
    "TeX parse error",
    "Unknown environment",
]


# -- the book's structure, from its sources -------------------------------------------------------
def toc() -> dict:
    return yaml.safe_load((ROOT / "_toc.yml").read_text(encoding="utf-8"))


def toc_docs() -> list[str]:
    """Every document in reading order (the root first), without suffix."""
    return [str(Path(page).with_suffix("")) for page in toc_pages()]


def source(doc: str) -> Path:
    for suffix in (".ipynb", ".md"):
        if (ROOT / f"{doc}{suffix}").is_file():
            return ROOT / f"{doc}{suffix}"
    raise FileNotFoundError(doc)


def first_heading(path: Path) -> str:
    """The text of the first '# ' heading of a notebook's Markdown cells or a Markdown file."""
    if path.suffix == ".ipynb":
        nb = json.loads(path.read_text(encoding="utf-8"))
        text = "\n".join("".join(c["source"]) for c in nb["cells"] if c["cell_type"] == "markdown")
    else:
        text = path.read_text(encoding="utf-8")
    for line in text.splitlines():
        if line.startswith("# "):
            return line[2:].strip()
    raise AssertionError(f"{path}: no '# ' heading")


def normalise(text: str) -> str:
    """Whitespace collapsed, typographic quotes and dashes as ASCII, soft hyphens dropped."""
    text = text.replace("\u00ad", "").replace("\u00a0", " ")
    for a, b in (
        ("\u2019", "'"),
        ("\u2018", "'"),
        ("\u201c", '"'),
        ("\u201d", '"'),
        ("\u2013", "-"),
        ("\u2014", "-"),
        ("\ufb01", "fi"),
        ("\ufb02", "fl"),
    ):
        text = text.replace(a, b)
    return re.sub(r"\s+", " ", text).strip()


def markdown_plain(title: str) -> str:
    """A heading as the reader sees it: no Markdown emphasis or code marks."""
    return normalise(re.sub(r"[*_`]", "", title))


# -- the HTML build ---------------------------------------------------------------------------
@cache
def article(doc: str) -> str:
    path = SITE / f"{doc}.html"
    assert path.is_file(), f"no HTML build of {doc} at {path} (run the README's build command)"
    html = path.read_text(encoding="utf-8")
    start = html.find('<article class="bd-article"')
    end = html.find("</article>", start)
    assert start >= 0 and end > start, f"{path}: no article element"
    return html[start:end]


def html_text(fragment: str) -> str:
    return normalise(unescape(re.sub(r"<[^>]+>", " ", fragment)))


# -- the PDF, through Poppler ---------------------------------------------------------------------
def poppler(tool: str) -> str:
    found = shutil.which(tool)
    if not found:
        pytest.fail(f"{tool} not found (apt-get install -y poppler-utils)")
    return found


@pytest.fixture(scope="module")
def pdf() -> Path:
    if not PDF.is_file():
        pytest.fail(f"no PDF at {PDF} (run python tools/build_pdf.py after the HTML build)")
    return PDF


@pytest.fixture(scope="module")
def pages(pdf) -> list[str]:
    """The text of each page (pdftotext; pages are separated by form feeds)."""
    out = subprocess.run(
        [poppler("pdftotext"), "-enc", "UTF-8", str(pdf), "-"],
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    return [normalise(p) for p in out.split("\f")[:-1]]


@pytest.fixture(scope="module")
def text(pages) -> str:
    return " ".join(pages)


@pytest.fixture(scope="module")
def page_boxes(pdf) -> list[dict]:
    """Each page's size and its words' boxes (pdftotext -bbox), in points."""
    out = subprocess.run(
        [poppler("pdftotext"), "-bbox", "-enc", "UTF-8", str(pdf), "-"],
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    result = []
    for page in re.finditer(r'<page width="([\d.]+)" height="([\d.]+)">(.*?)</page>', out, re.S):
        words = [
            (float(a), float(b), float(c), float(d), unescape(w))
            for a, b, c, d, w in re.findall(
                r'<word xMin="([\d.-]+)" yMin="([\d.-]+)" xMax="([\d.-]+)" yMax="([\d.-]+)">'
                r"(.*?)</word>",
                page.group(3),
            )
        ]
        result.append(
            {"width": float(page.group(1)), "height": float(page.group(2)), "words": words}
        )
    return result


# -- tests ------------------------------------------------------------------------------------
def test_the_site_links_this_pdf(pdf):
    copy = SITE / pdf.name
    assert copy.is_file(), f"the PDF is not in the HTML build ({copy}): the download links break"
    digest = lambda p: hashlib.sha256(p.read_bytes()).hexdigest()  # noqa: E731
    assert digest(copy) == digest(pdf), f"{copy} is not the PDF at {pdf}"


def test_pages_are_a4_and_enough(page_boxes, pages):
    assert len(page_boxes) == len(pages) > 0
    for i, p in enumerate(page_boxes, 1):
        assert abs(p["width"] - A4[0]) < 1 and abs(p["height"] - A4[1]) < 1, f"page {i} is not A4"
    t = toc()
    parts = [p for p in t.get("parts", []) if p.get("caption")]
    at_least = 1 + 1 + len(parts) + len(toc_docs())  # title, contents, parts, chapters
    assert len(pages) >= at_least, f"{len(pages)} pages for {len(toc_docs())} chapters"


def test_title_page_and_contents(pages):
    config = yaml.safe_load((ROOT / "_config.yml").read_text(encoding="utf-8"))
    assert normalise(config["title"]) in pages[0], "the title page does not carry the book's title"
    contents_pages = [i for i, p in enumerate(pages[:12]) if p.startswith("Contents")]
    assert contents_pages == [1], "the contents do not start on page 2"
    contents = ""
    for p in pages[1:12]:
        if contents and markdown_plain(first_heading(source(toc_docs()[0]))) in p[:200]:
            break  # the introduction has begun
        contents += " " + p
    last = 0
    for doc in toc_docs():
        title = markdown_plain(first_heading(source(doc)))
        m = re.search(r"(?:\d+\. )?" + re.escape(title) + r" (\d+)\b", contents)
        assert m, f"the contents do not list {doc} ({title!r}) with a page number"
        page = int(m.group(1))
        assert page > last, f"{title!r} on page {page}, not after the previous chapter ({last})"
        assert title in pages[page - 1], f"page {page} does not show {title!r}, as the contents say"
        last = page
    assert len(pages) >= last


def test_every_chapter_title_is_in_the_text(text):
    missing = [doc for doc in toc_docs() if markdown_plain(first_heading(source(doc))) not in text]
    assert not missing, f"chapters missing from the PDF: {missing}"


def test_captions_equation_numbers_and_bibliography(text):
    captions, equations = set(), set()
    for doc in toc_docs():
        a = article(doc)
        captions |= {
            html_text(c) for c in re.findall(r'<span class="caption-number">(.*?)</span>', a)
        }
        equations |= {html_text(e) for e in re.findall(r'<span class="eqno">(\(.*?\))', a)}
    missing = sorted(c for c in captions if c not in text) + sorted(
        e for e in equations if e not in text
    )
    assert not missing, f"caption/equation numbers of the HTML missing from the PDF: {missing}"
    entries = [
        html_text(e)
        for doc in toc_docs()
        for e in re.findall(r'<div class="citation"[^>]*>(.*?)</div>', article(doc), re.S)
    ]
    assert entries, "the HTML build has no bibliography entries"
    # the entry's text without its label ("[KW14]"), first words (the PDF may break lines)
    absent = [
        e for e in entries if " ".join(re.sub(r"^\[[^]]*\]\s*", "", e).split()[:8]) not in text
    ]
    assert not absent, f"bibliography entries missing from the PDF: {absent}"


def test_no_raw_tex_and_no_mathjax_errors(text):
    raw = sorted({t for t in RAW_TEX if t in text})
    contexts = [text[max(0, text.find(t) - 60) : text.find(t) + 60] for t in raw]
    assert not raw, f"raw TeX in the PDF: {raw}: {contexts}"
    errors = [e for e in MATHJAX_ERRORS if e in text]
    assert not errors, f"MathJax error text in the PDF: {errors}"


def test_as_many_images_as_the_html_has(pdf):
    out = subprocess.run(
        [poppler("pdfimages"), "-list", str(pdf)], capture_output=True, text=True, check=True
    ).stdout.splitlines()
    # page num type ...; a PNG with transparency is an "image" with its "smask"
    in_pdf = sum(1 for line in out[2:] if line.split()[2] == "image")
    in_html = sum(len(re.findall(r"<img\b", article(doc))) for doc in toc_docs())
    assert in_html > 0
    assert in_pdf == in_html, f"{in_pdf} images in the PDF, {in_html} in the HTML pages"


def _hidden_and_shown_code() -> tuple[set[str], str]:
    hidden, shown = set(), []
    for doc in toc_docs():
        path = source(doc)
        if path.suffix != ".ipynb":
            continue
        for cell in json.loads(path.read_text(encoding="utf-8"))["cells"]:
            if cell["cell_type"] != "code":
                continue
            tags = set(cell.get("metadata", {}).get("tags", []))
            lines = [normalise(line) for line in "".join(cell["source"]).splitlines()]
            if tags & {"hide-input", "remove-input"}:
                hidden |= {line for line in lines if len(line) >= 30}
            else:
                shown.append(" ".join(lines))
            for output in cell.get("outputs", []):
                data = output.get("data", {})
                for key in ("text/plain", "text/markdown", "text/latex"):
                    shown.append(normalise("".join(data.get(key, ""))))
                shown.append(normalise("".join(output.get("text", ""))))
    return hidden, " ".join(shown)


def test_code_hidden_where_the_html_hides_it(text):
    hidden, shown = _hidden_and_shown_code()
    assert hidden, "no hidden code cell found in the chapters"
    leaked = sorted(line for line in hidden if line in text and line not in shown)
    assert not leaked, f"{len(leaked)} lines of hidden code are printed, e.g. {leaked[:5]}"
    assert "Show the code" not in text and "Hide the code" not in text


def test_derivations_fit_the_page(page_boxes):
    outside = []
    for i, p in enumerate(page_boxes, 1):
        for x0, _y0, x1, _y1, word in p["words"]:
            if x0 < SIDE_MARGIN_PT - 3 or x1 > p["width"] - SIDE_MARGIN_PT + 3:
                outside.append(f"page {i}: {word!r} at x = {x0:.0f}..{x1:.0f} pt")
    assert not outside, f"{len(outside)} words in the side margins: {outside[:10]}"
