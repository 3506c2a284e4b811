"""The training half: VAEs in PyTorch. Imports torch and NumPy, never SymPy or a chapter.

- :mod:`~vaebook.vae.config` -- the only lists of data set, architecture and likelihood
  names; :class:`~vaebook.vae.config.TrainConfig` in four sections (data, model, optim,
  run), validated in one place; the schedules ``lr_at`` and ``beta_at``.
- :mod:`~vaebook.vae.data` -- ``digits`` (bundled), ``mnist`` (local IDX files), ``ppca``,
  ``file``: ``load_dataset(cfg.data)``.
- :mod:`~vaebook.vae.models` -- the MLP VAE and the linear VAE: ``build_model(cfg.model, D)``.
- :mod:`~vaebook.vae.ppca` -- the linear-Gaussian model in closed form: exact marginal,
  maximum-likelihood fit (the linear VAE's and the ``ppca`` data set's reference).
- :mod:`~vaebook.vae.objectives` -- the training objective (the one the book checks),
  IWAE, the log-likelihood estimate, active units, the mean and its standard error.
- :mod:`~vaebook.vae.evaluate` -- a trained model's bounds and estimate, the trainer's
  per-epoch test figures.
- :mod:`~vaebook.vae.devices` -- choosing the device, seeding, the device facts of
  provenance.
- :mod:`~vaebook.vae.checkpoint` -- the files' bytes: atomic writes, the one-file checkpoint.
- :mod:`~vaebook.vae.run_folder` -- :class:`~vaebook.vae.run_folder.RunFolder`, which owns a
  run folder's life (start, resume, checkpoint, finish, load).
- :mod:`~vaebook.vae.train` -- the training loop and the step it repeats.
- :mod:`~vaebook.vae.recipes`, :mod:`~vaebook.vae.pretrained` -- the recipes of the
  committed runs; ``reproduce`` and a checksummed ``load``.
"""
