"""Variational inference in the exact families: Jensen, variational EM, beta objective.

Reusable code for the chapters on Jensen's inequality (``04_jensen_bound``), on
maximising the ELBO (``05_elbo_vs_kl``) and on the reconstruction/regularisation split
(``06_reconstruction_regularisation``):

* **certificates** for Jensen's inequality (:func:`jensen_log_certificate`,
  :func:`jensen_gap_certificate`, :func:`jensen_square_certificate`), used as ``gap=``
  of :meth:`vaebook.derivation.Derivation.bound`;
* the **one-factor linear-Gaussian model** (probabilistic PCA with a scalar latent)
  ``z ~ N(0, 1)``, ``x | z ~ N(w z + b, s2 I_D)``: exact log-evidence, posterior, ELBO
  of a Gaussian ``q``, closed-form M-step and **variational EM**
  (:func:`variational_em`);
* the **beta-weighted objective** ``E_q[log p(x|z)] - beta KL(q || p(z))`` on the
  scalar linear-Gaussian family and its optimum (:func:`beta_objective`,
  :func:`beta_optimum`);
* decoder log-likelihood helpers (:func:`gaussian_nll`,
  :func:`kl_diag_gaussian_to_standard_normal`, :func:`monte_carlo_kl_to_standard_normal`);
* the figures of the three chapters.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import matplotlib.pyplot as plt
import numpy as np
import sympy as sp
import torch

from . import notation as N
from .derivation import Nonneg, log_tangent_lemma
from .families import FiniteLatent, LinearGaussian
from .plots import COLORS, figure, style

__all__ = [
    "jensen_log_certificate",
    "jensen_square_certificate",
    "jensen_gap_certificate",
    "log_ratio_coefficients",
    "finite_gradient_interpretation",
    "gaussian_integrals",
    "ppca1_log_evidence",
    "ppca1_posterior",
    "ppca1_elbo",
    "ppca1_m_step",
    "ppca1_mle",
    "EMHistory",
    "variational_em",
    "beta_objective",
    "beta_optimum",
    "gaussian_nll",
    "kl_diag_gaussian_to_standard_normal",
    "monte_carlo_kl_to_standard_normal",
    "plot_jensen_chords",
    "plot_ratio_and_gap",
    "plot_ceiling_floor",
    "plot_em_history",
    "plot_beta_optimum",
    "plot_gaussian_nll_variance",
]

# ------------------------------------------------------------------ Jensen certificates


def jensen_log_certificate(q, y) -> Nonneg:
    """Certificate of ``log(sum_k q_k y_k) - sum_k q_k log y_k >= 0`` (eq-jensen-finite).

    With ``m = sum_k q_k y_k`` the difference equals ``sum_k q_k h(y_k / m)``, where
    ``h(t) = t - 1 - log t >= 0`` (:func:`log_tangent_lemma`), provided
    ``sum_k q_k = 1``: expanding, ``sum_k q_k y_k / m = 1`` cancels ``sum_k q_k = 1`` and
    ``sum_k q_k log m = log m``. ``q`` and ``y`` are sequences of positive expressions.
    """
    m = sp.Add(*(qk * yk for qk, yk in zip(q, y, strict=True)))
    h = log_tangent_lemma()
    return Nonneg.total([h.at(yk / m).scale(qk) for qk, yk in zip(q, y, strict=True)])


def jensen_square_certificate(q, y) -> Nonneg:
    """Certificate of ``sum_k q_k y_k**2 - (sum_k q_k y_k)**2 >= 0`` (Jensen for the
    convex ``y**2``, the inequality the other way round): the difference is the variance
    ``sum_k q_k (y_k - m)**2`` when ``sum_k q_k = 1``. ``y`` real, ``q`` positive."""
    m = sp.Add(*(qk * yk for qk, yk in zip(q, y, strict=True)))
    return Nonneg.total(
        [
            Nonneg.by_assumptions(qk * (yk - m) ** 2, "a probability times a square")
            for qk, yk in zip(q, y, strict=True)
        ]
    )


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


def log_ratio_coefficients(lg: LinearGaussian) -> dict:
    """Coefficients of ``z**2``, ``z`` and ``1`` in ``log p(x, z) - log q(z)`` for the
    linear-Gaussian family (a quadratic in ``z``): ``{2: ..., 1: ..., 0: ...}``."""
    dens = lg.densities()
    log_ratio = sp.expand(sp.expand_log(sp.log(dens[N.pxz]) - sp.log(dens[N.qz]), force=True))
    poly = sp.Poly(log_ratio, lg.z)
    if poly.degree() != 2:
        raise ValueError(f"expected a quadratic in z, got degree {poly.degree()}")
    return {j: sp.simplify(poly.coeff_monomial(lg.z**j)) for j in (2, 1, 0)}


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
    from .families import gaussian_moment, normal_pdf

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


# ------------------------------------------- one-factor linear-Gaussian model (numpy)
# z ~ N(0, 1), x | z ~ N(w z + b, s2 I_D); data X has shape (N, D), w and b shape (D,).


def ppca1_log_evidence(X, w, b, s2) -> np.ndarray:
    """Exact ``log p(x_n) = log N(x_n; b, s2 I + w w^T)`` for every row, shape (N,).

    Uses the matrix determinant lemma, ``det C = s2^D (1 + |w|^2 / s2)``, and
    Sherman-Morrison, ``C^{-1} = (I - w w^T / (s2 + |w|^2)) / s2``.
    """
    X, w, b = np.atleast_2d(X), np.asarray(w, float), np.asarray(b, float)
    D = X.shape[1]
    r = X - b  # (N, D)
    ww = w @ w
    logdet = D * np.log(s2) + np.log1p(ww / s2)
    maha = (np.sum(r**2, axis=1) - (r @ w) ** 2 / (s2 + ww)) / s2  # (N,)
    return -0.5 * (D * np.log(2 * np.pi) + logdet + maha)


def ppca1_posterior(X, w, b, s2) -> tuple[np.ndarray, float]:
    """Exact posterior ``p(z | x_n) = N(mean_n, var)``: ``mean_n = w.(x_n - b) / (|w|^2 + s2)``
    (shape (N,)) and ``var = s2 / (|w|^2 + s2)`` (the same for every ``n``)."""
    X, w, b = np.atleast_2d(X), np.asarray(w, float), np.asarray(b, float)
    denom = w @ w + s2
    return (X - b) @ w / denom, float(s2 / denom)


def ppca1_elbo(X, w, b, s2, m, v) -> np.ndarray:
    """ELBO of ``q_n = N(m_n, v_n)`` for every row, shape (N,) (eq-recon-split):
    ``E_q[log p(x|z)] - KL(q || N(0,1))`` with
    ``E_q[log p(x|z)] = -D/2 log(2 pi s2) - (|x - w m - b|^2 + |w|^2 v) / (2 s2)``."""
    X, w, b = np.atleast_2d(X), np.asarray(w, float), np.asarray(b, float)
    D = X.shape[1]
    m = np.broadcast_to(np.asarray(m, float), (X.shape[0],))  # (N,)
    v = np.broadcast_to(np.asarray(v, float), (X.shape[0],))  # (N,)
    resid = X - b - np.outer(m, w)  # (N, D)
    recon = -0.5 * D * np.log(2 * np.pi * s2) - (np.sum(resid**2, axis=1) + (w @ w) * v) / (2 * s2)
    kl = 0.5 * (m**2 + v - 1.0 - np.log(v))
    return recon - kl


def ppca1_m_step(X, m, v) -> tuple[np.ndarray, np.ndarray, float]:
    """Closed-form M-step: the ``(w, b, s2)`` maximising ``sum_n E_{q_n}[log p(x_n, z)]``
    for ``q_n = N(m_n, v_n)``.

    ``(w, b)`` solve the expected normal equations of regressing ``x`` on ``(z, 1)``:
    ``[[sum E z^2, sum E z], [sum E z, N]] [w; b] = [sum E z x; sum x]``; then
    ``s2 = sum_n E|x_n - w z - b|^2 / (N D)``.
    """
    X = np.atleast_2d(X)
    n, D = X.shape
    m = np.broadcast_to(np.asarray(m, float), (n,))  # (N,)
    v = np.broadcast_to(np.asarray(v, float), (n,))  # (N,)
    Ez2 = m**2 + v  # (N,)
    A = np.array([[Ez2.sum(), m.sum()], [m.sum(), n]])  # (2, 2)
    B = np.stack([m @ X, X.sum(axis=0)])  # (2, D)
    w, b = np.linalg.solve(A, B)  # (D,), (D,)
    resid = X - b - np.outer(m, w)  # (N, D)
    s2 = (np.sum(resid**2) + (w @ w) * v.sum()) / (n * D)
    return w, b, float(s2)


def ppca1_mle(X) -> tuple[np.ndarray, np.ndarray, float]:
    """Maximum-likelihood ``(w, b, s2)`` in closed form (Tipping and Bishop, 1999):
    ``b`` = sample mean, ``s2`` = mean of the ``D - 1`` smallest eigenvalues of the
    sample covariance ``S``, ``w = u_1 sqrt(lambda_1 - s2)`` (sign: first entry >= 0)."""
    X = np.atleast_2d(X)
    b = X.mean(axis=0)
    S = np.cov(X.T, bias=True)  # (D, D)
    lam, U = np.linalg.eigh(S)  # ascending
    s2 = float(lam[:-1].mean())
    w = U[:, -1] * math.sqrt(max(lam[-1] - s2, 0.0))
    return w * np.sign(w[0] or 1.0), b, s2


@dataclass
class EMHistory:
    """Mean per-example log-evidence and ELBO along variational EM.

    ``stage[i]`` is ``"E"`` (just after an E-step) or ``"M"`` (just after an M-step);
    ``log_evidence[i]`` and ``elbo[i]`` are measured there; ``params`` holds
    ``(w, b, s2)`` after each M-step.
    """

    stage: list = field(default_factory=list)
    log_evidence: list = field(default_factory=list)
    elbo: list = field(default_factory=list)
    params: list = field(default_factory=list)

    def record(self, stage, X, w, b, s2, m, v):
        self.stage.append(stage)
        self.log_evidence.append(float(ppca1_log_evidence(X, w, b, s2).mean()))
        self.elbo.append(float(ppca1_elbo(X, w, b, s2, m, v).mean()))

    def check_monotone(self, tol: float = 1e-10) -> None:
        """Raise ``AssertionError`` unless (i) the ELBO never decreases, (ii) the
        log-evidence never decreases, (iii) ELBO <= log-evidence everywhere and
        (iv) the gap is zero after every E-step."""
        le, el = np.array(self.log_evidence), np.array(self.elbo)
        assert np.all(np.diff(el) >= -tol), "ELBO decreased"
        assert np.all(np.diff(le) >= -tol), "log-evidence decreased"
        assert np.all(el <= le + tol), "ELBO above the log-evidence"
        after_e = np.array([s == "E" for s in self.stage])
        assert np.all(np.abs((le - el)[after_e]) <= 1e-9), "gap not closed by an E-step"


def variational_em(X, w, b, s2, n_iter: int = 30) -> EMHistory:
    """Variational EM for the one-factor model (Dempster et al., 1977).

    E-step: ``q_n`` := exact posterior (:func:`ppca1_posterior`), closing the gap.
    M-step: :func:`ppca1_m_step` with ``q_n`` fixed, raising the ELBO and with it the
    log-evidence. Returns the :class:`EMHistory` (two entries per iteration).
    """
    X = np.atleast_2d(np.asarray(X, float))
    w, b = np.asarray(w, float), np.asarray(b, float)
    hist = EMHistory()
    for _ in range(n_iter):
        m, v = ppca1_posterior(X, w, b, s2)  # E-step: m (N,), v scalar
        hist.record("E", X, w, b, s2, m, v)
        w, b, s2 = ppca1_m_step(X, m, v)  # M-step
        hist.record("M", X, w, b, s2, m, v)
        hist.params.append((w.copy(), b.copy(), s2))
    return hist


# ------------------------------------------------------------- beta-weighted objective


def beta_objective(lg: LinearGaussian, beta) -> tuple[sp.Expr, sp.Expr, sp.Expr]:
    """``(objective, reconstruction, kl)`` on the scalar linear-Gaussian family, exact:
    reconstruction ``E_q[log p(x|z)]``, ``kl = KL(q || p(z))`` and
    ``objective = reconstruction - beta * kl`` (eq-recon-beta), functions of ``lg.m, lg.v``."""
    recon = lg.interpret(N.expectation(sp.log(N.px_z)))
    kl = lg.interpret(N.KL_prior)
    return recon - beta * kl, recon, kl


def beta_optimum(lg: LinearGaussian, beta) -> tuple[sp.Expr, sp.Expr]:
    """The unique stationary ``(m*, v*)`` of :func:`beta_objective`, by ``sympy.solve``
    of the two first-order conditions; raises unless there is exactly one solution."""
    objective, _, _ = beta_objective(lg, beta)
    sols = sp.solve([sp.diff(objective, lg.m), sp.diff(objective, lg.v)], [lg.m, lg.v], dict=True)
    if len(sols) != 1:
        raise ValueError(f"expected one stationary point, found {sols}")
    return sp.simplify(sols[0][lg.m]), sp.simplify(sols[0][lg.v])


# ------------------------------------------------------------- likelihoods and the KL


def gaussian_nll(x, mu, var, *, keep_log_var: bool = True, keep_constant: bool = True):
    """Sum over entries of ``-log N(x; mu, var)`` (eq-recon-gauss-nll):
    ``(x - mu)^2 / (2 var) + 1/2 log var + 1/2 log(2 pi)``.

    ``keep_log_var=False`` drops ``1/2 log var`` and ``keep_constant=False`` drops
    ``1/2 log(2 pi)`` -- to show what each omission does. NumPy arrays, broadcasting.
    """
    x, mu, var = np.asarray(x, float), np.asarray(mu, float), np.asarray(var, float)
    out = (x - mu) ** 2 / (2 * var)
    if keep_log_var:
        out = out + 0.5 * np.log(var)
    if keep_constant:
        out = out + 0.5 * np.log(2 * np.pi)
    return np.sum(out, axis=-1) if out.ndim else out


def kl_diag_gaussian_to_standard_normal(mu: torch.Tensor, logvar: torch.Tensor) -> torch.Tensor:
    """``KL(N(mu, diag exp(logvar)) || N(0, I))`` summed over the last axis (eq-recon-kl-closed):
    ``-1/2 sum_j (1 + logvar_j - mu_j^2 - exp(logvar_j))``. mu, logvar: (..., L) -> (...)."""
    return -0.5 * torch.sum(1 + logvar - mu**2 - logvar.exp(), dim=-1)  # (...)


def monte_carlo_kl_to_standard_normal(
    mu: torch.Tensor, logvar: torch.Tensor, n_samples: int, seed: int = 0
) -> tuple[float, float]:
    """Monte Carlo estimate of ``KL(q || N(0, I))`` for one ``q = N(mu, diag exp(logvar))``
    (mu, logvar: (L,)): the mean of ``log q(z) - log p(z)`` over ``n_samples`` draws
    ``z ~ q`` (seeded), and its standard error. Densities from ``torch.distributions``."""
    from torch.distributions import Independent, Normal

    gen = torch.Generator().manual_seed(seed)
    std = (0.5 * logvar).exp()  # (L,)
    eps = torch.randn((n_samples, mu.shape[-1]), generator=gen, dtype=mu.dtype)  # (S, L)
    z = mu + std * eps  # (S, L)
    q = Independent(Normal(mu, std), 1)
    p = Independent(Normal(torch.zeros_like(mu), torch.ones_like(mu)), 1)
    log_ratio = q.log_prob(z) - p.log_prob(z)  # (S,)
    return float(log_ratio.mean()), float(log_ratio.std() / math.sqrt(n_samples))


# --------------------------------------------------------------------------- figures


def plot_jensen_chords(q, y):
    """Jensen's inequality seen: for ``Y`` taking values ``y`` with probabilities ``q``,
    the points ``(y_k, f(y_k))``, their average ``(E Y, E f(Y))`` and ``f(E Y)``, for the
    concave ``log`` (left; average below the curve) and the convex ``exp`` (right)."""
    q, y = np.asarray(q, float), np.asarray(y, float)
    grid = np.linspace(y.min() * 0.7, y.max() * 1.1, 300)
    fig, axes = figure(ncols=2, width=4.6, height=3.6)
    with style():
        for ax, f, name in ((axes[0], np.log, r"\log"), (axes[1], np.exp, r"\exp")):
            ey, ef = q @ y, q @ f(y)
            ax.plot(grid, f(grid), color=COLORS["true"], label=rf"$f(y) = {name} y$")
            ax.scatter(
                y,
                f(y),
                s=40 + 300 * q,
                color=COLORS["q"],
                zorder=3,
                label=r"$(y_k, f(y_k))$, size $\propto q_k$",
            )
            ax.plot(
                [ey],
                [f(ey)],
                "o",
                color=COLORS["bound"],
                ms=9,
                zorder=4,
                label=rf"$f(\mathbb{{E}}Y) = {f(ey):.3g}$",
            )
            ax.plot(
                [ey],
                [ef],
                "s",
                color=COLORS["reverse"],
                ms=8,
                zorder=4,
                label=rf"$\mathbb{{E}}f(Y) = {ef:.3g}$",
            )
            ax.vlines(ey, min(ef, f(ey)), max(ef, f(ey)), color=COLORS["gap"], lw=3)
            ax.set_xlabel("$y$")
            ax.set_ylabel("$f(y)$")
            kind = "concave" if name == r"\log" else "convex"
            where = "above" if kind == "concave" else "below"
            ax.set_title(rf"{kind}: $f(\mathbb{{E}}Y)$ {where} $\mathbb{{E}}f(Y)$")
            ax.legend(loc="upper left", fontsize=8)
    plt.close(fig)
    return fig


def plot_ratio_and_gap(z_grid, ratios: dict, t_grid, gap, ratio_label: str = ""):
    """Left: ``p(x,z)/q(z)`` against ``z`` for several ``q`` (``ratios``: label -> array
    over ``z_grid``); it is flat only for the true posterior. Right: the Jensen gap
    ``log p(x) - ELBO`` along a path of ``q`` indexed by ``t_grid`` (``gap`` array)."""
    fig, axes = figure(ncols=2, width=4.6, height=3.6)
    palette = [COLORS["true"], COLORS["q"], COLORS["reverse"], COLORS["forward"]]
    with style():
        for (label, r), c in zip(ratios.items(), palette, strict=True):
            axes[0].plot(z_grid, r, color=c, label=label)
        axes[0].set_yscale("log")
        axes[0].set_xlabel("latent $z$")
        axes[0].set_ylabel(ratio_label or r"$p(x, z) / q(z)$ (log scale)")
        axes[0].set_title("the ratio inside Jensen's inequality")
        axes[0].legend(fontsize=8)
        axes[1].plot(t_grid, gap, color=COLORS["gap"], label=r"gap $\log p(x) - \mathcal{L}(q_t)$")
        axes[1].axhline(0, color="grey", lw=1)
        axes[1].axvline(1, color=COLORS["true"], ls=":", label="$q_1$ = true posterior")
        axes[1].set_xlabel("path parameter $t$")
        axes[1].set_ylabel("gap (nats)")
        axes[1].set_title("Jensen gap along a path of $q$")
        axes[1].legend(fontsize=8)
    plt.close(fig)
    return fig


def plot_ceiling_floor(
    w_grid, ceiling_w, floor_w, w0, m_grid, ceiling_m, floor_m, m_star, w_next=None
):
    """Log-evidence (ceiling) and ELBO (floor), gap shaded. Left: against the model
    weight ``w`` for a fixed ``q`` (tuned to ``w0``; ``w_next``, if given, marks the
    maximiser of the floor); right: against the variational mean ``m`` at fixed ``w``
    (ceiling flat, floor touching it at ``m_star``)."""
    fig, axes = figure(ncols=2, width=4.6, height=3.6)
    with style():
        for ax, g, ceil, flo, mark, xl in (
            (axes[0], w_grid, ceiling_w, floor_w, w0, r"model weight $w$ ($q$ fixed)"),
            (axes[1], m_grid, ceiling_m, floor_m, m_star, r"variational mean $m$ ($w$ fixed)"),
        ):
            ax.plot(g, ceil, color=COLORS["true"], label=r"ceiling $\log p_\theta(x)$")
            ax.plot(g, flo, color=COLORS["bound"], label=r"floor $\mathcal{L}(q, \theta)$")
            ax.fill_between(
                g,
                flo,
                ceil,
                color=COLORS["gap"],
                alpha=0.3,
                label=r"gap $= \mathrm{KL}(q \| p_\theta(z|x))$",
            )
            ax.axvline(mark, color="grey", ls=":", lw=1)
            ax.set_xlabel(xl)
            ax.set_ylabel("nats")
            ax.legend(fontsize=8, loc="lower center")
        if w_next is not None:
            axes[0].axvline(w_next, color=COLORS["bound"], ls="--", lw=1)
            axes[0].annotate("$w_1$", (w_next + 0.04, 0.45), xycoords=("data", "axes fraction"))
        axes[0].annotate("$w_0$", (w0 + 0.04, 0.45), xycoords=("data", "axes fraction"))
        axes[0].set_title("moving $\\theta$ moves the ceiling")
        axes[1].set_title("moving $q$ moves only the floor")
    plt.close(fig)
    return fig


def plot_em_history(hist: EMHistory, mle_log_evidence: float | None = None, first: int = 12):
    """Log-evidence and ELBO after each E- and M-step of the first ``first`` iterations,
    as a staircase; the maximum-likelihood value as a dashed line if given."""
    n = 2 * first
    x = np.arange(n) / 2
    le, el = np.array(hist.log_evidence[:n]), np.array(hist.elbo[:n])
    fig, ax = figure(width=7.0, height=3.8)
    with style():
        ax.plot(
            x, le, "-o", ms=4, color=COLORS["true"], label=r"$\log p_\theta(x)$ (mean per example)"
        )
        ax.plot(x, el, "-s", ms=4, color=COLORS["bound"], label=r"ELBO $\mathcal{L}(q, \theta)$")
        ax.fill_between(x, el, le, color=COLORS["gap"], alpha=0.3, label="gap = KL")
        if mle_log_evidence is not None:
            ax.axhline(
                mle_log_evidence, color=COLORS["forward"], ls="--", label="maximum likelihood"
            )
        ax.set_xlabel("EM iteration (integer: after E-step, half: after M-step)")
        ax.set_ylabel("nats per example")
        ax.set_title("variational EM: the E-step closes the gap, the M-step raises both")
        ax.legend(fontsize=8, loc="lower right")
    plt.close(fig)
    return fig


def plot_beta_optimum(betas, m_opt, v_opt, recon, kl, m_post, v_post):
    """Left: optimal variational mean and variance against ``beta`` (log axis), with the
    true posterior at ``beta = 1``. Right: reconstruction term and KL term at the optimum."""
    fig, axes = figure(ncols=2, width=4.6, height=3.6)
    with style():
        axes[0].plot(betas, m_opt, color=COLORS["q"], label=r"$m^*(\beta)$")
        axes[0].plot(betas, v_opt, color=COLORS["reverse"], label=r"$v^*(\beta)$")
        axes[0].plot(
            [1, 1],
            [m_post, v_post],
            "*",
            color=COLORS["true"],
            ms=12,
            label=r"true posterior ($\beta = 1$)",
        )
        axes[0].set_xscale("log")
        axes[0].set_xlabel(r"$\beta$")
        axes[0].set_ylabel("optimal parameter of $q$")
        axes[0].set_title("the optimal $q$ moves towards the prior")
        axes[0].legend(fontsize=8)
        axes[1].plot(betas, recon, color=COLORS["q"], label=r"$\mathbb{E}_q[\log p(x|z)]$")
        axes[1].plot(betas, kl, color=COLORS["reverse"], label=r"$\mathrm{KL}(q \| p(z))$")
        axes[1].axvline(1, color="grey", ls=":", lw=1)
        axes[1].set_xscale("log")
        axes[1].set_xlabel(r"$\beta$")
        axes[1].set_ylabel("nats")
        axes[1].set_title("reconstruction versus regularisation")
        axes[1].legend(fontsize=8)
    plt.close(fig)
    return fig


def plot_gaussian_nll_variance(var_grid, full, no_log_var, var_opt):
    """Gaussian negative log-likelihood of fixed residuals against a learned variance:
    the full NLL (minimum at the mean squared residual ``var_opt``) and the NLL without
    its ``1/2 log var`` term (decreasing forever: no minimum)."""
    fig, ax = figure(width=5.6, height=3.8)
    with style():
        ax.plot(
            var_grid, full, color=COLORS["q"], label=r"full $-\log \mathcal{N}(x; \mu, \sigma^2)$"
        )
        ax.plot(
            var_grid,
            no_log_var,
            color=COLORS["reverse"],
            label=r"without $\frac{1}{2} \log \sigma^2$",
        )
        ax.axvline(var_opt, color="grey", ls=":", label=rf"mean squared residual {var_opt:.3g}")
        ax.set_xscale("log")
        full, no_log_var = np.asarray(full), np.asarray(no_log_var)
        low = min(full.min(), no_log_var.min())
        top = np.interp(np.log(var_opt / 10), np.log(var_grid), full)  # show the bowl
        ax.set_ylim(low - 0.05 * (top - low), top)
        ax.set_xlabel(r"decoder variance $\sigma^2$")
        ax.set_ylabel("negative log-likelihood (nats)")
        ax.set_title("a learned variance needs the log term")
        ax.legend(fontsize=8)
    plt.close(fig)
    return fig
