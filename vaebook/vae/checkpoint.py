"""Run folders and checkpoints: atomic writes, safetensors weights, trainer state,
metrics lines, provenance, and loading a finished run.

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
"""

from __future__ import annotations

import io
import json
import os
import platform
from pathlib import Path

import torch
from safetensors import SafetensorError
from safetensors.torch import load_file, save

from .. import __version__
from .config import TrainConfig
from .data import DataSplit, load_dataset
from .models import VAE, build_model


class CheckpointError(ValueError):
    """Missing, unreadable, truncated or inconsistent checkpoint (CLI exit status 2)."""


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

