"""The autoregressive decoder (MADE conditioned on z): the autoregressive property checked
with torch autograd, the log-likelihood against a pixel-by-pixel chain rule of
torch.distributions.Bernoulli factors, normalisation by enumerating every binary image,
ancestral sampling against those probabilities, and the model in the training half
(configuration, checkpoints, objectives, trainer)."""

import itertools
import math

import pytest
import torch
from torch.distributions import Bernoulli

from vaebook.vae.config import ConfigError, ModelConfig, TrainConfig
from vaebook.vae.made import MadeVAE, made_masks
from vaebook.vae.models import build_model
from vaebook.vae.objectives import (
    elbo_terms,
    estimate_log_likelihood,
    iwae_bound,
    reconstruction_log_likelihood,
)


def small_model(data_dim=10, hidden=(16, 12), latent=3, seed=0):
    torch.manual_seed(seed)
    model = MadeVAE(data_dim, list(hidden), latent).double()
    with torch.no_grad():  # larger weights than the initialisation: no near-zero Jacobian
        for p in model.parameters():
            p.mul_(3.0)
    return model


@pytest.mark.parametrize(
    "data_dim, hidden", [(10, (16, 12)), (7, (4,)), (64, (64, 64)), (5, (20, 20, 20))]
)
def test_each_logit_depends_only_on_earlier_pixels(data_dim, hidden):
    """d a_i / d x_j = 0 for j >= i, computed by autograd (which knows nothing of the masks),
    and nonzero for every j < i (the masks hide no earlier pixel)."""
    model = small_model(data_dim, hidden, latent=2)
    x = torch.rand(3, data_dim, dtype=torch.float64, requires_grad=True)
    z = torch.randn(3, 2, dtype=torch.float64)
    logits = model.decode(z, x)  # (3, D)
    for i in range(data_dim):
        (grad,) = torch.autograd.grad(logits[:, i].sum(), x, retain_graph=True)  # (3, D)
        assert torch.all(grad[:, i:] == 0), (i, grad[:, i:])
        assert torch.all(grad[:, :i].abs().sum(0) > 0), (i, grad[:, :i])


def test_z_reaches_every_logit_but_the_first():
    """The first pixel has nothing before it and z enters the first hidden layer only, so
    a_1 is a constant; every later logit depends on z."""
    model = small_model()
    x = torch.bernoulli(torch.full((4, 10), 0.5, dtype=torch.float64))
    z = torch.randn(4, 3, dtype=torch.float64, requires_grad=True)
    logits = model.decode(z, x)
    for i in range(10):
        (grad,) = torch.autograd.grad(logits[:, i].sum(), z, retain_graph=True)
        assert (grad.abs().sum() == 0) == (i == 0), i


def test_masks_have_the_shapes_of_their_weights():
    masks = made_masks(6, [5, 4])
    assert [tuple(m.shape) for m in masks] == [(5, 6), (4, 5), (6, 4), (6, 6)]
    assert torch.equal(masks[-1], torch.tril(torch.ones(6, 6), diagonal=-1))


def chain_rule_log_likelihood(model, z, x):
    """log p(x|z) as the sum over pixels i of log Bernoulli(x_i; sigmoid(a_i)), where a_i is
    computed from an input whose pixels i, i+1, ... are replaced by random values: what
    the autoregressive factorisation says, evaluated one pixel at a time."""
    total = torch.zeros(x.shape[0], dtype=torch.float64)
    for i in range(x.shape[1]):
        garbled = x.clone()
        garbled[:, i:] = torch.rand_like(garbled[:, i:])
        logit = model.decode(z, garbled)[:, i]
        total += Bernoulli(logits=logit).log_prob(x[:, i])
    return total


def test_log_likelihood_is_the_chain_rule_of_bernoulli_factors():
    model = small_model()
    torch.manual_seed(1)
    x = torch.bernoulli(torch.full((6, 10), 0.4, dtype=torch.float64))
    z = torch.randn(6, 3, dtype=torch.float64)
    with torch.no_grad():
        ours = reconstruction_log_likelihood(model, z, x)  # what the objectives compute
        oracle = chain_rule_log_likelihood(model, z, x)
        by_distribution = model.likelihood(z, x).log_prob(x)
    assert torch.allclose(ours, oracle, rtol=0, atol=1e-10)
    assert torch.allclose(ours, by_distribution, rtol=0, atol=1e-10)


def test_the_likelihood_sums_to_one_over_all_binary_images():
    """p(x|z) is a distribution over {0,1}^D for every z: the sum over all 2^D images."""
    model = small_model(data_dim=6, hidden=(8, 8), latent=2)
    images = torch.tensor(list(itertools.product((0.0, 1.0), repeat=6)), dtype=torch.float64)
    for seed in range(3):
        z = torch.randn(1, 2, dtype=torch.float64, generator=torch.Generator().manual_seed(seed))
        with torch.no_grad():
            log_p = reconstruction_log_likelihood(model, z.expand(64, 2), images)  # (64,)
        assert math.isclose(torch.logsumexp(log_p, 0).item(), 0.0, abs_tol=1e-12)


def test_ancestral_samples_follow_the_model():
    """Each pixel of a sample is drawn with the probability its logit gives, given the
    pixels drawn before it; and the frequencies of the 2^D images match p(x|z)."""
    model = small_model(data_dim=3, hidden=(6,), latent=2)
    z = torch.randn(1, 2, dtype=torch.float64).expand(40000, 2)
    torch.manual_seed(0)
    x, probs = model.sample_pixels(40000, z)
    assert set(x.unique().tolist()) <= {0.0, 1.0}
    with torch.no_grad():
        assert torch.allclose(probs, model.decode(z, x).sigmoid(), rtol=0, atol=1e-12)
        images = torch.tensor(list(itertools.product((0.0, 1.0), repeat=3)), dtype=torch.float64)
        p = reconstruction_log_likelihood(model, z[:8], images).exp()  # (8,)
    counts = torch.stack([(x == image).all(1).sum() for image in images]).double()
    expected = 40000 * p
    chi2 = ((counts - expected) ** 2 / expected).sum().item()
    assert chi2 < 24.3  # chi-square, 7 degrees of freedom: P(chi2 > 24.3) < 0.001
    assert model.sample(5).shape == (5, 3)


def test_decode_without_the_data_is_refused():
    model = small_model()
    with pytest.raises(ValueError, match="decode\\(z, x\\)"):
        model.decode(torch.zeros(1, 3, dtype=torch.float64))


def test_built_from_the_configuration_and_checkpointed_without_masks():
    config = TrainConfig.from_dict({"architecture": "made", "hidden_dims": [8, 6], "latent_dim": 2})
    model = build_model(config.model, 10)
    assert isinstance(model, MadeVAE)
    assert [m.out_features for m in model.decoder.masked] == [6, 8, 10]  # mirrored widths
    state = model.state_dict()
    assert not any(k.endswith("mask") for k in state)
    again = build_model(config.model, 10)
    again.load_state_dict(state)
    x, z = torch.rand(2, 10).round(), torch.randn(2, 2)
    assert torch.equal(model.decode(z, x), again.decode(z, x))
    with pytest.raises(ConfigError, match="bernoulli"):
        config.replace(likelihood="gaussian")
    with pytest.raises(ValueError, match="Bernoulli"):
        build_model(ModelConfig(architecture="made", likelihood="gaussian"), 10)


def test_objectives_run_on_the_autoregressive_model():
    """ELBO terms, IWAE and the log-likelihood estimate broadcast the data over the draws of
    z; the estimate's bounds are ordered."""
    model = small_model()
    torch.manual_seed(2)
    x = torch.bernoulli(torch.full((5, 10), 0.5, dtype=torch.float64))
    terms = elbo_terms(model, x)
    assert terms.reconstruction.shape == terms.kl.shape == (5,)
    assert iwae_bound(model, x, 7).shape == (5,)
    estimate = estimate_log_likelihood(model, x, k=64, bound_ks=(1, 8))
    assert torch.all(estimate.bounds[1] <= estimate.bounds[8] + 1e-9)
    assert torch.all(estimate.bounds[8] <= estimate.per_example + 1e-9)


def test_the_trainer_trains_it(tmp_path):
    from vaebook.vae.train import train

    config = TrainConfig.from_dict(
        {
            "architecture": "made",
            "hidden_dims": [16, 16],
            "latent_dim": 2,
            "binarization": "dynamic",
            "epochs": 2,
            "free_bits": 0.1,
            "device": "cpu",
            "progress": False,
            "runs_dir": str(tmp_path),
            "run_name": "made",
            "eval_k": 4,
        }
    )
    metrics = train(config)
    assert metrics["epoch"] == 2 and math.isfinite(metrics["test_elbo"])
