"""Training loop: data on the device, index batches, atomic checkpoints, exact resume.

Run folder ``<out_dir>/<run_name>/``::

    config.json        the TrainConfig (written once, atomically)
    model.safetensors  weights; metadata records the epoch they belong to
    trainer_state.pt   epoch, step, optimizer state, torch + batch-generator RNG states
    metrics.jsonl      one JSON line per finished epoch
    metrics.json       final metrics (after the last epoch)
    provenance.json    device, torch and vaebook versions, seed, epochs, wall time

Every file is written to a temporary name, fsynced and moved into place with
``os.replace``, so a killed run leaves either the old or the new file, never a
partial one. The weights file is replaced after the trainer state; both carry
the epoch and :func:`load_checkpoint` refuses a pair that disagrees.
Resuming restores the global torch RNG, the batch generator, the optimizer and
the epoch counter, so on the CPU a resumed run is bitwise identical to an
uninterrupted one.
"""

from __future__ import annotations

import dataclasses
import io
import json
import math
import os
import platform
import random
import time
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
import torch
from safetensors import SafetensorError
from safetensors.torch import load_file, save

from . import __version__
from .data import BINARIZATIONS, DATASETS, DataSplit, load_dataset
from .models import VAE, build_model
from .objectives import active_units, elbo_terms, iwae_bound


class ConfigError(ValueError):
    """Invalid configuration (the CLI exits with status 2)."""


class CheckpointError(ValueError):
    """Missing, unreadable, truncated or inconsistent checkpoint (CLI exit status 2)."""


class TrainingDiverged(RuntimeError):
    """The loss or the weights became NaN/inf; the last good checkpoint is kept."""


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
        if self.model not in ("mlp", "linear") or self.likelihood not in ("bernoulli", "gaussian"):
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


# -- small utilities -----------------------------------------------------------
def select_device(name: str = "auto") -> torch.device:
    """CUDA if available, then MPS, then CPU; an explicit name must be available."""
    if name == "auto":
        if torch.cuda.is_available():
            return torch.device("cuda")
        if getattr(torch.backends, "mps", None) is not None and torch.backends.mps.is_available():
            return torch.device("mps")
        return torch.device("cpu")
    try:
        device = torch.device(name)
    except RuntimeError as e:
        raise ConfigError(f"bad device {name!r}: {e}") from None
    if device.type == "cuda" and not torch.cuda.is_available():
        raise ConfigError("device 'cuda' requested but CUDA is not available")
    return device


def seed_everything(seed: int) -> None:
    """Seed Python, NumPy and torch (all devices)."""
    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)


def atomic_write_bytes(path: Path, data: bytes) -> None:
    """Write ``data`` to ``path`` via a fsynced temp file and os.replace."""
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    with open(tmp, "wb") as f:
        f.write(data)
        f.flush()
        os.fsync(f.fileno())
    os.replace(tmp, path)


def atomic_write_json(path: Path, obj) -> None:
    atomic_write_bytes(path, (json.dumps(obj, indent=2) + "\n").encode())


def make_optimizer(model: torch.nn.Module, lr: float) -> torch.optim.Adam:
    """Adam with the fused kernel where torch has one for the device, else foreach."""
    try:
        return torch.optim.Adam(model.parameters(), lr=lr, fused=True)
    except (RuntimeError, ValueError):
        return torch.optim.Adam(model.parameters(), lr=lr, foreach=True)


# -- checkpoints -----------------------------------------------------------------
def save_checkpoint(
    run_dir: Path, model, optimizer, epoch: int, step: int, batch_gen: torch.Generator
) -> None:
    """Write trainer_state.pt, then model.safetensors, each atomically, both tagged with
    ``epoch``."""
    state = {
        "epoch": epoch,
        "step": step,
        "optimizer": optimizer.state_dict(),
        "torch_rng": torch.get_rng_state(),
        "cuda_rng": torch.cuda.get_rng_state_all() if torch.cuda.is_available() else [],
        "batch_generator": batch_gen.get_state(),
    }
    buffer = io.BytesIO()
    torch.save(state, buffer)
    atomic_write_bytes(run_dir / "trainer_state.pt", buffer.getvalue())
    weights = {k: v.detach().cpu().contiguous() for k, v in model.state_dict().items()}
    atomic_write_bytes(run_dir / "model.safetensors", save(weights, metadata={"epoch": str(epoch)}))


def load_weights(run_dir: Path) -> tuple[dict[str, torch.Tensor], int]:
    """Weights and their epoch from model.safetensors; CheckpointError if unreadable."""
    path = run_dir / "model.safetensors"
    if not path.is_file():
        raise CheckpointError(f"no checkpoint in {run_dir} (model.safetensors missing)")
    try:
        from safetensors import safe_open

        with safe_open(str(path), framework="pt") as f:
            epoch = int((f.metadata() or {}).get("epoch", -1))
        return load_file(str(path)), epoch
    except (SafetensorError, OSError, ValueError, RuntimeError) as e:
        raise CheckpointError(
            f"cannot read {path} (truncated or corrupt?): {str(e).splitlines()[0]}"
        ) from None


def load_checkpoint(run_dir: Path) -> tuple[dict[str, torch.Tensor], dict]:
    """(weights, trainer state) from a run folder; CheckpointError if absent, corrupt or
    inconsistent."""
    weights, weights_epoch = load_weights(run_dir)
    path = run_dir / "trainer_state.pt"
    if not path.is_file():
        raise CheckpointError(f"no trainer state in {run_dir} (trainer_state.pt missing)")
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as e:  # torch raises several types for truncated pickles/zips
        raise CheckpointError(
            f"cannot read {path} (truncated or corrupt?): {str(e).splitlines()[0]}"
        ) from None
    if state.get("epoch") != weights_epoch:
        raise CheckpointError(
            f"checkpoint in {run_dir} is inconsistent: weights from epoch {weights_epoch}, "
            f"trainer state from epoch {state.get('epoch')}"
        )
    return weights, state


def read_metrics_lines(path: Path, up_to_epoch: int | None = None) -> list[dict]:
    """Complete JSON lines of metrics.jsonl (a torn last line is dropped), optionally up to
    an epoch."""
    if not path.is_file():
        return []
    rows = []
    for line in path.read_text().splitlines():
        try:
            row = json.loads(line)
        except json.JSONDecodeError:
            continue
        if up_to_epoch is None or row.get("epoch", 0) <= up_to_epoch:
            rows.append(row)
    return rows


# -- loading a run ---------------------------------------------------------------
def load_config(run_dir: Path) -> TrainConfig:
    path = Path(run_dir) / "config.json"
    if not path.is_file():
        raise CheckpointError(f"{run_dir} is not a run folder (config.json missing)")
    try:
        values = json.loads(path.read_text())
    except (json.JSONDecodeError, OSError) as e:
        raise CheckpointError(f"cannot read {path}: {e}") from None
    return TrainConfig.from_dict(values)


def model_for(config: TrainConfig, data_dim: int) -> VAE:
    hidden, latent = config.resolved_sizes(data_dim)
    return build_model(
        config.model, data_dim, hidden, latent, config.likelihood, config.decoder_std
    )


def load_run(
    run_dir: str | Path, device: str | torch.device = "cpu"
) -> tuple[TrainConfig, VAE, DataSplit]:
    """Config, trained model (eval mode, on ``device``) and data split of a run folder."""
    run_dir = Path(run_dir)
    config = load_config(run_dir)
    data = load_dataset(
        config.dataset, config.data_dir, config.binarize, config.seed, config.test_fraction
    )
    model = model_for(config, data.data_dim)
    weights, _ = load_weights(run_dir)
    try:
        model.load_state_dict(weights)
    except RuntimeError as e:
        raise CheckpointError(
            f"weights in {run_dir} do not fit the configured model: {str(e).splitlines()[0]}"
        ) from None
    return config, model.to(device).eval(), data


# -- evaluation ------------------------------------------------------------------
@torch.no_grad()
def evaluate_elbo(model: VAE, x: torch.Tensor, seed: int, chunk: int = 2048) -> dict[str, float]:
    """Test-set ELBO, its terms and active units, drawn with a private RNG (the training RNG
    is untouched)."""
    was_training = model.training
    model.eval()
    with torch.random.fork_rng(devices=[x.device] if x.device.type == "cuda" else []):
        torch.manual_seed(seed)
        terms = [elbo_terms(model, xb) for xb in x.split(chunk)]
        recon = torch.cat([t.reconstruction for t in terms])  # (N,)
        kl = torch.cat([t.kl for t in terms])  # (N,)
    model.train(was_training)
    units, _ = active_units(model, x)
    return {
        "test_elbo": (recon - kl).mean().item(),
        "test_reconstruction": recon.mean().item(),
        "test_kl": kl.mean().item(),
        "active_units": units,
    }


# -- training ----------------------------------------------------------------------
def make_train_step(
    model: VAE,
    optimizer,
    beta: float = 1.0,
    analytic_kl: bool = True,
    bf16: bool = False,
    compile: bool = False,
):
    """One optimisation step on a batch: ``step(x (B, D)) -> (loss, reconstruction, kl)``,
    batch means, shape (3,).

    No host sync: the returned tensor stays on the device. ``bf16`` autocasts the
    forward pass on CUDA; the Bernoulli log-likelihood is computed from logits
    (binary_cross_entropy_with_logits), which autocast keeps in float32.
    """

    def loss_fn(xb):  # xb: (B, D)
        terms = elbo_terms(model, xb, beta, analytic_kl)
        return terms.loss, terms.reconstruction.detach().mean(), terms.kl.detach().mean()

    if compile:
        loss_fn = torch.compile(loss_fn)
    device_type = next(model.parameters()).device.type

    def step(xb: torch.Tensor) -> torch.Tensor:
        with torch.autocast(device_type, dtype=torch.bfloat16, enabled=bf16):
            loss, recon, kl = loss_fn(xb)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
        return torch.stack([loss.detach(), recon, kl]).float()  # (3,)

    return step


def default_run_name(config: TrainConfig) -> str:
    return f"{config.dataset}-{config.model}-seed{config.seed}-{time.strftime('%Y%m%d-%H%M%S')}"


def train(config: TrainConfig, resume: bool = False) -> dict:
    """Train (or resume) a run; returns the final metrics (also written to metrics.json)."""
    from tqdm.auto import tqdm

    config.validate()
    if config.run_name is None:
        config = dataclasses.replace(config, run_name=default_run_name(config))
    run_dir = Path(config.out_dir) / config.run_name
    if not resume and (run_dir / "config.json").exists():
        raise ConfigError(
            f"run folder {run_dir} exists; resume it (train --resume {run_dir}) "
            "or pick another --run-name"
        )
    if resume and not (run_dir / "config.json").exists():
        raise CheckpointError(f"nothing to resume in {run_dir} (config.json missing)")
    if config.num_threads:
        torch.set_num_threads(config.num_threads)
    device = select_device(config.device)
    seed_everything(config.seed)
    data = load_dataset(
        config.dataset, config.data_dir, config.binarize, config.seed, config.test_fraction
    )
    n_train = data.train.shape[0]
    if config.batch_size > n_train:
        raise ConfigError(
            f"batch size {config.batch_size} is larger than the training set ({n_train} examples)"
        )

    train_x, test_x = data.train.to(device), data.test.to(device)  # (N, D), (N_test, D)
    model = model_for(config, data.data_dim).to(device)
    optimizer = make_optimizer(model, config.lr)
    batch_gen = torch.Generator(device=device).manual_seed(config.seed)
    start_epoch, step, wall_before = 0, 0, 0.0
    if resume:
        weights, state = load_checkpoint(run_dir)
        model.load_state_dict(weights)
        optimizer.load_state_dict(state["optimizer"])
        torch.set_rng_state(state["torch_rng"])
        if state["cuda_rng"] and torch.cuda.is_available():
            torch.cuda.set_rng_state_all(state["cuda_rng"])
        batch_gen.set_state(state["batch_generator"])
        start_epoch, step = state["epoch"], state["step"]
        kept = read_metrics_lines(run_dir / "metrics.jsonl", up_to_epoch=start_epoch)
        wall_before = kept[-1]["wall_time_s"] if kept else 0.0
        atomic_write_bytes(
            run_dir / "metrics.jsonl", "".join(json.dumps(r) + "\n" for r in kept).encode()
        )
    else:
        run_dir.mkdir(parents=True, exist_ok=True)
        atomic_write_json(run_dir / "config.json", asdict(config))
        atomic_write_bytes(run_dir / "metrics.jsonl", b"")

    use_bf16 = config.bf16 and device.type == "cuda"
    train_step = make_train_step(
        model, optimizer, config.beta, config.analytic_kl, use_bf16, config.compile
    )
    steps_per_epoch = math.ceil(n_train / config.batch_size)
    bar = tqdm(
        total=config.epochs * steps_per_epoch,
        initial=start_epoch * steps_per_epoch,
        disable=not config.progress,
        desc=config.run_name,
        unit="step",
        dynamic_ncols=True,
    )
    t0 = time.perf_counter()
    metrics: dict = {}
    try:
        for epoch in range(start_epoch + 1, config.epochs + 1):
            model.train()
            epoch_x = (
                torch.bernoulli(train_x, generator=batch_gen)
                if config.binarize == "dynamic"
                else train_x
            )
            perm = torch.randperm(n_train, generator=batch_gen, device=device)  # (N,)
            sums = torch.zeros(3, device=device)  # loss, reconstruction, kl summed over steps
            for i, idx in enumerate(perm.split(config.batch_size)):
                sums += train_step(epoch_x[idx])  # idx: (B,)
                step += 1
                if (i + 1) % config.progress_every == 0 or i + 1 == steps_per_epoch:
                    running = sums[0].item() / (i + 1)  # the only sync in the loop
                    if not math.isfinite(running):
                        raise TrainingDiverged(
                            f"loss became {running} in epoch {epoch} (step {step})"
                        )
                    bar.set_postfix(elbo=f"{-running:.2f}", refresh=False)
                    bar.update((i + 1) - (bar.n - (epoch - 1) * steps_per_epoch))
            if not all(torch.isfinite(p).all() for p in model.parameters()):
                raise TrainingDiverged(f"weights became non-finite in epoch {epoch}")
            mean = (sums / steps_per_epoch).tolist()
            metrics = {
                "epoch": epoch,
                "step": step,
                "binarization": config.binarize,
                "train_loss": mean[0],
                "train_elbo": mean[1] - mean[2],
                "train_reconstruction": mean[1],
                "train_kl": mean[2],
                **evaluate_elbo(model, test_x, seed=config.seed + epoch),
                "wall_time_s": wall_before + time.perf_counter() - t0,
            }
            with open(run_dir / "metrics.jsonl", "a") as f:
                f.write(json.dumps(metrics) + "\n")
            if epoch % config.checkpoint_every == 0 or epoch == config.epochs:
                save_checkpoint(run_dir, model, optimizer, epoch, step, batch_gen)
    except TrainingDiverged as e:
        last = read_metrics_lines(run_dir / "metrics.jsonl")
        kept = (
            f"epoch {last[-1]['epoch']}"
            if (run_dir / "model.safetensors").exists() and last
            else "none"
        )
        raise TrainingDiverged(
            f"{e}; stopped, last good checkpoint kept in {run_dir} ({kept})"
        ) from None
    finally:
        bar.close()

    wall = wall_before + time.perf_counter() - t0
    with torch.random.fork_rng(devices=[device] if device.type == "cuda" else []):
        torch.manual_seed(config.seed)
        with torch.no_grad():
            iwae = (
                torch.cat([iwae_bound(model.eval(), xb, config.eval_k) for xb in test_x.split(256)])
                .mean()
                .item()
            )
    if not metrics:  # resumed a run that had already finished
        metrics = read_metrics_lines(run_dir / "metrics.jsonl")[-1]
    final = {
        **metrics,
        f"test_iwae_{config.eval_k}": iwae,
        "dataset": config.dataset,
        "binarization": config.binarize,
    }
    atomic_write_json(run_dir / "metrics.json", final)
    atomic_write_json(
        run_dir / "provenance.json",
        provenance(config, device, wall, use_bf16, resumed_from=start_epoch if resume else None),
    )
    return {**final, "run_dir": str(run_dir)}


def provenance(
    config: TrainConfig, device: torch.device, wall: float, bf16: bool, resumed_from: int | None
) -> dict:
    """What actually ran: the device that trained, versions, seed, epochs, wall time."""
    if device.type == "cuda":
        name = torch.cuda.get_device_name(device)
    else:
        cpu = platform.processor() or platform.machine()
        name = f"{device.type} ({cpu}, {torch.get_num_threads()} threads)"
    return {
        "device": str(device),
        "device_name": name,
        "torch_version": torch.__version__,
        "vaebook_version": __version__,
        "python_version": platform.python_version(),
        "seed": config.seed,
        "epochs": config.epochs,
        "wall_time_s": wall,
        "bf16_autocast": bf16,
        "compiled": config.compile,
        "binarization": config.binarize,
        "resumed_from_epoch": resumed_from,
    }
