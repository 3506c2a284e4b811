"""The in-page step checker ("check your step"), as a reader uses it: in headless Chromium,
the built site served by a loopback HTTP server started here, every request that is not
for that server aborted (and the test fails if one was attempted).

On one exercise (chapter 3, exercise 1) a correct step is accepted with the families it was
checked on, a wrong one is refused with the engine's reason, the goal is recognised and a
string that is no expression is not read; the answers are the ones the same engine gives
here in CPython (:mod:`vaebook.symbolic.checker`). Pyodide, SymPy and the engine are loaded
from the site itself: the requests are counted, none leaves it. A page opened from a file
says how to serve the book instead. Every exercise of the built book has its box.

The time the engine took to load and the first verdict are written to
``_build/browser/checker-timings.json`` (the README quotes a run of it; nothing asserts a timing
beyond a generous limit).
"""

from __future__ import annotations

import functools
import http.server
import json
import re
import threading
import time

import pytest
from test_pages import SITE, launched_chromium, toc_pages

from vaebook.symbolic.checker import Box

PAGE = "book/03_evidence_identity"
TITLE = "gap = KL, directly"  # exercise 1 of chapter 3
CORRECT = "log(p(x)) - Integral(q(z)*log(p(x,z)/q(z)), z)"
WRONG = "Integral(p(z|x)*log(p(z|x)/q(z)), z)"  # the KL the other way round
GOAL = "KL_post"
LIMIT_S = 300  # loading Python and SymPy on a busy 2-core CI machine, then one check
TIMINGS = SITE.parent / "browser" / "checker-timings.json"


@pytest.fixture(scope="module")
def chromium():
    with launched_chromium() as b:
        yield b


class _Quiet(http.server.SimpleHTTPRequestHandler):
    def log_message(self, *args):
        pass


@pytest.fixture(scope="module")
def site_url():
    if not (SITE / "_static" / "checker" / "manifest.json").is_file():
        pytest.fail(
            f"{SITE} was built without the in-page checker: run `npm ci` before the book "
            "build (the README's build command does)"
        )
    server = http.server.ThreadingHTTPServer(
        ("127.0.0.1", 0), functools.partial(_Quiet, directory=str(SITE))
    )
    threading.Thread(target=server.serve_forever, daemon=True).start()
    yield f"http://127.0.0.1:{server.server_address[1]}/"
    server.shutdown()
    server.server_close()


def _spec(page_html: str, title: str) -> dict:
    for attribute in re.findall(r'class="vaebook-checker"[^>]*data-spec="([^"]*)"', page_html):
        spec = json.loads(attribute.replace("&quot;", '"').replace("&amp;", "&"))
        if spec.get("title") == title:
            return spec
    raise AssertionError(f"no box titled {title!r}")


def _ask(box, text: str, kind: str) -> str:
    """Type ``text``, press Check, wait for the answer of ``kind``; its text."""
    answers = box.locator(".vaebook-checker-answer")
    box.locator(".vaebook-checker-input").fill(text)
    box.locator(".vaebook-checker-check").click()
    answer = box.locator(f".vaebook-checker-{kind}")
    try:
        answer.wait_for(timeout=LIMIT_S * 1000)
    except Exception:  # noqa: BLE001 - say what the box showed instead
        shown = answers.all_inner_texts() + box.locator(".vaebook-checker-status").all_inner_texts()
        raise AssertionError(f"no {kind} answer to {text!r}; the box shows {shown}") from None
    return answer.inner_text()


def test_a_correct_step_is_accepted_and_a_wrong_one_refused(chromium, site_url):
    spec = _spec((SITE / f"{PAGE}.html").read_text(encoding="utf-8"), TITLE)
    here = Box(spec)  # the same engine, in CPython: what the page must answer
    expected = [here.check(CORRECT), here.check(WRONG), here.check(GOAL)]
    assert [e["status"] for e in expected] == ["accepted", "refused", "accepted"]

    context = chromium.new_context(viewport={"width": 1280, "height": 900})
    requested, outside, problems = [], [], []

    def route(r):
        url = r.request.url
        if url.startswith(site_url):
            requested.append(url)
            r.continue_()
        else:
            outside.append(url)
            r.abort()

    context.route("**/*", route)
    page = context.new_page()
    page.on("console", lambda m: m.type == "error" and problems.append(m.text))
    page.on("pageerror", lambda e: problems.append(str(e)))
    page.goto(site_url + f"{PAGE}.html")
    index = page.evaluate(
        "t => [...document.querySelectorAll('.vaebook-checker')]"
        ".findIndex(e => JSON.parse(e.dataset.spec).title === t)",
        TITLE,
    )
    assert index >= 0
    box = page.locator(".vaebook-checker").nth(index)
    box.scroll_into_view_if_needed()
    assert not [u for u in requested if "/_static/checker/" in u], "loaded before the first check"

    started = time.perf_counter()
    accepted = _ask(box, CORRECT, "accepted")
    first_verdict_s = time.perf_counter() - started
    assert accepted.startswith("Accepted.")
    assert expected[0]["verdict"] in accepted  # the engine's words, with the families
    assert "the finite family (K=3) and the linear-Gaussian family" in accepted
    chain = box.locator(".vaebook-checker-chain mjx-container")
    chain.first.wait_for(timeout=60_000)  # the chain so far, typeset by MathJax
    assert box.locator(".vaebook-checker-chain mjx-merror").count() == 0
    status = box.locator(".vaebook-checker-status").inner_text()
    loaded_s = float(re.search(r"loaded in ([\d.]+) s", status).group(1))

    started = time.perf_counter()
    refused = _ask(box, WRONG, "refused")
    second_verdict_s = time.perf_counter() - started
    assert refused.startswith("Refused.")
    assert expected[1]["message"] in refused  # the engine's reason, word for word
    assert "is false" in refused

    done = _ask(box, GOAL, "accepted")
    assert "This is the expression the exercise asks for." in done
    assert expected[2]["verdict"] in done
    unread = _ask(box, "__import__('os').system('ls')", "unreadable")
    assert unread.startswith("Not read.")
    box.screenshot(path=str(TIMINGS.with_name("checker.png")))

    loaded_files = {u.rsplit("/", 1)[-1] for u in requested}
    core = {"pyodide.asm.wasm", "python_stdlib.zip", "sympy-1.14.0-py3-none-any.whl"}
    assert core <= loaded_files, "the engine was loaded from the site"
    assert not outside, f"requests that would have left the site: {outside}"
    assert not problems, problems
    manifest = json.loads((SITE / "_static/checker/manifest.json").read_text())
    shipped = sum(manifest["files"].values()) + sum(w["size"] for w in manifest["wheels"])
    TIMINGS.parent.mkdir(parents=True, exist_ok=True)
    TIMINGS.write_text(
        json.dumps(
            {
                "engine loaded (s, as the page reports)": loaded_s,
                "first verdict after pressing Check, loading included (s)": round(
                    first_verdict_s, 1
                ),
                "second verdict (s)": round(second_verdict_s, 1),
                "shipped for the checker (MB)": round(shipped / 1e6, 1),
            },
            indent=1,
        )
        + "\n"
    )
    context.close()


def test_a_page_opened_from_a_file_says_how_to_serve_it(chromium):
    context = chromium.new_context()
    blocked = []
    context.route(
        "**/*",
        lambda r: (
            r.continue_()
            if r.request.url.startswith("file:")
            else (
                blocked.append(r.request.url),
                r.abort(),
            )
        ),
    )
    page = context.new_page()
    page.goto((SITE / f"{PAGE}.html").as_uri())
    box = page.locator(".vaebook-checker").first
    status = box.locator(".vaebook-checker-status")
    status.wait_for()
    text = status.inner_text()
    assert "python -m http.server -d _build/html" in text
    assert f"http://localhost:8000/{PAGE}.html" in text
    assert box.locator(".vaebook-checker-input").is_disabled()
    assert not blocked, blocked
    context.close()


def test_every_exercise_of_the_built_book_has_a_box():
    counted = {}
    for page in toc_pages():
        text = (SITE / f"{page}.html").read_text(encoding="utf-8")
        solutions = len(re.findall(r"Solution to exercise \d", text))
        boxes = len(re.findall(r'<div class="vaebook-checker"', text))
        assert boxes >= solutions, f"{page}: {solutions} exercises, {boxes} boxes"
        counted[page] = boxes
    assert sum(counted.values()) >= 18, counted


def test_the_boxes_load_nothing_from_elsewhere():
    """The page's scripts name no other origin: the worker loads Pyodide from the site
    (its ``indexURL``), never from Pyodide's default CDN."""
    worker = (SITE / "_static" / "checker-worker.mjs").read_text()
    page = (SITE / "_static" / "checker.js").read_text()
    for text in (worker, page):
        assert not re.search(r"https?://(?!localhost:8000/)", text)
    assert "indexURL" in worker and "self.location.origin" in worker
