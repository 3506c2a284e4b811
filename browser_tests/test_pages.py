"""The built book, read as a reader reads it: in headless Chromium, from disk, offline.

Not part of the default ``pytest`` run (pyproject's ``testpaths`` is ``tests`` and
``book``; this folder is neither), because it needs the built HTML. ``.ci/run`` runs it
after the book build:

    pytest browser_tests

It fails, never skips, when the build, Playwright or Chromium is missing. Environment:

* ``BOOK_HTML``: the built site (default ``_build/html``);
* ``CHROMIUM``: the browser binary (default ``/usr/bin/chromium``, else ``chromium`` on PATH);
* ``BOOK_SCREENSHOT``: where the screenshot of one page goes (default
  ``<BOOK_HTML>/../browser/<page>.png``, i.e. ``_build/browser/``).

For the introduction and every page listed in ``_toc.yml`` (new chapters are covered
when they are added there), at a 1280 px wide window with every request that is not a
``file:`` URL blocked:

* MathJax finishes, leaves no error node, and no raw TeX is left in the prose;
* no display equation is wider than the content column;
* every image has loaded (``naturalWidth > 0``), sits in a numbered figure with a caption,
  and has alt text that is not a file name;
* no console error, no uncaught page error, no blocked (non-file) request;
* every internal link resolves: the file exists, and so does the ``#fragment`` in it.
"""

from __future__ import annotations

import os
import re
import shutil
from functools import cache
from pathlib import Path
from urllib.parse import unquote, urldefrag, urlparse

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[1]
SITE = Path(os.environ.get("BOOK_HTML", ROOT / "_build" / "html")).resolve()
SCREENSHOT_PAGE = "book/03_evidence_identity"  # a chapter with a derivation and a figure
WIDTH, HEIGHT = 1280, 900


def toc_pages() -> list[str]:
    """Every document of the book, in reading order, from _toc.yml (jb-book format)."""
    toc = yaml.safe_load((ROOT / "_toc.yml").read_text())
    pages = [toc["root"]]

    def walk(entries):
        for entry in entries or []:
            if "file" in entry:
                pages.append(str(Path(entry["file"]).with_suffix("")))
            walk(entry.get("sections"))

    for part in toc.get("parts", []):
        walk(part.get("chapters"))
    walk(toc.get("chapters"))
    return pages


def chromium_path() -> str | None:
    candidate = os.environ.get("CHROMIUM", "/usr/bin/chromium")
    if Path(candidate).is_file():
        return candidate
    return shutil.which("chromium") or shutil.which("chromium-browser")


@pytest.fixture(scope="session")
def browser():
    if not (SITE / "index.html").is_file():
        pytest.fail(f"no built book at {SITE} (run the README's build command first)")
    executable = chromium_path()
    if executable is None:
        pytest.fail("Chromium not found (apt-get install -y chromium, or set CHROMIUM)")
    try:
        from playwright.sync_api import sync_playwright
    except ImportError:
        pytest.fail("Playwright not installed (pip install -r .ci/requirements-browser.txt)")
    with sync_playwright() as p:
        b = p.chromium.launch(executable_path=executable, args=["--no-sandbox"])
        yield b
        b.close()


# JavaScript run in the page once MathJax is done. Returns the problems it finds.
PAGE_CHECKS = r"""
() => {
  const problems = [];
  const article = document.querySelector('article.bd-article') || document.body;
  const style = getComputedStyle(article);
  const column = article.getBoundingClientRect().width
      - parseFloat(style.paddingLeft) - parseFloat(style.paddingRight);

  // MathJax errors: TeX that did not parse is rendered as <mjx-merror>.
  for (const c of document.querySelectorAll('mjx-container')) {
    const e = c.querySelector('mjx-merror, [data-mjx-error]') || (c.hasAttribute('data-mjx-error') ? c : null);
    if (e) {
      const id = (c.closest('[id]') || {}).id || '';
      problems.push('MathJax error: ' + (e.getAttribute('data-mjx-error') || e.textContent).slice(0, 120) +
                    (id ? ` (near #${id})` : ''));
    }
  }

  // Raw TeX left in prose: text outside code, scripts and typeset math.
  const skip = 'pre, code, script, style, mjx-container, .highlight, .MathJax, textarea, kbd';
  const walker = document.createTreeWalker(article, NodeFilter.SHOW_TEXT);
  const tex = /\$[^$\s][^$]*\$|\\(?:\(|\[|begin\{|frac|mathrm|mathcal|mathbb|left|right|log\b|int\b|sum\b)|\{eq\}|\{math\}|\{glue/;
  for (let n = walker.nextNode(); n; n = walker.nextNode()) {
    if (n.parentElement && n.parentElement.closest(skip)) continue;
    const m = n.textContent.match(tex);
    if (m) problems.push('raw TeX in prose: ' + JSON.stringify(n.textContent.trim().slice(0, 100)));
  }

  // Display equations must fit the content column.
  for (const c of article.querySelectorAll('mjx-container[display="true"]')) {
    const math = c.querySelector('mjx-math') || c;
    const w = math.getBoundingClientRect().width;
    if (w > column + 1) {
      const id = (c.closest('[id]') || {}).id || '';
      problems.push(`display equation ${Math.round(w)} px wide in a ${Math.round(column)} px column` +
                    (id ? ` (near #${id})` : '') + ': ' + (c.textContent || '').slice(0, 60));
    }
  }

  // Images: loaded, in a numbered figure with a caption, with real alt text.
  for (const img of article.querySelectorAll('img')) {
    const src = img.getAttribute('src');
    if (!img.complete || img.naturalWidth === 0) problems.push('image did not load: ' + src);
    const fig = img.closest('figure');
    if (!fig || !fig.querySelector('figcaption .caption-number'))
      problems.push('image without a numbered caption: ' + src);
    const alt = (img.getAttribute('alt') || '').trim();
    if (!alt || /\.(png|jpe?g|svg|gif)$/i.test(alt) || alt.includes('/'))
      problems.push(`image alt text is missing or a file name (${JSON.stringify(alt)}): ${src}`);
    if (img.getBoundingClientRect().width > column + 1)
      problems.push('image wider than the column: ' + src);
  }
  // Every numbered figure shows an image, never the text stand-in a notebook prints when a
  // figure was not rendered ("<Figure size 680x330 with 2 Axes>").
  for (const fig of article.querySelectorAll('figure')) {
    if (!fig.querySelector('img'))
      problems.push('figure without an image: ' + (fig.textContent || '').trim().slice(0, 80));
  }
  if (/<Figure size \d/.test(article.textContent || ''))
    problems.push('a matplotlib figure printed as text ("<Figure size ...>") instead of drawn');
  return problems;
}
"""


@cache
def ids_in(path: Path) -> frozenset[str]:
    html = path.read_text(encoding="utf-8", errors="replace")
    return frozenset(re.findall(r'\b(?:id|name)="([^"]+)"', html))


def broken_links(hrefs: list[str]) -> list[str]:
    problems = []
    for href in hrefs:
        url, fragment = urldefrag(href)
        if urlparse(url).scheme != "file":
            continue  # external links are not followed offline
        target = Path(unquote(urlparse(url).path))
        if target.is_dir():
            target = target / "index.html"
        if not target.is_file():
            problems.append(f"link to a missing file: {href}")
        elif fragment and target.suffix == ".html" and unquote(fragment) not in ids_in(target):
            problems.append(f"link to a missing anchor: {href}")
    return problems


@pytest.mark.parametrize("page", toc_pages())
def test_page_reads_offline(browser, page):
    path = SITE / f"{page}.html"
    assert path.is_file(), f"{page}: not built ({path} missing)"
    problems: list[str] = []
    context = browser.new_context(viewport={"width": WIDTH, "height": HEIGHT})

    def route(r):
        if r.request.url.startswith("file:"):
            r.continue_()
        else:
            problems.append(f"blocked non-file request: {r.request.url}")
            r.abort()

    context.route("**/*", route)
    tab = context.new_page()
    tab.on("console", lambda m: m.type == "error" and problems.append(f"console error: {m.text}"))
    tab.on("pageerror", lambda e: problems.append(f"page error: {e}"))
    try:
        tab.goto(path.as_uri(), wait_until="load")
        has_math = tab.evaluate("() => document.querySelector('.math, mjx-container') !== null")
        if has_math:
            ready = tab.evaluate(
                """() => new Promise(resolve => {
                     const t0 = Date.now();
                     (function poll() {
                       if (window.MathJax && MathJax.startup && MathJax.startup.promise)
                         MathJax.startup.promise.then(() => resolve(true), () => resolve(false));
                       else if (Date.now() - t0 > 20000) resolve(false);
                       else setTimeout(poll, 50);
                     })();
                   })"""
            )
            if not ready:
                problems.append("MathJax did not load or did not finish")
        problems += tab.evaluate(PAGE_CHECKS)
        hrefs = tab.evaluate("() => [...document.querySelectorAll('a[href]')].map(a => a.href)")
        problems += broken_links(hrefs)
        if page == SCREENSHOT_PAGE:
            shot = Path(
                os.environ.get("BOOK_SCREENSHOT", SITE.parent / "browser" / f"{Path(page).name}.png")
            )
            shot.parent.mkdir(parents=True, exist_ok=True)
            tab.screenshot(path=str(shot), full_page=False)
    finally:
        context.close()
    assert not problems, f"{page}: {len(problems)} problem(s)\n  " + "\n  ".join(problems)


def test_every_toc_page_is_checked():
    """The screenshot page is in the book, and the book has its introduction and chapters."""
    pages = toc_pages()
    assert SCREENSHOT_PAGE in pages
    assert pages[0] == "book/intro" and len(pages) >= 10
