"""Figures for the chapters, in one consistent style.

Use :func:`figure` to start a figure; it applies the book's style (:data:`STYLE`) so
every chapter's plots share fonts, sizes and colours. Each chapter's own figures live in
its module under :mod:`vaebook.chapters`.

Figures have a transparent background (figure and axes), so that on the page they sit on
the page's own background: white in the light theme and in the PDF, dark in the dark
theme, where the book's CSS shows them as a themed variant (lightness inverted, hue kept:
black ink becomes light grey, the colours below keep their hue and at least their light-
theme contrast). Nothing in a figure relies on a white background behind it.
"""

from __future__ import annotations

from contextlib import contextmanager

import matplotlib.pyplot as plt
import numpy as np

__all__ = ["STYLE", "COLORS", "COLUMN_WIDTH", "figure", "style"]

#: width (inches, at ``figure.dpi``) of the book's content column: 6.8 in at 100 dpi is
#: 680 px, what the HTML column shows at 1:1 on a 1280 px wide screen. A figure is never
#: wider, so its text is shown at the size set here and not scaled down to fit.
COLUMN_WIDTH = 6.8

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
    "font.size": 10,
    "axes.titlesize": 11,
    "axes.labelsize": 10,
    "xtick.labelsize": 9,
    "ytick.labelsize": 9,
    "legend.fontsize": 9,
    "axes.spines.top": False,
    "axes.spines.right": False,
    "axes.grid": True,
    "grid.alpha": 0.3,
    "legend.frameon": False,
    "lines.linewidth": 2.0,
    "figure.constrained_layout.use": True,
    # transparent backgrounds: no white box around a figure in the dark theme
    "figure.facecolor": "none",
    "figure.edgecolor": "none",
    "axes.facecolor": "none",
    "savefig.facecolor": "none",
    "savefig.edgecolor": "none",
}


@contextmanager
def style():
    """Context manager applying the book's matplotlib style."""
    with plt.rc_context(STYLE):
        yield


def figure(ncols: int = 1, nrows: int = 1, width: float = 4.5, height: float = 3.4, **kwargs):
    """A new ``(fig, axes)`` in the book's style; ``axes`` is a flat array if more than one.

    ``width`` and ``height`` are per panel; a row of panels wider than :data:`COLUMN_WIDTH`
    is scaled down, keeping each panel's aspect ratio, so that it fits the column."""
    if width * ncols > COLUMN_WIDTH:
        scale = COLUMN_WIDTH / (width * ncols)
        width, height = width * scale, height * scale
    with style():
        fig, axes = plt.subplots(nrows, ncols, figsize=(width * ncols, height * nrows), **kwargs)
    if nrows * ncols > 1:
        axes = np.asarray(axes).ravel()
    return fig, axes
