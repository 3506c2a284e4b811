"""vaebook: checked derivations of the VAE objective, and the VAEs that illustrate them.

Layers (``tests/test_layout.py`` enforces who may import whom):

- :mod:`vaebook.symbolic` -- notation, checked derivations, certificates, exact model
  families. SymPy only.
- :mod:`vaebook.vae` -- configuration, data, models, the training objective, checkpoints,
  the training loop. torch and NumPy only.
- :mod:`vaebook.plots` -- the book's figure style. matplotlib only.
- :mod:`vaebook.chapters` -- one module per chapter: what only that chapter shows. May
  import both halves and the style.
- :mod:`vaebook.cli`, ``python -m vaebook`` -- the command line, on top of everything;
  nothing imports it. (The benchmark and the GPU-session script are tools outside the
  package: ``tools/``.)
"""

__version__ = "0.1.0"
