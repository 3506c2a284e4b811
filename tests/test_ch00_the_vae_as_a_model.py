"""The opening chapter's companion against independent oracles: the live training run
against the package's trainer itself (same history, same weights), its samples against the
model's ``torch.distributions`` likelihood, the minibatch expectation against Monte Carlo
draws of minibatches and the count of subsets, and the architecture diagram against the
model's layers."""

import math

import matplotlib
import numpy as np
import pytest
import sympy as sp
import torch

from vaebook.chapters import ch00_the_vae_as_a_model as ch00
from vaebook.chapters import ch10_training_a_vae as ch10
from vaebook.plots import COLUMN_WIDTH
from vaebook.vae.config import TrainConfig
from vaebook.vae.data import load_dataset
from vaebook.vae.devices import seed_everything
from vaebook.vae.models import VAE, LinearVAE, build_model
from vaebook.vae.run_folder import RunFolder
from vaebook.vae.train import train

matplotlib.use("Agg")

SMALL = {
    "dataset": "digits",
    "binarization": "dynamic",
    "hidden_dims": [16],
    "latent_dim": 2,
    "epochs": 3,
    "batch_size": 200,
    "threads": 1,
    "seed": 3,
    "progress": False,
    "eval_k": 2,
}


def test_train_live_trains_exactly_what_the_trainer_trains(tmp_path):
    config = TrainConfig.from_dict({**SMALL, "runs_dir": str(tmp_path), "run_name": "twin"})
    result = train(config)
    folder = RunFolder.open(result["run_dir"])
    live = ch00.train_live(config)
    recorded = folder.history()
    assert [r["epoch"] for r in live.history] == [r["epoch"] for r in recorded] == [1, 2, 3]
    for mine, theirs in zip(live.history, recorded, strict=True):
        for key in ("train_loss", "train_elbo", "train_kl", "test_elbo", "test_kl", "active_units"):
            assert mine[key] == theirs[key], key
    trained = folder.load_model(live.data.data_dim)
    mine = live.model.state_dict()
    for name, weights in trained.state_dict().items():
        assert torch.equal(mine[name], weights), name


def test_samples_are_the_models_and_leave_training_unchanged():
    config = TrainConfig.from_dict({**SMALL, "epochs": 2})
    plain = ch00.train_live(config)
    sampled = ch00.train_live(config, sample_epochs=(0, 2), n_samples=5, sample_seed=7)
    assert plain.history == sampled.history and set(sampled.samples) == {0, 2}
    # before training: the decoder's Bernoulli means (torch.distributions) at the same draws
    untrained = _untrained(config)
    z = torch.randn((5, untrained.latent_dim), generator=torch.Generator().manual_seed(7))
    torch.testing.assert_close(sampled.samples[0], untrained.likelihood(z).mean.detach())
    torch.testing.assert_close(sampled.samples[2], sampled.model.likelihood(z).mean.detach())


def test_double_precision_run_and_its_samples():
    config = TrainConfig.from_dict({**SMALL, "epochs": 2})
    run = ch00.train_live(config, sample_epochs=(0, 2), n_samples=4, dtype=torch.float64)
    assert all(p.dtype == torch.float64 for p in run.model.parameters())
    z = torch.randn((4, 2), generator=torch.Generator().manual_seed(0))
    expected = run.model.likelihood(z.double()).mean.float()  # torch.distributions
    torch.testing.assert_close(run.samples[2], expected)
    # the same initial weights as the float32 run (cast), the same draws as chapter 10's
    single = ch00.train_live(TrainConfig.from_dict({**SMALL, "epochs": 1}), sample_epochs=(0,),
                             n_samples=4)  # fmt: skip
    torch.testing.assert_close(run.samples[0], single.samples[0], rtol=0, atol=1e-6)
    torch.testing.assert_close(single.samples[0], ch10.prior_samples(_untrained(config), 4, seed=0))
    # a run in float64 lands where the float32 run lands, up to its different noise draws
    assert abs(run.history[-1]["test_elbo"] - ch00.train_live(config).history[-1]["test_elbo"]) < 2


def _untrained(config):
    seed_everything(config.run.seed)
    return build_model(config.model, load_dataset(config.data).data_dim)


def test_progress_is_reported_at_epoch_one_and_every_kth_epoch():
    lines = []
    run = ch00.train_live(TrainConfig.from_dict({**SMALL, "epochs": 4}), report_every=2,
                          report=lines.append)  # fmt: skip
    assert [line.split()[1] for line in lines] == ["1", "2", "4"]
    row = run.history[1]
    assert lines[1] == ch00.progress_line(row)
    # one decimal, typographic minus (the ELBO of binary images is negative)
    assert f"\u2212{abs(row['train_elbo']):.1f}" in lines[1]
    assert f"\u2212{abs(row['test_elbo']):.1f}" in lines[1]
    assert lines[1].endswith(f"test KL {row['test_kl']:4.1f}") and row["test_kl"] > 0


@pytest.mark.parametrize("replacement", [False, True])
def test_minibatches_are_every_equally_likely_draw(replacement):
    for n in (3, 4):
        for m in range(1, n + 1):
            batches = ch00.minibatches(n, m, replacement)
            assert len(batches) == (n**m if replacement else math.comb(n, m))
            assert len(set(batches)) == len(batches) and all(len(b) == m for b in batches)
            # every example is in the same number of them (uniform drawing is symmetric)
            counts = np.bincount(np.concatenate(batches), minlength=n)
            assert (counts == counts[0]).all()
    with pytest.raises(ValueError):
        ch00.minibatches(3, 4, False)


@pytest.mark.parametrize("replacement", [False, True])
def test_minibatch_expectation_matches_monte_carlo_minibatches(replacement):
    rng = np.random.default_rng(0)
    e = rng.normal(-30.0, 5.0, size=4)  # per-example ELBOs
    symbols = sp.symbols("e_1:5", real=True)
    n, m = 4, 2
    exact = float(
        ch00.minibatch_expectation(symbols, m, replacement).subs(dict(zip(symbols, e, strict=True)))
    )
    draws = np.array([n / m * e[rng.choice(n, m, replace=replacement)].sum() for _ in range(40000)])
    stderr = draws.std() / math.sqrt(len(draws))
    assert abs(draws.mean() - exact) < 4 * stderr
    assert exact == pytest.approx(e.sum(), rel=1e-12)


def test_minibatch_expectation_takes_named_estimates():
    symbols = sp.symbols("e_1:4", real=True)
    names = sp.symbols("b_1:4", real=True)
    expr = ch00.minibatch_expectation(symbols, 2, False, names)
    assert expr.free_symbols == set(names)
    with pytest.raises(ValueError):
        ch00.minibatch_expectation(symbols, 2, False, names[:2])


def test_architecture_diagram_shows_the_models_layers():
    model = VAE(data_dim=64, hidden_dims=(32, 16), latent_dim=3)
    fig = ch00.plot_architecture(model)
    texts = " ".join(t.get_text() for t in fig.axes[0].texts)
    assert "64 → 32 → 16 → 6" in texts and "3 → 16 → 32 → 64" in texts
    assert "64 pixels" in texts and r"\varepsilon \sim" in texts
    assert fig.get_size_inches()[0] <= COLUMN_WIDTH
    with pytest.raises(ValueError):
        ch00.plot_architecture(LinearVAE(data_dim=4, latent_dim=2))
