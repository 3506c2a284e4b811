"""The training half: VAEs in PyTorch. Imports torch and NumPy, never SymPy or a chapter.

- :mod:`~vaebook.vae.config` -- the only lists of data set, model and likelihood names;
  :class:`~vaebook.vae.config.TrainConfig`, validated in one place.
- :mod:`~vaebook.vae.data` -- ``digits`` (bundled), ``mnist`` (local IDX files), ``ppca``.
- :mod:`~vaebook.vae.models` -- the MLP VAE and the linear VAE.
- :mod:`~vaebook.vae.ppca` -- the linear-Gaussian model in closed form: exact marginal,
  maximum-likelihood fit (the linear VAE's and the ``ppca`` data set's reference).
- :mod:`~vaebook.vae.objectives` -- the training objective (the one the book checks),
  IWAE, the log-likelihood estimate, active units.
- :mod:`~vaebook.vae.checkpoint` -- run folders, atomic checkpoints, provenance.
- :mod:`~vaebook.vae.train` -- the training loop.
"""
