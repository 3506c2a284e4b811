"""The recipes of the trained runs: those the book renders (:data:`RUNS`) and those for
readers with data of their own (:data:`PRESETS`), each a :class:`RunSpec` -- the
:class:`~vaebook.vae.config.TrainConfig` values that train it (flat field names, as in
``config.json``) and how it is evaluated. :mod:`vaebook.vae.pretrained` trains, writes and
loads them.
"""

from __future__ import annotations

from dataclasses import dataclass

__all__ = ["RunSpec", "RUNS", "PRESETS", "PUBLISHED", "PretrainedError", "spec_of"]


class PretrainedError(ValueError):
    """A trained run that is unknown, missing or damaged (the CLI exits with status 2)."""


@dataclass(frozen=True)
class RunSpec:
    """A trained run: the TrainConfig values of its recipe and how it is evaluated."""

    config: dict
    purpose: str
    k: int = 1000  # importance samples of the log-likelihood estimate
    iwae_ks: tuple[int, ...] = (10,)  # IWAE bounds recorded beside it (each divides k)
    train_examples: int | None = None  # evaluate the training set on its first N rows


def _digits(**values) -> dict:
    """The book's digits recipe: dynamically binarized 8x8 digits, Bernoulli decoder,
    Adam 1e-3, batch 100, one CPU thread (so a CPU retrain is reproducible)."""
    base = {"dataset": "digits", "binarization": "dynamic", "likelihood": "bernoulli"}
    return {**base, "batch_size": 100, "lr": 1e-3, "threads": 1, "seed": 0, **values}


def _sweep() -> dict[str, RunSpec]:
    """Chapter 13: beta x latent size x seed, latent sizes at beta = 1, and KL warm-up."""
    runs = {}
    for latent in (4, 16):
        for beta in (0.25, 0.5, 1.0, 2.0, 4.0):
            for seed in (0, 1):
                runs[f"digits-L{latent}-beta{beta:g}-seed{seed}"] = RunSpec(
                    _digits(hidden_dims=[64], latent_dim=latent, beta=beta, seed=seed, epochs=150),
                    f"rate-distortion sweep (latent {latent}, beta {beta:g}, seed {seed})",
                )
    for latent in (2, 8, 32):
        runs[f"digits-L{latent}-beta1-seed0"] = RunSpec(
            _digits(hidden_dims=[64], latent_dim=latent, epochs=150),
            f"latent size sweep at beta = 1 (latent {latent})",
        )
    for seed in (0, 1):
        if seed:
            runs[f"digits-L32-beta1-seed{seed}"] = RunSpec(
                _digits(hidden_dims=[64], latent_dim=32, epochs=150, seed=seed),
                "latent 32 without warm-up (second seed)",
            )
        runs[f"digits-L32-warmup-seed{seed}"] = RunSpec(
            _digits(hidden_dims=[64], latent_dim=32, epochs=150, kl_warmup_epochs=50, seed=seed),
            "latent 32 with KL warm-up over 50 epochs",
        )
    return runs


def _collapse() -> dict[str, RunSpec]:
    """Chapter 13: posterior collapse. An autoregressive decoder over the pixels (MADE) given
    z, trained on the ELBO, beside the factorised decoder of the same size (same encoder,
    widths, latent size and optimiser), and two remedies on the same recipe: KL warm-up and
    free bits. A fast schedule: Adam at 1e-2 decaying by 0.97 per epoch, batch 10."""
    recipe = {"hidden_dims": [64, 64], "latent_dim": 8, "epochs": 150, "batch_size": 10}
    recipe |= {"lr": 1e-2, "lr_decay": 0.97}
    made = {**recipe, "architecture": "made"}
    return {
        "digits-collapse-factorised": RunSpec(
            _digits(**recipe), "collapse: the factorised decoder (pixels independent given z)"
        ),
        "digits-collapse-made": RunSpec(
            _digits(**made), "collapse: the autoregressive decoder, trained on the ELBO"
        ),
        "digits-collapse-made-warmup": RunSpec(
            _digits(**made, kl_warmup_epochs=50),
            "collapse: the autoregressive decoder with KL warm-up over 50 epochs",
        ),
        "digits-collapse-made-freebits": RunSpec(
            _digits(**made, free_bits=0.25),
            "collapse: the autoregressive decoder with free bits, 0.25 nats per dimension",
        ),
    }


#: the runs the book's chapters load (Part II)
RUNS: dict[str, RunSpec] = {
    "digits-vae": RunSpec(
        _digits(hidden_dims=[128], latent_dim=8, epochs=300),
        "the chapter 10 VAE: learning curves, reconstructions, samples; chapter 11's bounds",
        k=5000,
        iwae_ks=(5, 50, 500),
    ),
    "digits-vae-2d": RunSpec(
        _digits(hidden_dims=[128], latent_dim=2, epochs=300),
        "a two-dimensional latent space to draw, coloured by digit",
        k=5000,
        iwae_ks=(50,),
    ),
    "digits-iwae50": RunSpec(
        _digits(hidden_dims=[128], latent_dim=8, epochs=300, train_k=50),
        "the chapter 10 architecture trained on the IWAE bound with k = 50",
        k=5000,
        iwae_ks=(5, 50, 500),
    ),
    "ppca-linear": RunSpec(
        {
            "dataset": "ppca",
            "architecture": "linear",
            "likelihood": "gaussian",
            "latent_dim": 2,
            "batch_size": 250,
            "lr": 1e-2,
            "lr_decay": 0.985,
            "epochs": 400,
            "threads": 1,
            "seed": 0,
        },
        "the linear VAE on probabilistic-PCA data (chapter 12)",
        k=1000,
        iwae_ks=(10,),
    ),
    **_sweep(),
    **_collapse(),
}

#: recipes outside the book, for readers with the data (``reproduce --preset NAME``)
PRESETS: dict[str, dict[str, RunSpec]] = {
    "mnist-burda": {
        f"mnist-burda-{name}": RunSpec(
            {
                "dataset": "mnist",
                "binarization": "dynamic",
                "likelihood": "bernoulli",
                "hidden_dims": [200, 200],
                "latent_dim": 50,
                "activation": "tanh",
                "batch_size": 20,
                "lr": 1e-3,
                "epochs": 100,
                "train_k": train_k,
                "seed": 0,
            },
            f"Burda et al. (2016), one stochastic layer, {name} (784-200-200-50, tanh)",
            k=5000,
            iwae_ks=(50,),
        )
        for name, train_k in (("vae-k1", 1), ("iwae-k50", 50))
    }
}

#: published test log-likelihoods (nats) of Burda et al. (2016), Table 1, MNIST, one
#: stochastic layer, k = 5000 importance samples for the estimate
PUBLISHED = {"mnist-burda-vae-k1": -86.76, "mnist-burda-iwae-k50": -84.78}


def spec_of(name: str) -> RunSpec:
    """The recipe of run ``name`` (a book run or a preset's); :class:`PretrainedError` if
    there is none."""
    for table in (RUNS, *PRESETS.values()):
        if name in table:
            return table[name]
    raise PretrainedError(f"unknown run {name!r}; `python -m vaebook reproduce --list` lists them")
