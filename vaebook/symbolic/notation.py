"""The book's abstract notation, as SymPy symbols.

Derivations are written the way a textbook writes them -- ``log p(x)``, ``q(z)``,
``∫ q(z) log p(x, z)/q(z) dz`` -- and a model family (:mod:`vaebook.families`) gives
the notation a concrete meaning in which every step can be checked.

Densities are positive symbols; ``z`` is the latent variable integrated over (an
``Integral(f, z)`` means a sum over states in a finite family). ``ELBO``, ``KL_post``
and ``KL_prior`` are names whose definitions (:data:`DEFINITIONS`) are expanded before
checking, so a derivation may end on the named quantities.
"""

from __future__ import annotations

import sympy as sp

__all__ = [
    "z",
    "px",
    "pz",
    "px_z",
    "pxz",
    "pz_x",
    "qz",
    "ELBO",
    "KL_post",
    "KL_prior",
    "DEFINITIONS",
    "NOTATION",
    "LATEX_NAMES",
    "integral",
    "expectation",
    "expand_definitions",
    "Z_DEPENDENT",
    "Normal",
    "normal_pdf",
    "explicit",
]

z = sp.Symbol("z", real=True)  # the latent variable

px = sp.Symbol("p(x)", positive=True)  # evidence, does not depend on z
pz = sp.Symbol("p(z)", positive=True)  # prior
px_z = sp.Symbol("p(x|z)", positive=True)  # likelihood
pxz = sp.Symbol("p(x,z)", positive=True)  # joint
pz_x = sp.Symbol("p(z|x)", positive=True)  # true posterior
qz = sp.Symbol("q(z)", positive=True)  # variational (surrogate) posterior

#: symbols that are functions of z (replaced state by state inside an integral)
Z_DEPENDENT = (pz, px_z, pxz, pz_x, qz)

ELBO = sp.Symbol("ELBO")
KL_post = sp.Symbol("KL(q||p(z|x))")
KL_prior = sp.Symbol("KL(q||p(z))")

#: every symbol of the notation: a symbol of the same name elsewhere is refused
NOTATION = (z, px, pz, px_z, pxz, pz_x, qz, ELBO, KL_post, KL_prior)

LATEX_NAMES = {
    px: "p(x)",
    pz: "p(z)",
    px_z: r"p(x \mid z)",
    pxz: "p(x, z)",
    pz_x: r"p(z \mid x)",
    qz: "q(z)",
    ELBO: r"\mathcal{L}(q)",
    KL_post: r"\mathrm{KL}\left(q(z) \,\|\, p(z \mid x)\right)",
    KL_prior: r"\mathrm{KL}\left(q(z) \,\|\, p(z)\right)",
}


def integral(f) -> sp.Integral:
    """``∫ f dz`` (a sum over latent states in a finite family)."""
    return sp.Integral(f, z)


def expectation(f) -> sp.Integral:
    """``E_q[f] = ∫ q(z) f dz``."""
    return sp.Integral(qz * f, z)


#: the named quantities, each an integral over z
DEFINITIONS = {
    # eq. (elbo-def): ELBO(q) = ∫ q(z) log p(x, z)/q(z) dz
    ELBO: integral(qz * sp.log(pxz / qz)),
    # eq. (kl-post-def): KL(q || p(z|x)) = ∫ q(z) log q(z)/p(z|x) dz
    KL_post: integral(qz * sp.log(qz / pz_x)),
    # eq. (kl-prior-def): KL(q || p(z)) = ∫ q(z) log q(z)/p(z) dz
    KL_prior: integral(qz * sp.log(qz / pz)),
}


def expand_definitions(expr) -> sp.Expr:
    """Replace ``ELBO``, ``KL_post``, ``KL_prior`` by their defining integrals."""
    return sp.sympify(expr).xreplace(DEFINITIONS)


def normal_pdf(y, mean, var) -> sp.Expr:
    """Density of ``N(mean, var)`` at ``y``: the one formula of the Gaussian density
    (:class:`Normal` displays it, :mod:`vaebook.symbolic.families` integrates it)."""
    return sp.exp(-((y - mean) ** 2) / (2 * var)) / sp.sqrt(2 * sp.pi * var)


class Normal(sp.Function):
    """The Gaussian density ``N(y; mean, var)``, kept unevaluated so it *displays* as
    :math:`\\mathcal{N}(y; \\mu, \\sigma^2)`; :func:`explicit` (which the derivation
    engine applies before every check) replaces it by its formula.

    It claims no sign of its own beyond what its arguments give: it is positive only when
    ``y`` and ``mean`` are real and ``var`` is positive, and a variance that is provably
    not positive (zero, negative, non-real) is refused when the density is written.
    """

    nargs = 3

    @classmethod
    def eval(cls, y, mean, var):
        if var.is_positive is False or var.is_extended_real is False:
            raise ValueError(f"a Gaussian density needs a positive variance, not {var}")
        if y.is_extended_real is False or mean.is_extended_real is False:
            raise ValueError(f"a Gaussian density of a real variable: N({y}; {mean}, {var})")
        return None  # stays unevaluated

    def _positive_by_arguments(self):
        y, mean, var = self.args
        if y.is_real and mean.is_real and var.is_positive:
            return True
        return None

    def _eval_is_positive(self):
        return self._positive_by_arguments()

    def _eval_is_real(self):
        return self._positive_by_arguments()

    def formula(self) -> sp.Expr:
        return normal_pdf(*self.args)

    def _latex(self, printer):
        y, mean, var = (printer._print(a) for a in self.args)
        return rf"\mathcal{{N}}\left({y};\, {mean},\, {var}\right)"


def explicit(expr) -> sp.Expr:
    """``expr`` with every :class:`Normal` replaced by its formula."""
    expr = sp.sympify(expr)
    if not expr.has(Normal):
        return expr
    return expr.replace(lambda e: isinstance(e, Normal), lambda e: e.formula())
