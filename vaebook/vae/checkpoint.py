"""Run folders and checkpoints: atomic writes, safetensors weights, trainer state,
metrics lines, provenance, and loading a finished run.

Run folder ``<out_dir>/<run_name>/``::

    config.json        the TrainConfig (written once, atomically)
    checkpoint.safetensors  weights, optimizer state, RNG states, epoch and step: one file
    model.safetensors  the final weights (written when the run finishes)
    metrics.jsonl      one JSON line per finished epoch
    metrics.json       final metrics (after the last epoch)
    provenance.json    device, torch and vaebook versions, seed, epochs, wall time

Every file is written to a temporary name, fsynced and moved into place with
``os.replace``, so a killed run leaves either the old or the new file, never a
partial one. Everything a resume needs is in one file, so a kill at any instant leaves the
previous checkpoint or the new one, never a mix. Nothing is unpickled.
"""

from __future__ import annotations

import json
import os
import platform
from pathlib import Path

import torch
from safetensors import SafetensorError, safe_open
from safetensors.torch import load_file, save

from .. import __version__
from .config import TrainConfig
from .data import DataSplit, load_dataset
from .models import VAE, build_model

CHECKPOINT = "checkpoint.safetensors"  # everything a resume needs, in one atomic file
WEIGHTS = "model.safetensors"  # the final weights alone, written when a run finishes


class CheckpointError(ValueError):
    """Missing, unreadable, truncated or inconsistent checkpoint, or a run folder that
    cannot be written (CLI exit status 2)."""


def atomic_write_bytes(path: Path, data: bytes) -> None:
    """Write ``data`` to ``path`` via a fsynced temp file and os.replace: a kill at any
    instant leaves the old file or the new one. On failure (a full disk, a read-only
    folder) the temp file is removed and a one-line CheckpointError raised."""
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    try:
        with open(tmp, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except OSError as e:
        tmp.unlink(missing_ok=True)
        raise CheckpointError(f"cannot write {path}: {e.strerror or e}") from None


def atomic_write_json(path: Path, obj) -> None:
    atomic_write_bytes(path, (json.dumps(obj, indent=2) + "\n").encode())


def save_checkpoint(
    run_dir: Path, model, optimizer, epoch: int, step: int, batch_gen: torch.Generator
) -> None:
    """Write checkpoint.safetensors atomically: weights (``model.*``), optimizer tensors
    (``optimizer.<param>.<name>``), RNG states (``rng.*``) and, in its metadata, the epoch,
    the step, the kind of device it was made on and the optimizer's hyper-parameters. One
    file, so weights and trainer state can never come from different epochs."""
    tensors = {f"model.{k}": v.detach().cpu().contiguous() for k, v in model.state_dict().items()}
    opt = optimizer.state_dict()
    scalars = {}
    for param, entry in opt["state"].items():
        for name, value in entry.items():
            if torch.is_tensor(value):
                tensors[f"optimizer.{param}.{name}"] = value.detach().cpu().contiguous()
            else:
                scalars[f"{param}.{name}"] = value
    tensors["rng.torch"] = torch.get_rng_state()
    tensors["rng.batch_generator"] = batch_gen.get_state().cpu()
    device_type = batch_gen.device.type
    cuda_states = torch.cuda.get_rng_state_all() if device_type == "cuda" else []
    for i, cuda_state in enumerate(cuda_states):
        tensors[f"rng.cuda.{i}"] = cuda_state
    metadata = {
        "epoch": str(epoch),
        "step": str(step),
        "device_type": device_type,
        "cuda_devices": str(len(cuda_states)),
        "optimizer_param_groups": json.dumps(opt["param_groups"]),
        "optimizer_scalars": json.dumps(scalars),
    }
    atomic_write_bytes(run_dir / CHECKPOINT, save(tensors, metadata=metadata))


def _read_safetensors(path: Path) -> tuple[dict[str, torch.Tensor], dict[str, str]]:
    try:
        with safe_open(str(path), framework="pt") as f:
            metadata = f.metadata() or {}
        return load_file(str(path)), metadata
    except (SafetensorError, OSError, ValueError, RuntimeError) as e:
        raise CheckpointError(
            f"cannot read {path} (truncated or corrupt?): {str(e).splitlines()[0]}"
        ) from None


def load_weights(run_dir: Path) -> tuple[dict[str, torch.Tensor], int]:
    """The weights of a run and their epoch: model.safetensors of a finished run, else those
    of its last checkpoint; CheckpointError if absent or unreadable."""
    for name, prefix in ((WEIGHTS, ""), (CHECKPOINT, "model.")):
        if (run_dir / name).is_file():
            tensors, metadata = _read_safetensors(run_dir / name)
            weights = {k[len(prefix) :]: v for k, v in tensors.items() if k.startswith(prefix)}
            return weights, int(metadata.get("epoch", -1))
    raise CheckpointError(f"no checkpoint in {run_dir} ({WEIGHTS} and {CHECKPOINT} missing)")


def checkpoint_device_type(run_dir: Path) -> str | None:
    """The kind of device (``cpu``, ``cuda``) the run's checkpoint was made on, read from its
    metadata alone; None when the run has no checkpoint yet."""
    path = run_dir / CHECKPOINT
    if not path.is_file():
        return None
    try:
        with safe_open(str(path), framework="pt") as f:
            metadata = f.metadata() or {}
    except (SafetensorError, OSError, ValueError, RuntimeError) as e:
        raise CheckpointError(
            f"cannot read {path} (truncated or corrupt?): {str(e).splitlines()[0]}"
        ) from None
    if "device_type" not in metadata:
        raise CheckpointError(f"{path} is not a vaebook checkpoint (missing 'device_type')")
    return metadata["device_type"]


def load_checkpoint(run_dir: Path) -> tuple[dict[str, torch.Tensor], dict]:
    """(weights, trainer state) from checkpoint.safetensors; CheckpointError if absent or
    corrupt. The state holds ``epoch``, ``step``, ``optimizer`` (a state dict),
    ``torch_rng``, ``cuda_rng``, ``batch_generator`` and ``device_type``."""
    path = run_dir / CHECKPOINT
    if not path.is_file():
        raise CheckpointError(f"no checkpoint in {run_dir} ({CHECKPOINT} missing)")
    tensors, metadata = _read_safetensors(path)
    try:
        optimizer_state: dict[int, dict] = {}
        for key, value in tensors.items():
            if key.startswith("optimizer."):
                _, param, name = key.split(".", 2)
                optimizer_state.setdefault(int(param), {})[name] = value
        for key, value in json.loads(metadata["optimizer_scalars"]).items():
            param, name = key.split(".", 1)
            optimizer_state.setdefault(int(param), {})[name] = value
        state = {
            "epoch": int(metadata["epoch"]),
            "step": int(metadata["step"]),
            "optimizer": {
                "state": optimizer_state,
                "param_groups": json.loads(metadata["optimizer_param_groups"]),
            },
            "torch_rng": tensors["rng.torch"],
            "cuda_rng": [tensors[f"rng.cuda.{i}"] for i in range(int(metadata["cuda_devices"]))],
            "batch_generator": tensors["rng.batch_generator"],
            "device_type": metadata["device_type"],
        }
    except (KeyError, ValueError, json.JSONDecodeError) as e:
        raise CheckpointError(f"{path} is not a vaebook checkpoint (missing or bad {e})") from None
    weights = {k[len("model.") :]: v for k, v in tensors.items() if k.startswith("model.")}
    return weights, state


def save_weights(run_dir: Path, model, epoch: int) -> None:
    """The final weights alone, as model.safetensors (what a finished run exports)."""
    weights = {k: v.detach().cpu().contiguous() for k, v in model.state_dict().items()}
    atomic_write_bytes(run_dir / WEIGHTS, save(weights, metadata={"epoch": str(epoch)}))


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
    except (ValueError, OSError) as e:  # ValueError: bad JSON, or bytes that are not UTF-8
        raise CheckpointError(f"cannot read {path}: {str(e).splitlines()[0]}") from None
    if not isinstance(values, dict):
        raise CheckpointError(f"{path} must hold a JSON object")
    return TrainConfig.from_dict(values)


def model_for(config: TrainConfig, data_dim: int) -> VAE:
    hidden, latent = config.resolved_sizes(data_dim)
    return build_model(
        config.model,
        data_dim,
        hidden,
        latent,
        config.likelihood,
        config.decoder_std,
        config.activation,
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


def device_facts(device: torch.device) -> dict:
    """What the trainer ran on: the device's name and, on CUDA, the GPU, the CUDA and driver
    versions and whether float32 matrix products may use TF32 (None on the CPU)."""
    facts = {"gpu_name": None, "cuda_version": None, "gpu_driver_version": None, "tf32": None}
    if device.type == "cuda":
        facts |= {
            "gpu_name": torch.cuda.get_device_name(device),
            "cuda_version": torch.version.cuda,
            "gpu_driver_version": gpu_driver_version(),
            # "highest" keeps float32 products in float32; "high"/"medium" allow TF32/bf16
            "tf32": torch.get_float32_matmul_precision() != "highest",
        }
        name = facts["gpu_name"]
    else:
        cpu = platform.processor() or platform.machine()
        name = f"{device.type} ({cpu}, {torch.get_num_threads()} threads)"
    return {"device": str(device), "device_name": name, **facts}


def gpu_driver_version() -> str | None:
    """The NVIDIA driver's version from ``nvidia-smi``, or None where it cannot be read."""
    import subprocess

    try:
        out = subprocess.run(
            ["nvidia-smi", "--query-gpu=driver_version", "--format=csv,noheader"],
            capture_output=True,
            text=True,
            timeout=20,
        )
    except (OSError, subprocess.SubprocessError):
        return None
    lines = out.stdout.strip().splitlines()
    return lines[0].strip() if out.returncode == 0 and lines else None


def provenance(
    config: TrainConfig, device: torch.device, wall: float, bf16: bool, resumed_from: int | None
) -> dict:
    """What actually ran: the device that trained, versions, seed, epochs, wall time."""
    return {
        **device_facts(device),
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
