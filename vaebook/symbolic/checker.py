"""A reader's step, typed on a page, read safely and checked by the engine.

The book's exercise pages carry a box ("check your step") in which a reader types the
next expression of a derivation in the book's notation, in SymPy's syntax: ``ELBO``,
``KL_post``, ``log(p(x))``, ``Integral(q(z)*log(q(z)/p(z)), z)``. The page runs this
module in the browser (Pyodide) and the book build runs it in CPython to check every
box's own expressions. It imports SymPy and :mod:`vaebook.symbolic` only.

A :class:`Box` is one such box: a start expression, the model families it is checked on,
the symbols in scope. :meth:`Box.check` reads the typed text (:func:`read`) and gives it
to a :class:`~vaebook.symbolic.derivation.Derivation` as its next step; the answer is
the engine's: accepted (with the families it holds on) or refused (with its reason).

Reading is not ``eval``: the text is parsed by Python's own parser into a syntax tree,
and only arithmetic (``+ - * / **``, ``^`` as a power), numbers, the names in scope and
calls of a few functions (``log``, ``exp``, ``sqrt``, ``Integral``, ``Derivative``,
``Normal``, ``E_q``) are turned into SymPy objects, node by node; anything else (an
attribute, a string, a comprehension, a name not in scope, a keyword argument) is
refused before anything is computed. ``sympy.parse_expr`` is not used because it
evaluates its input with ``eval``. Sizes are bounded (length of the text, depth of the
tree, size of numbers, powers and derivative orders), so no input can make the reader
compute without end; the engine's own checks are bounded by the page, which stops a
check that runs too long.
"""

from __future__ import annotations

import ast
import json
import re

import sympy as sp

from . import notation as N
from .derivation import Derivation, StepError
from .families import Concrete, FiniteLatent, GaussianIntegrals, LinearGaussian
from .printing import book_latex

__all__ = ["Unreadable", "read", "Box", "family_named", "FAMILY_NAMES"]

MAX_CHARS = 600  # a step longer than this is no step to type in a box
MAX_NODES = 400
MAX_DEPTH = 40
MAX_LITERAL = 10**6  # integers typed
MAX_EXPONENT = 100  # |n| of a numeric exponent, and its denominator
MAX_BITS = 4096  # the size of any number the reader's arithmetic makes
MAX_ORDER = 6  # of a derivative


class Unreadable(ValueError):
    """The typed text is not an expression of the book's notation (the message says why,
    in words a reader can act on)."""


#: ``p(...)`` and ``q(...)`` as the book writes the densities
DENSITIES = {
    ("p", "x"): N.px,
    ("p", "z"): N.pz,
    ("p", "x,z"): N.pxz,
    ("p", "x|z"): N.px_z,
    ("p", "z|x"): N.pz_x,
    ("q", "z"): N.qz,
}
NAMED = {"ELBO": N.ELBO, "KL_post": N.KL_post, "KL_prior": N.KL_prior, "z": N.z}
CONSTANTS = {"oo": sp.oo, "pi": sp.pi}


def _integral(f, *limits):
    if not limits:
        raise Unreadable("Integral needs its variable: Integral(f, z)")
    return sp.Integral(f, *limits)


def _derivative(f, *variables):
    if not variables:
        raise Unreadable("Derivative needs its variable: Derivative(f, v)")
    d = sp.Derivative(f, *variables, evaluate=False)
    if sum(count for _, count in d.variable_count) > MAX_ORDER:
        raise Unreadable(f"a derivative of order above {MAX_ORDER} is not read")
    return d


def _one(name, f):
    def call(*args):
        if len(args) != 1:
            raise Unreadable(f"{name} takes one argument")
        return f(*args)

    return call


def _normal(*args):
    if len(args) != 3:
        raise Unreadable("Normal takes three arguments: Normal(y, mean, variance)")
    return N.Normal(*args)


FUNCTIONS = {
    "log": _one("log", sp.log),
    "exp": _one("exp", sp.exp),
    "sqrt": _one("sqrt", sp.sqrt),
    "Integral": _integral,
    "Derivative": _derivative,
    "Normal": _normal,
    "E_q": _one("E_q", N.expectation),
}


_OPERATORS = {
    ast.Add: lambda a, b: a + b,
    ast.Sub: lambda a, b: a - b,
    ast.Mult: lambda a, b: a * b,
    ast.Div: lambda a, b: a / b,
    ast.Pow: lambda a, b: _power(a, b),
    ast.BitXor: lambda a, b: _power(a, b),  # x^2, as readers write it
}


def _power(base, exponent):
    if isinstance(exponent, sp.Rational):
        if abs(exponent.p) > MAX_EXPONENT or exponent.q > MAX_EXPONENT:
            raise Unreadable(f"a power above {MAX_EXPONENT} is not read: {exponent}")
        if isinstance(base, sp.Rational):
            bits = max(abs(base.p).bit_length(), base.q.bit_length()) * abs(exponent.p)
            if bits > MAX_BITS:
                raise Unreadable("a number that large is not read")
    return sp.Pow(base, exponent)


def _density_argument(node) -> str | None:
    """``x``, ``z``, ``x,z``, ``x|z`` or ``z|x`` from the syntax inside ``p(...)``."""
    if isinstance(node, ast.Name):
        return node.id
    if isinstance(node, ast.BinOp) and isinstance(node.op, ast.BitOr):
        a, b = _density_argument(node.left), _density_argument(node.right)
        return f"{a}|{b}" if a and b else None
    return None


class _Reader:
    """Turns a checked syntax tree into SymPy, node by node (see the module docstring)."""

    def __init__(self, symbols: dict):
        self.symbols = symbols
        self.nodes = 0

    def value(self, node, depth=0):
        self.nodes += 1
        if self.nodes > MAX_NODES or depth > MAX_DEPTH:
            raise Unreadable("the expression is too long or too deeply nested for one step")
        result = self._value(node, depth + 1)
        if isinstance(result, sp.Rational) and max(abs(result.p), result.q).bit_length() > MAX_BITS:
            raise Unreadable("a number that large is not read")
        return result

    def _value(self, node, depth):
        if isinstance(node, ast.Expression):
            return self.value(node.body, depth)
        if isinstance(node, ast.BinOp) and type(node.op) in _OPERATORS:
            return _OPERATORS[type(node.op)](
                self.value(node.left, depth), self.value(node.right, depth)
            )
        if isinstance(node, ast.BinOp) and isinstance(node.op, ast.BitOr):
            raise Unreadable("'|' is read only inside p(...), as in p(x|z)")
        if isinstance(node, ast.UnaryOp) and isinstance(node.op, (ast.USub, ast.UAdd)):
            v = self.value(node.operand, depth)
            return -v if isinstance(node.op, ast.USub) else v
        if isinstance(node, ast.Constant):
            return self._number(node.value)
        if isinstance(node, ast.Name):
            return self._name(node.id)
        if isinstance(node, ast.Call):
            return self._call(node, depth)
        if isinstance(node, ast.Tuple):
            raise Unreadable("a tuple is read only as the limits of an Integral or a Derivative")
        if isinstance(node, ast.Compare):
            raise Unreadable("type the next expression only, without '=' or a comparison")
        raise Unreadable(f"{_what(node)} is not part of the notation")

    def _number(self, value):
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise Unreadable(f"{_what_constant(value)} is not part of the notation")
        if isinstance(value, int):
            if abs(value) > MAX_LITERAL:
                raise Unreadable(f"numbers above {MAX_LITERAL} are not read")
            return sp.Integer(value)
        if value != value or abs(value) == float("inf") or abs(value) > MAX_LITERAL:
            raise Unreadable("that number is not read")
        return sp.Rational(repr(value))  # 0.5 is read as 1/2, exactly

    def _name(self, name):
        if name in self.symbols:
            return self.symbols[name]
        if name in FUNCTIONS or name in ("p", "q"):
            raise Unreadable(f"{name} is a function: write {name}(...)")
        raise Unreadable(
            f"the name {name!r} is not in scope here (the box lists the names you can use)"
        )

    def _call(self, node, depth):
        if not isinstance(node.func, ast.Name):
            raise Unreadable("only the notation's functions can be called, by name")
        if node.keywords:
            raise Unreadable("keyword arguments are not read")
        name = node.func.id
        if name in ("p", "q"):
            inner = ",".join(filter(None, map(_density_argument, node.args)))
            if len(node.args) != inner.count(",") + 1 or (name, inner) not in DENSITIES:
                raise Unreadable(
                    "the densities are written p(x), p(z), p(x|z), p(x, z), p(z|x) and q(z)"
                )
            return DENSITIES[(name, inner)]
        if name not in FUNCTIONS:
            raise Unreadable(f"the function {name!r} is not part of the notation")
        args = []
        for a in node.args:
            if isinstance(a, ast.Starred):
                raise Unreadable("'*' before an argument is not read")
            if isinstance(a, ast.Tuple) and name in ("Integral", "Derivative"):
                args.append(sp.Tuple(*(self.value(e, depth) for e in a.elts)))
            else:
                args.append(self.value(a, depth))
        return FUNCTIONS[name](*args)


def _what(node) -> str:
    kinds = {
        ast.Attribute: "an attribute ('.')",
        ast.Subscript: "indexing ('[...]')",
        ast.Lambda: "a lambda",
        ast.List: "a list",
        ast.Dict: "a dictionary",
        ast.Set: "a set",
        ast.JoinedStr: "a string",
        ast.NamedExpr: "an assignment",
        ast.BoolOp: "'and'/'or'",
        ast.IfExp: "'if ... else'",
    }
    for kind, words in kinds.items():
        if isinstance(node, kind):
            return words
    if isinstance(node, ast.BinOp):
        return f"the operator {type(node.op).__name__}"
    if isinstance(node, ast.UnaryOp):
        return f"the operator {type(node.op).__name__}"
    return type(node).__name__


def _what_constant(value) -> str:
    return "a string" if isinstance(value, (str, bytes)) else repr(value)


def read(text: str, symbols: dict) -> sp.Expr:
    """The SymPy expression that ``text`` denotes, with ``symbols`` (``{name: symbol}``)
    the names in scope besides the notation (``p(x)``, ``q(z)``, ``ELBO``, ``KL_post``,
    ``KL_prior``, ``z``), the functions of :data:`FUNCTIONS` and ``oo``, ``pi``; else
    :class:`Unreadable`. Nothing but these is ever looked up or called."""
    if not isinstance(text, str):
        raise Unreadable("the step must be text")
    text = text.strip()
    if not text:
        raise Unreadable("type the next expression of the derivation")
    if len(text) > MAX_CHARS:
        raise Unreadable(f"a step longer than {MAX_CHARS} characters is not read")
    try:
        tree = ast.parse(text, mode="eval")
    except SyntaxError as err:
        hint = " (write products with '*', as in 2*m)" if re.search(r"\d[A-Za-z(]", text) else ""
        raise Unreadable(f"this is not an expression: {err.msg}{hint}") from None
    scope = {**NAMED, **CONSTANTS, **symbols}
    try:
        value = _Reader(scope).value(tree)
    except Unreadable:
        raise
    except (TypeError, ValueError, ZeroDivisionError, sp.SympifyError) as err:
        raise Unreadable(f"SymPy could not build this expression: {err}") from None
    if not isinstance(value, sp.Expr):
        raise Unreadable("this is not an expression")
    return value


# ------------------------------------------------------------------------- boxes

#: the families a box can be checked on, by the name a page uses
FAMILY_NAMES = {
    "finite-2": "the finite family with 2 latent states",
    "finite-3": "the finite family with 3 latent states",
    "finite-4": "the finite family with 4 latent states",
    "linear-gaussian": "the linear-Gaussian family",
    "expressions": "the expressions as written (every value of their symbols)",
    "gaussian-integrals": "the expressions, with exact Gaussian integrals",
}


def family_named(name: str, definitions: dict | None = None):
    """The family a box names (:data:`FAMILY_NAMES`); ``definitions`` are the display
    symbols of a concrete family."""
    if name.startswith("finite-") and name in FAMILY_NAMES:
        return FiniteLatent(K=int(name.split("-")[1]))
    if name == "linear-gaussian":
        return LinearGaussian()
    if name == "expressions":
        return Concrete(definitions)
    if name == "gaussian-integrals":
        return GaussianIntegrals(definitions)
    raise ValueError(f"no family named {name!r}; the families are {', '.join(FAMILY_NAMES)}")


_SYMBOL_NAME = re.compile(r"[A-Za-z][A-Za-z0-9_]*(:[0-9]+)?")


def _declared(spec: dict) -> dict:
    """The author's symbols of a box: ``{"real": "m_1 m_2", "positive": "c q_1:5"}``
    (SymPy's range syntax ``q_1:5`` for ``q_1`` to ``q_4``)."""
    out = {}
    for kind in ("real", "positive"):
        names = str(spec.get(kind) or "").replace(",", " ").split()
        for name in names:
            if not _SYMBOL_NAME.fullmatch(name):
                raise ValueError(f"{name!r} is not a symbol name")
            made = sp.symbols(name, **{kind: True}, seq=True)
            for s in made:
                if s.name in out or s.name in NAMED or s.name in FUNCTIONS or s.name in CONSTANTS:
                    raise ValueError(f"the symbol {s.name} is declared twice or names the notation")
                out[s.name] = s
    return out


class Box:
    """One "check your step" box: a derivation that grows by the steps a reader types.

    ``spec`` (what a page declares; all values are text):

    * ``start``: the first expression; ``goal`` (optional): the expression the exercise
      asks for (the box says when a checked step reaches it);
    * ``family``: the families, comma-separated (:data:`FAMILY_NAMES`); the first is the
      one the derivation starts on, every step is also checked on the others;
    * ``real``, ``positive``: the author's symbols (names, SymPy's range syntax);
    * ``define``: for the families of expressions, ``name = expression`` separated by
      ``;`` (a display symbol and what it stands for);
    * ``start_in``: a model family whose meaning of ``start`` is the first expression
      (a closed form), for a box on the expressions family;
    * ``latex``: display names of the author's symbols, ``name = LaTeX`` separated by
      ``;`` (checked by the engine like any display name);
    * ``title``: the words the verdict starts with (default: ``your steps``).
    """

    def __init__(self, spec: dict):
        spec = {k.replace("-", "_"): v for k, v in dict(spec).items()}
        names = [f.strip() for f in str(spec.get("family") or "").split(",") if f.strip()]
        if not names:
            raise ValueError("a box names at least one family")
        symbols = _declared(spec)
        model_families = [
            family_named(n)
            for n in names
            if n in FAMILY_NAMES and n.startswith(("finite", "linear"))
        ]
        start_in = spec.get("start_in")
        if start_in:
            model_families.append(family_named(start_in))
        for fam in model_families:
            for name, sym in fam.symbols().items():
                if symbols.setdefault(name, sym) != sym:
                    raise ValueError(
                        f"{name} is a parameter of {fam.where[3:]}; it cannot be declared"
                    )
        definitions = {}
        for item in filter(str.strip, str(spec.get("define") or "").split(";")):
            lhs, sep, rhs = item.partition("=")
            if not sep:
                raise ValueError(f"a definition is 'name = expression', not {item!r}")
            key = read(lhs, symbols)
            if not isinstance(key, sp.Symbol):
                raise ValueError(f"a definition names a symbol, not {lhs.strip()!r}")
            definitions[key] = read(rhs, symbols)
        self.symbols = symbols
        self.families = [family_named(n, definitions) for n in names]
        start = read(spec.get("start") or "", symbols)
        if start_in:
            start = family_named(start_in).interpret(start)
        self.start = start
        self.goal = read(spec["goal"], symbols) if spec.get("goal") else None
        self.title = str(spec.get("title") or "your steps")
        self.definitions = definitions
        self.latex_names = {}
        for item in filter(str.strip, str(spec.get("latex") or "").split(";")):
            name, _, tex = item.partition("=")
            if name.strip() not in symbols or not tex.strip():
                raise ValueError(f"a display name is 'symbol = LaTeX', not {item!r}")
            self.latex_names[symbols[name.strip()]] = tex.strip()
        self.reset()

    def reset(self) -> None:
        """Back to the start expression (the steps checked so far are dropped)."""
        d = Derivation(
            self.start, title=self.title, family=self.families[0], latex_names=self.latex_names
        )
        if len(self.families) > 1:
            d.recheck(*self.families[1:])
        self.derivation = d

    def check(self, text: str) -> dict:
        """Read ``text`` and ask the engine to take it as the next step.

        Returns ``{"status", "message", "latex", "verdict", "goal"}``: ``status`` is
        ``accepted`` (``latex`` is the chain so far, ``verdict`` the engine's), ``refused``
        (``message`` is the engine's reason, ``latex`` the step as read), ``unreadable``
        (``message`` says why the text is no expression of the notation) or
        ``unchecked`` (the engine stopped on an error; nothing was accepted).
        """
        try:
            expr = read(text, self.symbols)
        except Unreadable as err:
            return _result("unreadable", message=str(err))
        n = len(self.derivation.steps) + 1
        try:
            self.derivation.step(expr, because=f"your step {n}")
        except StepError as err:
            return _result("refused", message=str(err), latex=self.tex(expr))
        except Exception as err:  # noqa: BLE001 - an engine error is shown, never accepted
            return _result(
                "unchecked", message=f"{type(err).__name__}: {err}", latex=self.tex(expr)
            )
        goal = self.goal is not None and sp.expand(expr - self.goal) == 0
        return _result(
            "accepted",
            latex=self.derivation.latex(reasons=False),
            verdict=self.derivation.verdict(),
            goal=goal,
        )

    def check_json(self, text: str) -> str:
        """:meth:`check`, as JSON (what the page reads)."""
        return json.dumps(self.check(text), ensure_ascii=False)

    def tex(self, expr) -> str:
        return book_latex(expr, symbol_names=self.derivation.latex_names)


def _result(status, message="", latex="", verdict="", goal=False) -> dict:
    return {"status": status, "message": message, "latex": latex, "verdict": verdict, "goal": goal}
