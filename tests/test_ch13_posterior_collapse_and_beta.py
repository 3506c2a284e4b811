"""Chapter 13's companion: collecting the sweep's runs, counting active units (against
:func:`vaebook.vae.objectives.active_units` on a model), averaging over seeds (against
numbers worked out by hand) and the figures."""

import math
import re
from types import SimpleNamespace

import numpy as np
import pytest
import torch

from vaebook.chapters.ch13_posterior_collapse_and_beta import (
    LATENT_RUNS,
    SWEEP_RUNS,
    WARMUP_RUNS,
    RunSummary,
    count_active,
    markdown_table,
    plot_latent_usage,
    plot_rate_distortion,
    plot_warmup,
    seed_means,
    summarise,
)
from vaebook.plots import COLUMN_WIDTH
from vaebook.vae import pretrained
from vaebook.vae.config import TrainConfig
from vaebook.vae.models import VAE
from vaebook.vae.objectives import active_units


def _fake_run(latent=3, beta=0.5, seed=1, warmup=0, kl=2.0, recon=-20.0):
    config = TrainConfig.from_dict(
        {"dataset": "digits", "latent_dim": latent, "beta": beta, "seed": seed}
        | ({"kl_warmup_epochs": warmup} if warmup else {})
    )
    test = {
        "elbo": recon - kl,
        "reconstruction": recon,
        "kl": kl,
        "log_likelihood": recon - kl + 0.3,
        "active_units": 2,
        "posterior_mean_variance": [0.5, 0.2, 0.001][:latent],
        "kl_per_latent_dim": [1.5, 0.5, 0.0][:latent],
    }
    provenance = {"device_name": "cpu (test)", "wall_time_s": 1.5}
    return SimpleNamespace(
        name=f"fake-L{latent}", config=config, metrics={"test": test}, provenance=provenance
    )


def test_summarise_reads_recipe_metrics_and_provenance():
    s = summarise(_fake_run(warmup=7))
    assert (s.latent_dim, s.beta, s.seed, s.warmup_epochs) == (3, 0.5, 1, 7)
    assert (s.rate, s.distortion) == (2.0, 20.0)
    assert s.elbo == -(s.rate + s.distortion)
    assert s.device_name == "cpu (test)" and s.wall_time_s == 1.5
    assert s.kl_per_latent_dim == (1.5, 0.5, 0.0)
    assert count_active(s.posterior_mean_variance) == s.active_units == 2


def test_count_active_agrees_with_the_trainers_active_units():
    torch.manual_seed(0)
    model = VAE(data_dim=12, hidden_dims=[8], latent_dim=6)
    with torch.no_grad():  # scale the encoder's mean outputs: some dims vary, some do not
        scale = torch.tensor([3.0, 1.0, 0.3, 0.1, 0.03, 0.0])
        model.encoder[-1].weight[:6] *= scale[:, None]
        model.encoder[-1].bias[:6] *= scale
    x = torch.rand(500, 12)
    count, variances = active_units(model, x)
    assert 0 < count < 6
    assert count_active(variances.tolist()) == count
    mu, _ = model.encode(x)
    by_hand = [float(np.var(mu[:, j].detach().numpy(), ddof=1)) for j in range(6)]
    assert count_active(by_hand) == count
    assert count_active([0.02, 0.01, 0.005], threshold=0.01) == 1  # strictly greater


def test_seed_means_average_over_seeds_only():
    rows = [
        summarise(_fake_run(latent=2, beta=1.0, seed=0, kl=2.0, recon=-20.0)),
        summarise(_fake_run(latent=2, beta=1.0, seed=1, kl=3.0, recon=-19.0)),
        summarise(_fake_run(latent=2, beta=2.0, seed=0, kl=1.0, recon=-22.0)),
        summarise(_fake_run(latent=3, beta=1.0, seed=0, kl=4.0, recon=-18.0)),
    ]
    means = seed_means(rows)
    assert [(m["latent_dim"], m["beta"], m["n"]) for m in means] == [
        (2, 1.0, 2),
        (2, 2.0, 1),
        (3, 1.0, 1),
    ]
    first = means[0]
    assert first["rate"] == 2.5 and first["rate_spread"] == 0.5
    assert first["distortion"] == 19.5 and first["elbo"] == -22.0
    assert first["elbo_spread"] == 0.0  # -22 and -22
    assert means[1]["rate_spread"] == 0.0
    by_latent = seed_means(rows, by=("latent_dim",))
    assert [m["n"] for m in by_latent] == [3, 1]
    assert math.isclose(by_latent[0]["kl"], 2.0)


def test_markdown_table():
    assert markdown_table(["L", "AU"], [["4", "4"], ["32", "9"]]).splitlines() == [
        "| L | AU |",
        "|:---|---:|",
        "| 4 | 4 |",
        "| 32 | 9 |",
    ]


def test_figures_fit_the_column():
    rows = [
        summarise(_fake_run(latent=L, beta=b, seed=s, kl=4 / b, recon=-20 - 2 * b))
        for L in (2, 3)
        for b in (0.5, 1.0, 2.0)
        for s in (0, 1)
    ]
    rd = plot_rate_distortion(rows)
    assert len(rd.axes) == 2
    assert sum(len(c.get_offsets()) for ax in rd.axes for c in ax.collections) == len(rows)
    usage = plot_latent_usage([r for r in rows if r.beta == 1.0 and r.seed == 0])
    history = [
        {"epoch": e, "beta": min(1.0, e / 5), "test_kl": 1.0 + e / 10, "active_units": 2}
        for e in range(1, 21)
    ]
    warm = plot_warmup({"warm-up": history, "none": [h | {"beta": 1.0} for h in history]})
    for fig in (rd, usage, warm):
        assert fig.get_size_inches()[0] <= COLUMN_WIDTH + 1e-9


def test_the_sweeps_runs_summarise_to_their_names():
    names = sorted({*LATENT_RUNS, *SWEEP_RUNS, *(n for v in WARMUP_RUNS.values() for n in v)})
    assert len(names) == 26 and set(names) <= set(pretrained.RUNS)
    present = [n for n in names if (pretrained.PRETRAINED_DIR / n).is_dir()]
    if not present:
        pytest.skip("the sweep's runs are not in this checkout")
    for name in present[:: max(1, len(present) // 6)]:
        s = summarise(pretrained.load(name))
        latent, kind = re.match(r"digits-L(\d+)-(beta[\d.]+|warmup)-seed\d", name).groups()
        assert s.latent_dim == int(latent) and name.endswith(f"seed{s.seed}")
        assert (s.warmup_epochs > 0) == (kind == "warmup")
        assert isinstance(s, RunSummary) and len(s.kl_per_latent_dim) == s.latent_dim
        assert math.isclose(s.elbo, -(s.rate + s.distortion), abs_tol=1e-4)
