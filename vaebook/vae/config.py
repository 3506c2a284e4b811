"""Training configuration: the only lists of data set, architecture and likelihood names,
and :class:`TrainConfig` in four sections, each handed whole to the code that uses it:

- :class:`DataConfig` -- :func:`vaebook.vae.data.load_dataset`;
- :class:`ModelConfig` -- :func:`vaebook.vae.models.build_model`;
- :class:`OptimConfig` -- the optimiser, the learning-rate schedule :func:`lr_at` and the
  KL weight :func:`beta_at` of each epoch, the objective trained;
- :class:`RunConfig` -- seed, device, threads, checkpoints, where the run folder goes.

Every field has one name everywhere: the attribute, the key of ``config.json`` (a flat
JSON object, :meth:`TrainConfig.to_dict`) and the ``train`` flag (``--latent-dim``), whose
help text and check are the field's metadata here. Values are checked in one place
(:meth:`TrainConfig.validate`, each field by :func:`check_field`) before any data is
loaded. Imports neither torch nor NumPy, so the command line checks its arguments before
the heavy imports.
"""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass, field

__all__ = [
    "DATASETS",
    "BINARIZATIONS",
    "ARCHITECTURES",
    "LIKELIHOODS",
    "ACTIVATIONS",
    "ConfigError",
    "DataConfig",
    "ModelConfig",
    "OptimConfig",
    "RunConfig",
    "TrainConfig",
    "SECTIONS",
    "check_field",
    "lr_at",
    "beta_at",
]

DATASETS = {
    "digits": "scikit-learn's bundled 8x8 digits (1797 x 64), scaled to [0, 1]; works offline",
    "mnist": "MNIST 28x28 (60000 + 10000 x 784) from the IDX files in --data-dir",
    "ppca": "synthetic data from a known linear-Gaussian model (exact log-likelihood available)",
    "file": "your own examples: a .npy/.npz array (N, D) with values in [0, 1], at --data-dir",
}
BINARIZATIONS = ("none", "static", "dynamic")
ARCHITECTURES = ("mlp", "linear", "made")
LIKELIHOODS = ("bernoulli", "gaussian")
ACTIVATIONS = ("relu", "tanh")


class ConfigError(ValueError):
    """Invalid configuration (the CLI exits with status 2)."""


# -- one check per kind of value ----------------------------------------------------------
def _int(v) -> bool:
    return isinstance(v, int) and not isinstance(v, bool)


def _number(v) -> bool:
    return isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v)


def _text(v) -> bool:
    return isinstance(v, str) and bool(v)


def _plain_name(v) -> bool:
    return _text(v) and v not in (".", "..") and not any(c in v for c in "/\\\0")


def _widths(v) -> bool:
    return isinstance(v, list) and len(v) > 0 and all(_int(h) and h > 0 for h in v)


CHECKS = {  # kind -> (test, what the value must be)
    "positive int": (lambda v: _int(v) and v > 0, "a positive integer"),
    "int >= 0": (lambda v: _int(v) and v >= 0, "an integer >= 0"),
    "int": (_int, "an integer"),
    "positive number": (lambda v: _number(v) and v > 0, "a positive number"),
    "fraction": (lambda v: _number(v) and 0 < v < 1, "a number in (0, 1)"),
    "decay": (lambda v: _number(v) and 0 < v <= 1, "a number in (0, 1]"),
    "weight": (lambda v: _number(v) and 0 <= v < 1e9, "a non-negative number"),
    "bool": (lambda v: isinstance(v, bool), "true or false"),
    "text": (_text, "a non-empty string"),
    "plain name": (_plain_name, "a plain folder name (no path separators)"),
    "widths": (_widths, "a non-empty list of positive integers"),
}


def setting(default, kind: str, help: str, *, choices=None, unset: str | None = None):
    """A configuration field: its default, the kind of value it takes (a key of
    :data:`CHECKS`), allowed ``choices``, its help, and -- for a field that may be left
    unset (None) -- what unset means."""
    meta = {"kind": kind, "help": help, "choices": choices, "unset": unset}
    if isinstance(default, list):
        return field(default_factory=lambda: list(default), metadata=meta)
    return field(default=default, metadata=meta)


def check_field(name: str, value, meta: dict) -> None:
    """Raise ConfigError unless ``value`` suits the field ``name`` described by ``meta``."""
    if value is None and meta["unset"] is not None:
        return
    if meta["choices"] is not None:
        if value not in meta["choices"]:
            raise ConfigError(f"{name} must be one of {', '.join(meta['choices'])}, got {value!r}")
        return
    test, expected = CHECKS[meta["kind"]]
    if not test(value):
        raise ConfigError(f"{name} must be {expected}, got {value!r}")


# -- the four sections ------------------------------------------------------------------
@dataclass(frozen=True)
class DataConfig:
    """What the model is trained and scored on."""

    dataset: str = setting("digits", "text", "data set", choices=tuple(DATASETS))
    data_dir: str | None = setting(
        None,
        "text",
        "mnist: the folder of IDX files; file: the .npy/.npz array",
        unset="none (digits, ppca)",
    )
    binarization: str = setting(
        "none",
        "text",
        "none; static: one fixed Bernoulli draw of the training set; dynamic: a new draw "
        "every epoch (the test set is one fixed draw for both)",
        choices=BINARIZATIONS,
    )
    test_fraction: float = setting(
        0.2, "fraction", "held-out share for digits, ppca and file (MNIST has its own split)"
    )


@dataclass(frozen=True)
class ModelConfig:
    """The networks and the decoder's likelihood."""

    architecture: str = setting(
        "mlp",
        "text",
        "mlp; linear (needs the gaussian likelihood); made: the mlp encoder with an "
        "autoregressive decoder over the pixels given z (bernoulli only)",
        choices=ARCHITECTURES,
    )
    likelihood: str = setting(
        "bernoulli", "text", "decoder: bernoulli (logits) or gaussian", choices=LIKELIHOODS
    )
    hidden_dims: list[int] | None = setting(
        None,
        "widths",
        "hidden layer widths of the encoder (the decoder mirrors them), e.g. 400 or 256,128",
        unset="128 for data of up to 64 dimensions, else 400",
    )
    latent_dim: int | None = setting(
        None,
        "positive int",
        "latent dimensions",
        unset="2 for data of up to 16 dimensions, 8 up to 64, else 20",
    )
    decoder_std: float | None = setting(
        None,
        "positive number",
        "the gaussian decoder's standard deviation",
        unset="one shared, learned",
    )
    activation: str = setting(
        "relu", "text", "between the MLP's layers: relu or tanh", choices=ACTIVATIONS
    )

    def resolved(self, data_dim: int) -> ModelConfig:
        """This section with the unset sizes filled in for data of ``data_dim`` dimensions."""
        hidden = self.hidden_dims or ([128] if data_dim <= 64 else [400])
        latent = self.latent_dim or (2 if data_dim <= 16 else 8 if data_dim <= 64 else 20)
        return dataclasses.replace(self, hidden_dims=list(hidden), latent_dim=latent)


@dataclass(frozen=True)
class OptimConfig:
    """The objective, the optimiser and their schedules over epochs."""

    epochs: int = setting(20, "positive int", "total epochs; a resumed run continues up to it")
    batch_size: int = setting(128, "positive int", "examples per optimisation step")
    lr: float = setting(1e-3, "positive number", "Adam's step size in epoch 1")
    lr_decay: float = setting(
        1.0, "decay", "per-epoch factor: the step size of epoch e is lr * lr_decay ** (e - 1)"
    )
    beta: float = setting(1.0, "weight", "weight of the KL term in the loss (the ELBO uses 1)")
    kl_warmup_epochs: int = setting(
        0, "int >= 0", "beta rises linearly from 0 to beta over this many epochs"
    )
    free_bits: float = setting(
        0.0,
        "weight",
        "free bits (Kingma et al., 2016), nats per latent dimension: the loss's KL term is "
        "sum_j max(free_bits, batch mean of KL_j); 0: off",
    )
    train_k: int = setting(
        1, "positive int", "1: train the ELBO; k > 1: the IWAE bound with k samples (beta 1)"
    )
    analytic_kl: bool = setting(
        True, "bool", "closed-form KL (--no-analytic-kl: single-sample Monte Carlo)"
    )


@dataclass(frozen=True)
class RunConfig:
    """How and where the run is carried out; none of it changes what is learned, but the
    seed."""

    seed: int = setting(
        0,
        "int",
        "seeds the initial weights, the batch order, the sampling noise and the "
        "dynamic binarization",
    )
    device: str = setting(
        "auto", "text", "auto (cuda, then mps, then cpu), or a torch device such as cuda:1"
    )
    bf16: bool = setting(False, "bool", "bfloat16 autocast of the networks (CUDA only)")
    compile: bool = setting(False, "bool", "torch.compile the loss (slow to start)")
    threads: int | None = setting(
        None, "positive int", "torch CPU threads", unset="torch's default, one per core"
    )
    checkpoint_every: int = setting(
        1, "positive int", "epochs between checkpoints (the last epoch always saves)"
    )
    progress_every: int = setting(
        20, "positive int", "steps between progress updates and NaN checks (each syncs)"
    )
    eval_k: int = setting(50, "positive int", "IWAE samples of the final test-set bound")
    runs_dir: str = setting("runs", "text", "the folder that holds run folders")
    run_name: str | None = setting(
        None,
        "plain name",
        "the run folder's name",
        unset="<dataset>-<architecture>-seed<seed>-<time>",
    )
    progress: bool = setting(True, "bool", "a progress bar on stderr")


SECTIONS = {"data": DataConfig, "model": ModelConfig, "optim": OptimConfig, "run": RunConfig}


@dataclass(frozen=True)
class TrainConfig:
    """Everything that determines a training run, in four sections. Defaults train a small
    VAE on digits."""

    data: DataConfig = field(default_factory=DataConfig)
    model: ModelConfig = field(default_factory=ModelConfig)
    optim: OptimConfig = field(default_factory=OptimConfig)
    run: RunConfig = field(default_factory=RunConfig)

    @staticmethod
    def fields() -> dict[str, tuple[str, dataclasses.Field]]:
        """Every field by its name: ``{name: (section, field)}``, section by section."""
        return {
            f.name: (section, f)
            for section, cls in SECTIONS.items()
            for f in dataclasses.fields(cls)
        }

    @classmethod
    def from_dict(cls, values: dict) -> TrainConfig:
        """Config from a flat mapping of field names (a config.json, flags); unknown names
        are an error, missing ones keep their defaults. Validated."""
        return cls().replace(**values)

    def replace(self, **values) -> TrainConfig:
        """A copy with the fields named in ``values`` (flat names) replaced; validated."""
        fields = self.fields()
        unknown = sorted(set(values) - set(fields))
        if unknown:
            raise ConfigError(f"unknown config key(s): {', '.join(unknown)}")
        changes: dict[str, dict] = {}
        for name, value in values.items():
            changes.setdefault(fields[name][0], {})[name] = value
        config = dataclasses.replace(
            self,
            **{s: dataclasses.replace(getattr(self, s), **v) for s, v in changes.items()},
        )
        config.validate()
        return config

    def to_dict(self) -> dict:
        """The flat mapping ``config.json`` holds (field name -> value)."""
        return {
            name: getattr(getattr(self, section), name)
            for name, (section, _) in self.fields().items()
        }

    def validate(self) -> None:
        """Raise ConfigError for a value of the wrong type or out of range, or settings
        that do not go together; checked once, here, before any data is loaded."""
        for name, (section, f) in self.fields().items():
            check_field(name, getattr(getattr(self, section), name), f.metadata)
        if self.model.architecture == "linear" and self.model.likelihood != "gaussian":
            raise ConfigError("the linear VAE needs likelihood 'gaussian'")
        if self.optim.train_k > 1 and (self.optim.beta != 1 or self.optim.kl_warmup_epochs):
            raise ConfigError("train_k > 1 trains the IWAE bound, which has no beta: keep beta 1")
        if self.model.architecture == "made" and self.model.likelihood != "bernoulli":
            raise ConfigError("the autoregressive (made) decoder needs likelihood 'bernoulli'")
        if self.optim.free_bits and (self.optim.train_k > 1 or not self.optim.analytic_kl):
            raise ConfigError(
                "free bits clamp the closed-form KL of each dimension: train_k 1, analytic_kl"
            )


# -- schedules: functions of the epoch (so a resumed run continues them exactly) -----------
def lr_at(optim: OptimConfig, epoch: int) -> float:
    """Adam's step size in ``epoch`` (1-based): ``lr * lr_decay ** (epoch - 1)``."""
    return optim.lr * optim.lr_decay ** (epoch - 1)


def beta_at(optim: OptimConfig, epoch: int) -> float:
    """The KL weight in ``epoch`` (1-based): rising linearly to ``beta`` over the warm-up
    epochs, then ``beta``."""
    if not optim.kl_warmup_epochs:
        return optim.beta
    return optim.beta * min(1.0, epoch / optim.kl_warmup_epochs)
