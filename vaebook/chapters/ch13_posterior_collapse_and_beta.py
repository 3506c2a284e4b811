"""Chapter 13 (``book/13_posterior_collapse_and_beta.ipynb``): posterior collapse and the
beta trade-off.

Collects the committed runs of the sweep (:data:`vaebook.vae.pretrained.RUNS`: latent
sizes, beta x latent size x seed, KL warm-up) into :class:`RunSummary` rows
(:func:`summarise`), averages them over seeds (:func:`seed_means`), and draws the chapter's
figures: the KL of each latent dimension and the activity of its posterior mean
(:func:`plot_latent_usage`), the rate-distortion plane (:func:`plot_rate_distortion`) and
training with and without warm-up (:func:`plot_warmup`). Rate is ``KL(q(z|x) || p(z))`` and
distortion ``-E_q[log p(x|z)]``, test-set means in nats per example, so ``ELBO = -(rate +
distortion)``.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass

import matplotlib.pyplot as plt
import numpy as np

from ..plots import COLORS, figure, style
from .display import markdown_table

__all__ = [
    "ACTIVE_THRESHOLD",
    "LATENT_RUNS",
    "SWEEP_RUNS",
    "WARMUP_RUNS",
    "RunSummary",
    "count_active",
    "markdown_table",
    "plot_latent_usage",
    "plot_rate_distortion",
    "plot_warmup",
    "seed_means",
    "summarise",
]

#: Burda et al. (2016): unit j is active if Var_x[E_q[z_j]] exceeds this
ACTIVE_THRESHOLD = 1e-2

#: the runs the chapter reads (all in :data:`vaebook.vae.pretrained.RUNS`): latent sizes at
#: beta = 1; beta x latent size x seed; latent 32 with and without KL warm-up, two seeds
LATENT_RUNS = [f"digits-L{size}-beta1-seed0" for size in (2, 4, 8, 16, 32)]
SWEEP_RUNS = [
    f"digits-L{size}-beta{beta:g}-seed{seed}"
    for size in (4, 16)
    for beta in (0.25, 0.5, 1.0, 2.0, 4.0)
    for seed in (0, 1)
]
WARMUP_RUNS = {
    "KL warm-up": [f"digits-L32-warmup-seed{seed}" for seed in (0, 1)],
    "no warm-up": [f"digits-L32-beta1-seed{seed}" for seed in (0, 1)],
}

#: one colour per beta of the sweep, from the book's palette
BETA_COLORS = {
    0.25: COLORS["forward"],
    0.5: COLORS["grid"],
    1.0: COLORS["true"],
    2.0: COLORS["bound"],
    4.0: COLORS["reverse"],
}


@dataclass(frozen=True)
class RunSummary:
    """One run's recipe and test metrics (nats per example)."""

    name: str
    latent_dim: int
    beta: float
    seed: int
    warmup_epochs: int
    elbo: float
    reconstruction: float
    kl: float
    log_likelihood: float
    active_units: int
    posterior_mean_variance: tuple[float, ...]  # (L,) Var_x[E_q[z_j]]
    kl_per_latent_dim: tuple[float, ...]  # (L,) mean over x of KL(q(z_j|x) || N(0, 1))
    device_name: str
    wall_time_s: float

    @property
    def rate(self) -> float:
        """``KL(q(z|x) || p(z))``, test mean."""
        return self.kl

    @property
    def distortion(self) -> float:
        """``-E_q[log p(x|z)]``, test mean."""
        return -self.reconstruction


def summarise(run) -> RunSummary:
    """The :class:`RunSummary` of a :class:`~vaebook.vae.pretrained.PretrainedRun` (anything
    with ``name``, ``config``, ``metrics`` and ``provenance`` like it)."""
    t, c = run.metrics["test"], run.config
    return RunSummary(
        name=run.name,
        latent_dim=int(c.model.latent_dim),
        beta=float(c.optim.beta),
        seed=int(c.run.seed),
        warmup_epochs=int(c.optim.kl_warmup_epochs or 0),
        elbo=float(t["elbo"]),
        reconstruction=float(t["reconstruction"]),
        kl=float(t["kl"]),
        log_likelihood=float(t["log_likelihood"]),
        active_units=int(t["active_units"]),
        posterior_mean_variance=tuple(float(v) for v in t["posterior_mean_variance"]),
        kl_per_latent_dim=tuple(float(v) for v in t["kl_per_latent_dim"]),
        device_name=str(run.provenance.get("device_name", "unknown")),
        wall_time_s=float(run.provenance.get("wall_time_s", float("nan"))),
    )


def count_active(variances: Iterable[float], threshold: float = ACTIVE_THRESHOLD) -> int:
    """Number of latent dimensions whose posterior-mean variance exceeds ``threshold``."""
    return int(sum(v > threshold for v in variances))


def seed_means(
    rows: Sequence[RunSummary], by: Sequence[str] = ("latent_dim", "beta", "warmup_epochs")
) -> list[dict]:
    """Rows grouped by the fields ``by`` (over seeds), in first-seen order: the group's
    keys, ``n`` (runs), and for rate, distortion, elbo, log_likelihood, kl, active_units the
    mean (``<field>``) and the half-range over the group (``<field>_spread``)."""
    groups: dict[tuple, list[RunSummary]] = {}
    for r in rows:
        groups.setdefault(tuple(getattr(r, k) for k in by), []).append(r)
    out = []
    for key, members in groups.items():
        row = dict(zip(by, key, strict=True)) | {"n": len(members)}
        for f in ("rate", "distortion", "elbo", "log_likelihood", "kl", "active_units"):
            values = np.array([getattr(m, f) for m in members], dtype=float)
            row[f] = float(values.mean())
            row[f"{f}_spread"] = float((values.max() - values.min()) / 2)
        out.append(row)
    return out


def plot_latent_usage(rows: Sequence[RunSummary], threshold: float = ACTIVE_THRESHOLD):
    """For each run (one per latent size): left, the KL of each latent dimension, sorted,
    against its rank; right, the variance over the data of each posterior mean, sorted, with
    the active-unit threshold. Log scales."""
    fig, axes = figure(ncols=2, width=3.5, height=3.2)
    palette = [COLORS[k] for k in ("forward", "grid", "true", "bound", "reverse", "gap")]
    with style():
        for r, color in zip(sorted(rows, key=lambda r: r.latent_dim), palette, strict=False):
            rank = np.arange(1, r.latent_dim + 1)
            kl = np.sort(np.array(r.kl_per_latent_dim))[::-1]
            var = np.sort(np.array(r.posterior_mean_variance))[::-1]
            label = f"L = {r.latent_dim} ({r.active_units} active)"
            axes[0].plot(rank, kl, "o-", ms=3, lw=1.3, color=color, label=label)
            axes[1].plot(rank, var, "o-", ms=3, lw=1.3, color=color, label=label)
        axes[0].set_yscale("log")
        axes[0].set_xscale("log", base=2)
        axes[0].set_xlabel("latent dimension, by KL (rank)")
        axes[0].set_ylabel("KL per dimension, nats")
        axes[0].set_title("KL of each dimension")
        axes[1].axhline(threshold, color=COLORS["gap"], ls="--", lw=1.3)
        axes[1].text(1.05, threshold * 0.6, "active-unit threshold", fontsize=8, va="top")
        axes[1].set_yscale("log")
        axes[1].set_ylim(bottom=min(axes[1].get_ylim()[0], threshold / 4))
        axes[1].set_xscale("log", base=2)
        axes[1].set_xlabel("latent dimension, by activity (rank)")
        axes[1].set_ylabel(r"$\mathrm{Var}_x\, \mathbb{E}_q[z_j]$")
        axes[1].set_title("activity of each dimension")
        axes[0].legend(loc="lower left", fontsize=8)
    plt.close(fig)
    return fig


def plot_rate_distortion(rows: Sequence[RunSummary]):
    """Distortion against rate, one panel per latent size: each run a point coloured by
    beta, seed means joined in order of beta, and dotted lines of constant ELBO (slope -1)
    through the beta = 1 mean."""
    sizes = sorted({r.latent_dim for r in rows})
    fig, axes = figure(ncols=len(sizes), width=3.4, height=3.3, sharey=True)
    axes = np.atleast_1d(axes)
    with style():
        for ax, size in zip(axes, sizes, strict=True):
            mine = [r for r in rows if r.latent_dim == size]
            means = sorted(seed_means(mine), key=lambda m: m["beta"])
            ax.plot(
                [m["rate"] for m in means],
                [m["distortion"] for m in means],
                "-",
                color="0.6",
                lw=1.2,
                zorder=1,
            )
            for beta in sorted({r.beta for r in mine}):
                pts = [r for r in mine if r.beta == beta]
                ax.scatter(
                    [r.rate for r in pts],
                    [r.distortion for r in pts],
                    s=28,
                    color=BETA_COLORS.get(beta, COLORS["gap"]),
                    label=rf"$\beta$ = {beta:g}",
                    zorder=2,
                )
            unit = [m for m in means if m["beta"] == 1.0]
            if unit:
                total = unit[0]["rate"] + unit[0]["distortion"]  # -ELBO at beta = 1
                rates = np.array(ax.get_xlim())
                ax.plot(rates, total - rates, ":", color=COLORS["true"], lw=1.2)
                ax.set_xlim(*rates)
            ax.set_xlabel("rate = KL, nats")
            ax.set_title(f"latent size {size}")
        axes[0].set_ylabel(r"distortion = $-\mathbb{E}_q[\log p(x\mid z)]$, nats")
        axes[-1].legend(loc="upper right", fontsize=8)
    plt.close(fig)
    return fig


def plot_warmup(histories: dict[str, Sequence[dict]], styles: dict[str, dict] | None = None):
    """Test KL and active units against the epoch for each named history (per-epoch rows of
    a run, with ``test_kl``, ``active_units`` and ``beta``); the warm-up epochs (where
    beta < its final value in any history) are shaded."""
    fig, axes = figure(ncols=2, width=3.5, height=3.1)
    styles = styles or {}
    ramp_end = 0
    with style():
        for name, hist in histories.items():
            epoch = np.array([h["epoch"] for h in hist])
            beta = np.array([h["beta"] for h in hist])
            ramp = epoch[beta < beta[-1]]
            ramp_end = max(ramp_end, int(ramp.max()) if ramp.size else 0)
            kw = {"lw": 1.3} | styles.get(name, {})
            axes[0].plot(epoch, [h["test_kl"] for h in hist], label=name, **kw)
            axes[1].plot(epoch, [h["active_units"] for h in hist], label=name, **kw)
        for ax in axes:
            if ramp_end:
                ax.axvspan(0, ramp_end, color=COLORS["mc"], alpha=0.25, lw=0)
            ax.set_xlabel("epoch")
        axes[0].set_ylabel("test KL, nats")
        axes[0].set_title(r"rate (shaded: $\beta$ ramps up)")
        axes[1].set_ylabel("active units (test set)")
        axes[1].set_title("active units")
        axes[1].legend(loc="lower right", fontsize=8)
    plt.close(fig)
    return fig
