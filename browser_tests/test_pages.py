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

import json
import os
import re
import shutil
from contextlib import contextmanager
from functools import cache
from html import unescape
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


@contextmanager
def launched_chromium():
    """Debian's Chromium driven by Playwright (no browser download); fails, never skips,
    when either is missing."""
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


@pytest.fixture(scope="session")
def browser():
    if not (SITE / "index.html").is_file():
        pytest.fail(f"no built book at {SITE} (run the README's build command first)")
    with launched_chromium() as b:
        yield b


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


# -- What a reader takes away (issue 16 §3): the download menu, "Run this chapter locally",
# -- and figures readable in the dark theme as in the light one.
def _page_html(page: str) -> str:
    path = SITE / f"{page}.html"
    assert path.is_file(), f"{page}: not built ({path} missing)"
    return path.read_text(encoding="utf-8")


def _is_notebook(page: str) -> bool:
    return (ROOT / f"{page}.ipynb").is_file()


def _download_menu(page: str) -> dict[str, Path]:
    """The download menu's links, by sphinx-book-theme's label, as files of the site."""
    html = _page_html(page)
    menu = re.search(r'<div class="dropdown dropdown-download-buttons">(.*?)</ul>', html, re.S)
    assert menu, f"{page}: no download menu"
    links = re.findall(r'<a href="([^"]+)"[^>]*?class="btn btn-sm btn-([\w-]+)', menu.group(1))
    base = (SITE / page).parent
    return {label: (base / unquote(href)).resolve() for href, label in links}


def _readme_commands() -> list[str]:
    """The README's build and test commands, read as .ci/run reads them."""
    lines = (ROOT / "README.md").read_text(encoding="utf-8").splitlines()
    commands = []
    for marker in ("<!-- build-command -->", "<!-- test-command -->"):
        i = lines.index(marker)
        j = next(k for k in range(i + 1, len(lines)) if lines[k].startswith("```bash"))
        commands.append(lines[j + 1].strip())
    return commands


@pytest.mark.parametrize("page", toc_pages())
def test_download_menu(page):
    """Every page offers the whole book as a PDF; a chapter also its notebook, outputs
    included; the introduction and the references offer no Markdown source."""
    links = _download_menu(page)
    assert links.get("download-book-pdf-button") == (SITE / "vaebook.pdf").resolve(), links
    source = links.get("download-source-button")
    if not _is_notebook(page):
        assert source is None, f"{page}: the download menu offers its Markdown source {source}"
        return
    assert source is not None and source.suffix == ".ipynb", f"{page}: no notebook offered: {links}"
    assert source.is_file(), f"{page}: the notebook offered ({source}) is not in the site"
    offered = json.loads(source.read_text(encoding="utf-8"))
    committed = json.loads((ROOT / f"{page}.ipynb").read_text(encoding="utf-8"))
    outputs = lambda nb: [len(c.get("outputs", [])) for c in nb["cells"]]  # noqa: E731
    assert sum(outputs(offered)) > 0, f"{page}: the notebook offered has no outputs"
    assert outputs(offered) == outputs(committed), (
        f"{page}: not the committed notebook's outputs (was it re-executed after the build?)"
    )


@pytest.mark.parametrize("page", toc_pages())
def test_run_this_chapter_locally(page):
    """Each chapter carries the README's two commands and the one that opens it; the
    introduction and the references do not."""
    html = _page_html(page)
    note = re.search(r'<details class="vaebook-run-locally">(.*?)</details>', html, re.S)
    if not _is_notebook(page):
        assert note is None, f"{page}: a 'Run this chapter locally' note, but it is no chapter"
        return
    assert note, f"{page}: no 'Run this chapter locally' note"
    text = unescape(note.group(1))
    assert "Run this chapter locally" in text
    for command in _readme_commands() + [f"jupyter notebook {page}.ipynb"]:
        assert command in text, f"{page}: the note lacks {command!r}"


BODY_BACKGROUND = (
    "() => getComputedStyle(document.body).backgroundColor.match(/\\d+/g).slice(0, 3).map(Number)"
)
FIGURE_STYLE = """
() => [...document.querySelectorAll('article.bd-article img')].map(img => {
  const s = getComputedStyle(img);
  return {src: img.getAttribute('src'), background: s.backgroundColor, padding: s.padding,
          filter: s.filter, complete: img.complete && img.naturalWidth > 0};
})
"""


def _luminance(rgb):
    import numpy as np

    c = np.asarray(rgb, dtype=float) / 255.0
    c = np.where(c <= 0.03928, c / 12.92, ((c + 0.055) / 1.055) ** 2.4)
    return c[..., 0] * 0.2126 + c[..., 1] * 0.7152 + c[..., 2] * 0.0722


def _largest_blob(mask) -> float:
    """The largest 4-connected region of ``mask``, as a share of its area."""
    from scipy import ndimage

    labels, n = ndimage.label(mask)
    return float(ndimage.sum(mask, labels, range(1, n + 1)).max() / mask.size) if n else 0.0


# The largest share of a figure that may be one connected light grey region (luminance above
# 0.35, channels within 48 of each other) in the dark theme. A box behind a figure (the
# theme's own white or light grey one, or a white figure background) is one such region of
# 40-95 % of the figure; the book's figures as themed reach 1 % (a legend, a digit).
GLARE_BLOB = 0.05


def _pages_with_images() -> list[str]:
    return [p for p in toc_pages() if (SITE / f"{p}.html").is_file() and "<img" in _page_html(p)]


@pytest.mark.parametrize("page", _pages_with_images())
def test_figures_readable_in_both_themes(browser, page):
    """Each figure's PNG has a transparent background (its outer frame); on the page, in the
    light and in the dark theme (switched as the theme's button does, through the stored
    mode), no box is drawn behind it, and as rendered it shows ink that contrasts with the
    page: dark ink on a light page, light ink on a dark page, with no large near-white
    region in the dark theme."""
    import io

    import numpy as np
    from PIL import Image

    problems = []
    for src in set(re.findall(r'<img[^>]*src="([^"]+)"', _page_html(page))):
        png = np.asarray(Image.open((SITE / page).parent / unquote(src)).convert("RGBA"))
        frame = np.concatenate([png[:3].reshape(-1, 4), png[-3:].reshape(-1, 4),
                                png[:, :3].reshape(-1, 4), png[:, -3:].reshape(-1, 4)])
        if (frame[:, 3] == 0).mean() < 0.95:
            problems.append(f"{src}: the figure's background is not transparent")
    for mode in ("light", "dark"):
        context = browser.new_context(viewport={"width": WIDTH, "height": HEIGHT})
        context.route(
            "**/*", lambda r: r.continue_() if r.request.url.startswith("file:") else r.abort()
        )
        context.add_init_script(f"localStorage.setItem('mode', '{mode}');")
        tab = context.new_page()
        try:
            tab.goto((SITE / f"{page}.html").as_uri(), wait_until="load")
            theme = tab.evaluate("() => document.documentElement.dataset.theme")
            assert theme == mode, f"{page}: theme {theme!r}, expected {mode!r}"
            page_bg = _luminance(tab.evaluate(BODY_BACKGROUND))
            images = tab.locator("article.bd-article img")
            for info, i in zip(tab.evaluate(FIGURE_STYLE), range(images.count()), strict=True):
                where = f"{mode}: {info['src']}"
                alpha = re.findall(r"[\d.]+", info["background"])
                if len(alpha) == 4 and float(alpha[3]) > 0 or len(alpha) == 3:
                    problems.append(f"{where}: a box is drawn behind it ({info['background']})")
                if info["padding"] not in ("0px", ""):
                    problems.append(f"{where}: padded ({info['padding']}), a frame around it")
                shot = np.asarray(Image.open(io.BytesIO(images.nth(i).screenshot())).convert("RGB"))
                lum = _luminance(shot)
                if mode == "light":
                    ink = (lum < page_bg - 0.5).mean()
                else:
                    ink = (lum > page_bg + 0.5).mean()
                    grey = shot.max(axis=-1).astype(int) - shot.min(axis=-1) < 48
                    glare = _largest_blob((lum > 0.35) & grey)
                    if glare > GLARE_BLOB:
                        problems.append(f"{where}: a light grey region, {glare:.0%} of it, glares")
                    if lum.mean() > 0.4:
                        problems.append(f"{where}: light ({lum.mean():.2f}) on a dark page")
                if ink < 0.001:
                    problems.append(f"{where}: no ink that contrasts with the page ({ink:.2%})")
        finally:
            context.close()
    assert not problems, f"{page}: {len(problems)} problem(s)\n  " + "\n  ".join(problems)
