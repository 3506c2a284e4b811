"""The training loop (:func:`train`) and the step it repeats (:func:`make_train_step`).

Data live on the device and batches are index slices; the loss is
:func:`vaebook.vae.objectives.elbo_terms`, the objective the book checks. The run folder
(naming, starting, resuming, checkpoints, finishing) is
:class:`~vaebook.vae.run_folder.RunFolder`'s; the step size and the KL weight of each epoch
are functions of the epoch (:func:`~vaebook.vae.config.lr_at`,
:func:`~vaebook.vae.config.beta_at`). Resuming restores the global torch RNG, the batch
generator, the optimizer and the epoch counter, so on one kind of device a resumed run is
bitwise identical to an uninterrupted one.
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass

import torch

from .config import ConfigError, TrainConfig, beta_at, lr_at
from .data import DataSplit, load_dataset
from .devices import seed_everything, select_device
from .evaluate import epoch_test_metrics, iwae_mean
from .models import VAE, build_model
from .objectives import elbo_terms, iwae_terms
from .run_folder import RunFolder, provenance

__all__ = [
    "TrainingDiverged",
    "make_optimizer",
    "set_lr",
    "make_train_step",
    "Setup",
    "set_up",
    "train_epoch",
    "train",
]


class TrainingDiverged(RuntimeError):
    """The loss or the weights became NaN/inf; the last good checkpoint is kept."""


def make_optimizer(model: torch.nn.Module, lr: float) -> torch.optim.Adam:
    """Adam with the fused kernel where torch has one for the device, else foreach."""
    try:
        return torch.optim.Adam(model.parameters(), lr=lr, fused=True)
    except (RuntimeError, ValueError):
        return torch.optim.Adam(model.parameters(), lr=lr, foreach=True)


def set_lr(optimizer: torch.optim.Optimizer, lr: float) -> None:
    """Set the step size of every parameter group (the trainer's schedule is
    :func:`~vaebook.vae.config.lr_at`)."""
    for group in optimizer.param_groups:
        group["lr"] = lr


def make_train_step(
    model: VAE,
    optimizer: torch.optim.Optimizer,
    *,
    beta: float = 1.0,
    analytic_kl: bool = True,
    train_k: int = 1,
    free_bits: float = 0.0,
    bf16: bool = False,
    compile: bool = False,
):
    """One optimisation step on a batch: ``step(x (B, D), beta=None) -> (loss,
    reconstruction, kl)``, batch means, shape (3,). ``beta`` weighs the KL (a step's
    ``beta`` overrides it: KL warm-up). ``train_k > 1`` minimises the IWAE bound with
    ``train_k`` samples instead of the ELBO (:func:`~vaebook.vae.objectives.iwae_terms`);
    ``free_bits > 0`` clamps the KL of each latent dimension from below
    (:func:`~vaebook.vae.objectives.free_bits_kl`).

    No host sync: the returned tensor stays on the device. ``bf16`` runs the step under a
    bfloat16 autocast, which lowers only the networks' matrix products: ``elbo_terms``
    promotes the encoder's outputs and the decoder's logits (or mean) to float32, so the
    sampling noise ``eps``, ``z``, the KL and the log-likelihoods are float32 (checked by
    ``tests/test_objectives.py::test_bf16_autocast_keeps_noise_kl_and_likelihood_float32``).
    ``compile`` compiles the loss with ``torch.compile``.
    """

    def loss_fn(xb, beta):  # xb: (B, D)
        if train_k > 1:
            bound, terms = iwae_terms(model, xb, train_k)  # (B,), ELBO terms of the same draws
            loss = -bound.mean()
        else:
            terms = elbo_terms(model, xb, beta, analytic_kl, free_bits)
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


@dataclass
class Setup:
    """What a training run starts from: the data on the device, the model, its optimizer
    and the generator of batches and binarisations (all seeded from the run's seed)."""

    data: DataSplit
    train_x: torch.Tensor  # (N, D)
    test_x: torch.Tensor  # (N_test, D)
    model: VAE
    optimizer: torch.optim.Adam
    batch_gen: torch.Generator


def set_up(cfg: TrainConfig, device: torch.device, dtype: torch.dtype = torch.float32) -> Setup:
    """Seed everything, load the data, build the model and its optimizer, as every run does."""
    seed_everything(cfg.run.seed)
    data = load_dataset(cfg.data)
    n_train = data.train.shape[0]
    if cfg.optim.batch_size > n_train:
        raise ConfigError(
            f"batch size {cfg.optim.batch_size} is larger than the training set ({n_train})"
        )
    train_x = data.train.to(device, dtype)  # (N, D)
    test_x = data.test.to(device, dtype)  # (N_test, D)
    model = build_model(cfg.model, data.data_dim).to(device, dtype)
    optimizer = make_optimizer(model, lr_at(cfg.optim, 1))
    batch_gen = torch.Generator(device=device).manual_seed(cfg.run.seed)
    return Setup(data, train_x, test_x, model, optimizer, batch_gen)


def train_epoch(setup: Setup, train_step, cfg: TrainConfig, epoch: int, after_step=None) -> dict:
    """One pass over the training set: the epoch's step size and KL weight, a fresh
    binarisation (dynamic), a random order of batches, one ``train_step`` per batch
    (``after_step(i, sums)`` after each, ``sums`` the running sums of loss and terms);
    returns the epoch's mean loss and terms."""
    o, model, train_x = cfg.optim, setup.model, setup.train_x
    model.train()
    set_lr(setup.optimizer, lr_at(o, epoch))
    beta = beta_at(o, epoch)
    n_train = train_x.shape[0]
    dynamic = cfg.data.binarization == "dynamic"
    x = torch.bernoulli(train_x, generator=setup.batch_gen) if dynamic else train_x  # (N, D)
    perm = torch.randperm(n_train, generator=setup.batch_gen, device=train_x.device)  # (N,)
    sums = torch.zeros(3, device=train_x.device)  # loss, reconstruction, KL summed over steps
    for i, idx in enumerate(perm.split(o.batch_size)):  # idx: (B,)
        sums += train_step(x[idx], beta)
        if after_step is not None:
            after_step(i, sums)
    loss, recon, kl = (sums / math.ceil(n_train / o.batch_size)).tolist()
    return {
        "epoch": epoch,
        "beta": beta,
        "train_loss": loss,
        "train_elbo": recon - kl,
        "train_reconstruction": recon,
        "train_kl": kl,
    }


def train(config: TrainConfig, resume: bool = False) -> dict:
    """Train (or resume) the run ``config`` describes; returns its final metrics (also in
    the run folder's metrics.json) and ``run_dir``."""
    folder = RunFolder.for_config(config, resume)  # writes nothing yet
    cfg, o = folder.config, folder.config.optim
    if cfg.run.threads:
        torch.set_num_threads(cfg.run.threads)
    device = folder.resume_device(cfg.run.device) if resume else select_device(cfg.run.device)
    setup = set_up(cfg, device)
    data, model, optimizer, batch_gen = setup.data, setup.model, setup.optimizer, setup.batch_gen
    n_train, test_x = setup.train_x.shape[0], setup.test_x
    start_epoch, step, wall_before = (
        folder.restore(model, optimizer, batch_gen) if resume else folder.start()
    )
    bf16 = cfg.run.bf16 and device.type == "cuda"
    objective = {"beta": o.beta, "analytic_kl": o.analytic_kl, "train_k": o.train_k}
    objective["free_bits"] = o.free_bits
    train_step = make_train_step(model, optimizer, **objective, bf16=bf16, compile=cfg.run.compile)
    steps_per_epoch = math.ceil(n_train / o.batch_size)
    bar = progress_bar(cfg, steps_per_epoch, start_epoch)
    t0, metrics = time.perf_counter(), {}
    try:
        for epoch in range(start_epoch + 1, o.epochs + 1):

            def after_step(i, sums, epoch=epoch):
                nonlocal step
                step += 1
                if (i + 1) % cfg.run.progress_every == 0 or i + 1 == steps_per_epoch:
                    done = (epoch - 1) * steps_per_epoch + i + 1
                    report_progress(bar, sums[0].item() / (i + 1), epoch, step, done)  # syncs

            row = train_epoch(setup, train_step, cfg, epoch, after_step)
            if not all(torch.isfinite(p).all() for p in model.parameters()):
                raise TrainingDiverged(f"weights became non-finite in epoch {epoch}")
            metrics = {
                "epoch": epoch,
                "step": step,
                "binarization": cfg.data.binarization,
                "beta": row["beta"],
                "heldout_binarization_seed": data.info.get("test_binarization_seed"),
                **{k: row[k] for k in ("train_loss", "train_elbo", "train_reconstruction")},
                "train_kl": row["train_kl"],
                **epoch_test_metrics(model, test_x, seed=cfg.run.seed + epoch),
                "wall_time_s": wall_before + time.perf_counter() - t0,
            }
            folder.append_metrics(metrics)
            if epoch % cfg.run.checkpoint_every == 0 or epoch == o.epochs:
                folder.save_checkpoint(model, optimizer, epoch, step, batch_gen)
    except TrainingDiverged as e:
        raise TrainingDiverged(
            f"{e}; stopped, last good checkpoint kept in {folder.path} ({folder.last_checkpoint()})"
        ) from None
    finally:
        bar.close()
    wall = wall_before + time.perf_counter() - t0
    metrics = metrics or folder.history()[-1]  # resumed a run that had already finished
    final = {
        **metrics,
        f"test_iwae_{cfg.run.eval_k}": iwae_mean(model, test_x, cfg.run.eval_k, cfg.run.seed),
        "dataset": cfg.data.dataset,
        "binarization": cfg.data.binarization,
    }
    resumed_from = start_epoch if resume else None
    return folder.finish(model, final, provenance(cfg, device, wall, bf16, resumed_from))


def progress_bar(config: TrainConfig, steps_per_epoch: int, start_epoch: int):
    from tqdm import tqdm

    return tqdm(
        total=config.optim.epochs * steps_per_epoch,
        initial=start_epoch * steps_per_epoch,
        disable=not config.run.progress,
        desc=config.run.run_name,
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
