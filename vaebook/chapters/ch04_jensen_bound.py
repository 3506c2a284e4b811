"""Chapter 4 (``book/04_jensen_bound.ipynb``): Jensen's inequality gives the same bound.

The chapter-only pieces: the coefficients of the log-ratio ``log p(x, z) - log q(z)`` in
the linear-Gaussian family, and the chapter's two figures.
"""

from __future__ import annotations

import matplotlib.pyplot as plt
import numpy as np
import sympy as sp

from ..plots import COLORS, figure, style
from ..symbolic import notation as N
from ..symbolic.families import LinearGaussian

__all__ = ["log_ratio_coefficients", "plot_jensen_chords", "plot_ratio_and_gap"]


def log_ratio_coefficients(lg: LinearGaussian) -> dict:
    """Coefficients of ``z**2``, ``z`` and ``1`` in ``log p(x, z) - log q(z)`` for the
    linear-Gaussian family (a quadratic in ``z``): ``{2: ..., 1: ..., 0: ...}``."""
    dens = lg.densities()
    log_ratio = sp.expand(sp.expand_log(sp.log(dens[N.pxz]) - sp.log(dens[N.qz]), force=True))
    poly = sp.Poly(log_ratio, lg.z)
    if poly.degree() != 2:
        raise ValueError(f"expected a quadratic in z, got degree {poly.degree()}")
    return {j: sp.simplify(poly.coeff_monomial(lg.z**j)) for j in (2, 1, 0)}


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
            ax.legend(loc="upper left")
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
        # below the panel: inside it the legend covered the curves
        axes[0].legend(loc="upper center", bbox_to_anchor=(0.5, -0.25), ncol=2,
                       fontsize="small", frameon=False)
        axes[1].plot(t_grid, gap, color=COLORS["gap"], label=r"gap $\log p(x) - \mathcal{L}(q_t)$")
        axes[1].axhline(0, color="grey", lw=1)
        axes[1].axvline(1, color=COLORS["true"], ls=":", label="$q_1$ = true posterior")
        axes[1].set_xlabel("path parameter $t$")
        axes[1].set_ylabel("gap (nats)")
        axes[1].set_title("Jensen gap along a path of $q$")
        axes[1].legend(loc="upper center", bbox_to_anchor=(0.5, -0.25), ncol=1,
                       fontsize="small", frameon=False)
    plt.close(fig)
    return fig
