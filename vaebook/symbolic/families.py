"""Model families in which every expectation is exact, so derivation steps can be checked.

Two families give the abstract notation of :mod:`vaebook.notation` a concrete meaning:

:class:`FiniteLatent`
    ``z`` takes ``K`` states. The prior ``pi_k``, the likelihoods ``l_k = p(x | z=k)``
    and the variational probabilities ``q_k`` are free positive symbols, with
    ``sum_k pi_k = sum_k q_k = 1`` imposed by writing the last one as one minus the
    others. Integrals over ``z`` are finite sums, so an identity that simplifies to
    zero here holds for **every** model with ``K`` latent states.

:class:`LinearGaussian`
    ``p(z) = N(0, 1)``, ``p(x | z) = N(w z + b, s^2)``, ``q(z) = N(m, v)``. Evidence
    and posterior are Gaussian, and every integral the book needs is a Gaussian
    expectation of a polynomial, evaluated exactly.

Both expose ``log_joint``, ``log_evidence``, ``posterior``, ``E_q`` and ``interpret``.
"""

from __future__ import annotations

from collections.abc import Mapping

import sympy as sp

from . import notation as N
from .certificates import Nonneg, jensen_log_certificate, log_tangent_lemma

__all__ = [
    "FiniteLatent",
    "LinearGaussian",
    "normal_pdf",
    "gaussian_kl",
    "gaussian_moment",
    "gaussian_integral",
    "jensen_gap_certificate",
    "finite_gradient_interpretation",
    "gaussian_integrals",
    "GaussianIntegrals",
]


def normal_pdf(y, mean, var) -> sp.Expr:
    """Density of ``N(mean, var)`` at ``y``."""
    return sp.exp(-((y - mean) ** 2) / (2 * var)) / sp.sqrt(2 * sp.pi * var)


def gaussian_moment(n: int, mean, var) -> sp.Expr:
    """``E[y^n]`` for ``y ~ N(mean, var)``: expand ``(mean + sqrt(var) e)^n`` and use
    ``E[e^j] = (j-1)!!`` for even ``j`` (0 for odd ``j``) of a standard normal ``e``."""
    e = sp.Symbol("e", real=True)
    poly = sp.Poly(sp.expand((mean + sp.sqrt(var) * e) ** n), e)
    return sp.expand(
        sum(c * (sp.factorial2(j - 1) if j % 2 == 0 else 0) for (j,), c in poly.terms())
    )


def gaussian_integral(f, var: sp.Symbol) -> sp.Expr:
    """``∫_{-oo}^{oo} f d(var)`` exactly, for ``f`` a sum of terms
    ``polynomial(var) * exp(a var^2 + b var + c)`` with ``a < 0`` (provably).

    Each term is ``sqrt(pi/-a) exp(c - b^2/(4a)) E[polynomial(y)]`` with
    ``y ~ N(-b/(2a), -1/(2a))``, the moments from :func:`gaussian_moment`.
    Raises ``ValueError`` for any other integrand.
    """
    total = sp.Integer(0)
    for term in sp.Add.make_args(sp.expand(sp.expand_log(sp.expand(sp.sympify(f))))):
        factors = sp.Mul.make_args(term)
        exps = [u for u in factors if isinstance(u, sp.exp)]
        rest = sp.Mul(*[u for u in factors if not isinstance(u, sp.exp)])
        exponent = sp.expand(sp.Add(*[u.args[0] for u in exps]))
        if not (rest.is_polynomial(var) and exponent.is_polynomial(var)):
            raise ValueError(f"not polynomial x exp(quadratic) in {var}: {term}")
        if sp.degree(exponent, var) != 2:
            raise ValueError(f"exponent is not quadratic in {var}: {exponent}")
        a, b, c = (exponent.coeff(var, j) for j in (2, 1, 0))
        if not a.is_negative:
            raise ValueError(f"cannot show the integral converges: {var}^2 coefficient {a}")
        mean, variance = -b / (2 * a), -1 / (2 * a)
        poly = sp.Poly(sp.expand(rest), var)
        moments = sum(coef * gaussian_moment(j, mean, variance) for (j,), coef in poly.terms())
        total += sp.sqrt(sp.pi / -a) * sp.exp(c - b**2 / (4 * a)) * moments
    return total


def gaussian_kl(m1, v1, m2, v2) -> sp.Expr:
    """``KL(N(m1, v1) || N(m2, v2))`` in closed form (derived in the KL chapter)."""
    return (sp.log(v2 / v1) + (v1 + (m1 - m2) ** 2) / v2 - 1) / 2


class _Family:
    """Shared interpretation logic: definitions, then integrals, then constants."""

    name = "family"

    def _integrate_z(self, f) -> sp.Expr:  # pragma: no cover - abstract
        raise NotImplementedError

    def _constants(self) -> dict:  # pragma: no cover - abstract
        raise NotImplementedError

    def constraints(self) -> dict:
        """Substitutions every derivation on this family may rely on."""
        return {}

    def interpret(self, expr) -> sp.Expr:
        """The concrete expression that the abstract ``expr`` stands for in this family."""
        expr = N.explicit(N.expand_definitions(sp.sympify(expr)))
        # innermost integrals first, so nested integrals see concrete integrands
        while True:
            integrals = [i for i in expr.atoms(sp.Integral) if not i.args[0].has(sp.Integral)]
            if not integrals:
                break
            expr = expr.xreplace({i: self._integral(i) for i in integrals})
        leftover = expr.free_symbols & set(N.Z_DEPENDENT)
        if leftover:
            raise ValueError(f"{sorted(map(str, leftover))} appear outside an integral over z")
        return expr.xreplace(self._constants())

    def _integral(self, integral: sp.Integral) -> sp.Expr:
        (f, *limits) = integral.args
        if len(limits) != 1 or limits[0] != (N.z,):
            raise ValueError(f"only indefinite integrals over z are abstract notation: {integral}")
        return self._integrate_z(f)

    def E_q(self, f) -> sp.Expr:
        """``E_q[f]`` of an expression in the abstract notation."""
        return self.interpret(N.expectation(f))


class FiniteLatent(_Family):
    """A latent variable with ``K`` states and every probability a free symbol.

    Attributes ``q``, ``pi``, ``lik`` are the lists of symbols ``q_k``, ``pi_k`` and
    ``l_k = p(x | z = k)`` for ``k = 1..K``.
    """

    def __init__(self, K: int = 3):
        if K < 2:
            raise ValueError(f"K must be at least 2, got {K}")
        self.K = K
        self.name = f"finite family (K={K})"
        self.q = sp.symbols(f"q_1:{K + 1}", positive=True)
        self.pi = sp.symbols(f"pi_1:{K + 1}", positive=True)
        self.lik = sp.symbols(f"l_1:{K + 1}", positive=True)

    # the model
    def joint(self, k: int) -> sp.Expr:
        return self.pi[k] * self.lik[k]

    def evidence(self) -> sp.Expr:
        return sp.Add(*(self.joint(k) for k in range(self.K)))

    def log_joint(self, k: int) -> sp.Expr:
        return sp.log(self.joint(k))

    def log_evidence(self) -> sp.Expr:
        return sp.log(self.evidence())

    def posterior(self, k: int) -> sp.Expr:
        """``p(z = k | x)`` by Bayes' rule."""
        return self.joint(k) / self.evidence()

    # interpretation
    def state(self, k: int) -> dict:
        """What each z-dependent symbol means in state ``k``."""
        return {
            N.qz: self.q[k],
            N.pz: self.pi[k],
            N.px_z: self.lik[k],
            N.pxz: self.joint(k),
            N.pz_x: self.posterior(k),
        }

    def _integrate_z(self, f) -> sp.Expr:
        if N.z in f.free_symbols:
            raise ValueError(
                "in a finite family z is a label; write integrands through the densities"
            )
        return sp.Add(*(f.xreplace(self.state(k)) for k in range(self.K)))

    def _constants(self) -> dict:
        return {N.px: self.evidence()}

    def normalisation(self) -> dict:
        """``q_K = 1 - sum_{k<K} q_k`` and ``pi_K = 1 - sum_{k<K} pi_k``."""
        return {
            self.q[-1]: 1 - sp.Add(*self.q[:-1]),
            self.pi[-1]: 1 - sp.Add(*self.pi[:-1]),
        }

    def constraints(self) -> dict:
        return self.normalisation()

    # certificates
    def kl_nonneg(self, q, r) -> Nonneg:
        """Gibbs' inequality, certified: ``sum_k q_k h(r_k / q_k) >= 0`` with
        ``h(t) = t - 1 - log t >= 0``; it equals ``KL(q || r)`` when both sum to 1."""
        h = log_tangent_lemma()
        return Nonneg.total([h.at(rk / qk).scale(qk) for qk, rk in zip(q, r, strict=True)])

    def kl_q_posterior_nonneg(self) -> Nonneg:
        """Certificate that ``KL(q || p(z | x)) >= 0`` on this family."""
        return self.kl_nonneg(self.q, [self.posterior(k) for k in range(self.K)])

    def kl_q_prior_nonneg(self) -> Nonneg:
        return self.kl_nonneg(self.q, self.pi)


class LinearGaussian(_Family):
    """``p(z) = N(0,1)``, ``p(x|z) = N(w z + b, s^2)``, ``q(z) = N(m, v)``; scalar ``x``."""

    name = "linear-Gaussian family"

    def __init__(self):
        self.x, self.w, self.b, self.m = sp.symbols("x w b m", real=True)
        self.s = sp.Symbol("s", positive=True)  # observation noise standard deviation
        self.v = sp.Symbol("v", positive=True)  # variance of q
        self.z = N.z

    # the model
    def evidence_variance(self) -> sp.Expr:
        return self.w**2 + self.s**2

    def evidence(self) -> sp.Expr:
        """``p(x) = N(x; b, w^2 + s^2)``."""
        return normal_pdf(self.x, self.b, self.evidence_variance())

    def log_evidence(self) -> sp.Expr:
        return sp.expand(sp.expand_log(sp.log(self.evidence())))

    def posterior(self) -> tuple[sp.Expr, sp.Expr]:
        """Mean and variance of ``p(z | x)``: ``w (x - b)/(w^2 + s^2)`` and
        ``s^2/(w^2 + s^2)``."""
        return self.w * (
            self.x - self.b
        ) / self.evidence_variance(), self.s**2 / self.evidence_variance()

    def densities(self) -> dict:
        """Each abstract density as a function of ``z``."""
        mp, vp = self.posterior()
        prior = normal_pdf(self.z, 0, 1)
        lik = normal_pdf(self.x, self.w * self.z + self.b, self.s**2)
        return {
            N.qz: normal_pdf(self.z, self.m, self.v),
            N.pz: prior,
            N.px_z: lik,
            N.pxz: prior * lik,
            N.pz_x: normal_pdf(self.z, mp, vp),
        }

    def log_joint(self) -> sp.Expr:
        return sp.expand(sp.expand_log(sp.log(self.densities()[N.pxz])))

    # interpretation
    def _integrate_z(self, f) -> sp.Expr:
        """``∫ f dz`` exactly: ``E_q[polynomial]`` by Gaussian moments (expanding the
        logarithms of the densities first), ``polynomial * exp(quadratic)`` by
        :func:`gaussian_integral`, anything else by :func:`sympy.integrate`."""
        f = f.xreplace(self.densities()).xreplace({N.px: self.evidence()})
        z = self.z
        g = sp.expand(sp.expand_log(f / normal_pdf(z, self.m, self.v)))
        if g.is_polynomial(z):  # f = q(z) * polynomial(z): dividing first keeps it small
            poly = sp.Poly(g, z)
            return sp.expand(
                sum(c * gaussian_moment(j, self.m, self.v) for (j,), c in poly.terms())
            )
        try:
            return gaussian_integral(f, z)
        except ValueError:
            return sp.simplify(sp.integrate(f, (z, -sp.oo, sp.oo), conds="none"))

    def _constants(self) -> dict:
        return {N.px: self.evidence()}

    # certificates
    def kl_nonneg(self, m1, v1, m2, v2) -> Nonneg:
        """``KL(N(m1,v1) || N(m2,v2)) = h(v1/v2)/2 + (m1-m2)^2/(2 v2) >= 0``."""
        h = log_tangent_lemma()
        return h.at(v1 / v2).scale(sp.Rational(1, 2)) + Nonneg.by_assumptions(
            (m1 - m2) ** 2 / (2 * v2), "a square over a positive variance"
        )

    def kl_q_posterior_nonneg(self) -> Nonneg:
        mp, vp = self.posterior()
        return self.kl_nonneg(self.m, self.v, mp, vp)

    def kl_q_prior_nonneg(self) -> Nonneg:
        return self.kl_nonneg(self.m, self.v, 0, 1)


# ----------------------------------------------------- further interpretations


def jensen_gap_certificate(family) -> Nonneg:
    """The gap of the Jensen step ``log E_q[p(x,z)/q(z)] >= E_q[log p(x,z)/q(z)]``.

    Finite family: :func:`jensen_log_certificate` with ``y_k = p(x, z=k) / q_k`` -- the
    generic certificate of Jensen's inequality, nothing specific to KL. Linear-Gaussian
    family: the closed-form certificate of ``KL(q || p(z|x)) >= 0``.
    """
    if isinstance(family, FiniteLatent):
        y = [family.joint(k) / family.q[k] for k in range(family.K)]
        return jensen_log_certificate(family.q, y)
    if isinstance(family, LinearGaussian):
        return family.kl_q_posterior_nonneg()
    raise TypeError(f"no Jensen certificate for {family!r}")


def finite_gradient_interpretation(family: FiniteLatent):
    """An ``interpret`` for :class:`~vaebook.derivation.Derivation` that also evaluates
    derivatives with respect to the variational probabilities of a finite family.

    The ``q_k`` are constrained to sum to 1, so ``Derivative(f, q_k)`` (for ``k < K``)
    is read as the derivative along the direction that raises ``q_k`` and lowers
    ``q_K`` by the same amount -- the partial derivative of ``f`` after substituting
    ``q_K = 1 - sum_{j<K} q_j``. It is computed as ``d/dt f(q_k + t, q_K - t)`` at
    ``t = 0``, so every ``q`` stays a positive symbol and logarithms still expand.
    """
    t = sp.Dummy("t", real=True)
    last = family.q[-1]

    def directional(f, var):
        if var not in family.q[:-1]:
            raise ValueError(f"derivatives are taken with respect to q_1..q_(K-1), not {var}")
        return sp.diff(f.xreplace({var: var + t, last: last - t}), t).subs(t, 0)

    def interpret(expr):
        concrete = family.interpret(expr)
        return concrete.replace(
            lambda e: isinstance(e, sp.Derivative), lambda e: directional(e.expr, e.variables[0])
        )

    return interpret


def gaussian_integrals(expr, densities: dict) -> sp.Expr:
    """Evaluate every ``Integral(f, (z_j, -oo, oo), ...)`` in ``expr`` exactly, as iterated
    one-dimensional Gaussian integrals (Fubini), innermost variable first.

    ``densities`` maps each integration variable ``z_j`` to ``(mean_j, var_j)``. For each
    variable the integrand must be ``N(z_j; mean_j, var_j)`` times a polynomial in
    ``z_j`` (after expanding logarithms); the polynomial's Gaussian expectation is then
    taken moment by moment (:func:`vaebook.families.gaussian_moment`). Anything else
    raises ``ValueError``. Much faster than ``Integral.doit()`` for such integrands.
    """


    def one(f, var):
        mean, v = densities[var]
        g = sp.expand(sp.expand_log(f / normal_pdf(var, mean, v), force=True))
        if not g.is_polynomial(var):
            raise ValueError(f"integrand is not N({var}; ...) times a polynomial in {var}")
        poly = sp.Poly(g, var)
        return sp.expand(sp.Add(*(c * gaussian_moment(j, mean, v) for (j,), c in poly.terms())))

    def evaluate(integral):
        f = integral.function
        for lim in integral.limits:
            if len(lim) != 3 or lim[1] != -sp.oo or lim[2] != sp.oo:
                raise ValueError(f"only integrals over the real line: {lim}")
            f = one(f, lim[0])
        return f

    return sp.sympify(expr).replace(lambda e: isinstance(e, sp.Integral), evaluate)



class GaussianIntegrals:
    """An interpretation for :class:`vaebook.derivation.Derivation`: replace display
    symbols by what they stand for (``substitutions``), evaluate every integral over the
    whole real line with :func:`vaebook.families.gaussian_integral` (innermost first,
    after evaluating
    derivatives inside the integrand) and finally any derivative outside."""

    def __init__(self, substitutions: Mapping | None = None):
        self.substitutions = dict(substitutions or {})

    def __call__(self, expr) -> sp.Expr:
        expr = sp.sympify(expr)
        for _ in range(10):  # substitutions may refer to other display symbols
            new = expr.xreplace(self.substitutions)
            if new == expr:
                break
            expr = new
        while True:
            inner = [i for i in expr.atoms(sp.Integral) if not i.args[0].has(sp.Integral)]
            if not inner:
                break
            done = {}
            for integral in inner:
                f, *limits = integral.args
                if len(limits) != 1 or tuple(limits[0][1:]) != (-sp.oo, sp.oo):
                    raise ValueError(f"only integrals over the real line: {integral}")
                done[integral] = gaussian_integral(f.doit(), limits[0][0])
            expr = expr.xreplace(done)
        return expr.doit()

