"""Figures for the chapters, in one consistent style.

Use :func:`figure` to start a figure; it applies the book's style (:data:`STYLE`) so
every chapter's plots share fonts, sizes and colours. Chapter-specific figures live
here too, each a function that returns the ``Figure``.
"""

from __future__ import annotations

from contextlib import contextmanager

import matplotlib.pyplot as plt
import numpy as np

__all__ = ["STYLE", "COLORS", "figure", "style", "plot_gap_surface"]

#: colours used across the book (colour-blind safe, Okabe-Ito)
COLORS = {
    "true": "#000000",
    "q": "#0072B2",
    "reverse": "#D55E00",
    "forward": "#009E73",
    "bound": "#E69F00",
    "gap": "#CC79A7",
    "grid": "#56B4E9",
    "mc": "#F0E442",
}

STYLE = {
    "figure.dpi": 100,
    "savefig.dpi": 100,
    "font.size": 11,
    "axes.titlesize": 12,
    "axes.labelsize": 11,
    "axes.spines.top": False,
    "axes.spines.right": False,
    "axes.grid": True,
    "grid.alpha": 0.3,
    "legend.frameon": False,
    "lines.linewidth": 2.0,
    "figure.constrained_layout.use": True,
}


@contextmanager
def style():
    """Context manager applying the book's matplotlib style."""
    with plt.rc_context(STYLE):
        yield


def figure(ncols: int = 1, nrows: int = 1, width: float = 4.5, height: float = 3.4, **kwargs):
    """A new ``(fig, axes)`` in the book's style; ``axes`` is a flat array if more than one."""
    with style():
        fig, axes = plt.subplots(nrows, ncols, figsize=(width * ncols, height * nrows), **kwargs)
    if nrows * ncols > 1:
        axes = np.asarray(axes).ravel()
    return fig, axes


def plot_gap_surface(m_grid, v_grid, gap, m_star, v_star, title: str = ""):
    """Contours of ``log p(x) - ELBO`` over the variational mean and variance, with the
    true posterior marked. ``gap`` has shape ``(len(v_grid), len(m_grid))``."""
    fig, ax = figure(width=5.2, height=4.0)
    with style():
        levels = np.quantile(gap, np.linspace(0.0, 0.95, 12))
        cs = ax.contourf(m_grid, v_grid, gap, levels=np.unique(levels), cmap="viridis")
        fig.colorbar(cs, ax=ax, label=r"gap $\log p(x) - \mathrm{ELBO}$ (nats)")
        ax.plot(
            [m_star],
            [v_star],
            marker="*",
            ms=14,
            color="white",
            mec="black",
            label="true posterior",
        )
        ax.set_xlabel("variational mean $m$")
        ax.set_ylabel("variational variance $v$")
        ax.set_title(title)
        ax.legend(loc="upper right")
    plt.close(fig)
    return fig
