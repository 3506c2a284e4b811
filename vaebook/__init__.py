"""vaebook: checked derivations of the VAE objective, and the VAEs that illustrate them.

Modules (one idea each):

- :mod:`vaebook.derivation` -- checked chains of SymPy steps (``Derivation``) and
  certified non-negative facts (``Nonneg``).
- :mod:`vaebook.families` -- model families in which expectations are exact: a finite
  latent variable and the linear-Gaussian model.
- :mod:`vaebook.plots` -- the figures the chapters draw.
- training side: :mod:`vaebook.models`, :mod:`vaebook.objectives`, :mod:`vaebook.data`,
  :mod:`vaebook.train`, CLI in :mod:`vaebook.__main__`.
"""

__version__ = "0.1.0"
