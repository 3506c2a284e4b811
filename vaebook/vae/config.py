"""Training configuration: the only lists of data set, model and likelihood names, and
:class:`TrainConfig`, validated in one place (:meth:`TrainConfig.validate`).

Imports neither torch nor NumPy, so the command line can check its arguments before the
heavy imports.
"""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass

__all__ = [
    "DATASETS",
    "BINARIZATIONS",
    "MODELS",
    "LIKELIHOODS",
    "ACTIVATIONS",
    "ConfigError",
    "TrainConfig",
]

DATASETS = {
    "digits": "scikit-learn's bundled 8x8 digits (1797 x 64), scaled to [0, 1]; works offline",
    "mnist": "MNIST 28x28 (60000 + 10000 x 784) from the four IDX files in --data-dir",
    "ppca": "synthetic data from a known linear-Gaussian model (exact log-likelihood available)",
    "file": "your own examples: a .npy/.npz array (N, D) with values in [0, 1], at --data-dir",
}
BINARIZATIONS = ("none", "static", "dynamic")
MODELS = ("mlp", "linear")
LIKELIHOODS = ("bernoulli", "gaussian")
ACTIVATIONS = ("relu", "tanh")


def _is_int(value) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _is_number(value) -> bool:
    return (isinstance(value, (int, float)) and not isinstance(value, bool)) and math.isfinite(
        value
    )


def _require(name: str, value, is_type, expected: str, in_range=lambda v: True) -> None:
    """Raise ConfigError unless ``value`` has the type and lies in the range expected."""
    if not is_type(value) or not in_range(value):
        raise ConfigError(f"{name} must be {expected}, got {value!r}")


class ConfigError(ValueError):
    """Invalid configuration (the CLI exits with status 2)."""


@dataclass
class TrainConfig:
    """Everything that determines a training run. Defaults train a small VAE on digits."""

    dataset: str = "digits"  # bundled with scikit-learn: works offline, trains in seconds
    data_dir: str | None = None  # mnist: folder of IDX files; file: the .npy/.npz array
    binarize: str = "none"  # none | static | dynamic; see vaebook.data
    test_fraction: float = 0.2  # held-out share for digits/ppca (MNIST has its own split)
    model: str = "mlp"  # mlp | linear (linear needs likelihood "gaussian")
    likelihood: str = "bernoulli"  # decoder: bernoulli (logits) | gaussian
    hidden_dims: list[int] | None = None  # None: [128] for 64-dim data, [400] otherwise
    latent_dim: int | None = None  # None: 8 for 64-dim data, 2 for ppca, 20 otherwise
    decoder_std: float | None = None  # gaussian only; None learns one shared std
    activation: str = "relu"  # relu | tanh between the MLP's layers
    epochs: int = 20  # total epochs; resuming continues up to this number
    batch_size: int = 128  # as in the classic PyTorch VAE example
    lr: float = 1e-3  # Adam step size, as in the classic example
    lr_decay: float = 1.0  # the step size of epoch e is lr * lr_decay ** (e - 1)
    beta: float = 1.0  # KL weight in the loss (reported ELBO always uses 1)
    kl_warmup_epochs: int = 0  # beta rises linearly from 0 to beta over these epochs
    train_k: int = 1  # 1: the ELBO; k > 1: the IWAE bound with k samples (beta must be 1)
    analytic_kl: bool = True  # closed-form KL (lower variance) instead of Monte Carlo
    seed: int = 0  # seeds the split, the static binarisation, weights and sampling
    device: str = "auto"  # auto = cuda, then mps, then cpu; or a torch device string
    bf16: bool = False  # bf16 autocast on CUDA (ignored elsewhere; loss stays fp32 logits)
    compile: bool = False  # torch.compile the loss (slow to start; rarely pays on CPU)
    num_threads: int | None = None  # CPU threads; None keeps torch's default (one per core)
    checkpoint_every: int = 1  # epochs between checkpoints; the last epoch always saves
    progress_every: int = 20  # steps between progress-bar updates and NaN checks (syncs)
    eval_k: int = 50  # IWAE samples for the final test-set bound in metrics.json
    out_dir: str = "runs"  # parent of run folders (git-ignored)
    run_name: str | None = None  # None: "<dataset>-<model>-seed<seed>-<timestamp>"
    progress: bool = True  # show a tqdm progress bar on stderr

    @classmethod
    def from_dict(cls, values: dict) -> TrainConfig:
        """Config from a dict (e.g. a JSON file); unknown keys are an error."""
        known = {f.name for f in dataclasses.fields(cls)}
        unknown = sorted(set(values) - known)
        if unknown:
            raise ConfigError(f"unknown config key(s): {', '.join(unknown)}")
        config = cls(**values)
        config.validate()
        return config

    def validate(self) -> None:
        """Raise ConfigError for a value of the wrong type or out of range; checked once,
        here, before any data is loaded (the command line, config files and resumed runs
        all pass through it)."""
        positive = (
            "epochs",
            "batch_size",
            "checkpoint_every",
            "progress_every",
            "eval_k",
            "train_k",
        )
        for name in positive:
            _require(name, getattr(self, name), _is_int, "a positive integer", lambda v: v > 0)
        _require("seed", self.seed, _is_int, "an integer")
        _require(
            "kl_warmup_epochs", self.kl_warmup_epochs, _is_int, "an integer >= 0", lambda v: v >= 0
        )
        for name in ("num_threads", "latent_dim"):
            value = getattr(self, name)
            if value is not None:
                _require(name, value, _is_int, "a positive integer", lambda v: v > 0)
        _require("lr", self.lr, _is_number, "a positive number", lambda v: 0 < v < math.inf)
        _require("lr_decay", self.lr_decay, _is_number, "a number in (0, 1]", lambda v: 0 < v <= 1)
        _require("beta", self.beta, _is_number, "a non-negative number", lambda v: 0 <= v < 1e9)
        _require(
            "test_fraction",
            self.test_fraction,
            _is_number,
            "a number in (0, 1)",
            lambda v: 0 < v < 1,
        )
        if self.decoder_std is not None:
            _require(
                "decoder_std",
                self.decoder_std,
                _is_number,
                "a positive number",
                lambda v: 0 < v < math.inf,
            )
        if self.hidden_dims is not None:
            ok = isinstance(self.hidden_dims, list) and len(self.hidden_dims) > 0
            if not ok or not all(_is_int(h) and h > 0 for h in self.hidden_dims):
                raise ConfigError(
                    f"hidden_dims must be a non-empty list of positive integers, "
                    f"got {self.hidden_dims!r}"
                )
        for name in ("analytic_kl", "bf16", "compile", "progress"):
            _require(name, getattr(self, name), lambda v: isinstance(v, bool), "true or false")
        choices = {
            "dataset": tuple(DATASETS),
            "binarize": BINARIZATIONS,
            "model": MODELS,
            "likelihood": LIKELIHOODS,
            "activation": ACTIVATIONS,
        }
        for name, allowed in choices.items():
            if getattr(self, name) not in allowed:
                raise ConfigError(
                    f"{name} must be one of {', '.join(allowed)}, got {getattr(self, name)!r}"
                )
        if self.model == "linear" and self.likelihood != "gaussian":
            raise ConfigError("the linear VAE needs likelihood 'gaussian'")
        if self.train_k > 1 and (self.beta != 1 or self.kl_warmup_epochs):
            raise ConfigError("train_k > 1 trains the IWAE bound, which has no beta: keep beta 1")
        for name in ("device", "out_dir"):
            _require(name, getattr(self, name), lambda v: isinstance(v, str) and v, "a string")
        if self.data_dir is not None:
            _require("data_dir", self.data_dir, lambda v: isinstance(v, str) and v, "a path")
        if self.run_name is not None:
            name = self.run_name
            if (
                not isinstance(name, str)
                or not name
                or name in (".", "..")
                or any(sep in name for sep in ("/", "\\", "\0"))
            ):
                raise ConfigError(
                    f"run_name must be a plain folder name (no path separators), got {name!r}"
                )

    def resolved_sizes(self, data_dim: int) -> tuple[list[int], int]:
        """(hidden_dims, latent_dim) with the None defaults filled in for this data."""
        hidden = (
            self.hidden_dims
            if self.hidden_dims is not None
            else ([128] if data_dim <= 64 else [400])
        )
        default_latent = 2 if self.dataset == "ppca" else (8 if data_dim <= 64 else 20)
        return list(hidden), self.latent_dim if self.latent_dim is not None else default_latent
