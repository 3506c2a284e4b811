"""The "check your step" box: a box on the page in which a reader types the next step of a
derivation and the book's engine, running in the browser, checks it (loaded from
``_config.yml``).

A chapter declares a box in a Markdown cell::

    ```{step-checker}
    :title: the gap is the KL
    :start: log(p(x)) - ELBO
    :family: finite-3, linear-gaussian
    :goal: KL_post

    Words shown above the box (optional).
    ```

The options are those of :class:`vaebook.symbolic.checker.Box` (``start``, ``goal``,
``family``, ``real``, ``positive``, ``define``, ``start-in``, ``latex``, ``title``); the
build makes the box here, in CPython, so a box whose expressions the engine cannot read
fails the build. The page shows the start typeset, an input, and the names the reader may
type (generated from the box, so they are the ones in scope).

The page runs the engine with Pyodide, in a worker (``_static/checker-worker.mjs``,
``_static/checker.js``); everything it loads ships with the site, under
``_static/checker/`` (no CDN, no request leaves the site):

* the Pyodide core, from the npm package pinned in ``package.json`` (``npm ci`` installs
  it into ``node_modules/`` from ``package-lock.json``; the README's build command runs it);
* the SymPy and mpmath wheels from PyPI (SymPy the version ``requirements.txt`` pins),
  fetched by ``pip download`` with their SHA-256 required, kept in ``_build/.checker/``;
  the page checks the hashes again before installing them from their files (not by
  name: Pyodide's lock file lists other builds);
* ``vaebook.symbolic`` as a wheel built here (``vaebook/__init__.py``, which imports
  nothing, and ``vaebook/symbolic/``).

Without ``node_modules/pyodide`` (no npm) or without the wheels (no PyPI), the build says
in one line that the in-page checker is left out, writes no box, and the exercises keep
their static solutions.
"""

from __future__ import annotations

import base64
import hashlib
import html
import json
import re
import shutil
import subprocess
import sys
import zipfile
from pathlib import Path

from docutils import nodes
from docutils.parsers.rst import directives
from sphinx.application import Sphinx
from sphinx.util import logging
from sphinx.util.docutils import SphinxDirective

logger = logging.getLogger(__name__)

ROOT = Path(__file__).resolve().parents[1]
#: the pure-Python wheels the page installs, from PyPI: (version, sha256 of the wheel)
WHEELS = {
    "sympy": ("1.14.0", "e091cc3e99d2141a0ba2847328f5479b05d94a6635cb96148ccb3f34671bd8f5"),
    "mpmath": ("1.3.0", "a0b2b9fe80bbcd81a6647ff13108738cfb482d481d826cc0e02f5b35e5c88d2c"),
}
PYODIDE_FILES = (
    "pyodide.mjs",
    "pyodide.asm.mjs",
    "pyodide.asm.wasm",
    "python_stdlib.zip",
    "pyodide-lock.json",
)
OPTIONS = ("title", "start", "goal", "family", "real", "positive", "define", "start-in", "latex")
LEFT_OUT = "the in-page step checker is left out ({}); the exercises keep their static solutions"


# ----------------------------------------------------------------- the box


class step_checker(nodes.General, nodes.Element):
    """A "check your step" box; its children are the author's words and the start."""


class StepChecker(SphinxDirective):
    has_content = True
    option_spec = {name: directives.unchanged_required for name in OPTIONS}

    def run(self):
        from vaebook.symbolic.checker import Box

        spec = {k: " ".join(v.split()) for k, v in self.options.items()}
        try:
            box = Box(spec)
        except Exception as err:  # noqa: BLE001 - any failure is the author's to fix
            raise self.error(f"step-checker: the engine cannot make this box: {err}") from None
        node = step_checker()
        node["spec"] = spec
        node["names"] = names_in_scope(box)
        node["ident"] = f"step-checker-{self.env.new_serialno('step-checker')}"
        self.state.nested_parse(self.content, self.content_offset, node)
        node += start_nodes(box)
        return [node]


def start_nodes(box) -> list[nodes.Node]:
    """The line that gives the start: inline when it is short, else displayed on as many
    lines as the column needs (the engine's line breaking)."""
    from vaebook.symbolic.printing import latex_lines, tex_width

    tex = box.tex(box.start)
    words = nodes.paragraph(classes=["vaebook-checker-start"])
    words += nodes.Text("Start from ")
    if tex_width(tex) <= 24:
        words += nodes.math(text=tex)
        words += nodes.Text(" and type the next expression.")
        return [words]
    words += nodes.Text("the expression below and type the next one.")
    lines = latex_lines(box.start, symbol_names=box.derivation.latex_names)
    rows = [f"& {lines[0]}", *(rf"& \quad {line}" for line in lines[1:])]
    display = r"\begin{aligned}" + " \\\\\n".join(rows) + r"\end{aligned}"
    return [words, nodes.math_block(display, display, nowrap=False, number=None)]


def names_in_scope(box) -> list[tuple[str, str, str]]:
    """What a reader may type in ``box``: ``(typed, LaTeX, words)`` rows; ``words`` may
    hold inline math ``$...$``."""
    from vaebook.symbolic import notation as N
    from vaebook.symbolic.checker import DENSITIES

    rows = [
        (
            "p(x), p(z), p(x|z), p(x, z), p(z|x), q(z)",
            r"p(x),\ p(z),\ p(x \mid z),\ p(x, z),\ p(z \mid x),\ q(z)",
            "the densities",
        ),
        ("ELBO", box.tex(N.ELBO), "the evidence lower bound"),
        ("KL_post", box.tex(N.KL_post), "the KL divergence of q from the posterior"),
        ("KL_prior", box.tex(N.KL_prior), "the KL divergence of q from the prior"),
        ("z", "z", "the latent variable"),
    ]
    for sym in box.symbols.values():
        kind = "positive" if sym.is_positive else "real" if sym.is_real else "a symbol"
        rows.append((sym.name, box.tex(sym), kind))
    typed = {v: f"{f}({a.replace(',', ', ')})" for (f, a), v in DENSITIES.items()}
    for sym, value in box.definitions.items():
        rows.append((typed.get(sym, sym.name), box.tex(sym), f"stands for ${box.tex(value)}$"))
    rows += [
        ("log(a), exp(a), sqrt(a)", r"\log a,\ e^{a},\ \sqrt{a}", "functions"),
        ("Integral(f, z)", r"\int f \, dz", "an integral over the latent variable"),
        ("Integral(f, (y, -oo, oo))", r"\int_{-\infty}^{\infty} f \, dy", "over the real line"),
        ("E_q(f)", r"\int q(z)\, f \, dz", "an expectation under q"),
        ("Derivative(f, v)", r"\frac{\partial f}{\partial v}", "a derivative"),
        ("Normal(y, m, v)", r"\mathcal{N}(y;\, m,\, v)", "the Gaussian density"),
        ("a*b, a/b, a**2 or a^2, oo, pi", r"a b,\ a / b,\ a^2,\ \infty,\ \pi", "arithmetic"),
    ]
    return rows


def _math(tex: str) -> str:
    return f'<span class="math notranslate nohighlight">\\({html.escape(tex)}\\)</span>'


def _words(text: str) -> str:
    """Words with inline math ``$...$`` as HTML."""
    parts = text.split("$")
    return "".join(_math(p) if i % 2 else html.escape(p) for i, p in enumerate(parts))


def visit_step_checker_html(self, node):
    if not getattr(self.builder.app, "vaebook_checker", None):
        raise nodes.SkipNode  # left out of this build: the page has no box
    spec = html.escape(json.dumps(node["spec"], ensure_ascii=False), quote=True)
    self.body.append(
        f'<div class="vaebook-checker" id="{node["ident"]}" data-spec="{spec}">'
        '<p class="vaebook-checker-heading">Check your step</p>'
    )


def depart_step_checker_html(self, node):
    rows = "".join(
        f"<tr><td><code>{html.escape(typed)}</code></td><td>{_math(tex)}</td>"
        f"<td>{_words(words)}</td></tr>"
        for typed, tex, words in node["names"]
    )
    self.body.append(
        '<form class="vaebook-checker-form" autocomplete="off">'
        '<input type="text" class="vaebook-checker-input" spellcheck="false" '
        'aria-label="the next expression, in SymPy syntax" '
        'placeholder="the next expression, in SymPy syntax">'
        '<button type="submit" class="vaebook-checker-check">Check</button>'
        '<button type="button" class="vaebook-checker-reset">Start over</button>'
        "</form>"
        '<div class="vaebook-checker-status" role="status" aria-live="polite"></div>'
        '<div class="vaebook-checker-result" aria-live="polite"></div>'
        '<details class="vaebook-checker-names"><summary>What you can type</summary>'
        "<p>SymPy's syntax, with the names of this box (the engine, running in your browser, "
        "checks each step on the families named in its verdict; the first use loads Python "
        "and SymPy, about 20 MB, once per page):</p>"
        f'<table class="table"><tbody>{rows}</tbody></table></details>'
        "</div>"
    )


def skip(self, node):
    raise nodes.SkipNode


# ------------------------------------------------------------ what the page loads


def _pinned_pyodide() -> str | None:
    try:
        return json.loads((ROOT / "package.json").read_text())["dependencies"]["pyodide"]
    except (OSError, KeyError, ValueError):
        return None


def _installed_pyodide() -> str | None:
    try:
        return json.loads((ROOT / "node_modules/pyodide/package.json").read_text())["version"]
    except (OSError, KeyError, ValueError):
        return None


def _sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def _wheels(cache: Path) -> list[Path] | str:
    """The PyPI wheels in ``cache`` (downloaded if missing), or why not."""
    pinned = re.search(r"^sympy==(\S+)", (ROOT / "requirements.txt").read_text(), re.M)
    if not pinned or pinned.group(1) != WHEELS["sympy"][0]:
        return "the SymPy wheel for the page is not the version requirements.txt pins"
    files = [cache / f"{name}-{version}-py3-none-any.whl" for name, (version, _) in WHEELS.items()]
    hashes = [sha for _, sha in WHEELS.values()]
    if all(f.is_file() and _sha256(f) == h for f, h in zip(files, hashes, strict=True)):
        return files
    cache.mkdir(parents=True, exist_ok=True)
    requirements = cache / "requirements.txt"
    requirements.write_text(
        "".join(f"{n}=={v} --hash=sha256:{h}\n" for n, (v, h) in WHEELS.items())
    )
    command = [sys.executable, "-m", "pip", "download", "--quiet", "--no-deps"]
    command += ["--only-binary=:all:", "--require-hashes", "-r", str(requirements)]
    try:
        done = subprocess.run(
            [*command, "-d", str(cache)], capture_output=True, text=True, timeout=600
        )
    except (OSError, subprocess.TimeoutExpired) as err:
        return f"pip download of the SymPy and mpmath wheels failed: {err}"
    if done.returncode != 0 or not all(f.is_file() for f in files):
        last = (done.stderr.strip().splitlines() or ["no output"])[-1]
        return f"pip download of the SymPy and mpmath wheels failed: {last}"
    return files


def build_engine_wheel(folder: Path) -> Path:
    """``vaebook.symbolic`` as a wheel (``vaebook/__init__.py`` and ``vaebook/symbolic/``),
    byte for byte the same for the same sources."""
    version = re.search(r'__version__ = "([^"]+)"', (ROOT / "vaebook/__init__.py").read_text())[1]
    name = f"vaebook_symbolic-{version}"
    sources = [ROOT / "vaebook/__init__.py", *sorted((ROOT / "vaebook/symbolic").glob("*.py"))]
    files = {p.relative_to(ROOT).as_posix(): p.read_bytes() for p in sources}
    info = f"{name}.dist-info"
    files[f"{info}/METADATA"] = (
        f"Metadata-Version: 2.1\nName: vaebook-symbolic\nVersion: {version}\n"
        "Summary: the derivation engine of vaebook, for the page\n"
    ).encode()
    files[f"{info}/WHEEL"] = (
        b"Wheel-Version: 1.0\nGenerator: vaebook_checker\nRoot-Is-Purelib: true\n"
        b"Tag: py3-none-any\n"
    )
    record = []
    for path, data in files.items():
        digest = base64.urlsafe_b64encode(hashlib.sha256(data).digest()).rstrip(b"=").decode()
        record.append(f"{path},sha256={digest},{len(data)}")
    files[f"{info}/RECORD"] = ("\n".join([*record, f"{info}/RECORD,,"]) + "\n").encode()
    folder.mkdir(parents=True, exist_ok=True)
    wheel = folder / f"{name}-py3-none-any.whl"
    with zipfile.ZipFile(wheel, "w", zipfile.ZIP_DEFLATED) as z:
        for path, data in files.items():
            entry = zipfile.ZipInfo(path, date_time=(1980, 1, 1, 0, 0, 0))
            entry.external_attr = 0o644 << 16
            z.writestr(entry, data, zipfile.ZIP_DEFLATED)
    return wheel


def prepare(app: Sphinx) -> None:
    """Find what the page will load; say in one line if the checker is left out."""
    app.vaebook_checker = None
    if app.builder.name not in ("html", "dirhtml"):
        return  # the single-page build (the PDF's) and other formats have no box
    pinned, installed = _pinned_pyodide(), _installed_pyodide()
    if installed is None or installed != pinned:
        npm = shutil.which("npm")
        why = (
            "npm not found"
            if npm is None
            else "run `npm ci` first: node_modules/ holds "
            f"Pyodide {installed or 'nothing'}, package.json pins {pinned}"
        )
        logger.info(LEFT_OUT.format(why))
        return
    cache = Path(app.outdir).parent / ".checker"
    wheels = _wheels(cache / "wheels")
    if isinstance(wheels, str):
        logger.info(LEFT_OUT.format(wheels))
        return
    app.vaebook_checker = {
        "pyodide": installed,
        "wheels": [*wheels, build_engine_wheel(cache / "engine")],
    }


def copy_assets(app: Sphinx, exception) -> None:
    assets = getattr(app, "vaebook_checker", None)
    if exception is not None or not assets:
        return
    target = Path(app.outdir) / "_static" / "checker"
    shutil.rmtree(target, ignore_errors=True)
    (target / "pyodide").mkdir(parents=True)
    (target / "wheels").mkdir()
    files = {}
    for name in PYODIDE_FILES:
        shutil.copyfile(ROOT / "node_modules/pyodide" / name, target / "pyodide" / name)
        files[f"pyodide/{name}"] = (target / "pyodide" / name).stat().st_size
    wheels = []
    for wheel in assets["wheels"]:
        shutil.copyfile(wheel, target / "wheels" / wheel.name)
        wheels.append({"file": wheel.name, "sha256": _sha256(wheel), "size": wheel.stat().st_size})
    manifest = {"pyodide": assets["pyodide"], "files": files, "wheels": wheels}
    (target / "manifest.json").write_text(json.dumps(manifest, indent=1) + "\n")
    total = sum(files.values()) + sum(w["size"] for w in wheels)
    logger.info(
        f"in-page step checker: Pyodide {assets['pyodide']}, "
        + ", ".join(w["file"] for w in wheels)
        + f" ({total / 1e6:.1f} MB) in _static/checker"
    )


def setup(app: Sphinx):
    app.add_node(
        step_checker,
        html=(visit_step_checker_html, depart_step_checker_html),
        latex=(skip, None),
        text=(skip, None),
        man=(skip, None),
        texinfo=(skip, None),
    )
    app.add_directive("step-checker", StepChecker)
    app.connect("builder-inited", prepare)
    app.connect("build-finished", copy_assets)
    return {"parallel_read_safe": True, "parallel_write_safe": True}
