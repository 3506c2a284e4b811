"""The files of a run, as bytes: atomic writes, the one-file checkpoint, the weights file,
JSON lines. Which file is which, and when each is written, is
:class:`vaebook.vae.run_folder.RunFolder`'s business; nothing here builds a model.

Every file is written to a temporary name, fsynced and moved into place with
``os.replace``, so a killed writer leaves either the old or the new file, never a partial
one. Everything a resume needs is in one checkpoint file, so a kill at any instant leaves
the previous checkpoint or the new one, never a mix. Tensors are safetensors: nothing is
unpickled.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

import torch
from safetensors import SafetensorError, safe_open
from safetensors.torch import load_file, save

__all__ = [
    "CheckpointError",
    "atomic_write_bytes",
    "atomic_write_json",
    "save_checkpoint",
    "read_metadata",
    "load_checkpoint",
    "save_weights",
    "load_weights",
    "read_json_lines",
]


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


def _unreadable(path: Path, e: Exception) -> CheckpointError:
    return CheckpointError(f"cannot read {path} (truncated or corrupt?): {str(e).splitlines()[0]}")


def read_metadata(path: Path) -> dict[str, str]:
    """The metadata of a safetensors file, without reading its tensors."""
    try:
        with safe_open(str(path), framework="pt") as f:
            return f.metadata() or {}
    except (SafetensorError, OSError, ValueError, RuntimeError) as e:
        raise _unreadable(path, e) from None


def _read(path: Path) -> tuple[dict[str, torch.Tensor], dict[str, str]]:
    metadata = read_metadata(path)
    try:
        return load_file(str(path)), metadata
    except (SafetensorError, OSError, ValueError, RuntimeError) as e:
        raise _unreadable(path, e) from None


def save_checkpoint(
    path: Path, model, optimizer, epoch: int, step: int, batch_gen: torch.Generator
) -> None:
    """Write the checkpoint atomically: weights (``model.*``), optimizer tensors
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
    atomic_write_bytes(path, save(tensors, metadata=metadata))


def load_checkpoint(path: Path) -> tuple[dict[str, torch.Tensor], dict]:
    """(weights, trainer state) of a checkpoint; CheckpointError if unreadable or not a
    checkpoint. The state holds ``epoch``, ``step``, ``optimizer`` (a state dict),
    ``torch_rng``, ``cuda_rng``, ``batch_generator`` and ``device_type``."""
    tensors, metadata = _read(path)
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


def save_weights(path: Path, model, epoch: int) -> None:
    """The weights alone (what a finished run exports), with their epoch."""
    weights = {k: v.detach().cpu().contiguous() for k, v in model.state_dict().items()}
    atomic_write_bytes(path, save(weights, metadata={"epoch": str(epoch)}))


def load_weights(path: Path, prefix: str = "") -> dict[str, torch.Tensor]:
    """The tensors of a safetensors file whose names start with ``prefix`` (``model.`` in a
    checkpoint), the prefix removed."""
    tensors, _ = _read(path)
    return {k[len(prefix) :]: v for k, v in tensors.items() if k.startswith(prefix)}


def read_json_lines(path: Path, up_to_epoch: int | None = None) -> list[dict]:
    """The complete JSON lines of a ``.jsonl`` file (a torn last line is dropped), optionally
    those up to an epoch; [] if there is no file."""
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
