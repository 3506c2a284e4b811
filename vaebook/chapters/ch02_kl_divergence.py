"""The figure of chapter 2 (``book/02_kl_divergence.ipynb``): the lemma behind Gibbs'
inequality, ``log t <= t - 1`` for ``t > 0``, equivalently
``h(t) := t - 1 - log t >= 0`` with equality only at ``t = 1``.

:func:`plot_log_tangent` draws it in two panels: the logarithm under its tangent line
``t - 1`` at ``t = 1`` (the vertical distance between them is ``h(t)``), and ``h``
itself. The chapter passes the engine's own ``h`` (a SymPy expression in ``t``), so the
curve drawn is the function the proof is about; the tangent line and the logarithm are
drawn from numpy.
"""

from __future__ import annotations

from collections.abc import Sequence

import matplotlib.pyplot as plt
import numpy as np
import sympy as sp

from ..plots import COLORS, figure, style

__all__ = ["plot_log_tangent"]


def plot_log_tangent(
    h: sp.Expr,
    t: sp.Symbol,
    t_max: float = 4.0,
    marks: Sequence[float] = (),
    marks_label: str = "the ratios marked",
    n_points: int = 400,
):
    """Left: ``log t`` and its tangent line ``t - 1`` at ``t = 1`` on ``(0, t_max]``, the
    gap between them shaded; right: ``h(t)`` (the SymPy expression ``h`` in ``t``,
    evaluated by ``lambdify``), zero only at ``t = 1``. ``marks``: values of ``t`` marked
    on both panels (for example the ratios ``pi_k / q_k`` of a proof), under the legend
    entry ``marks_label``."""
    h_fn = sp.lambdify(t, h, "numpy")
    grid = np.linspace(t_max / n_points, t_max, n_points)  # (n,) t > 0
    line, log = grid - 1.0, np.log(grid)  # (n,), (n,)
    h_values = np.asarray(h_fn(grid), dtype=float)  # (n,)
    marks = np.asarray(marks, dtype=float)  # (k,)
    fig, (ax0, ax1) = figure(ncols=2, width=3.4, height=3.0)
    with style():
        ax0.plot(grid, line, color=COLORS["bound"], label=r"tangent line $t - 1$")
        ax0.plot(grid, log, color=COLORS["q"], label=r"$\log t$")
        ax0.fill_between(grid, log, line, color=COLORS["gap"], alpha=0.25, lw=0,
                         label=r"gap $h(t)$")
        ax0.plot([1.0], [0.0], "o", color=COLORS["true"], ms=5, label="touch at $t = 1$")
        ax0.set_ylim(-3.0, t_max - 1.0)
        ax0.set_xlim(0.0, t_max)
        ax0.set_xlabel("$t$")
        ax0.set_title(r"$\log t$ lies below $t - 1$")
        ax0.legend(loc="lower right")
        ax1.plot(grid, h_values, color=COLORS["gap"], label=r"$h(t) = t - 1 - \log t$")
        ax1.axhline(0.0, color="grey", lw=1)
        ax1.plot([1.0], [0.0], "o", color=COLORS["true"], ms=5, label="its only zero, $t = 1$")
        if marks.size:
            ax1.plot(marks, np.asarray(h_fn(marks), dtype=float), "s", color=COLORS["reverse"],
                     ms=5, label=marks_label)
            ax0.vlines(marks, np.log(marks), marks - 1.0, color=COLORS["reverse"], lw=1.5)
        ax1.set_ylim(-0.2, 3.0)
        ax1.set_xlim(0.0, t_max)
        ax1.set_xlabel("$t$")
        ax1.set_title(r"$h(t) \geq 0$")
        ax1.legend(loc="upper center")
    plt.close(fig)
    return fig
