"""Chapter 3 (``book/03_evidence_identity.ipynb``): the evidence identity; its figure."""

from __future__ import annotations

import matplotlib.pyplot as plt
import numpy as np
from matplotlib.ticker import MaxNLocator

from ..plots import figure, style

__all__ = ["plot_gap_surface"]


def plot_gap_surface(m_grid, v_grid, gap, m_star, v_star, title: str = ""):
    """Contours of ``log p(x) - ELBO`` over the variational mean and variance, with the
    true posterior marked. ``gap`` has shape ``(len(v_grid), len(m_grid))``."""
    fig, ax = figure(width=5.2, height=4.0)
    with style():
        # Evenly spaced levels at round numbers from 0 up to the 95th percentile, so the
        # colour bar has regular ticks; the few larger gaps (the grid's far corners) take
        # the top colour (extend="max") instead of being left unfilled.
        top = float(np.quantile(gap, 0.95))
        levels = MaxNLocator(nbins=10, min_n_ticks=6).tick_values(0.0, top)
        levels = levels[levels <= top + 1e-12]
        # The gap is a KL divergence, >= 0; clipping removes rounding noise below the first
        # level, which would otherwise leave the minimum itself unfilled.
        shown = np.maximum(np.asarray(gap, dtype=float), 0.0)
        cs = ax.contourf(m_grid, v_grid, shown, levels=levels, cmap="viridis", extend="max")
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
        ax.legend(loc="upper right", frameon=True, framealpha=0.85)
    plt.close(fig)
    return fig
