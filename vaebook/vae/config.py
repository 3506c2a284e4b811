"""Training configuration: the only lists of data set, model and likelihood names, and
:class:`TrainConfig`, validated in one place (:meth:`TrainConfig.validate`).

Imports neither torch nor NumPy, so the command line can check its arguments before the
heavy imports.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass

__all__ = ["DATASETS", "BINARIZATIONS", "MODELS", "LIKELIHOODS", "ConfigError", "TrainConfig"]

DATASETS = {
    "digits": "scikit-learn's bundled 8x8 digits (1797 x 64), scaled to [0, 1]; works offline",
    "mnist": "MNIST 28x28 (60000 + 10000 x 784) from the four IDX files in --data-dir",
    "ppca": "synthetic data from a known linear-Gaussian model (exact log-likelihood available)",
}
BINARIZATIONS = ("none", "static", "dynamic")
MODELS = ("mlp", "linear")
LIKELIHOODS = ("bernoulli", "gaussian")


class ConfigError(ValueError):
    """Invalid configuration (the CLI exits with status 2)."""


@dataclass
class TrainConfig:
    """Everything that determines a training run. Defaults train a small VAE on digits."""

    dataset: str = "digits"  # bundled with scikit-learn: works offline, trains in seconds
    data_dir: str | None = None  # folder with the MNIST IDX files (dataset "mnist" only)
    binarize: str = "none"  # none | static | dynamic; see vaebook.data
    test_fraction: float = 0.2  # held-out share for digits/ppca (MNIST has its own split)
    model: str = "mlp"  # mlp | linear (linear needs likelihood "gaussian")
    likelihood: str = "bernoulli"  # decoder: bernoulli (logits) | gaussian
    hidden_dims: list[int] | None = None  # None: [128] for 64-dim data, [400] otherwise
    latent_dim: int | None = None  # None: 8 for 64-dim data, 2 for ppca, 20 otherwise
    decoder_std: float | None = None  # gaussian only; None learns one shared std
    epochs: int = 20  # total epochs; resuming continues up to this number
    batch_size: int = 128  # as in the classic PyTorch VAE example
    lr: float = 1e-3  # Adam step size, as in the classic example
    beta: float = 1.0  # KL weight in the loss (reported ELBO always uses 1)
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
        """Raise ConfigError for values that cannot work (checked before any data is loaded)."""
        positive = ("epochs", "batch_size", "checkpoint_every", "progress_every", "eval_k")
        for name in positive:
            value = getattr(self, name)
            if not isinstance(value, int) or isinstance(value, bool) or value <= 0:
                raise ConfigError(f"{name} must be a positive integer, got {value!r}")
        if self.dataset not in DATASETS:
            raise ConfigError(f"unknown dataset {self.dataset!r}; known: {', '.join(DATASETS)}")
        if self.binarize not in BINARIZATIONS:
            raise ConfigError(
                f"binarize must be one of {', '.join(BINARIZATIONS)}, got {self.binarize!r}"
            )
        if self.model not in MODELS or self.likelihood not in LIKELIHOODS:
            raise ConfigError(f"unknown model/likelihood {self.model!r}/{self.likelihood!r}")
        if self.model == "linear" and self.likelihood != "gaussian":
            raise ConfigError("the linear VAE needs likelihood 'gaussian'")
        if not (isinstance(self.lr, (int, float)) and self.lr > 0):
            raise ConfigError(f"lr must be positive, got {self.lr!r}")
        if self.latent_dim is not None and self.latent_dim <= 0:
            raise ConfigError(f"latent_dim must be positive, got {self.latent_dim!r}")

    def resolved_sizes(self, data_dim: int) -> tuple[list[int], int]:
        """(hidden_dims, latent_dim) with the None defaults filled in for this data."""
        hidden = (
            self.hidden_dims
            if self.hidden_dims is not None
            else ([128] if data_dim <= 64 else [400])
        )
        default_latent = 2 if self.dataset == "ppca" else (8 if data_dim <= 64 else 20)
        return list(hidden), self.latent_dim if self.latent_dim is not None else default_latent

