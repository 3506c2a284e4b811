"""Chapter 10's helpers against independent oracles: the ``torch.distributions`` objects of
the model (its posterior mean, its Bernoulli likelihood's probabilities), a model that knows
nothing (one bit per dimension), and hand-made histories and metrics."""

import math

import matplotlib
import numpy as np
import pytest
import torch

from vaebook.chapters import ch10_training_a_vae as ch10
from vaebook.vae.models import VAE

matplotlib.use("Agg")


@pytest.fixture
def model():
    torch.manual_seed(0)
    return VAE(data_dim=16, hidden_dims=(8,), latent_dim=2).eval()


def test_source_block_is_the_function_text():
    block = ch10.source_block(ch10.source_block)
    assert block.startswith("```python\ndef source_block(") and block.endswith("\n```")


def test_latent_means_and_reconstruction_match_the_distributions(model):
    x = torch.bernoulli(torch.full((5, 16), 0.3), generator=torch.Generator().manual_seed(1))
    mu = ch10.latent_means(model, x)
    torch.testing.assert_close(mu, model.posterior(x).mean)
    probs = model.likelihood(model.posterior(x).mean).base_dist.probs
    torch.testing.assert_close(ch10.reconstruct(model, x), probs)
    # one seeded draw from q: reproducible, different from the mean's, in [0, 1]
    a, b = ch10.reconstruct(model, x, seed=3), ch10.reconstruct(model, x, seed=3)
    torch.testing.assert_close(a, b)
    assert not torch.allclose(a, probs) and a.min() >= 0 and a.max() <= 1


def test_prior_samples_are_seeded_and_leave_the_global_rng(model):
    state = torch.get_rng_state()
    a = ch10.prior_samples(model, 7, seed=0)
    assert torch.equal(torch.get_rng_state(), state)
    torch.testing.assert_close(a, ch10.prior_samples(model, 7, seed=0))
    assert a.shape == (7, 16) and not torch.allclose(a, ch10.prior_samples(model, 7, seed=1))
    # Monte Carlo: many prior samples average to the marginal pixel probabilities, which the
    # model's own sampler (torch.distributions prior) estimates independently
    torch.manual_seed(5)
    marginal = model.sample(20000).mean(0)
    torch.testing.assert_close(
        ch10.prior_samples(model, 20000, seed=2).mean(0), marginal, atol=0.01, rtol=0
    )


def test_interpolation_ends_at_the_two_reconstructions(model):
    x = torch.bernoulli(torch.full((2, 16), 0.5), generator=torch.Generator().manual_seed(2))
    images, codes = ch10.interpolate(model, x[0], x[1], steps=5)
    assert images.shape == (5, 16) and codes.shape == (5, 2)
    torch.testing.assert_close(images[[0, -1]], ch10.reconstruct(model, x))
    steps = codes.diff(dim=0)  # equal steps along one straight line
    torch.testing.assert_close(steps, steps[:1].expand_as(steps))


def test_label_pickers():
    labels = torch.tensor([3, 1, 3, 0, 1, 3])
    assert ch10.first_of_each_label(labels, (0, 1, 3)) == [3, 1, 0]
    codes = torch.tensor([[0.0], [5.0], [2.0], [9.0], [7.0], [10.0]])
    # label 3: codes 0, 2, 10 -> mean 4 -> nearest is 2 (row 2); label 1: 5, 7 -> tie -> row 1
    assert ch10.most_typical(codes, labels, (3, 1, 0)) == [2, 1, 3]


def _history(n=4):
    return [
        {
            "epoch": e,
            "active_units": 1,
            "beta": 1.0,
            **{
                f"{s}_{t}": -float(e) * (2 if s == "test" else 1) + (t == "kl") * 10
                for s in ("train", "test")
                for t in ("elbo", "reconstruction", "kl")
            },
        }
        for e in range(1, n + 1)
    ]


def test_history_curves_and_figure():
    curves = ch10.history_curves(_history())
    np.testing.assert_array_equal(curves["epoch"], [1, 2, 3, 4])
    np.testing.assert_array_equal(curves["test_elbo"], [-2, -4, -6, -8])
    fig = ch10.plot_learning_curves(_history(), skip=1)
    assert len(fig.axes) == 3 and fig.get_figwidth() <= 6.8 + 1e-9


def test_metrics_table_bits_per_dim_against_a_coin_flip_model():
    """A model that gives every pixel probability 1/2 has log p(x) = -D ln 2 for every x:
    exactly one bit per dimension, whatever D."""
    d = 64
    coin = -d * math.log(2)
    split = {
        "elbo": coin,
        "elbo_stderr": 0.0,
        "reconstruction": coin,
        "kl": 0.0,
        "log_likelihood": coin,
        "log_likelihood_stderr": 0.0,
        "log_likelihood_k": 10,
    }
    table = ch10.metrics_table({"data_dim": d, "test": split})
    rows = {line.split("|")[1].strip(): line for line in table.splitlines()[2:]}
    assert rows["ELBO"].rstrip(" |").endswith("1.0000")
    assert rows["ELBO"].count("\u221244.36") == 1  # nats, with a typographic minus
    assert next(r for k, r in rows.items() if "KL" in k).rstrip(" |").endswith("0.0000")


def test_image_figures_fit_the_column():
    images = torch.rand(12, 64)
    fig = ch10.plot_image_rows({"a": images[:10], "b": images[:3]}, (8, 8), titles=["x"] * 10)
    assert fig.get_figwidth() <= 6.8 + 1e-9
    fig = ch10.plot_image_grid(images, (8, 8), ncols=5)
    assert fig.get_figwidth() <= 6.8 + 1e-9
    fig = ch10.plot_latent_space(torch.randn(30, 2), torch.arange(30) % 10, path=torch.randn(4, 2))
    assert fig.get_figwidth() <= 6.8 + 1e-9


def test_trained_on_says_the_device_in_words():
    """The provenance strings the checkpoint writer records (a CPU with its thread count, a
    CUDA device by name) become words; a provenance without a device is refused."""
    cpu = {"device": "cpu", "device_name": "cpu (x86_64, 1 threads)"}
    assert ch10.trained_on(cpu) == "one CPU thread"
    assert ch10.trained_on({**cpu, "device_name": "cpu (aarch64, 4 threads)"}) == "four CPU threads"
    assert ch10.trained_on({**cpu, "device_name": "cpu (x, 64 threads)"}) == "64 CPU threads"
    gpu = {"device": "cuda:0", "device_name": "NVIDIA H200"}
    assert ch10.trained_on(gpu) == "a GPU (NVIDIA H200)"
    with pytest.raises(ValueError):
        ch10.trained_on({"device": "mps", "device_name": "?"})
    with pytest.raises(ValueError):
        ch10.trained_on({"device": "cuda:0"})


def test_format_number_uses_a_typographic_minus():
    assert ch10.format_number(-1.5) == "\u22121.50"
    assert ch10.format_number(2.5, 1) == "2.5"
    assert "-" not in ch10.format_number(-0.001, 4)
