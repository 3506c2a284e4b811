"""The whole book as one PDF, built offline: ``_build/pdf/vaebook.pdf``.

Run it after the HTML build (README, "The whole book as one PDF"):

    python tools/build_pdf.py

1. The single-page build of the book (Sphinx's ``singlehtml`` builder, through Jupyter Book:
   ``jupyter-book build . --builder singlehtml``, warnings as errors like the HTML build).
   It shares ``_build/.doctrees`` with the HTML build, so right after that build every
   chapter is up to date and none is read or executed again: the single page shows the
   outputs the HTML pages show. (Without an HTML build, or after a source changed, the
   chapters it needs are read again, and so executed, as the HTML build would.)
2. Headless Chromium (through Playwright, offline: every request that is not a ``file:``
   URL is refused) opens the page, waits until MathJax has typeset every formula, the
   fonts are loaded and every image is decoded, then adds a title page, the contents (parts,
   chapters, sections, with page numbers), a title page for each part, and the print
   styles of ``tools/pdf.css`` (A4, a book's type size, code hidden where the HTML hides
   it, nothing cut across pages). A display or table still wider than the printed column
   is scaled to fit, and the script lists it.
3. Chromium prints it with a document outline (bookmarks). The page numbers of the
   contents are read from that outline, written in, and the book printed again.

The PDF is copied to ``_build/html/vaebook.pdf``, where the download menu of every page
links to it (``_ext/vaebook_reader.py``). ``browser_tests/test_pdf.py`` checks it.

Needs Playwright (``pip install -r .ci/requirements-browser.txt``; no browser is
downloaded) and a Chromium: ``--chromium``, else ``$CHROMIUM``, else ``/usr/bin/chromium``
(Debian's ``chromium`` package), else ``chromium`` on ``PATH``.
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import re
import shutil
import subprocess
import sys
import time
from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parents[1]
PDF_NAME = "vaebook.pdf"  # the name _ext/vaebook_reader.py links to
CSS = Path(__file__).with_name("pdf.css")
# printed column: A4 (210 mm) less the left and right margins of tools/pdf.css (17 mm each)
COLUMN_PX = (210 - 2 * 17) / 25.4 * 96
README_MARKERS = ("<!-- build-command -->", "<!-- test-command -->")


def log(message: str) -> None:
    print(f"[pdf] {message}", flush=True)


# -- the book's structure ---------------------------------------------------------------------
def toc_structure(root: Path = ROOT) -> dict:
    """_toc.yml (jb-book) as {"root": docname, "parts": [{"caption", "docs": [docname]}]}."""
    toc = yaml.safe_load((root / "_toc.yml").read_text(encoding="utf-8"))

    def docs(entries):
        for entry in entries or []:
            if "file" in entry:
                yield str(Path(entry["file"]).with_suffix(""))
            yield from docs(entry.get("sections"))

    parts = [
        {"caption": part.get("caption"), "docs": list(docs(part.get("chapters")))}
        for part in toc.get("parts", [])
    ]
    if toc.get("chapters"):
        parts.append({"caption": None, "docs": list(docs(toc["chapters"]))})
    return {"root": str(Path(toc["root"]).with_suffix("")), "parts": parts}


def readme_commands(root: Path = ROOT) -> list[str]:
    """The README's two commands (build, test), read as .ci/run reads them."""
    lines = (root / "README.md").read_text(encoding="utf-8").splitlines()
    found = []
    for marker in README_MARKERS:
        if marker in lines:
            i = lines.index(marker)
            block = [j for j in range(i + 1, len(lines) - 1) if lines[j].startswith("```bash")]
            if block:
                found.append(lines[block[0] + 1].strip())
    return found


def edition(root: Path = ROOT) -> str:
    """'<date> (commit <sha>)' of the checkout, or today's date outside git."""
    try:
        out = subprocess.run(
            ["git", "-C", str(root), "log", "-1", "--format=%cs %h"],
            capture_output=True,
            text=True,
            check=True,
        ).stdout.split()
        return f"{out[0]}, commit {out[1]}"
    except (OSError, subprocess.CalledProcessError, IndexError):
        return dt.date.today().isoformat()


# -- 1. the single-page build -----------------------------------------------------------------
def build_single_page(root: Path = ROOT, warnings_as_errors: bool = True) -> Path:
    if not (root / "_build" / ".doctrees" / "environment.pickle").is_file():
        log("no HTML build found: the single-page build reads and executes every chapter")
    exe = Path(sys.executable).with_name("jupyter-book")
    command = [
        str(exe) if exe.exists() else "jupyter-book",
        "build",
        ".",
        "--builder",
        "singlehtml",
    ]
    command += ["-W", "-n", "--keep-going"] if warnings_as_errors else ["-n"]
    log("single-page build: " + " ".join(command))
    t0 = time.time()
    result = subprocess.run(command, cwd=root, capture_output=True, text=True)
    output = re.sub(r"\x1b\[[0-9;]*m", "", result.stdout + "\n" + result.stderr)
    read = re.findall(r"reading sources\.\.\. \[\s*\d+%\] (\S+)", output)
    for line in re.findall(r"updating environment: .*", output):
        log(line)  # why documents are read again, when they are
    warnings = [line for line in output.splitlines() if "WARNING" in line]
    log(f"single-page build: {len(read)} documents read again, {time.time() - t0:.0f} s")
    for line in warnings:
        print(line, flush=True)
    if result.returncode != 0:
        print(output[-6000:])
        raise SystemExit(f"the single-page build failed (exit {result.returncode})")
    return root / "_build" / "singlehtml"


# -- 2. the page, prepared for print ----------------------------------------------------------
WAIT_FOR_PAGE = r"""
async () => {
  const t0 = Date.now();
  while (!(window.MathJax && MathJax.startup && MathJax.startup.promise)) {
    if (Date.now() - t0 > 60000) throw new Error('MathJax did not load');
    await new Promise(r => setTimeout(r, 100));
  }
  await MathJax.startup.promise;
  if (MathJax.typesetPromise) await MathJax.typesetPromise();
  await document.fonts.ready;
  await Promise.all([...document.images].map(img => img.decode().catch(() => null)));
  const broken = [...document.images].filter(img => !img.complete || img.naturalWidth === 0);
  const errors = [...document.querySelectorAll('mjx-merror, [data-mjx-error]')];
  const describe = e => (e.getAttribute('data-mjx-error') || e.textContent).slice(0, 120) +
      ' (in #' + ((e.closest('section[id]') || {}).id || '?') + ')';
  // a formula inside a collapsed toggle is not printed (the HTML test reports it)
  const folded = e => e.closest('details:not([open])') !== null;
  return {
    seconds: (Date.now() - t0) / 1000,
    broken: broken.map(img => img.getAttribute('src')),
    mathErrors: errors.filter(e => !folded(e)).map(describe),
    foldedMathErrors: errors.filter(folded).map(describe),
    formulas: document.querySelectorAll('mjx-container').length,
  };
}
"""

PREPARE = r"""
({structure, title, author, edition, commands}) => {
  const article = document.querySelector('article.bd-article');
  const el = (tag, cls, text) => {
    const e = document.createElement(tag);
    if (cls) e.className = cls;
    if (text !== undefined) e.textContent = text;
    return e;
  };
  const headingHTML = h => {
    const c = h.cloneNode(true);
    c.querySelectorAll('.headerlink').forEach(a => a.remove());
    return c.innerHTML.trim();
  };
  const missing = [];

  // The introduction (the root document) is the first section; its h1 becomes an h2, so that
  // the outline has the parts (h1) at the top with their chapters (h2) and sections (h3).
  const intro = article.querySelector(':scope > section');
  const introH1 = intro.querySelector(':scope > h1');
  const introH2 = el('h2');
  introH2.innerHTML = introH1.innerHTML;
  introH1.replaceWith(introH2);
  intro.classList.add('pdf-chapter');
  introH2.id = introH2.id || 'pdf-introduction';

  const entries = [];  // the contents, in reading order
  let n = 0;
  const target = h => { if (!h.id) h.id = 'pdf-heading-' + (n++); return h.id; };
  entries.push({kind: 'chapter', id: target(introH2), html: headingHTML(introH2)});

  structure.parts.forEach((part, p) => {
    let partHeading = null;
    part.docs.forEach((doc, i) => {
      const anchor = document.getElementById('document-' + doc);
      const section = anchor && anchor.nextElementSibling;
      if (!section || section.tagName !== 'SECTION') { missing.push(doc); return; }
      section.classList.add('pdf-chapter');
      if (i === 0 && part.caption) {
        partHeading = el('h1', 'pdf-part', part.caption);
        partHeading.id = 'pdf-part-' + p;
        anchor.parentNode.insertBefore(partHeading, anchor);
        section.classList.remove('pdf-chapter');  // the part's page already broke the page
        entries.push({kind: 'part', id: partHeading.id, html: part.caption});
      }
      const h = section.querySelector(':scope > h2');
      if (!h) { missing.push(doc + ' (no heading)'); return; }
      entries.push({kind: 'chapter', id: target(h), html: headingHTML(h)});
      for (const s of section.querySelectorAll(':scope > section > h3'))
        entries.push({kind: 'section', id: target(s), html: headingHTML(s)});
    });
  });

  // Title page.
  const titlePage = el('div', 'pdf-title-page');
  titlePage.append(el('p', 'pdf-title', title));
  if (author) titlePage.append(el('p', 'pdf-author', author));
  titlePage.append(el('p', 'pdf-edition', 'This edition: ' + edition + '.'));
  if (commands.length) {
    const run = el('div', 'pdf-run');
    run.append(el('p', null, "Every chapter is a Jupyter notebook. From the root of the " +
      "book's repository, on Python 3.11, the first command builds the book's web pages " +
      "(then python tools/build_pdf.py prints this PDF), the second runs every test, " +
      "re-executing every chapter:"));
    for (const c of commands) run.append(el('pre', null, c));
    titlePage.append(run);
  }

  // Contents.
  const nav = el('nav', 'pdf-contents');
  nav.append(el('h2', 'pdf-contents-title', 'Contents'));
  for (const e of entries) {
    const row = el('div', 'pdf-toc-entry pdf-toc-' + e.kind);
    const a = el('a', 'pdf-toc-text');
    a.href = '#' + e.id;
    a.innerHTML = e.html;
    const page = el('span', 'pdf-toc-page', '00');
    page.dataset.target = e.id;
    row.append(a, el('span', 'pdf-toc-fill'), page);
    if (e.kind === 'part') { row.className = 'pdf-toc-part'; row.replaceChildren(a); }
    nav.append(row);
  }
  article.prepend(titlePage, nav);
  // a heading's text as Chromium names its bookmark: without the typeset math
  const plain = id => {
    const h = document.getElementById(id).cloneNode(true);
    h.querySelectorAll('mjx-container, .headerlink, script').forEach(x => x.remove());
    return h.textContent;
  };
  return {missing, entries: entries.map(e => ({kind: e.kind, id: e.id, text: plain(e.id)}))};
}
"""

# Scale what is still wider than the printed column (after the print styles and the type size
# of tools/pdf.css); returns what was scaled.
FIT = r"""
() => {
  // Flat paper: Chromium prints a shadow or a filter as a raster image (blurred, and
  // counted as an image of the PDF). Inline !important outranks the themes' !important.
  for (const e of document.querySelectorAll('body *')) {
    const s = getComputedStyle(e);
    if (s.boxShadow !== 'none') e.style.setProperty('box-shadow', 'none', 'important');
    if (s.textShadow !== 'none') e.style.setProperty('text-shadow', 'none', 'important');
    if (s.filter !== 'none') e.style.setProperty('filter', 'none', 'important');
  }
  const scaled = [];
  const column = document.querySelector('article.bd-article').getBoundingClientRect().width;
  const fit = (box, content, what) => {
    // not printed: inside a collapsed toggle, or not displayed
    if (box.closest('details:not([open])') || box.getClientRects().length === 0) return;
    // a numbered equation's number floats at the right of its display, beside it
    const eqno = box.parentElement.querySelector(':scope > .eqno');
    const avail = Math.min(column, box.parentElement.getBoundingClientRect().width) -
        (eqno ? eqno.getBoundingClientRect().width + 8 : 0);
    const width = content.scrollWidth || content.getBoundingClientRect().width;
    if (width > avail + 0.5) {
      const zoom = Math.floor(100 * avail / width) / 100;
      box.style.zoom = zoom;
      const id = (box.closest('[id]') || {}).id || '';
      scaled.push({what, zoom, near: id, text: (box.textContent || '').trim().slice(0, 60)});
    }
  };
  for (const c of document.querySelectorAll('mjx-container[display="true"]'))
    fit(c, c.querySelector('mjx-math') || c, 'display');
  for (const t of document.querySelectorAll('article table'))
    fit(t, t, 'table');
  for (const p of document.querySelectorAll('article pre'))
    fit(p, p, 'code');
  return {column, scaled};
}
"""

FILL_PAGES = r"""
(pages) => {
  for (const span of document.querySelectorAll('.pdf-toc-page'))
    span.textContent = String(pages[span.dataset.target] ?? '?');
}
"""


def normalise(text: str) -> str:
    return re.sub(r"\s+", " ", text.replace("\u00a0", " ")).strip().rstrip("#").strip()


def outline_pages(pdf: Path) -> list[tuple[str, int]]:
    """The PDF's outline (bookmarks) in reading order, as (title, 1-based page)."""
    from pypdf import PdfReader

    reader = PdfReader(str(pdf))
    flat: list[tuple[str, int]] = []

    def walk(items):
        for item in items:
            if isinstance(item, list):
                walk(item)
            else:
                flat.append((normalise(item.title), reader.get_destination_page_number(item) + 1))

    walk(reader.outline)
    return flat


NUMBER = re.compile(r"^(\d+(?:\.\d+)*\.)\s+")
NUMBERS = re.compile(r"^(?:\d+(?:\.\d+)*\.\s+)+")  # "16.1. 1. " of an erratum's heading


def _bookmark_title(title: str) -> str:
    # Chromium sometimes names a bookmark with its heading's text twice ("SummarySummary")
    half = len(title) // 2
    return title[:half] if len(title) % 2 == 0 and title[:half] == title[half:] else title


def _same_heading(title: str, text: str) -> bool:
    """A bookmark's title names a heading's text: equal, or equal up to the section number,
    or one a prefix of the other (a bookmark leaves out or spells out typeset math)."""
    if title == text:
        return True
    number = NUMBER.match(text)
    if number and title.startswith(number.group(1) + " "):
        return True
    a, b = NUMBERS.sub("", title), NUMBERS.sub("", text)
    return a == b or (min(len(a), len(b)) >= 4 and (a.startswith(b) or b.startswith(a)))


def match_pages(entries: list[dict], outline: list[tuple[str, int]]) -> dict[str, int]:
    """Page of each contents entry: its heading's bookmark, matched in reading order."""
    pages, k = {}, 0
    for entry in entries:
        text = normalise(entry["text"])
        for j in range(k, len(outline)):
            if _same_heading(_bookmark_title(outline[j][0]), text):
                pages[entry["id"]] = outline[j][1]
                k = j + 1
                break
    return pages


def chromium_path(given: str | None) -> str:
    for candidate in (given, os.environ.get("CHROMIUM"), "/usr/bin/chromium"):
        if candidate and Path(candidate).is_file():
            return candidate
    found = shutil.which("chromium") or shutil.which("chromium-browser")
    if not found:
        raise SystemExit("Chromium not found (apt-get install -y chromium, or --chromium PATH)")
    return found


def print_book(page_html: Path, pdf: Path, chromium: str, root: Path = ROOT) -> dict:
    try:
        from playwright.sync_api import sync_playwright
    except ImportError as err:
        raise SystemExit(
            "Playwright not installed (pip install -r .ci/requirements-browser.txt)"
        ) from err
    config = yaml.safe_load((root / "_config.yml").read_text(encoding="utf-8"))
    structure = toc_structure(root)
    report: dict = {}
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=chromium, args=["--no-sandbox"])
        context = browser.new_context(viewport={"width": round(COLUMN_PX), "height": 1100})
        refused: list[str] = []

        def route(r):
            if r.request.url.startswith("file:"):
                r.continue_()
            else:
                refused.append(r.request.url)
                r.abort()

        context.route("**/*", route)
        tab = context.new_page()
        errors: list[str] = []
        tab.on("pageerror", lambda e: errors.append(str(e)))
        tab.set_default_timeout(600_000)
        tab.emulate_media(media="print")
        tab.goto(page_html.as_uri(), wait_until="load")
        ready = tab.evaluate(WAIT_FOR_PAGE)
        log(f"MathJax typeset {ready['formulas']} formulas in {ready['seconds']:.0f} s")
        for error in ready["foldedMathErrors"]:
            log(f"MathJax error in a collapsed toggle, not printed: {error}")
        if ready["broken"] or ready["mathErrors"]:
            raise SystemExit(
                f"images not loaded: {ready['broken']}; MathJax errors: {ready['mathErrors']}"
            )
        tab.add_style_tag(content=CSS.read_text(encoding="utf-8"))
        prepared = tab.evaluate(
            PREPARE,
            {
                "structure": structure,
                "title": config.get("title", "vaebook"),
                "author": config.get("author", ""),
                "edition": edition(root),
                "commands": readme_commands(root),
            },
        )
        if prepared["missing"]:
            raise SystemExit(f"chapters missing from the single page: {prepared['missing']}")
        tab.evaluate("() => document.fonts.ready")
        fit = tab.evaluate(FIT)
        for s in fit["scaled"]:
            log(
                f"scaled to {s['zoom']:.2f} to fit the column: {s['what']} "
                f"near #{s['near']}: {s['text']!r}"
            )
        pdf.parent.mkdir(parents=True, exist_ok=True)
        options = dict(
            path=str(pdf),
            prefer_css_page_size=True,
            print_background=True,
            outline=True,
            tagged=True,
        )
        pages: dict[str, int] = {}
        for _ in range(3):  # the contents' numbers do not change its length
            t0 = time.time()
            tab.pdf(**options)
            found = match_pages(prepared["entries"], outline_pages(pdf))
            log(
                f"printed in {time.time() - t0:.0f} s; {len(found)} of "
                f"{len(prepared['entries'])} contents entries found in the outline"
            )
            if found == pages:
                break
            pages = found
            tab.evaluate(FILL_PAGES, pages)
        else:
            raise SystemExit("the contents' page numbers did not settle")
        unmatched = [e["text"] for e in prepared["entries"] if e["id"] not in pages]
        if unmatched:
            raise SystemExit(f"contents entries without a page: {unmatched}")
        if errors or refused:
            raise SystemExit(f"page errors: {errors}; refused requests: {refused}")
        browser.close()
    report.update(scaled=fit["scaled"], column_px=fit["column"], contents=len(pages))
    return report


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument(
        "--out",
        type=Path,
        default=ROOT / "_build" / "pdf",
        help="where the PDF goes (default _build/pdf)",
    )
    parser.add_argument(
        "--html",
        type=Path,
        default=ROOT / "_build" / "html",
        help="the HTML build the PDF is copied into (default _build/html)",
    )
    parser.add_argument(
        "--chromium", help="the Chromium binary (default: $CHROMIUM, /usr/bin/chromium)"
    )
    parser.add_argument(
        "--allow-warnings",
        action="store_true",
        help="do not stop on Sphinx warnings (for a partial _toc.yml while writing)",
    )
    args = parser.parse_args(argv)
    t0 = time.time()
    chromium = chromium_path(args.chromium)
    single = build_single_page(warnings_as_errors=not args.allow_warnings)
    root_doc = toc_structure()["root"]
    pdf = args.out / PDF_NAME
    # The single page is written as <root document>.html (book/intro.html), but its links to
    # _static/ and _images/ are relative to the output folder: read it from there.
    page = single / "vaebook-print.html"
    shutil.copyfile(single / f"{root_doc}.html", page)
    report = print_book(page, pdf, chromium)
    from pypdf import PdfReader

    reader = PdfReader(str(pdf))
    report.update(
        pages=len(reader.pages), bytes=pdf.stat().st_size, seconds=round(time.time() - t0)
    )
    if args.html.is_dir():
        shutil.copyfile(pdf, args.html / PDF_NAME)
        report["copied_to"] = str(args.html / PDF_NAME)
    (args.out / "report.json").write_text(json.dumps(report, indent=1), encoding="utf-8")
    log(
        f"{pdf}: {report['pages']} pages, {report['bytes'] / 1e6:.1f} MB, "
        f"{len(report['scaled'])} displays/tables scaled to fit, {report['seconds']} s"
        + (
            f"; copied to {report['copied_to']}"
            if "copied_to" in report
            else f"; no HTML build at {args.html} to copy it into"
        )
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
