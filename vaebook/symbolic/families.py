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

Two further families, :class:`~vaebook.symbolic.concrete.Concrete` and
:class:`~vaebook.symbolic.concrete.GaussianIntegrals` (defined in
:mod:`vaebook.symbolic.concrete`, importable from here), check derivations written in
concrete symbols.

:class:`Family` is the base of all of them, and the only interpretation a
:class:`~vaebook.symbolic.derivation.Derivation` accepts. New families are defined in
these two modules only.
"""

from __future__ import annotations

import sympy as sp

from . import notation as N
from .certificates import (
    Nonneg,
    jensen_log_certificate,
    log_tangent_lemma,
)
from .gaussian import (  # noqa: F401 - gaussian_integrals, gaussian_kl: moved, see gaussian
    gaussian_expectation,
    gaussian_integral,
    gaussian_integrals,
    gaussian_kl,
)
from .notation import normal_pdf

__all__ = [
    "Family",
    "FiniteLatent",
    "LinearGaussian",
    "Concrete",
    "GaussianIntegrals",
    "jensen_gap_certificate",
]


#: the only modules that define families
_FAMILY_MODULES = frozenset({__name__, "vaebook.symbolic.concrete"})


class Family:
    """A model family: what the notation of a derivation means, where it is checked.

    The only interpretation a :class:`~vaebook.symbolic.derivation.Derivation` accepts.
    Subclasses are defined in this module and :mod:`~vaebook.symbolic.concrete` only
    (a family defined elsewhere raises
    ``TypeError``), so no caller-made "interpretation" can make a false step pass.

    ``name`` names the family in verdicts; ``model`` is true for the model families
    (finite, linear-Gaussian), whose checks hold for that family of models only.
    Abstract notation is interpreted as: named quantities, then integrals over ``z``
    (innermost first), then constants, then derivatives.
    """

    name = "family"
    model = True

    def __init_subclass__(cls, **kwargs):
        super().__init_subclass__(**kwargs)
        if cls.__module__ not in _FAMILY_MODULES:
            raise TypeError(
                f"model families are defined in {__name__} only; {cls.__qualname__} is not one"
            )

    def __setattr__(self, name, value):
        if self.__dict__.get("_frozen"):
            raise AttributeError(
                f"a family is fixed once made ({name}); its name and parameters are what "
                "every verdict states"
            )
        object.__setattr__(self, name, value)

    __delattr__ = __setattr__

    def _integrate_z(self, f) -> sp.Expr:  # pragma: no cover - abstract
        raise NotImplementedError

    def _constants(self) -> dict:  # pragma: no cover - abstract
        raise NotImplementedError

    def constraints(self) -> dict:
        """Substitutions every derivation on this family may rely on (trusted)."""
        return {}

    def symbols(self) -> dict:
        """``{name: symbol}`` of the family's own parameters: a derivation refuses any
        other symbol of the same name, and renaming them for display."""
        return {}

    def definitions(self) -> dict:
        """Display symbols and the expressions they stand for (shown with a derivation)."""
        return {}

    @property
    def where(self) -> str:
        """Where a step was checked, for verdicts (``"on the finite family (K=3)"``)."""
        return f"on the {self.name}"

    def _derivatives(self, expr) -> sp.Expr:
        """Evaluate every derivative left in ``expr``."""
        return expr.replace(lambda e: isinstance(e, sp.Derivative), lambda e: e.doit())

    def _check_derivatives(self, expr) -> None:
        """A derivative is taken only with respect to a parameter: a plain symbol that is
        neither the latent variable nor a notation object (a density, a named quantity)
        and that occurs in this family's explicit form of what is differentiated."""
        for d in sp.sympify(expr).atoms(sp.Derivative):
            for var, _count in d.variable_count:
                if not isinstance(var, sp.Symbol) or isinstance(var, sp.Dummy):
                    raise ValueError(f"a derivative with respect to {var}, which is no parameter")
                if var in N.NOTATION:
                    raise ValueError(
                        f"a derivative with respect to {var}: the latent variable and the "
                        "notation's densities and named quantities are not parameters"
                    )
                inner = self.interpret(d.expr)
                if var not in inner.free_symbols:
                    raise ValueError(
                        f"a derivative with respect to {var}, which does not occur in the "
                        f"{self.name}'s form of {d.expr}"
                    )

    def interpret(self, expr) -> sp.Expr:
        """The concrete expression that the abstract ``expr`` stands for in this family."""
        self._check_derivatives(expr)
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
        return self._derivatives(expr.xreplace(self._constants()))

    def _integral(self, integral: sp.Integral) -> sp.Expr:
        (f, *limits) = integral.args
        if len(limits) != 1 or limits[0] != (N.z,):
            raise ValueError(f"only indefinite integrals over z are abstract notation: {integral}")
        return self._integrate_z(f)

    def E_q(self, f) -> sp.Expr:
        """``E_q[f]`` of an expression in the abstract notation."""
        return self.interpret(N.expectation(f))

    def __repr__(self) -> str:
        return f"<{self.name}>"


class FiniteLatent(Family):
    """A latent variable with ``K`` states and every probability a free symbol.

    Attributes ``q``, ``pi``, ``lik`` are the lists of symbols ``q_k``, ``pi_k`` and
    ``l_k = p(x | z = k)`` for ``k = 1..K``.
    """

    def __init__(self, K: int = 3):
        if not isinstance(K, int) or isinstance(K, bool):
            raise TypeError(f"K must be an int, not {K!r}")
        if K < 2:
            raise ValueError(f"K must be at least 2, got {K}")
        self.K = K
        self.name = f"finite family (K={K})"
        self.q = sp.symbols(f"q_1:{K + 1}", positive=True)
        self.pi = sp.symbols(f"pi_1:{K + 1}", positive=True)
        self.lik = sp.symbols(f"l_1:{K + 1}", positive=True)
        self._frozen = True

    def symbols(self) -> dict:
        return {s.name: s for s in (*self.q, *self.pi, *self.lik)}

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

    def _derivatives(self, expr) -> sp.Expr:
        """Derivatives with respect to the constrained probabilities are directional.

        ``q_1..q_K`` sum to 1, so ``Derivative(f, q_k)`` (``k < K``) is the derivative
        along the direction that raises ``q_k`` and lowers ``q_K`` by the same amount --
        the partial derivative of ``f`` after substituting ``q_K = 1 - sum_{j<K} q_j``.
        It is computed as ``d/dt f(q_k + t, q_K - t)`` at ``t = 0``, so every ``q`` stays
        a positive symbol and logarithms still expand. The same for the prior ``pi``;
        derivatives with respect to ``q_K`` or ``pi_K`` are refused.
        """
        t = sp.Dummy("t", real=True)

        def directional(f, var):
            for probs in (self.q, self.pi):
                if var == probs[-1]:
                    raise ValueError(
                        f"{var} is fixed by normalisation; differentiate in {probs[0]}..{probs[-2]}"
                    )
                if var in probs[:-1]:
                    last = probs[-1]
                    return sp.diff(f.xreplace({var: var + t, last: last - t}), t).subs(t, 0)
            return sp.diff(f, var)

        def evaluate(d):
            f = d.expr
            for var, count in d.variable_count:
                for _ in range(count):
                    f = directional(f, var)
            return f

        return expr.replace(lambda e: isinstance(e, sp.Derivative), evaluate)

    # certificates
    def kl_nonneg(self, q, r) -> Nonneg:
        """Gibbs' inequality, certified: ``sum_k q_k h(r_k / q_k) >= 0`` with
        ``h(t) = t - 1 - log t >= 0``; it equals ``KL(q || r)`` when both sum to 1."""
        h = log_tangent_lemma()
        return Nonneg._total_named(
            [h.at(rk / qk).scale(qk) for qk, rk in zip(q, r, strict=True)],
            r"Gibbs' inequality: $\mathrm{KL}$ is $\sum_k q_k\, h(r_k / q_k)$ with "
            r"$h(t) = t - 1 - \log t \geq 0$",
        )

    def kl_q_posterior_nonneg(self) -> Nonneg:
        """Certificate that ``KL(q || p(z | x)) >= 0`` on this family."""
        return self.kl_nonneg(self.q, [self.posterior(k) for k in range(self.K)])

    def kl_q_prior_nonneg(self) -> Nonneg:
        return self.kl_nonneg(self.q, self.pi)


class LinearGaussian(Family):
    """``p(z) = N(0,1)``, ``p(x|z) = N(w z + b, s^2)``, ``q(z) = N(m, v)``; scalar ``x``."""

    name = "linear-Gaussian family"

    def __init__(self):
        self.x, self.w, self.b, self.m = sp.symbols("x w b m", real=True)
        self.s = sp.Symbol("s", positive=True)  # observation noise standard deviation
        self.v = sp.Symbol("v", positive=True)  # variance of q
        self.z = N.z
        self._frozen = True

    def symbols(self) -> dict:
        return {s.name: s for s in (self.x, self.w, self.b, self.m, self.s, self.v)}

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
        :func:`gaussian_integral`. Any other integrand -- or one whose convergence
        cannot be proved from the symbols' assumptions, such as ``∫ p(z)^2 / q(z) dz``
        (infinite for ``v <= 1/2``) -- raises ``ValueError``: nothing is evaluated
        without its convergence conditions."""
        f = f.xreplace(self.densities()).xreplace({N.px: self.evidence()})
        z = self.z
        g = sp.expand(sp.expand_log(f / normal_pdf(z, self.m, self.v)))
        if g.is_polynomial(z):  # f = q(z) * polynomial(z): dividing first keeps it small
            return gaussian_expectation(g, z, self.m, self.v)
        return gaussian_integral(f, z)

    def _constants(self) -> dict:
        return {N.px: self.evidence()}

    # certificates
    def kl_nonneg(self, m1, v1, m2, v2) -> Nonneg:
        """``KL(N(m1,v1) || N(m2,v2)) = h(v1/v2)/2 + (m1-m2)^2/(2 v2) >= 0``."""
        h = log_tangent_lemma()
        square = Nonneg.by_assumptions((m1 - m2) ** 2 / (2 * v2))
        total = h.at(v1 / v2).scale(sp.Rational(1, 2)) + square
        return total._named(
            r"Gibbs' inequality: the Gaussian KL is "
            r"$\frac{1}{2} h(v_1 / v_2) + \frac{(m_1 - m_2)^2}{2 v_2}$ "
            r"with $h(t) = t - 1 - \log t \geq 0$"
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
        return family.kl_q_posterior_nonneg()._named(
            r"Jensen's inequality for the concave $\log$: on this family the gap is "
            r"$\mathrm{KL}(q \,\|\, p(z \mid x)) = \frac{1}{2} h(v / v_{\mathrm{post}}) "
            r"+ \frac{(m - m_{\mathrm{post}})^2}{2 v_{\mathrm{post}}}$ "
            r"with $h(t) = t - 1 - \log t \geq 0$"
        )
    raise TypeError(f"no Jensen certificate for {family!r}")


# The families of concrete expressions live in their own module; they are families all the
# same, and a derivation names them like the others.
from .concrete import Concrete, GaussianIntegrals  # noqa: E402 - after Family, which they extend
