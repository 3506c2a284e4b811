"""The opening chapter, the VAE as a model: its architecture drawn, the minibatch estimator's
expectation written out, and a small VAE trained in memory with the trainer's own step.

- :func:`plot_architecture` -- the encoder, the reparameterised draw and the decoder of a
  :class:`~vaebook.vae.models.VAE` as boxes and arrows, the sizes read off the model.
- :func:`minibatches`, :func:`minibatch_estimate`, :func:`minibatch_expectation` -- every
  equally likely minibatch of M of N examples (drawn uniformly, with or without
  replacement), the minibatch estimator ``(N / M) sum_{i in B} e_i`` of one of them, and its
  exact expectation over all of them, as unevaluated SymPy expressions for the derivation
  engine to check.
- :func:`train_live` -- train the run a :class:`~vaebook.vae.config.TrainConfig` describes
  for its epochs, in memory (no run folder), with the trainer's optimiser, schedules, batch
  order and step (:func:`~vaebook.vae.train.make_train_step`), reporting the ELBO as it
  rises (:func:`progress_line`) and keeping decoder samples of fixed prior draws at chosen
  epochs (:func:`decoded_prior_draws`).
"""

from __future__ import annotations

import itertools
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

import matplotlib.pyplot as plt
import sympy as sp
import torch
from matplotlib.patches import FancyArrowPatch, FancyBboxPatch

from ..plots import COLORS, COLUMN_WIDTH, style
from ..vae.config import TrainConfig
from ..vae.data import DataSplit
from ..vae.evaluate import epoch_test_metrics
from ..vae.models import VAE
from ..vae.train import make_train_step, set_up, train_epoch
from .ch10_training_a_vae import format_number

__all__ = [
    "plot_architecture",
    "minibatches",
    "minibatch_estimate",
    "minibatch_expectation",
    "LiveRun",
    "train_live",
    "decoded_prior_draws",
    "progress_line",
]


# -- the architecture, drawn ---------------------------------------------------------------
def _layer_widths(network: torch.nn.Module) -> list[int]:
    """Input width, then the output width of each linear layer of ``network``."""
    linear = [m for m in network.modules() if isinstance(m, torch.nn.Linear)]
    return [linear[0].in_features] + [m.out_features for m in linear]


def _box(ax, x, y, w, h, text, colour, *, fill=0.12, dashed=False):
    """A rounded box of width w and height h centred at (x, y), with ``text`` in it."""
    face = (*plt.matplotlib.colors.to_rgb(colour), fill)
    style_ = {"facecolor": face, "edgecolor": colour, "lw": 1.3, "ls": "--" if dashed else "-"}
    shape = "round,pad=0.02,rounding_size=0.06"
    ax.add_patch(FancyBboxPatch((x - w / 2, y - h / 2), w, h, boxstyle=shape, **style_))
    ax.text(x, y, text, ha="center", va="center", fontsize=8.5, linespacing=1.35)


def _arrow(ax, start, end, colour="0.25", **kwargs):
    head = {"arrowstyle": "-|>", "mutation_scale": 10, "shrinkA": 0, "shrinkB": 0}
    ax.add_patch(FancyArrowPatch(start, end, color=colour, lw=1.1, **head, **kwargs))


def _note(ax, x, y, text, colour, ha="center"):
    ax.text(x, y, text, ha=ha, va="center", fontsize=8, color=colour)


def plot_architecture(model: VAE):
    """The VAE ``model`` as a diagram: image x -> encoder (phi) -> mean and log-variance of
    q_phi(z|x) -> z = mu + sigma * eps with eps ~ N(0, I) -> decoder (theta) -> pixel
    probabilities of p_theta(x|z); the layer widths are read off the model's networks, and
    the two terms of the ELBO are marked where they are computed."""
    if model.likelihood_name != "bernoulli" or not hasattr(model.encoder, "__len__"):
        raise ValueError("the diagram draws the MLP VAE with a Bernoulli decoder")
    enc, dec = _layer_widths(model.encoder), _layer_widths(model.decoder)
    d, latent = model.data_dim, model.latent_dim
    if enc[0] != d or enc[-1] != 2 * latent or dec[0] != latent or dec[-1] != d:
        raise ValueError(f"unexpected layer widths: encoder {enc}, decoder {dec}")
    q_colour, p_colour, grey, noise = COLORS["q"], COLORS["reverse"], "0.3", "0.45"
    with style():
        fig, ax = plt.subplots(figsize=(COLUMN_WIDTH, 2.75))
        ax.set_xlim(0, 10.2)
        ax.set_ylim(0, 4.0)
        ax.axis("off")
        y = 2.55  # the main row; boxes left to right
        _box(ax, 0.6, y, 1.0, 0.95, f"image $x$\n{d} pixels", grey, fill=0.06)
        _box(ax, 2.15, y, 1.45, 0.95, "encoder $\\phi$\n" + " → ".join(map(str, enc)), q_colour)
        _box(ax, 3.95, y + 0.55, 1.2, 0.55, f"$\\mu_\\phi(x)$  ({latent})", q_colour)
        _box(ax, 3.95, y - 0.55, 1.2, 0.55, f"$\\log \\sigma^2_\\phi(x)$  ({latent})", q_colour)
        z_text = f"$z = \\mu + \\sigma \\odot \\varepsilon$\n({latent} numbers)"
        _box(ax, 5.75, y, 1.65, 0.95, z_text, grey, fill=0.06)
        eps_text = "$\\varepsilon \\sim \\mathcal{N}(0, I)$"
        _box(ax, 5.75, 0.75, 1.65, 0.6, eps_text, noise, fill=0.0, dashed=True)
        _box(ax, 7.6, y, 1.45, 0.95, "decoder $\\theta$\n" + " → ".join(map(str, dec)), p_colour)
        out_text = "pixel\nprobabilities\nof $p_\\theta(x \\mid z)$"
        _box(ax, 9.38, y, 1.5, 0.95, out_text, p_colour, fill=0.06)
        _arrow(ax, (1.1, y), (1.425, y))
        for sign in (1, -1):  # encoder -> mean and log-variance -> z
            _arrow(ax, (2.875, y + 0.2 * sign), (3.35, y + 0.5 * sign))
            _arrow(ax, (4.55, y + 0.5 * sign), (4.925, y + 0.2 * sign))
        _arrow(ax, (5.75, 1.05), (5.75, y - 0.475), colour=noise, ls="--")
        _arrow(ax, (6.575, y), (6.875, y))
        _arrow(ax, (8.325, y), (8.63, y))
        # the approximate posterior, and where the two terms of the ELBO are computed
        kl = r"$-\mathrm{KL}(q_\phi(z \mid x) \,\Vert\, p(z))$, closed form"
        _note(ax, 3.95, 3.72, kl, q_colour)
        _note(ax, 9.38, 1.55, "$\\log p_\\theta(x \\mid z)$:\ncompared with $x$", p_colour)
        q = r"$q_\phi(z \mid x) = \mathcal{N}(\mu_\phi(x), \mathrm{diag}\,\sigma^2_\phi(x))$"
        _note(ax, 2.15, 1.55, q, q_colour, ha="left")
    plt.close(fig)
    return fig


# -- the minibatch estimator's expectation ---------------------------------------------------
def minibatches(n: int, m: int, replacement: bool) -> list[tuple[int, ...]]:
    """Every equally likely minibatch of ``m`` of the examples ``0 .. n-1``: drawn uniformly
    without replacement, the ``C(n, m)`` subsets (index tuples in increasing order); with
    replacement, the ``n ** m`` ordered draws."""
    if m < 1 or (m > n and not replacement):
        raise ValueError(f"cannot draw {m} of {n} examples without replacement")
    if replacement:
        return list(itertools.product(range(n), repeat=m))
    return list(itertools.combinations(range(n), m))


def minibatch_estimate(per_example: Sequence[sp.Expr], batch: Sequence[int]) -> sp.Expr:
    """The minibatch estimator ``(N / M) sum_{i in B} e_i`` of one minibatch B (index tuple),
    unevaluated, so that it prints as written."""
    n, m = len(per_example), len(batch)
    terms = sp.Add(*[per_example[i] for i in batch], evaluate=False)
    return sp.Mul(sp.Rational(n, m), terms, evaluate=False)


def minibatch_expectation(
    per_example: Sequence[sp.Expr], m: int, replacement: bool, estimates: Sequence | None = None
) -> sp.Expr:
    """The expectation of the minibatch estimator over minibatches of ``m`` examples drawn
    uniformly (:func:`minibatches`): the average of :func:`minibatch_estimate` over every
    equally likely minibatch, unevaluated. ``estimates`` (one per minibatch, in the order
    of :func:`minibatches`) replaces each minibatch's estimate by a symbol of the caller's
    (a display name defined to be that estimate)."""
    batches = minibatches(len(per_example), m, replacement)
    if estimates is None:
        estimates = [minibatch_estimate(per_example, b) for b in batches]
    elif len(estimates) != len(batches):
        raise ValueError(f"{len(batches)} minibatches, {len(estimates)} estimates")
    return sp.Mul(sp.Rational(1, len(batches)), sp.Add(*estimates, evaluate=False), evaluate=False)


# -- a run trained in memory ------------------------------------------------------------------
@dataclass
class LiveRun:
    """What :func:`train_live` returns."""

    config: TrainConfig
    data: DataSplit
    model: VAE
    history: list[dict]  # one row per epoch: train/test ELBO, reconstruction, KL (nats)
    samples: dict[int, torch.Tensor] = field(default_factory=dict)  # epoch -> (n, D)
    wall_time_s: float = 0.0


@torch.no_grad()
def decoded_prior_draws(model: VAE, n: int, seed: int) -> torch.Tensor:
    """Decoder means (n, D), float32 (a Bernoulli decoder's pixel probabilities), at n draws
    ``z ~ N(0, I)`` from a private generator seeded with ``seed`` (the draws of
    :func:`~vaebook.chapters.ch10_training_a_vae.prior_samples`, in the model's dtype)."""
    z = torch.randn((n, model.latent_dim), generator=torch.Generator().manual_seed(seed))
    out = model.decode(z.to(next(model.parameters()).dtype))  # (n, D) logits or means
    return (out.sigmoid() if model.likelihood_name == "bernoulli" else out).float()


def progress_line(row: dict) -> str:
    """One line of the live table: the epoch, the training ELBO (mean over the epoch's
    minibatches), the test ELBO and the test KL term, in nats per example, one decimal."""
    train, test = format_number(row["train_elbo"], 1), format_number(row["test_elbo"], 1)
    kl = format_number(row["test_kl"], 1)
    return (
        f"epoch {row['epoch']:>4}   training ELBO {train:>6}   test ELBO {test:>6}"
        f"   test KL {kl:>4}"
    )


def train_live(
    config: TrainConfig,
    *,
    sample_epochs: Sequence[int] = (),
    n_samples: int = 10,
    sample_seed: int = 0,
    report_every: int | None = None,
    report: Callable[[str], None] = print,
    dtype: torch.dtype = torch.float32,
) -> LiveRun:
    """Train the VAE ``config`` describes for ``config.optim.epochs`` epochs, in memory on
    the CPU, exactly as the trainer does (:func:`vaebook.vae.train.train`: the same seeding,
    model, optimiser, learning-rate and KL-weight schedules, batch order, binarisation and
    step, :func:`~vaebook.vae.train.make_train_step`, and the same test-set ELBO after
    every epoch), but without a run folder, and return the model and its history.

    ``dtype``: the trainer's float32, or float64 -- the same run in double precision, whose
    printed numbers do not depend on the machine: float32 matrix products and normal draws
    round differently on different CPUs, and over many steps that reaches the first
    decimal; in float64 it stays far below it. (The initial weights are the same, cast;
    the noise draws differ from float32's.)

    ``sample_epochs``: after each of these epochs (0 is before training) keep the decoder
    means of the same ``n_samples`` prior draws (seeded with ``sample_seed``, drawn from a
    private generator, so the training itself is unchanged). ``report_every``: pass
    :func:`progress_line` of epoch 1 and of every ``report_every``-th epoch to ``report``.
    """
    cfg = config
    if cfg.run.threads:
        torch.set_num_threads(cfg.run.threads)
    setup = set_up(cfg, torch.device("cpu"), dtype)  # the trainer's own start and epoch
    model = setup.model
    o = cfg.optim
    train_step = make_train_step(
        model, setup.optimizer, beta=o.beta, analytic_kl=o.analytic_kl, train_k=o.train_k
    )
    samples = {}
    if 0 in sample_epochs:
        samples[0] = decoded_prior_draws(model, n_samples, sample_seed)
    history, t0 = [], time.perf_counter()
    for epoch in range(1, o.epochs + 1):
        row = train_epoch(setup, train_step, cfg, epoch)
        row.update(epoch_test_metrics(model, setup.test_x, seed=cfg.run.seed + epoch))
        history.append(row)
        if epoch in sample_epochs:
            samples[epoch] = decoded_prior_draws(model, n_samples, sample_seed)
        if report_every and (epoch == 1 or epoch % report_every == 0):
            report(progress_line(row))
    model.eval()
    return LiveRun(cfg, setup.data, model, history, samples, time.perf_counter() - t0)
