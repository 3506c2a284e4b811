"""The package's layers, enforced: which part of vaebook may import which.

- vaebook.symbolic imports SymPy and the standard library only (no torch, NumPy,
  matplotlib), and nothing else of vaebook;
- vaebook.vae imports neither SymPy nor matplotlib, nor vaebook.symbolic, vaebook.chapters
  or vaebook.plots;
- vaebook.plots imports neither half;
- nothing imports the command line (vaebook.cli, vaebook.__main__) except the command line
  itself, and nothing in the package imports the tools outside it (tools/);
- no module of the package is over 450 lines, and the package root holds the package
  (the benchmark is a tool).

Imports are read from the source (every ``import``, also inside functions), and the
symbolic half is also imported for real with torch, NumPy and matplotlib blocked.
"""

import ast
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
PKG = ROOT / "vaebook"
STDLIB = set(sys.stdlib_module_names) | {"__future__"}
COMMAND_LINE = {"vaebook.cli", "vaebook.__main__"}
MAX_LINES = 450


def module_name(path: Path) -> str:
    parts = path.relative_to(ROOT).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def imports(path: Path) -> set[str]:
    """Absolute names of every module ``path`` imports (relative imports resolved)."""
    name = module_name(path)
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    found = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            found |= {a.name for a in node.names}
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = package.split(".")
                base = base[: len(base) - (node.level - 1)]
                target = ".".join(base + ([node.module] if node.module else []))
            else:
                target = node.module
            found.add(target)
            found |= {f"{target}.{a.name}" for a in node.names if target.startswith("vaebook")}
    return found


def modules(sub: str) -> list[Path]:
    return sorted((PKG / sub).rglob("*.py")) if (PKG / sub).is_dir() else [PKG / f"{sub}.py"]


def first(name: str) -> str:
    return name.split(".")[0]


def vaebook_modules(names: set[str]) -> set[str]:
    """The vaebook modules among ``names`` (``vaebook.x.y`` where that file exists)."""
    out = set()
    for n in names:
        if first(n) != "vaebook":
            continue
        parts = n.split(".")
        while parts and not (
            ROOT.joinpath(*parts).with_suffix(".py").is_file() or ROOT.joinpath(*parts).is_dir()
        ):
            parts.pop()
        out.add(".".join(parts))
    return out


ALL = sorted(PKG.rglob("*.py"))


@pytest.mark.parametrize("path", modules("symbolic"), ids=module_name)
def test_symbolic_side_stands_on_sympy_alone(path):
    names = imports(path)
    third_party = {first(n) for n in names} - STDLIB - {"sympy", "vaebook"}
    assert not third_party, f"{module_name(path)} imports {third_party}"
    inside = {m for m in vaebook_modules(names) if m != "vaebook"}
    assert all(m.startswith("vaebook.symbolic") for m in inside), inside


@pytest.mark.parametrize("path", modules("vae"), ids=module_name)
def test_training_side_imports_no_sympy_and_no_chapter(path):
    names = imports(path)
    assert not {first(n) for n in names} & {"sympy", "matplotlib"}, sorted(names)
    inside = vaebook_modules(names) - {"vaebook"}
    assert all(m.startswith("vaebook.vae") for m in inside), inside


def test_figure_style_imports_neither_half():
    names = imports(PKG / "plots.py")
    assert not vaebook_modules(names) - {"vaebook"}
    assert not {first(n) for n in names} & {"sympy", "torch"}


@pytest.mark.parametrize("path", ALL, ids=module_name)
def test_nothing_imports_the_command_line(path):
    if module_name(path) in COMMAND_LINE:
        return
    assert not vaebook_modules(imports(path)) & COMMAND_LINE


@pytest.mark.parametrize("path", ALL, ids=module_name)
def test_nothing_in_the_package_imports_the_tools(path):
    assert not {n for n in imports(path) if first(n) == "tools"}


@pytest.mark.parametrize("path", ALL, ids=module_name)
def test_modules_are_short_enough_to_read_in_one_sitting(path):
    lines = len(path.read_text().splitlines())
    assert lines <= MAX_LINES, f"{module_name(path)} has {lines} lines"


def test_the_package_root_holds_the_package():
    """Beside the halves and the chapters, the root holds the CLI, the figure style and the
    package's own files; the benchmark and the GPU script are tools outside it."""
    root = {p.name for p in PKG.glob("*.py")}
    assert root == {"__init__.py", "__main__.py", "cli.py", "plots.py"}, root
    assert (ROOT / "tools" / "bench.py").is_file() and (ROOT / "tools" / "gpu_run.py").is_file()


def test_symbolic_side_imports_without_torch_numpy_matplotlib():
    code = (
        "import sys\n"
        "for m in ('torch', 'numpy', 'matplotlib'): sys.modules[m] = None\n"
        "import vaebook.symbolic.notation, vaebook.symbolic.derivation\n"
        "import vaebook.symbolic.certificates, vaebook.symbolic.families\n"
    )
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=ROOT)
    assert result.returncode == 0, result.stderr


def test_the_rule_catches_a_violation(tmp_path):
    """The checker itself: a symbolic module importing torch is reported."""
    bad = PKG / "symbolic" / "_layout_probe.py"
    bad.write_text("import torch\n")
    try:
        with pytest.raises(AssertionError):
            test_symbolic_side_stands_on_sympy_alone(bad)
    finally:
        bad.unlink()
