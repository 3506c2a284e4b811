"""Free bits (Kingma et al., 2016): the KL term of the loss is sum_j max(lambda, batch mean of
KL_j), checked against a direct computation with torch.distributions (the KL of each
dimension by kl_divergence, the clamp by torch.maximum), its gradient against the plain
KL's, and the configuration field and its generated flag."""

import pytest
import torch
from torch.distributions import Normal, kl_divergence

from vaebook.vae.config import ConfigError, TrainConfig
from vaebook.vae.models import VAE
from vaebook.vae.objectives import elbo_terms, free_bits_kl


def batch(seed=0, b=7, latent=5):
    g = torch.Generator().manual_seed(seed)
    mu = torch.randn(b, latent, generator=g, dtype=torch.float64) * 0.5
    logvar = torch.randn(b, latent, generator=g, dtype=torch.float64) * 0.5
    return mu, logvar


def oracle(mu, logvar, free_bits):
    per_dim = kl_divergence(Normal(mu, (0.5 * logvar).exp()), Normal(0.0, 1.0))  # (B, L)
    return torch.maximum(per_dim.mean(0), torch.tensor(free_bits, dtype=mu.dtype)).sum()


@pytest.mark.parametrize("free_bits", [0.01, 0.1, 0.25, 0.5, 5.0])
def test_free_bits_kl_is_the_clamped_batch_mean_of_each_dimension(free_bits):
    mu, logvar = batch()
    assert torch.allclose(free_bits_kl(mu, logvar, free_bits), oracle(mu, logvar, free_bits))


def test_the_clamp_is_active_on_some_dimensions_and_not_others():
    mu, logvar = batch()
    per_dim = kl_divergence(Normal(mu, (0.5 * logvar).exp()), Normal(0.0, 1.0)).mean(0)
    ordered = per_dim.sort().values
    lam = ((ordered[1] + ordered[2]) / 2).item()  # two dimensions under it, no tie
    below = per_dim < lam
    assert 0 < below.sum() < len(per_dim)
    mu.requires_grad_(True)
    logvar.requires_grad_(True)
    grads = torch.autograd.grad(free_bits_kl(mu, logvar, lam), (mu, logvar))
    plain = torch.autograd.grad(free_bits_kl(mu, logvar, 0.0), (mu, logvar))
    for g, p in zip(grads, plain, strict=True):
        assert torch.all(g[:, below] == 0)  # a dimension under lambda: no KL gradient
        assert torch.allclose(g[:, ~below], p[:, ~below])  # above: the plain KL's gradient
    with torch.no_grad():  # with lambda 0 it is the batch mean of the total KL
        total = kl_divergence(Normal(mu, (0.5 * logvar).exp()), Normal(0.0, 1.0)).sum(-1).mean()
        assert torch.allclose(free_bits_kl(mu, logvar, 0.0), total)


def test_the_loss_uses_free_bits_in_place_of_the_kl():
    torch.manual_seed(0)
    model = VAE(data_dim=6, hidden_dims=[5], latent_dim=3).double()
    x = torch.bernoulli(torch.full((9, 6), 0.5, dtype=torch.float64))
    mu, logvar = model.encode(x)
    for beta in (1.0, 0.5):
        torch.manual_seed(1)
        terms = elbo_terms(model, x, beta=beta, free_bits=0.3)
        torch.manual_seed(1)
        plain = elbo_terms(model, x, beta=beta)
        assert torch.equal(terms.reconstruction, plain.reconstruction)  # same draw of z
        assert torch.allclose(terms.kl, plain.kl)  # the KL it reports is the ELBO's
        expected = beta * oracle(mu, logvar, 0.3) - terms.reconstruction.mean()
        assert torch.allclose(terms.loss, expected)
        assert torch.allclose(terms.elbo, plain.elbo)


def test_configuration_field_and_flag():
    from vaebook.cli import build_parser

    config = TrainConfig.from_dict({"free_bits": 0.25})
    assert config.optim.free_bits == 0.25 and TrainConfig().optim.free_bits == 0
    args = build_parser().parse_args(["train", "--free-bits", "0.5"])
    assert args.free_bits == 0.5
    with pytest.raises(ConfigError, match="free bits"):
        config.replace(train_k=5)
    with pytest.raises(ConfigError, match="free bits"):
        config.replace(analytic_kl=False)
    with pytest.raises(ConfigError, match="free_bits"):
        TrainConfig.from_dict({"free_bits": -1.0})
