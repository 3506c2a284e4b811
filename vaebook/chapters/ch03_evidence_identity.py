"""Chapter 3 (``book/03_evidence_identity.ipynb``): the evidence identity; its figure."""

from __future__ import annotations

import matplotlib.pyplot as plt
import numpy as np

from ..plots import figure, style

__all__ = ["plot_gap_surface"]


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
