"""vaebook.chapters.ch02_kl_divergence: the figure of the lemma log t <= t - 1 draws what it
says, checked point by point against mpmath's logarithm (an independent implementation)."""

import mpmath
import numpy as np
import pytest
import sympy as sp

from vaebook.chapters.ch02_kl_divergence import plot_log_tangent
from vaebook.symbolic.certificates import log_tangent_lemma

t = sp.Symbol("t", positive=True)
H = t - 1 - sp.log(t)


def _lines(ax) -> dict:
    return {line.get_label(): line for line in ax.get_lines()}


def test_the_lemma_the_chapter_passes_is_h():
    assert sp.simplify(log_tangent_lemma().expr - H) == 0


def test_the_curves_are_log_the_tangent_line_and_h():
    fig = plot_log_tangent(H, t, t_max=4.0, marks=(0.4, 1.0, 2.5))
    left, right = fig.axes
    curves = _lines(left)
    grid = curves[r"$\log t$"].get_xdata()
    assert grid.min() > 0 and grid.max() == pytest.approx(4.0)
    oracle_log = np.array([float(mpmath.log(v)) for v in grid])
    np.testing.assert_allclose(curves[r"$\log t$"].get_ydata(), oracle_log, rtol=0, atol=1e-12)
    np.testing.assert_allclose(curves[r"tangent line $t - 1$"].get_ydata(), grid - 1, atol=1e-15)
    h_drawn = _lines(right)[r"$h(t) = t - 1 - \log t$"]
    np.testing.assert_allclose(h_drawn.get_xdata(), grid)
    np.testing.assert_allclose(h_drawn.get_ydata(), grid - 1 - oracle_log, atol=1e-12)
    # the picture's claims: log t never above the line, h never negative, touching at t = 1
    assert np.all(oracle_log <= grid - 1 + 1e-15)
    assert np.all(h_drawn.get_ydata() >= -1e-15)
    touch = _lines(left)["touch at $t = 1$"]
    assert list(touch.get_xdata()) == [1.0] and list(touch.get_ydata()) == [0.0]


def test_marked_ratios_sit_on_h():
    marks = (0.4, 1.0, 2.5)
    fig = plot_log_tangent(H, t, marks=marks)
    marked = _lines(fig.axes[1])["the ratios marked"]
    np.testing.assert_allclose(marked.get_xdata(), marks)
    expected = [float(m - 1 - mpmath.log(m)) for m in marks]
    np.testing.assert_allclose(marked.get_ydata(), expected, atol=1e-12)


def test_no_marks_draws_no_marker():
    fig = plot_log_tangent(H, t)
    assert "the ratios marked" not in _lines(fig.axes[1])
