"""Model shapes, the densities the models expose (against independent oracles: torch's
functional loss, torch.distributions with the known scale, scipy, a numerical integral) and
building a model from its config section."""

import pytest
import torch
from scipy import stats

from vaebook.vae.config import ModelConfig
from vaebook.vae.models import VAE, LinearVAE, build_model


def test_default_shapes_784_400_20():
    model = VAE()
    x = torch.rand(5, 784)
    mu, logvar = model.encode(x)
    assert mu.shape == logvar.shape == (5, 20)
    assert model.decode(mu).shape == (5, 784)
    assert [m.out_features for m in model.encoder if isinstance(m, torch.nn.Linear)] == [400, 40]
    assert model.sample(3).shape == (3, 784)


def test_bernoulli_likelihood_is_bce_with_logits():
    torch.manual_seed(0)
    model = VAE(data_dim=64, hidden_dims=(128,), latent_dim=8)
    z = torch.randn(4, 8)
    x = torch.rand(4, 64).bernoulli()
    logits = model.decode(z)
    expected = -torch.nn.functional.binary_cross_entropy_with_logits(
        logits, x, reduction="none"
    ).sum(-1)
    torch.testing.assert_close(model.likelihood(z).log_prob(x), expected)
    probs = model.sample(2)
    assert ((probs > 0) & (probs < 1)).all()


@pytest.mark.parametrize("decoder_std", [None, 0.3])
def test_gaussian_likelihood_learned_or_fixed_std(decoder_std):
    torch.manual_seed(0)
    model = VAE(
        data_dim=6, hidden_dims=(8,), latent_dim=2, likelihood="gaussian", decoder_std=decoder_std
    )
    std = 1.0 if decoder_std is None else decoder_std
    z, x = torch.randn(3, 2), torch.randn(3, 6)
    oracle = torch.distributions.Normal(model.decode(z), std).log_prob(x).sum(-1)
    torch.testing.assert_close(model.likelihood(z).log_prob(x), oracle)
    learnable = [n for n, _ in model.named_parameters() if "log_decoder_std" in n]
    assert learnable == (["log_decoder_std"] if decoder_std is None else [])
    assert "log_decoder_std" in model.state_dict()


def test_posterior_and_prior_shapes():
    model = VAE(data_dim=10, hidden_dims=(16, 12), latent_dim=3)
    q = model.posterior(torch.rand(7, 10))
    assert q.batch_shape == (7,) and q.event_shape == (3,)
    p = model.prior()
    assert p.event_shape == (3,)
    z = torch.randn(5, 3)
    oracle = stats.multivariate_normal(mean=[0.0] * 3).logpdf(z.double().numpy())  # scipy
    torch.testing.assert_close(p.log_prob(z).double(), torch.from_numpy(oracle))
    # posterior variance is exp(logvar)
    mu, logvar = model.encode(torch.rand(7, 10))
    assert q.base_dist.scale.shape == mu.shape


def test_linear_vae_is_linear_and_its_marginal_is_exact():
    torch.manual_seed(0)
    model = LinearVAE(data_dim=4, latent_dim=2)
    x1, x2 = torch.randn(1, 4), torch.randn(1, 4)
    mu1, lv1 = model.encode(x1)
    mu2, lv2 = model.encode(x2)
    mu12, lv12 = model.encode(x1 + x2)
    torch.testing.assert_close(mu12 - model.encoder.bias, mu1 + mu2 - 2 * model.encoder.bias)
    torch.testing.assert_close(lv1, lv12)
    # marginal: integrate p(x|z) p(z) numerically in 2-D on a grid, an independent oracle
    grid = torch.linspace(-7, 7, 401, dtype=torch.float64)
    z = torch.cartesian_prod(grid, grid)  # (G, 2)
    x = torch.randn(4, dtype=torch.float64)
    with torch.no_grad():
        w, b = model.decoder.weight.double(), model.decoder.bias.double()
        std = model.log_decoder_std.double().exp()
        log_joint = torch.distributions.Normal(z @ w.T + b, std).log_prob(x).sum(
            -1
        ) + torch.distributions.Normal(0.0, 1.0).log_prob(z).sum(-1)
        cell = (grid[1] - grid[0]) ** 2
        numeric = torch.logsumexp(log_joint, 0) + torch.log(cell)
    torch.testing.assert_close(
        model.exact_log_likelihood(x[None])[0].detach(), numeric, atol=1e-6, rtol=0
    )


def test_build_model_from_the_model_section():
    linear = build_model(ModelConfig(architecture="linear", likelihood="gaussian", latent_dim=2), 5)
    assert isinstance(linear, LinearVAE) and linear.latent_dim == 2
    mlp = build_model(ModelConfig(hidden_dims=[4], latent_dim=2, activation="tanh"), 5)
    assert type(mlp) is VAE and isinstance(mlp.encoder[1], torch.nn.Tanh)
    assert [m.out_features for m in mlp.encoder if isinstance(m, torch.nn.Linear)] == [4, 4]
    with pytest.raises(ValueError):
        build_model(ModelConfig(architecture="linear", likelihood="bernoulli"), 5)
    with pytest.raises(ValueError):
        build_model(ModelConfig(architecture="conv"), 5)
    with pytest.raises(ValueError):
        VAE(likelihood="poisson")


@pytest.mark.parametrize("data_dim, hidden, latent", [(10, 128, 2), (64, 128, 8), (784, 400, 20)])
def test_unset_sizes_follow_the_data_dimension(data_dim, hidden, latent):
    model = build_model(ModelConfig(), data_dim)
    assert model.encoder[0].out_features == hidden and model.latent_dim == latent
