"""Chapter 5 (``book/05_elbo_vs_kl.ipynb``): maximising the ELBO minimises the KL.

The one-factor linear-Gaussian model (probabilistic PCA with a scalar latent)
``z ~ N(0, 1)``, ``x | z ~ N(w z + b, s2 I_D)`` in NumPy: posterior, ELBO of a Gaussian
``q``, the closed-form M-step and **variational EM** (:func:`variational_em`); and the
chapter's figures. The exact log-evidence and the maximum-likelihood fit are NumPy
wrappers (scalar latent, ``w`` a vector) around :mod:`vaebook.vae.ppca`.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import matplotlib.pyplot as plt
import numpy as np
import torch

from ..plots import COLORS, figure, style
from ..vae.ppca import ppca_log_likelihood, ppca_mle

__all__ = [
    "ppca1_log_evidence",
    "ppca1_posterior",
    "ppca1_elbo",
    "ppca1_m_step",
    "ppca1_mle",
    "EMHistory",
    "variational_em",
    "plot_ceiling_floor",
    "plot_em_history",
]

# z ~ N(0, 1), x | z ~ N(w z + b, s2 I_D); data X has shape (N, D), w and b shape (D,).


def ppca1_log_evidence(X, w, b, s2) -> np.ndarray:
    """Exact ``log p(x_n) = log N(x_n; b, s2 I + w w^T)`` for every row, shape (N,)
    (:func:`~vaebook.vae.ppca.ppca_log_likelihood` with ``W = w`` as one column)."""
    X = torch.as_tensor(np.atleast_2d(np.asarray(X, float)))  # (N, D)
    w = torch.as_tensor(np.asarray(w, float))[:, None]  # (D, 1)
    b = torch.as_tensor(np.asarray(b, float))  # (D,)
    return ppca_log_likelihood(X, b, w, float(s2)).numpy()


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
    """Maximum-likelihood ``(w, b, s2)`` in closed form (Tipping and Bishop, 1999;
    :func:`~vaebook.vae.ppca.ppca_mle` with one latent dimension): ``b`` = sample mean,
    ``s2`` = mean of the ``D - 1`` smallest eigenvalues of the sample covariance ``S``,
    ``w = u_1 sqrt(lambda_1 - s2)`` (sign: first entry >= 0)."""
    mean, W, s2 = ppca_mle(torch.as_tensor(np.atleast_2d(np.asarray(X, float))), 1)
    w = W[:, 0].numpy()  # (D,)
    return w * np.sign(w[0] or 1.0), mean.numpy(), float(s2)


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
            ax.legend(loc="lower center")
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
        ax.legend(loc="lower right")
    plt.close(fig)
    return fig
