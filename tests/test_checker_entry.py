"""The in-page step checker's Python side, run here in CPython (the page runs the same
module in Pyodide; ``browser_tests/test_checker.py`` runs it there).

* reading what a reader types: the book's notation, SymPy's syntax, and nothing else --
  no ``eval``, no attribute, no name out of scope, no computation without end;
* a box: a correct step accepted with the families it was checked on, a wrong one refused
  with the engine's own reason (the message a ``Derivation`` raises for the same step,
  built here directly, is the oracle);
* every box in the book: the engine makes it, and a step a reader would type is accepted
  while a plausible slip is refused;
* what the page installs: the engine's wheel holds ``vaebook/__init__.py`` and
  ``vaebook/symbolic/`` only and is enough to run the checker without torch or NumPy; the
  pins of ``package.json``, its lock file and the SymPy wheel.
"""

from __future__ import annotations

import importlib.util
import json
import re
import subprocess
import sys
import time
import zipfile
from pathlib import Path

import pytest
import sympy as sp

from vaebook.symbolic import notation as N
from vaebook.symbolic.checker import Box, Unreadable, read
from vaebook.symbolic.derivation import Derivation, StepError
from vaebook.symbolic.families import FiniteLatent, LinearGaussian

ROOT = Path(__file__).resolve().parents[1]
LG = LinearGaussian()


# ------------------------------------------------------------------------ reading


def test_reads_the_notation():
    assert read("log(p(x)) - ELBO", {}) == sp.log(N.px) - N.ELBO
    assert read("p(x|z)*p(z)", {}) == N.px_z * N.pz
    assert read("p(x, z) / p(z|x)", {}) == N.pxz / N.pz_x
    assert read("KL_post + KL_prior", {}) == N.KL_post + N.KL_prior
    assert read("E_q(log(p(x|z)))", {}) == N.expectation(sp.log(N.px_z))
    assert read("Integral(q(z)*log(q(z)), z)", {}) == N.integral(N.qz * sp.log(N.qz))
    assert read("Derivative(ELBO, v)", LG.symbols()) == sp.Derivative(N.ELBO, LG.v)


def test_reads_numbers_exactly_and_caret_as_power():
    m = LG.m
    assert read("m^2", {"m": m}) == m**2
    assert read("0.5*m", {"m": m}) == m / 2
    assert read("1/3", {}) == sp.Rational(1, 3)
    assert read("-m + +m", {"m": m}) == 0
    assert read("Integral(Normal(z, 0, 1), (z, -oo, oo))", {}) == sp.Integral(
        N.Normal(N.z, 0, 1), (N.z, -sp.oo, sp.oo)
    )


@pytest.mark.parametrize(
    "text, words",
    [
        ("__import__('os').system('true')", "only the notation's functions can be called"),
        ("__import__('os')", "not part of the notation"),
        ("ELBO.func", "attribute"),
        ("().__class__.__bases__", "attribute"),
        ("log.__globals__", "attribute"),
        ("eval('1')", "not part of the notation"),
        ("open('/etc/passwd')", "not part of the notation"),
        ("Symbol('x')", "not part of the notation"),
        ("[c for c in ()]", "not part of the notation"),
        ("lambda: 1", "lambda"),
        ("'text'", "string"),
        ("log(x=1)", "keyword"),
        ("log(*ELBO)", "'*'"),
        ("ELBO[0]", "indexing"),
        ("sp", "not in scope"),
        ("os", "not in scope"),
        ("log", "is a function"),
        ("ELBO = 1", "not an expression"),
        ("ELBO >= KL_post", "comparison"),
        ("p(y)", "densities are written"),
        ("p(x|z|x)", "densities are written"),
        ("x | z", "only inside p"),
        ("2m", "write products with '*'"),
        ("", "type the next expression"),
    ],
)
def test_refuses_anything_but_an_expression_of_the_notation(text, words):
    with pytest.raises(Unreadable, match=re.escape(words)):
        read(text, {})


@pytest.mark.parametrize(
    "text",
    [
        "9**9**9",
        "2**10**10",
        "2^(10^10)",
        "(((2**100)**100)**100)**100",
        "10**1000000",
        "12345678901234567890",
        "1e400",
        "Derivative(ELBO, (v, 10**6))",
        "Derivative(ELBO, v, v, v, v, v, v, v)",
        "log(" * 100 + "ELBO" + ")" * 100,
        "+".join(["ELBO"] * 300),
    ],
)
def test_refuses_what_would_compute_without_end_quickly(text):
    started = time.perf_counter()
    with pytest.raises(Unreadable):
        read(text, {"v": LG.v})
    assert time.perf_counter() - started < 1


# ------------------------------------------------------------------------- a box

GAP = {"start": "log(p(x)) - ELBO", "family": "finite-3, linear-gaussian", "goal": "KL_post"}


def test_a_correct_step_is_accepted_with_the_families_it_was_checked_on():
    box = Box({**GAP, "title": "the gap"})
    first = box.check("log(p(x)) - Integral(q(z)*log(p(x,z)/q(z)), z)")
    assert first["status"] == "accepted" and not first["goal"]
    assert first["verdict"] == (
        "the gap: 1 step verified on 2 families: "
        "the finite family (K=3) and the linear-Gaussian family"
    )
    last = box.check("KL_post")
    assert last["status"] == "accepted" and last["goal"]
    assert last["verdict"].startswith("the gap: 2 steps verified")
    assert r"\mathrm{KL}" in last["latex"] and r"\begin{aligned}" in last["latex"]


def test_a_wrong_step_is_refused_with_the_engines_reason():
    box = Box({**GAP, "title": "the gap"})
    answer = box.check("Integral(p(z|x)*log(p(z|x)/q(z)), z)")  # KL the other way round
    d = Derivation(sp.log(N.px) - N.ELBO, title="the gap", family=FiniteLatent(K=3))
    d.recheck(LinearGaussian())
    with pytest.raises(StepError) as refused:
        d.step(N.integral(N.pz_x * sp.log(N.pz_x / N.qz)), because="your step 1")
    assert answer["status"] == "refused"
    assert answer["message"] == str(refused.value)
    assert "is false" in answer["message"] and "finite family (K=3)" in answer["message"]
    assert box.derivation.steps == ()  # nothing was added


def test_a_step_true_on_one_family_only_is_refused():
    box = Box({"start": "KL_prior", "family": "linear-gaussian, finite-3", "title": "the KL"})
    answer = box.check("(v + m**2 - 1 - log(v))/2")  # the Gaussian closed form: q = N(m, v)
    assert answer["status"] == "refused"
    assert "holds on the linear-Gaussian family but not on the finite family" in answer["message"]


def test_unreadable_input_changes_nothing_and_start_over_starts_over():
    box = Box(GAP)
    assert box.check("KL_post")["status"] == "accepted"
    assert box.check("__import__('os')")["status"] == "unreadable"
    assert len(box.derivation.steps) == 1
    box.reset()
    assert box.derivation.steps == () and box.derivation.current == box.start


@pytest.mark.parametrize(
    "spec, words",
    [
        ({"start": "ELBO", "family": "finite-9"}, "no family named"),
        ({"start": "ELBO", "family": ""}, "at least one family"),
        ({"start": "y", "family": "finite-3"}, "not in scope"),
        ({"start": "ELBO", "family": "finite-3", "real": "q_1"}, "parameter of"),
        ({"start": "ELBO", "family": "expressions", "define": "ELBO"}, "name = expression"),
        ({"start": "ELBO", "family": "finite-3", "real": "a.b"}, "not a symbol name"),
    ],
)
def test_a_box_the_engine_cannot_make_is_refused(spec, words):
    with pytest.raises(ValueError, match=re.escape(words)):
        Box(spec)


# ------------------------------------------------------------- the boxes of the book

MEAN = "q_1*y_1 + q_2*y_2 + q_3*y_3"
#: title -> (steps a reader would type, each accepted in turn; a plausible slip, refused)
STEPS = {
    "the KL divergence of two Gaussians": (
        [
            "Integral(Normal(y, m_1, v_1)*(log(v_2/v_1)/2 + (y - m_2)**2/(2*v_2)"
            " - (y - m_1)**2/(2*v_1)), (y, -oo, oo))",
            "log(v_2/v_1)/2 + (v_1 + (m_1 - m_2)**2)/(2*v_2) - 1/2",
        ],
        "log(v_2/v_1)/2 + (v_2 + (m_1 - m_2)**2)/(2*v_1) - 1/2",
    ),
    r"$\mathrm{KL}(q \,\|\, q)$ with $K = 4$": (
        ["0"],
        "-(q_1*log(q_1) + q_2*log(q_2) + q_3*log(q_3) + q_4*log(q_4))",
    ),
    "KL of two Gaussians with equal variances": (
        ["(m_1 - m_2)**2/(2*v_1)", "(log(v_1/v_2) + (v_2 + (m_2 - m_1)**2)/v_1 - 1)/2"],
        "(m_1 - m_2)**2/v_1",
    ),
    "the evidence identity": (
        [
            "log(p(x))*Integral(q(z), z)",
            "Integral(q(z)*log(p(x)), z)",
            "Integral(q(z)*log(p(x,z)/p(z|x)), z)",
            "Integral(q(z)*log(p(x,z)/q(z)), z) + Integral(q(z)*log(q(z)/p(z|x)), z)",
            "ELBO + KL_post",
        ],
        "ELBO - KL_post",
    ),
    "gap = KL, directly": (
        [
            "log(p(x)) - Integral(q(z)*log(p(x,z)/q(z)), z)",
            "log(p(x)) - Integral(q(z)*log(p(z|x)*p(x)/q(z)), z)",
            "KL_post",
        ],
        "Integral(p(z|x)*log(p(z|x)/q(z)), z)",
    ),
    "ELBO = expected log-joint + entropy": (
        ["Integral(q(z)*log(p(x,z)), z) - Integral(q(z)*log(q(z)), z)"],
        "Integral(q(z)*log(p(x,z)), z) + Integral(q(z)*log(q(z)), z)",
    ),
    "the gap of Jensen's inequality for exp": (
        [
            " + ".join(
                f"q_{k}*exp({MEAN})*(exp(y_{k} - ({MEAN})) - 1 - (y_{k} - ({MEAN})))"
                for k in (1, 2, 3)
            )
        ],
        "q_1*(exp(y_1) - 1 - y_1) + q_2*(exp(y_2) - 1 - y_2) + q_3*(exp(y_3) - 1 - y_3)",
    ),
    "Jensen's gap for $y^2$ is the variance": (
        [" + ".join(f"q_{k}*(y_{k} - ({MEAN}))**2" for k in (1, 2, 3))],
        "q_1*(y_1 - q_1*y_1)**2 + q_2*(y_2 - q_2*y_2)**2 + q_3*(y_3 - q_3*y_3)**2",
    ),
    "the two gradients in $v$, added": (["0"], "Derivative(KL_post, v)"),
    r"the gap at $q = p(z \mid x)$": (["0"], "log(2)"),
    "reconstruction - KL": (
        ["Integral(q(z)*log(p(x|z)*p(z)/q(z)), z)", "E_q(log(p(x|z))) - KL_prior"],
        "E_q(log(p(x|z))) - KL_post",
    ),
    "the ELBO as the evidence minus the KL to the posterior": (
        ["Integral(q(z)*log(p(x)*p(z|x)/q(z)), z)", "log(p(x)) - KL_post"],
        "log(p(x)) + KL_post",
    ),
    "three-term split": (
        ["E_q(log(p(x|z))) + E_q(log(p(z))) - E_q(log(q(z)))"],
        "E_q(log(p(x|z))) - KL_post",
    ),
    "KL of q from c times the prior": (["KL_prior - log(c)"], "KL_prior + log(c)"),
    "forward KL from the standard normal": (
        ["log(sigma) + (1 + m**2)/(2*sigma**2) - 1/2"],
        "(sigma**2 + m**2 - 1)/2 - log(sigma)",
    ),
    r"pathwise gradient of $\mathbb{E}[z^2]$ in $\mu$": (
        [
            "Integral(Normal(varepsilon, 0, 1)*2*(mu + sigma*varepsilon), (varepsilon, -oo, oo))",
            "2*mu",
        ],
        "2*mu + 1",
    ),
    r"pathwise gradient of $\mathbb{E}[z^2]$ in $\sigma$": (
        [
            "Integral(Normal(varepsilon, 0, 1)*2*(mu + sigma*varepsilon)*varepsilon,"
            " (varepsilon, -oo, oo))",
            "2*sigma",
        ],
        "Integral(Normal(varepsilon, 0, 1)*2*(mu + sigma*varepsilon), (varepsilon, -oo, oo))",
    ),
    "the ELBO over three draws": (
        [
            "q_1*log(pi_1*l_1/q_1) + q_2*log(pi_2*l_2/q_2)",
            "q_1**3*log(pi_1*l_1/q_1) + q_1**2*q_2*(2*log(pi_1*l_1/q_1) + log(pi_2*l_2/q_2))"
            " + q_1*q_2**2*(log(pi_1*l_1/q_1) + 2*log(pi_2*l_2/q_2)) + q_2**3*log(pi_2*l_2/q_2)",
        ],
        "q_1*log(pi_1*l_1) + q_2*log(pi_2*l_2)",
    ),
    "the variance of the estimate from two draws": (
        [
            "(q_1*(pi_1*l_1/q_1 - p(x))**2 + q_2*(pi_2*l_2/q_2 - p(x))**2"
            " + q_3*(pi_3*l_3/q_3 - p(x))**2)/2"
        ],
        "q_1*(pi_1*l_1/q_1 - p(x))**2 + q_2*(pi_2*l_2/q_2 - p(x))**2"
        " + q_3*(pi_3*l_3/q_3 - p(x))**2",
    ),
    "an encoder that ignores its input carries no information": (["0"], "log(2)"),
    "KL of a nearly one-hot q from a prior": (
        [
            "-log(pi_1)/(1 + 2*delta) - log(1 + 2*delta)"
            " + delta/(1 + 2*delta)*(2*log(delta) - log(pi_2) - log(pi_3))"
        ],
        "log(3) - log(1 + 2*delta) + 2*delta/(1 + 2*delta)*log(delta)",
    ),
}

_BOX = re.compile(r"^```\{step-checker\}\n(?P<body>.*?)^```", re.M | re.S)


def book_boxes() -> list[tuple[str, dict]]:
    """(chapter, spec) of every box in the chapters (the options of each directive)."""
    boxes = []
    for path in sorted((ROOT / "book").glob("*.ipynb")):
        for cell in json.loads(path.read_text(encoding="utf-8"))["cells"]:
            if cell["cell_type"] != "markdown":
                continue
            for m in _BOX.finditer("".join(cell["source"])):
                options = re.findall(r"^:([\w-]+):\s*(.*)$", m.group("body"), re.M)
                boxes.append((path.stem, dict(options)))
    return boxes


def test_every_exercise_of_the_book_has_a_box():
    for path in sorted((ROOT / "book").glob("*.ipynb")):
        cells = json.loads(path.read_text(encoding="utf-8"))["cells"]
        text = ["".join(c["source"]) for c in cells if c["cell_type"] == "markdown"]
        solutions = sum(t.startswith("Solution to exercise") for t in text)
        listed = sum(  # the numbered items under an "Exercises" heading
            len(re.findall(r"^\d+\. ", t.split("Exercises", 1)[1], re.M))
            for t in text
            if re.search(r"^#+ .*Exercises", t, re.M)
        )
        boxes = sum(len(_BOX.findall(t)) for t in text)
        exercises = max(solutions, listed)
        assert boxes >= exercises, f"{path.name}: {exercises} exercises, {boxes} boxes"
    assert len(book_boxes()) >= 18


@pytest.mark.parametrize("chapter, spec", book_boxes(), ids=lambda v: str(v)[:40])
def test_each_box_of_the_book_accepts_a_readers_steps_and_refuses_a_slip(chapter, spec):
    assert spec["title"] in STEPS, f"{chapter}: give the box {spec['title']!r} its steps here"
    steps, slip = STEPS[spec["title"]]
    box = Box(spec)
    reached = []
    for n, text in enumerate(steps, 1):
        answer = box.check(text)
        assert answer["status"] == "accepted", (n, answer["message"])
        reached.append(answer["goal"])
    assert any(reached) == bool(spec.get("goal"))
    box.reset()
    answer = box.check(slip)
    assert answer["status"] == "refused" and "is false" in answer["message"], answer


# ------------------------------------------------------------------ what ships


def _extension():
    spec = importlib.util.spec_from_file_location(
        "vaebook_checker", ROOT / "_ext/vaebook_checker.py"
    )
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_the_engine_wheel_runs_the_checker_without_the_rest_of_the_package(tmp_path):
    wheel = _extension().build_engine_wheel(tmp_path / "wheel")
    again = _extension().build_engine_wheel(tmp_path / "again")
    assert wheel.read_bytes() == again.read_bytes()  # reproducible
    with zipfile.ZipFile(wheel) as z:
        names = z.namelist()
        z.extractall(tmp_path / "site")
    code = {n for n in names if not n.startswith("vaebook_symbolic-")}
    assert code == {"vaebook/__init__.py"} | {
        f"vaebook/symbolic/{p.name}" for p in (ROOT / "vaebook/symbolic").glob("*.py")
    }
    script = (
        "import sys\n"
        "for name in ('torch', 'numpy', 'matplotlib'):\n"
        "    sys.modules[name] = None  # importing them would fail\n"
        f"sys.path.insert(0, {str(tmp_path / 'site')!r})\n"
        "from vaebook.symbolic.checker import Box\n"
        "import vaebook\n"
        f"assert vaebook.__file__.startswith({str(tmp_path)!r}), vaebook.__file__\n"
        "box = Box({'start': 'log(p(x)) - ELBO', 'family': 'finite-3', 'goal': 'KL_post'})\n"
        "print(box.check('KL_post')['status'])\n"
    )
    done = subprocess.run(
        [sys.executable, "-c", script], capture_output=True, text=True, cwd=tmp_path, timeout=300
    )
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "accepted"


def test_the_pins_of_what_the_page_loads():
    package = json.loads((ROOT / "package.json").read_text())
    pinned = package["dependencies"]["pyodide"]
    assert re.fullmatch(r"\d+\.\d+\.\d+", pinned), "pin Pyodide exactly"
    lock = json.loads((ROOT / "package-lock.json").read_text())
    assert lock["packages"]["node_modules/pyodide"]["version"] == pinned
    assert lock["packages"][""]["dependencies"]["pyodide"] == pinned
    requirements = (ROOT / "requirements.txt").read_text()
    sympy_pin = re.search(r"^sympy==(\S+)", requirements, re.M).group(1)
    assert _extension().WHEELS["sympy"][0] == sympy_pin == sp.__version__
