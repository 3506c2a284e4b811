"""Chapter 10, a VAE trained on handwritten digits: what the committed runs show.

Nothing here trains. The functions read a committed run (:mod:`vaebook.vae.pretrained`):
its per-epoch history, its recorded metrics and its model, and turn them into the
chapter's tables and figures. Everything random is seeded locally (the global RNG is left
as it was).

- :func:`source_block` -- a function's source as a Markdown code block (the objective the
  trainer calls, printed from the package).
- :func:`trained_on` -- where a run was trained, in words, from its provenance.
- :func:`format_number` -- a number rounded for the page, with a typographic minus.
- :func:`history_curves` -- the learning curves of a run's ``history`` as arrays.
- :func:`metrics_table` -- recorded train/test metrics as a Markdown table, nats and bits
  per dimension.
- :func:`reconstruct`, :func:`prior_samples`, :func:`latent_means`, :func:`interpolate`,
  :func:`first_of_each_label`, :func:`most_typical` -- model outputs shown as images.
- :func:`plot_learning_curves`, :func:`plot_image_rows`, :func:`plot_image_grid`,
  :func:`plot_latent_space` -- the figures.
"""

from __future__ import annotations

import inspect
import math
import re
from collections.abc import Callable, Sequence

import matplotlib.pyplot as plt
import numpy as np
import torch

from ..plots import COLORS, COLUMN_WIDTH, figure, style
from ..vae.models import VAE
from ..vae.objectives import bits_per_dim

__all__ = [
    "source_block",
    "trained_on",
    "format_number",
    "history_curves",
    "metrics_table",
    "reconstruct",
    "prior_samples",
    "latent_means",
    "interpolate",
    "first_of_each_label",
    "most_typical",
    "plot_learning_curves",
    "plot_image_rows",
    "plot_image_grid",
    "plot_latent_space",
]

CURVES = ("elbo", "reconstruction", "kl")


def source_block(obj: Callable) -> str:
    """The source of ``obj`` as a fenced Markdown code block (language python)."""
    return "```python\n" + inspect.getsource(obj).rstrip() + "\n```"


def history_curves(history: Sequence[dict]) -> dict[str, np.ndarray]:
    """The per-epoch rows of a run's history as arrays: ``epoch`` and, for each split
    (``train``, ``test``) and term of :data:`CURVES`, ``"<split>_<term>"`` (nats per
    example), plus ``active_units``."""
    keys = ["epoch", "active_units"] + [f"{s}_{t}" for s in ("train", "test") for t in CURVES]
    return {k: np.array([row[k] for row in history], dtype=float) for k in keys}


_NUMBERS = "zero one two three four five six seven eight nine ten eleven twelve".split()


def trained_on(provenance: dict) -> str:
    """Where a run was trained, in words, from its provenance: ``"one CPU thread"``,
    ``"four CPU threads"``, ``"a GPU (NVIDIA H200)"`` (the device name a CUDA run recorded).
    Raises ``ValueError`` for a provenance that names no device."""
    device = str(provenance.get("device", ""))
    name = str(provenance.get("device_name", ""))
    if device.startswith("cuda"):
        if not name:
            raise ValueError("the provenance names no GPU")
        return f"a GPU ({name})"
    if device.startswith("cpu") or name.startswith("cpu"):
        match = re.search(r"(\d+) threads?\)", name)
        if match is None:
            return "the CPU"
        n = int(match.group(1))
        words = _NUMBERS[n] if n < len(_NUMBERS) else str(n)
        return f"{words} CPU thread{'s' if n != 1 else ''}"
    raise ValueError(f"the provenance names no device it was trained on: {device!r}")


def format_number(value: float, digits: int = 2) -> str:
    """``value`` with ``digits`` decimals and a typographic minus (−, not a hyphen)."""
    return f"{value:.{digits}f}".replace("-", "\u2212")


def metrics_table(metrics: dict, digits: int = 2) -> str:
    """A Markdown table of a run's recorded metrics: ELBO, reconstruction, KL and the
    log-likelihood estimate for the train and test sets, in nats per example (mean over
    examples, with its standard error where recorded) and bits per dimension
    ``-value / (D ln 2)``."""
    d = metrics["data_dim"]
    splits = [s for s in ("train", "test") if s in metrics]
    header = "| quantity | " + " | ".join(f"{s} (nats)" for s in splits)
    header += " | " + " | ".join(f"{s} (bits/dim)" for s in splits) + " |"
    rule = "|---|" + "---:|" * (2 * len(splits))
    rows = [header, rule]
    k = {s: metrics[s].get("log_likelihood_k") for s in splits}
    names = {
        "elbo": "ELBO",
        "reconstruction": "reconstruction $\\mathbb{E}_q[\\log p(x \\mid z)]$",
        "kl": "$\\mathrm{KL}(q(z \\mid x) \\,\\Vert\\, p(z))$",
        "log_likelihood": "$\\log p(x)$ estimate (k = "
        + " / ".join(str(k[s]) for s in splits)
        + ")",
    }
    for key, name in names.items():
        cells = []
        for s in splits:
            value, se = metrics[s][key], metrics[s].get(f"{key}_stderr")
            cells.append(
                format_number(value, digits) + (f" ± {se:.{digits}f}" if se is not None else "")
            )
        for s in splits:
            value = metrics[s][key]
            # the KL is a cost and reconstruction a log-likelihood: bits of each, as stored
            bits = bits_per_dim(-value if key == "kl" else value, d)
            cells.append(f"{bits:.4f}")
        rows.append(f"| {name} | " + " | ".join(cells) + " |")
    return "\n".join(rows)


# -- model outputs -----------------------------------------------------------------------
@torch.no_grad()
def latent_means(model: VAE, x: torch.Tensor) -> torch.Tensor:
    """The encoder means ``mu(x)``, (N, L), of the rows of x (N, D)."""
    return model.encode(x)[0]


@torch.no_grad()
def _decoder_mean(model: VAE, z: torch.Tensor) -> torch.Tensor:
    """Decoder mean for codes z (..., L): pixel probabilities of a Bernoulli decoder."""
    out = model.decode(z)
    return out.sigmoid() if model.likelihood_name == "bernoulli" else out


@torch.no_grad()
def reconstruct(model: VAE, x: torch.Tensor, seed: int | None = None) -> torch.Tensor:
    """Reconstructions (N, D): the decoder mean at the encoder mean ``mu(x)`` when ``seed``
    is None, else at one draw ``z ~ q(z|x)`` with that seed."""
    mu, logvar = model.encode(x)
    if seed is not None:
        gen = torch.Generator().manual_seed(seed)
        mu = mu + (0.5 * logvar).exp() * torch.randn(mu.shape, generator=gen)
    return _decoder_mean(model, mu)


@torch.no_grad()
def prior_samples(model: VAE, n: int, seed: int = 0) -> torch.Tensor:
    """Decoder means (N, D) of n draws ``z ~ p(z) = N(0, I)``, seeded."""
    z = torch.randn((n, model.latent_dim), generator=torch.Generator().manual_seed(seed))
    return _decoder_mean(model, z)


@torch.no_grad()
def interpolate(model: VAE, x_a: torch.Tensor, x_b: torch.Tensor, steps: int = 10):
    """Decoder means (steps, D) along the straight line between the encoder means of two
    data points x_a, x_b (D,), ends included; and the codes (steps, L)."""
    mu = model.encode(torch.stack([x_a, x_b]))[0]  # (2, L)
    t = torch.linspace(0, 1, steps)[:, None]  # (steps, 1)
    z = (1 - t) * mu[0] + t * mu[1]  # (steps, L)
    return _decoder_mean(model, z), z


def first_of_each_label(labels: torch.Tensor, wanted: Sequence[int] = range(10)) -> list[int]:
    """Index of the first row with each label in ``wanted`` (labels (N,))."""
    labels = torch.as_tensor(labels)
    return [int(torch.nonzero(labels == c)[0, 0]) for c in wanted]


def most_typical(codes: torch.Tensor, labels: torch.Tensor, wanted: Sequence[int]) -> list[int]:
    """For each label c in ``wanted``: the index of the row of ``codes`` (N, L) with label c
    nearest (Euclidean) to the mean code of all rows with label c."""
    labels = torch.as_tensor(labels)
    out = []
    for c in wanted:
        rows = torch.nonzero(labels == c)[:, 0]
        centre = codes[rows].mean(0)
        out.append(int(rows[(codes[rows] - centre).norm(dim=1).argmin()]))
    return out


# -- figures -----------------------------------------------------------------------------
def plot_learning_curves(history: Sequence[dict], skip: int = 0):
    """ELBO, reconstruction and KL against epoch, train (dynamically binarised, running mean
    over the epoch) and test (a fixed binarised draw), one panel each; ``skip`` first
    epochs are left out of the y-range."""
    curves = history_curves(history)
    epoch = curves["epoch"]
    fig, axes = figure(ncols=3, width=COLUMN_WIDTH / 3, height=2.5)
    titles = {
        "elbo": "ELBO",
        "reconstruction": r"reconstruction $\mathbb{E}_q \log p(x \mid z)$",
        "kl": r"KL$(q \,\|\, p(z))$",
    }
    with style():
        for ax, term in zip(axes, CURVES, strict=True):
            for split, colour, ls in (
                ("train", COLORS["q"], "-"),
                ("test", COLORS["reverse"], "--"),
            ):
                y = curves[f"{split}_{term}"]
                ax.plot(epoch, y, color=colour, ls=ls, lw=1.5, label=split)
            both = np.concatenate([curves[f"{s}_{term}"][skip:] for s in ("train", "test")])
            pad = 0.05 * (both.max() - both.min())
            ax.set_ylim(both.min() - pad, both.max() + pad)
            ax.set_title(titles[term], fontsize=10)
            ax.set_xlabel("epoch")
        axes[0].set_ylabel("nats per example")
        axes[0].legend(loc="lower right")
    plt.close(fig)
    return fig


def _show(ax, image: np.ndarray, shape: Sequence[int]) -> None:
    ax.imshow(image.reshape(shape), cmap="gray_r", vmin=0, vmax=1, interpolation="nearest")
    ax.set_xticks([])
    ax.set_yticks([])
    ax.grid(False)
    for spine in ax.spines.values():
        spine.set_visible(False)


def plot_image_rows(rows: dict[str, torch.Tensor], shape: Sequence[int], titles=None):
    """One row of images per entry of ``rows`` (name -> (n, D)), the name at the left;
    ``titles`` (n strings) over the first row."""
    names = list(rows)
    n = max(len(v) for v in rows.values())
    label_width = 1.0  # inches for the row names
    size = min((COLUMN_WIDTH - label_width) / n, 0.75)
    with style():
        fig, axes = plt.subplots(
            len(names), n, figsize=(size * n + label_width, size * len(names) + 0.3), squeeze=False
        )
        for r, name in enumerate(names):
            images = np.asarray(rows[name])
            for c in range(n):
                ax = axes[r, c]
                if c < len(images):
                    _show(ax, images[c], shape)
                else:
                    ax.axis("off")
            axes[r, 0].set_ylabel(name, rotation=0, ha="right", va="center", fontsize=9)
        if titles is not None:
            for c, t in enumerate(titles):
                axes[0, c].set_title(t, fontsize=9)
    plt.close(fig)
    return fig


def plot_image_grid(images: torch.Tensor, shape: Sequence[int], ncols: int = 10):
    """Images (n, D) on a grid of ``ncols`` columns."""
    images = np.asarray(images)
    nrows = math.ceil(len(images) / ncols)
    size = min(COLUMN_WIDTH / ncols, 0.68)
    with style():
        fig, axes = plt.subplots(nrows, ncols, figsize=(size * ncols, size * nrows), squeeze=False)
        for i, ax in enumerate(axes.ravel()):
            if i < len(images):
                _show(ax, images[i], shape)
            else:
                ax.axis("off")
    plt.close(fig)
    return fig


def plot_latent_space(
    means: torch.Tensor, labels: torch.Tensor, path: torch.Tensor | None = None, title: str = ""
):
    """Encoder means (N, 2) as points coloured by digit label (N,), over the prior's
    1- and 2-sigma circles; ``path`` (m, 2) drawn as a line with its ends marked."""
    means, labels = np.asarray(means), np.asarray(labels)
    fig, ax = figure(width=5.4, height=4.6)
    cmap = plt.get_cmap("tab10")
    with style():
        theta = np.linspace(0, 2 * np.pi, 200)
        for r in (1, 2):
            ax.plot(r * np.cos(theta), r * np.sin(theta), color="0.5", lw=0.8, ls=":")
        for c in range(10):
            sel = labels == c
            ax.scatter(*means[sel].T, s=9, color=cmap(c), label=str(c), alpha=0.8, lw=0)
        if path is not None:
            path = np.asarray(path)
            ax.plot(*path.T, color=COLORS["true"], lw=1.5)
            ax.scatter(*path[[0, -1]].T, color=COLORS["true"], s=30, marker="s", zorder=3)
        ax.set_aspect("equal")
        ax.set_xlabel(r"$\mu_1(x)$")
        ax.set_ylabel(r"$\mu_2(x)$")
        ax.legend(title="digit", loc="center left", bbox_to_anchor=(1.0, 0.5), markerscale=2.0)
        if title:
            ax.set_title(title)
    plt.close(fig)
    return fig
