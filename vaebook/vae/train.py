"""The training loop (:func:`train`) and the step it repeats (:func:`make_train_step`).

Data live on the device and batches are index slices; the loss is
:func:`vaebook.vae.objectives.elbo_terms`, the objective the book checks. Run-folder and
checkpoint I/O are in :mod:`vaebook.vae.checkpoint`. Resuming restores the global torch
RNG, the batch generator, the optimizer and the epoch counter, so on the CPU a resumed run
is bitwise identical to an uninterrupted one.
"""

from __future__ import annotations

import dataclasses
import json
import math
import random
import time
from dataclasses import asdict
from pathlib import Path

import numpy as np
import torch

from .checkpoint import (
    CHECKPOINT,
    WEIGHTS,
    CheckpointError,
    atomic_write_bytes,
    checkpoint_device_type,
    atomic_write_json,
    load_checkpoint,
    model_for,
    provenance,
    read_metrics_lines,
    save_checkpoint,
    save_weights,
)
from .config import ConfigError, TrainConfig
from .data import load_dataset
from .models import VAE
from .objectives import active_units, elbo_terms, iwae_bound, iwae_terms


class TrainingDiverged(RuntimeError):
    """The loss or the weights became NaN/inf; the last good checkpoint is kept."""


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
    available = {
        "cpu": True,
        "cuda": torch.cuda.is_available(),
        "mps": getattr(torch.backends, "mps", None) is not None
        and torch.backends.mps.is_available(),
    }
    if not available.get(device.type, False):
        usable = ", ".join(["auto"] + [k for k, ok in available.items() if ok])
        raise ConfigError(f"device {name!r} is not available here; use one of: {usable}")
    if (
        device.type == "cuda"
        and device.index is not None
        and device.index >= torch.cuda.device_count()
    ):
        raise ConfigError(f"device {name!r}: only {torch.cuda.device_count()} CUDA device(s)")
    return device


def seed_everything(seed: int) -> None:
    """Seed Python, NumPy and torch (all devices)."""
    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)


def make_optimizer(model: torch.nn.Module, lr: float) -> torch.optim.Adam:
    """Adam with the fused kernel where torch has one for the device, else foreach."""
    try:
        return torch.optim.Adam(model.parameters(), lr=lr, fused=True)
    except (RuntimeError, ValueError):
        return torch.optim.Adam(model.parameters(), lr=lr, foreach=True)


# -- checkpoints -----------------------------------------------------------------


# -- loading a run ---------------------------------------------------------------


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
    train_k: int = 1,
):
    """One optimisation step on a batch: ``step(x (B, D), beta=None) -> (loss,
    reconstruction, kl)``, batch means, shape (3,). ``beta`` overrides the KL weight for this
    step (KL warm-up). ``train_k > 1`` minimises the IWAE bound with ``train_k`` samples
    instead of the ELBO (:func:`~vaebook.vae.objectives.iwae_terms`).

    No host sync: the returned tensor stays on the device. ``bf16`` runs the step under a
    bfloat16 autocast, which lowers only the networks' matrix products: ``elbo_terms``
    promotes the encoder's outputs and the decoder's logits (or mean) to float32, so the
    sampling noise ``eps``, ``z``, the KL and the log-likelihoods are float32 (checked by
    ``tests/test_objectives.py::test_bf16_autocast_keeps_noise_kl_and_likelihood_float32``).
    """

    def loss_fn(xb, beta):  # xb: (B, D)
        if train_k > 1:
            bound, terms = iwae_terms(model, xb, train_k)  # (B,), ELBO terms of the same draws
            loss = -bound.mean()
        else:
            terms = elbo_terms(model, xb, beta, analytic_kl)
            loss = terms.loss
        return loss, terms.reconstruction.detach().mean(), terms.kl.detach().mean()

    if compile:
        loss_fn = torch.compile(loss_fn)
    device_type = next(model.parameters()).device.type

    def step(xb: torch.Tensor, step_beta: float | None = None) -> torch.Tensor:
        with torch.autocast(device_type, dtype=torch.bfloat16, enabled=bf16):
            loss, recon, kl = loss_fn(xb, beta if step_beta is None else step_beta)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
        return torch.stack([loss.detach(), recon, kl]).float()  # (3,)

    return step


def default_run_name(config: TrainConfig) -> str:
    return f"{config.dataset}-{config.model}-seed{config.seed}-{time.strftime('%Y%m%d-%H%M%S')}"


def train(config: TrainConfig, resume: bool = False) -> dict:
    """Train (or resume) a run; returns the final metrics (also written to metrics.json)."""
    config, run_dir = open_run_folder(config, resume)
    if config.num_threads:
        torch.set_num_threads(config.num_threads)
    device = resume_device(run_dir, config.device) if resume else select_device(config.device)
    seed_everything(config.seed)
    data = load_dataset(
        config.dataset, config.data_dir, config.binarize, config.seed, config.test_fraction
    )
    n_train = data.train.shape[0]
    if config.batch_size > n_train:
        raise ConfigError(
            f"batch size {config.batch_size} is larger than the training set ({n_train})"
        )
    train_x, test_x = data.train.to(device), data.test.to(device)  # (N, D), (N_test, D)
    model = model_for(config, data.data_dim).to(device)
    optimizer = make_optimizer(model, config.lr)
    batch_gen = torch.Generator(device=device).manual_seed(config.seed)
    start_epoch, step, wall_before = (
        restore_checkpoint(run_dir, model, optimizer, batch_gen)
        if resume
        else start_run_folder(run_dir, config)
    )
    use_bf16 = config.bf16 and device.type == "cuda"
    train_step = make_train_step(
        model, optimizer, config.beta, config.analytic_kl, use_bf16, config.compile, config.train_k
    )
    steps_per_epoch = math.ceil(n_train / config.batch_size)
    bar = progress_bar(config, steps_per_epoch, start_epoch)
    t0, metrics = time.perf_counter(), {}
    try:
        for epoch in range(start_epoch + 1, config.epochs + 1):
            model.train()
            for group in optimizer.param_groups:  # a function of the epoch: resumes exactly
                group["lr"] = config.lr * config.lr_decay ** (epoch - 1)
            beta = (
                config.beta * min(1.0, epoch / config.kl_warmup_epochs)
                if config.kl_warmup_epochs
                else config.beta
            )
            x = (
                torch.bernoulli(train_x, generator=batch_gen)
                if config.binarize == "dynamic"
                else train_x
            )
            perm = torch.randperm(n_train, generator=batch_gen, device=device)  # (N,)
            sums = torch.zeros(3, device=device)  # loss, reconstruction, kl summed over steps
            for i, idx in enumerate(perm.split(config.batch_size)):
                sums += train_step(x[idx], beta)  # idx: (B,)
                step += 1
                if (i + 1) % config.progress_every == 0 or i + 1 == steps_per_epoch:
                    done = (epoch - 1) * steps_per_epoch + i + 1
                    report_progress(bar, sums[0].item() / (i + 1), epoch, step, done)  # syncs
            if not all(torch.isfinite(p).all() for p in model.parameters()):
                raise TrainingDiverged(f"weights became non-finite in epoch {epoch}")
            loss, recon, kl = (sums / steps_per_epoch).tolist()
            metrics = {
                "epoch": epoch,
                "step": step,
                "binarization": config.binarize,
                "beta": beta,
                "heldout_binarization_seed": data.info.get("test_binarization_seed"),
                "train_loss": loss,
                "train_elbo": recon - kl,
                "train_reconstruction": recon,
                "train_kl": kl,
                **evaluate_elbo(model, test_x, seed=config.seed + epoch),
                **exact_log_likelihood(model, test_x),
                "wall_time_s": wall_before + time.perf_counter() - t0,
            }
            append_metrics_line(run_dir, metrics)
            if epoch % config.checkpoint_every == 0 or epoch == config.epochs:
                save_checkpoint(run_dir, model, optimizer, epoch, step, batch_gen)
    except TrainingDiverged as e:
        raise TrainingDiverged(
            f"{e}; stopped, last good checkpoint kept in {run_dir} ({last_checkpoint(run_dir)})"
        ) from None
    finally:
        bar.close()
    wall = wall_before + time.perf_counter() - t0
    return finish_run(
        config,
        run_dir,
        model,
        test_x,
        metrics,
        device,
        wall,
        use_bf16,
        resumed_from=start_epoch if resume else None,
    )


def exact_log_likelihood(model: VAE, x: torch.Tensor) -> dict[str, float]:
    """``{"test_exact_log_likelihood": mean log p(x)}`` for a model whose marginal is exact
    (the linear VAE), else ``{}``."""
    if not hasattr(model, "exact_log_likelihood"):
        return {}
    with torch.no_grad():
        return {"test_exact_log_likelihood": model.exact_log_likelihood(x).mean().item()}


# -- the pieces train() calls, in the order it calls them -------------------------------
def open_run_folder(config: TrainConfig, resume: bool) -> tuple[TrainConfig, Path]:
    """Validate ``config`` and name the run; refuse to overwrite or to resume nothing."""
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
    return config, run_dir


def resume_device(run_dir: Path, requested: str) -> torch.device:
    """The device a run resumes on: the kind its checkpoint was made on (a run resumes bitwise
    only there), or ``requested`` if it is of that kind. Refused, before any file of the run is
    touched, with a command that works: another kind of device, or one this machine lacks."""
    made_on = checkpoint_device_type(run_dir)
    if made_on is None:  # killed before its first checkpoint: nothing to match
        return select_device(requested)
    if requested == "auto":
        requested = made_on
    try:
        device = select_device(requested)
    except ConfigError:
        if requested.split(":")[0] != made_on:
            raise
        raise ConfigError(
            f"the checkpoint in {run_dir} was made on {made_on}, which this machine does not "
            f"have; a run resumes only on the kind of device it was trained on: run "
            f"`python -m vaebook train --resume {run_dir}` on a machine with {made_on}"
        ) from None
    if device.type != made_on:
        raise ConfigError(
            f"the checkpoint in {run_dir} was made on {made_on}, not {device.type}; a run "
            f"resumes only on the kind of device it was trained on: "
            f"`python -m vaebook train --resume {run_dir} --device {made_on}`"
        )
    return device


def start_run_folder(run_dir: Path, config: TrainConfig) -> tuple[int, int, float]:
    """Create the folder of a new run with its config; returns ``(epoch, step, wall) = 0``."""
    try:
        run_dir.mkdir(parents=True, exist_ok=True)
    except OSError as e:
        raise CheckpointError(
            f"cannot create the run folder {run_dir}: {e.strerror or e}"
        ) from None
    atomic_write_json(run_dir / "config.json", asdict(config))
    atomic_write_bytes(run_dir / "metrics.jsonl", b"")
    return 0, 0, 0.0


def restore_checkpoint(run_dir: Path, model, optimizer, batch_gen) -> tuple[int, int, float]:
    """Load the last checkpoint into ``model``, ``optimizer``, the RNGs and ``batch_gen``;
    drop metrics lines of epochs after it. Returns ``(epoch, step, wall time so far)``; a
    run killed before its first checkpoint starts again from epoch 0.

    Everything is loaded and checked before any file is touched: a checkpoint that does not
    fit the configured model (a config.json edited after training) or the device is refused
    with the run folder as it was."""
    if not (run_dir / CHECKPOINT).is_file():  # killed before its first checkpoint: start over
        for stale in run_dir.glob(".*.tmp"):  # temp files of a writer that was killed
            stale.unlink()
        atomic_write_bytes(run_dir / "metrics.jsonl", b"")
        return 0, 0, 0.0
    weights, state = load_checkpoint(run_dir)
    try:
        model.load_state_dict(weights)
        optimizer.load_state_dict(state["optimizer"])
    except (RuntimeError, ValueError, KeyError) as e:
        raise CheckpointError(
            f"the checkpoint in {run_dir} does not fit the model its config.json describes "
            f"(was config.json edited after training?): {str(e).splitlines()[0]}"
        ) from None
    try:
        batch_gen.set_state(state["batch_generator"])
    except RuntimeError:  # resume_device() refuses this before; a forged checkpoint gets here
        raise CheckpointError(
            f"the batch generator state in {run_dir} is not one of a "
            f"{batch_gen.device.type} generator"
        ) from None
    torch.set_rng_state(state["torch_rng"])
    if state["cuda_rng"] and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda_rng"])
    for stale in run_dir.glob(".*.tmp"):  # temp files of a writer that was killed
        stale.unlink()
    (run_dir / WEIGHTS).unlink(missing_ok=True)  # a finished run's export; rewritten at the end
    kept = read_metrics_lines(run_dir / "metrics.jsonl", up_to_epoch=state["epoch"])
    atomic_write_bytes(
        run_dir / "metrics.jsonl", "".join(json.dumps(r) + "\n" for r in kept).encode()
    )
    return state["epoch"], state["step"], kept[-1]["wall_time_s"] if kept else 0.0


def progress_bar(config: TrainConfig, steps_per_epoch: int, start_epoch: int):
    from tqdm import tqdm

    return tqdm(
        total=config.epochs * steps_per_epoch,
        initial=start_epoch * steps_per_epoch,
        disable=not config.progress,
        desc=config.run_name,
        unit="step",
        dynamic_ncols=True,
    )


def report_progress(bar, running_loss: float, epoch: int, step: int, done: int) -> None:
    """Show the running ELBO and ``done`` steps in all; raise TrainingDiverged if the loss is
    not finite."""
    if not math.isfinite(running_loss):
        raise TrainingDiverged(f"loss became {running_loss} in epoch {epoch} (step {step})")
    bar.set_postfix(elbo=f"{-running_loss:.2f}", refresh=False)
    bar.update(done - bar.n)


def append_metrics_line(run_dir: Path, metrics: dict) -> None:
    with open(run_dir / "metrics.jsonl", "a") as f:
        f.write(json.dumps(metrics) + "\n")


def last_checkpoint(run_dir: Path) -> str:
    """Which checkpoint a stopped run keeps: the epoch its weights file records."""
    try:
        return f"epoch {load_checkpoint(run_dir)[1]['epoch']}"
    except CheckpointError:
        return "none"


def finish_run(config, run_dir, model, test_x, metrics, device, wall, bf16, resumed_from) -> dict:
    """IWAE-k on the test set, then metrics.json and provenance.json."""
    with torch.random.fork_rng(devices=[device] if device.type == "cuda" else []):
        torch.manual_seed(config.seed)
        with torch.no_grad():
            iwae = torch.cat(
                [iwae_bound(model.eval(), xb, config.eval_k) for xb in test_x.split(256)]
            ).mean()
    if not metrics:  # resumed a run that had already finished
        metrics = read_metrics_lines(run_dir / "metrics.jsonl")[-1]
    final = {
        **metrics,
        f"test_iwae_{config.eval_k}": iwae.item(),
        "dataset": config.dataset,
        "binarization": config.binarize,
    }
    save_weights(run_dir, model, final["epoch"])
    atomic_write_json(run_dir / "metrics.json", final)
    atomic_write_json(
        run_dir / "provenance.json",
        provenance(config, device, wall, bf16, resumed_from=resumed_from),
    )
    return {**final, "run_dir": str(run_dir)}
