"""A run folder's life, owned by one object, :class:`RunFolder`: named, started (or resumed
from its checkpoint), checkpointed, finished, loaded. The training loop
(:func:`vaebook.vae.train.train`) calls it; the bytes of each file are
:mod:`vaebook.vae.checkpoint`'s, the model is :func:`vaebook.vae.models.build_model`'s.

``<runs_dir>/<run_name>/``::

    config.json             the TrainConfig (written once, when the run starts)
    checkpoint.safetensors  weights, optimizer state, RNG states, epoch, step, device kind
    metrics.jsonl           one JSON line per finished epoch
    model.safetensors       the final weights          } written when
    metrics.json            the final metrics          } the run
    provenance.json         what ran, where, how long  } finishes
    evaluation.json         what ``python -m vaebook evaluate`` found, if it ran
"""

from __future__ import annotations

import json
import platform
import time
from pathlib import Path

import torch

from .. import __version__
from .checkpoint import (
    CheckpointError,
    atomic_write_bytes,
    atomic_write_json,
    load_checkpoint,
    load_weights,
    read_json_lines,
    read_metadata,
    save_checkpoint,
    save_weights,
)
from .config import ConfigError, TrainConfig
from .data import DataSplit, load_dataset
from .devices import device_facts, select_device
from .models import VAE, build_model

__all__ = ["RunFolder", "provenance"]


class RunFolder:
    """The folder of one training run, and everything done to it."""

    CONFIG, CHECKPOINT, HISTORY = "config.json", "checkpoint.safetensors", "metrics.jsonl"
    WEIGHTS, METRICS, PROVENANCE = "model.safetensors", "metrics.json", "provenance.json"
    EVALUATION = "evaluation.json"

    def __init__(self, path: str | Path, config: TrainConfig):
        self.path, self.config = Path(path), config

    # -- naming: nothing is written ------------------------------------------------------
    @classmethod
    def for_config(cls, config: TrainConfig, resume: bool = False) -> RunFolder:
        """The folder ``config`` names (a fresh run without a name gets
        ``<dataset>-<architecture>-seed<seed>-<time>``); refuses to overwrite a run, or to
        resume a folder that holds none. Writes nothing."""
        config.validate()
        if config.run.run_name is None:
            stamp = time.strftime("%Y%m%d-%H%M%S")
            what = f"{config.data.dataset}-{config.model.architecture}-seed{config.run.seed}"
            config = config.replace(run_name=f"{what}-{stamp}")
        path = Path(config.run.runs_dir) / config.run.run_name
        exists = (path / cls.CONFIG).exists()
        if exists and not resume:
            raise ConfigError(
                f"run folder {path} exists; resume it (train --resume {path}) "
                "or pick another --run-name"
            )
        if resume and not exists:
            raise CheckpointError(f"nothing to resume in {path} (config.json missing)")
        return cls(path, config)

    @classmethod
    def open(cls, path: str | Path) -> RunFolder:
        """An existing run folder, with the configuration its config.json holds."""
        path = Path(path)
        file = path / cls.CONFIG
        if not file.is_file():
            raise CheckpointError(f"{path} is not a run folder (config.json missing)")
        try:
            values = json.loads(file.read_text())
        except (ValueError, OSError) as e:  # ValueError: bad JSON, or bytes that are not UTF-8
            raise CheckpointError(f"cannot read {file}: {str(e).splitlines()[0]}") from None
        if not isinstance(values, dict):
            raise CheckpointError(f"{file} must hold a JSON object")
        return cls(path, TrainConfig.from_dict(values))

    # -- the life of a run ------------------------------------------------------------------
    def start(self) -> tuple[int, int, float]:
        """Create the folder with its config; returns ``(epoch, step, wall time) = 0``."""
        try:
            self.path.mkdir(parents=True, exist_ok=True)
        except OSError as e:
            raise CheckpointError(
                f"cannot create the run folder {self.path}: {e.strerror or e}"
            ) from None
        atomic_write_json(self.path / self.CONFIG, self.config.to_dict())
        atomic_write_bytes(self.path / self.HISTORY, b"")
        return 0, 0, 0.0

    def resume_device(self, requested: str) -> torch.device:
        """The device the run resumes on: the kind its checkpoint was made on (a run resumes
        bitwise only there), or ``requested`` if it is of that kind. Another kind, or one
        this machine lacks, is refused before any file is touched, with a command that
        works."""
        if not (self.path / self.CHECKPOINT).is_file():  # killed before its first checkpoint
            return select_device(requested)
        made_on = read_metadata(self.path / self.CHECKPOINT).get("device_type")
        if made_on is None:
            raise CheckpointError(f"{self.path / self.CHECKPOINT} is not a vaebook checkpoint")
        command = f"python -m vaebook train --resume {self.path}"
        try:
            device = select_device(made_on if requested == "auto" else requested)
        except ConfigError:
            if requested.split(":")[0] not in ("auto", made_on):
                raise
            raise ConfigError(
                f"the checkpoint in {self.path} was made on {made_on}, which this machine "
                f"does not have; a run resumes only on the kind of device it was trained "
                f"on: run `{command}` on a machine with {made_on}"
            ) from None
        if device.type != made_on:
            raise ConfigError(
                f"the checkpoint in {self.path} was made on {made_on}, not {device.type}; a "
                f"run resumes only on the kind of device it was trained on: "
                f"`{command} --device {made_on}`"
            )
        return device

    def restore(self, model, optimizer, batch_gen) -> tuple[int, int, float]:
        """Load the last checkpoint into ``model``, ``optimizer``, the RNGs and ``batch_gen``
        and drop the metrics lines of later epochs; returns ``(epoch, step, wall time so
        far)``. A run killed before its first checkpoint starts again from epoch 0.

        Everything is loaded and checked before any file is touched: a checkpoint that does
        not fit the model its config.json describes (edited after training) is refused with
        the folder as it was."""
        if not (self.path / self.CHECKPOINT).is_file():
            self._remove_stale_temp_files()
            atomic_write_bytes(self.path / self.HISTORY, b"")
            return 0, 0, 0.0
        weights, state = load_checkpoint(self.path / self.CHECKPOINT)
        try:
            model.load_state_dict(weights)
            optimizer.load_state_dict(state["optimizer"])
            batch_gen.set_state(state["batch_generator"])
        except (RuntimeError, ValueError, KeyError) as e:
            raise CheckpointError(
                f"the checkpoint in {self.path} does not fit the model its config.json "
                f"describes (was config.json edited after training?): {str(e).splitlines()[0]}"
            ) from None
        torch.set_rng_state(state["torch_rng"])
        if state["cuda_rng"]:  # made on CUDA (resume_device checked that it is here)
            for i, cuda_state in enumerate(state["cuda_rng"][: torch.cuda.device_count()]):
                torch.cuda.set_rng_state(cuda_state, i)
        self._remove_stale_temp_files()
        (self.path / self.WEIGHTS).unlink(missing_ok=True)  # rewritten when the run finishes
        kept = self.history(up_to_epoch=state["epoch"])
        atomic_write_bytes(
            self.path / self.HISTORY, "".join(json.dumps(r) + "\n" for r in kept).encode()
        )
        return state["epoch"], state["step"], kept[-1]["wall_time_s"] if kept else 0.0

    def _remove_stale_temp_files(self) -> None:  # of a writer that was killed
        for stale in self.path.glob(".*.tmp"):
            stale.unlink()

    def append_metrics(self, row: dict) -> None:
        with open(self.path / self.HISTORY, "a") as f:
            f.write(json.dumps(row) + "\n")

    def save_checkpoint(self, model, optimizer, epoch: int, step: int, batch_gen) -> None:
        save_checkpoint(self.path / self.CHECKPOINT, model, optimizer, epoch, step, batch_gen)

    def last_checkpoint(self) -> str:
        """Which checkpoint a stopped run keeps: ``epoch N``, or ``none``."""
        try:
            return f"epoch {read_metadata(self.path / self.CHECKPOINT)['epoch']}"
        except (CheckpointError, KeyError):
            return "none"

    def finish(self, model, metrics: dict, provenance: dict) -> dict:
        """Export the final weights, metrics.json and provenance.json; returns the metrics
        with the folder's path."""
        save_weights(self.path / self.WEIGHTS, model, metrics["epoch"])
        atomic_write_json(self.path / self.METRICS, metrics)
        atomic_write_json(self.path / self.PROVENANCE, provenance)
        return {**metrics, "run_dir": str(self.path)}

    def write_evaluation(self, result: dict) -> None:
        """What ``python -m vaebook evaluate`` found, as evaluation.json."""
        atomic_write_json(self.path / self.EVALUATION, result)

    # -- reading a run ----------------------------------------------------------------------
    def history(self, up_to_epoch: int | None = None) -> list[dict]:
        """The per-epoch metrics lines (up to an epoch)."""
        return read_json_lines(self.path / self.HISTORY, up_to_epoch)

    def load_model(self, data_dim: int, device: str | torch.device = "cpu") -> VAE:
        """The trained model (eval mode, on ``device``): the final weights of a finished run,
        else those of its last checkpoint."""
        model = build_model(self.config.model, data_dim)
        if (self.path / self.WEIGHTS).is_file():
            weights = load_weights(self.path / self.WEIGHTS)
        elif (self.path / self.CHECKPOINT).is_file():
            weights = load_weights(self.path / self.CHECKPOINT, prefix="model.")
        else:
            raise CheckpointError(
                f"no weights in {self.path} ({self.WEIGHTS} and {self.CHECKPOINT} missing)"
            )
        try:
            model.load_state_dict(weights)
        except RuntimeError as e:
            raise CheckpointError(
                f"the weights in {self.path} do not fit the model its config.json describes: "
                f"{str(e).splitlines()[0]}"
            ) from None
        return model.to(device).eval()

    def load(self, device: str | torch.device = "cpu") -> tuple[VAE, DataSplit]:
        """The trained model (eval mode, on ``device``) and the run's data split."""
        data = load_dataset(self.config.data)
        return self.load_model(data.data_dim, device), data


def provenance(
    config: TrainConfig, device: torch.device, wall: float, bf16: bool, resumed_from: int | None
) -> dict:
    """What actually ran: the device (and GPU facts), versions, seed, epochs, wall time."""
    return {
        **device_facts(device),
        "torch_version": torch.__version__,
        "vaebook_version": __version__,
        "python_version": platform.python_version(),
        "seed": config.run.seed,
        "epochs": config.optim.epochs,
        "wall_time_s": wall,
        "bf16_autocast": bf16,
        "compiled": config.run.compile,
        "binarization": config.data.binarization,
        "resumed_from_epoch": resumed_from,
    }
