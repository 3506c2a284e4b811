"""The symbolic half: derivations whose every step is checked. Imports SymPy only.

- :mod:`~vaebook.symbolic.notation` -- the book's notation (``p(x)``, ``q(z)``, integrals
  over ``z``, the named quantities ELBO and KL) and the displayed Gaussian ``Normal``.
- :mod:`~vaebook.symbolic.derivation` -- :class:`Derivation`: chains of steps, each checked.
- :mod:`~vaebook.symbolic.certificates` -- :class:`Nonneg`: non-negative facts built only
  by checked rules; the only way an inequality step is accepted.
- :mod:`~vaebook.symbolic.families` -- model families in which every expectation is exact
  (finite latent, linear-Gaussian), and the one exact Gaussian integrator.

Nothing here imports torch, NumPy or matplotlib (``tests/test_layout.py`` enforces it).
"""
