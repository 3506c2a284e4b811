"""The symbolic half: derivations whose every step is checked. Imports SymPy only.

- :mod:`~vaebook.symbolic.notation` -- the book's notation (``p(x)``, ``q(z)``, integrals
  over ``z``, the named quantities ELBO and KL) and the displayed Gaussian ``Normal``.
- :mod:`~vaebook.symbolic.derivation` -- :class:`Derivation`: chains of steps, each checked,
  read-only once checked; :mod:`~vaebook.symbolic.render` puts one on the page.
- :mod:`~vaebook.symbolic.proof` -- how an equality is proved (random evaluation, then
  simplification to zero).
- :mod:`~vaebook.symbolic.certificates` -- :class:`Nonneg`: non-negative facts built only
  by checked rules; the only way an inequality step is accepted.
- :mod:`~vaebook.symbolic.names` -- honest symbols: none poses as the notation, a family
  parameter, a number or another symbol; :mod:`~vaebook.symbolic.text` -- what a title or
  a reason may contain.
- :mod:`~vaebook.symbolic.families` -- model families in which every expectation is exact
  (finite latent, linear-Gaussian); :mod:`~vaebook.symbolic.concrete` -- the families of
  concrete expressions (as written, and with exact Gaussian integrals).
- :mod:`~vaebook.symbolic.gaussian` -- the one implementation of exact Gaussian integrals
  and moments; :mod:`~vaebook.symbolic.printing` -- the book's LaTeX printer.

Nothing here imports torch, NumPy or matplotlib (``tests/test_layout.py`` enforces it).
"""
