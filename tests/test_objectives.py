"""Objectives against independent oracles: ``torch.distributions`` (Bernoulli, Normal,
kl_divergence) for every density the objective writes out, Monte Carlo for the KL, and
closed-form linear-Gaussian marginals for the likelihood estimates. None of these tests
restates a formula of objectives.py. The objective's functions are looked up on the module
at call time (``objectives.kl_to_standard_normal``), so tests/test_objective_link.py can
patch them at their definition site and see these tests fail."""

import math

import pytest
import torch
from torch.distributions import Bernoulli, Independent, Normal, kl_divergence

from vaebook.vae import objectives
from vaebook.vae import train as train_module
from vaebook.vae.data import make_ppca
from vaebook.vae.models import VAE, LinearVAE
from vaebook.vae.objectives import (
    active_units,
    bits_per_dim,
    elbo_terms,
    estimate_log_likelihood,
    iwae_bound,
    iwae_terms,
    kl_per_latent_dim,
)
from vaebook.vae.ppca import ppca_mle, ppca_mle_log_likelihood


def small_vae(seed=0, likelihood="bernoulli", decoder_std=None):
    torch.manual_seed(seed)
    return VAE(
        data_dim=12, hidden_dims=(16,), latent_dim=3, likelihood=likelihood, decoder_std=decoder_std
    )


def diag_normal(mu, logvar):
    """The oracle q = N(mu, diag exp(logvar)): batch (B,), event (L,)."""
    return Independent(Normal(mu, (0.5 * logvar).exp()), 1)


def test_kl_matches_torch_kl_divergence():
    g = torch.Generator().manual_seed(0)
    mu = 2 * torch.randn(500, 4, generator=g, dtype=torch.float64)
    logvar = 2 * torch.randn(500, 4, generator=g, dtype=torch.float64)
    prior = diag_normal(torch.zeros_like(mu), torch.zeros_like(logvar))
    oracle = kl_divergence(diag_normal(mu, logvar), prior)  # (500,)
    torch.testing.assert_close(
        objectives.kl_to_standard_normal(mu, logvar), oracle, rtol=1e-12, atol=1e-12
    )
    assert (objectives.kl_to_standard_normal(mu, logvar) >= 0).all()
    torch.testing.assert_close(  # KL(p || p) = 0
        objectives.kl_to_standard_normal(torch.zeros(3), torch.zeros(3)), torch.tensor(0.0)
    )


def test_analytic_kl_matches_monte_carlo():
    torch.manual_seed(0)
    mu = torch.randn(4, 3)
    logvar = torch.randn(4, 3) * 0.5
    q = diag_normal(mu, logvar)
    z = q.sample((200_000,))  # (S, 4, 3)
    prior = Normal(0.0, 1.0)
    monte_carlo = (q.log_prob(z) - prior.log_prob(z).sum(-1)).mean(0)  # (4,)
    torch.testing.assert_close(
        objectives.kl_to_standard_normal(mu, logvar), monte_carlo, atol=0.02, rtol=0.01
    )


def test_log_likelihoods_and_log_densities_match_torch_distributions():
    g = torch.Generator().manual_seed(1)
    f64 = dict(generator=g, dtype=torch.float64)
    logits = 4 * torch.randn(50, 64, **f64)  # (B, D)
    logits[0, :4] = torch.tensor([60.0, -60.0, 200.0, -200.0])  # far in the tails
    x = (torch.rand(50, 64, **f64) < 0.5).double()
    oracle = Independent(Bernoulli(logits=logits), 1).log_prob(x)  # (B,)
    torch.testing.assert_close(
        objectives.bernoulli_log_likelihood(x, logits), oracle, rtol=1e-12, atol=1e-10
    )
    # non-binary targets in [0, 1] (e.g. grey levels): Bernoulli.log_prob evaluates the same
    x_grey = torch.rand(50, 64, **f64)
    torch.testing.assert_close(
        objectives.bernoulli_log_likelihood(x_grey, logits),
        Independent(Bernoulli(logits=logits, validate_args=False), 1).log_prob(x_grey),
        rtol=1e-12,
        atol=1e-10,
    )
    mean, x_real = torch.randn(50, 64, **f64), 3 * torch.randn(50, 64, **f64)
    for log_std in (
        torch.tensor(0.0, dtype=torch.float64),
        torch.tensor(-1.3, dtype=torch.float64),
    ):
        oracle = Independent(Normal(mean, log_std.exp()), 1).log_prob(x_real)
        torch.testing.assert_close(
            objectives.gaussian_log_likelihood(x_real, mean, log_std), oracle
        )
    mu, logvar = torch.randn(50, 3, **f64), torch.randn(50, 3, **f64)
    z = torch.randn(7, 50, 3, **f64)  # (S, B, L)
    torch.testing.assert_close(
        objectives.diag_gaussian_log_density(z, mu, logvar), diag_normal(mu, logvar).log_prob(z)
    )
    torch.testing.assert_close(
        objectives.standard_normal_log_density(z),
        Independent(Normal(0.0 * z, 1.0 + 0.0 * z), 1).log_prob(z),
    )


@pytest.mark.parametrize(
    "likelihood, decoder_std", [("bernoulli", None), ("gaussian", None), ("gaussian", 0.3)]
)
def test_reconstruction_is_the_models_likelihood_distribution(likelihood, decoder_std):
    model = small_vae(likelihood=likelihood, decoder_std=decoder_std)
    with torch.no_grad():
        model.log_decoder_std.fill_(-0.7 if decoder_std is None else math.log(decoder_std))
    x = torch.rand(5, 12).bernoulli() if likelihood == "bernoulli" else torch.randn(5, 12)
    z = torch.randn(4, 5, 3)  # (S, B, L)
    torch.testing.assert_close(
        objectives.reconstruction_log_likelihood(model, z, x), model.likelihood(z).log_prob(x)
    )


@pytest.mark.parametrize("likelihood", ["bernoulli", "gaussian"])
@pytest.mark.parametrize("analytic_kl", [True, False])
def test_elbo_terms_match_torch_distributions(likelihood, analytic_kl):
    """The whole per-example objective, rebuilt from the model's distributions and the same
    reparameterised draw: reconstruction, KL (analytic or single-sample), ELBO and loss."""
    model = small_vae(likelihood=likelihood)
    x = torch.rand(64, 12).bernoulli() if likelihood == "bernoulli" else torch.randn(64, 12)
    beta = 0.5
    torch.manual_seed(1)
    terms = elbo_terms(model, x, beta=beta, analytic_kl=analytic_kl)
    torch.manual_seed(1)
    q = model.posterior(x)
    z = q.rsample()  # (B, L), the same draw
    reconstruction = model.likelihood(z).log_prob(x)  # (B,)
    if analytic_kl:
        kl = kl_divergence(q, model.prior((64,)))  # (B,)
    else:
        kl = q.log_prob(z) - model.prior().log_prob(z)  # (B,)
    assert terms.reconstruction.shape == terms.kl.shape == (64,)
    torch.testing.assert_close(terms.reconstruction, reconstruction)
    torch.testing.assert_close(terms.kl, kl)
    torch.testing.assert_close(terms.elbo, reconstruction - kl)
    torch.testing.assert_close(terms.loss, -(reconstruction - beta * kl).mean())
    if likelihood == "bernoulli":  # a log-probability of binary data is negative
        assert (terms.reconstruction < 0).all()


def test_elbo_terms_convention_and_mc_kl_agree_on_average():
    model = small_vae()
    x = torch.rand(64, 12).bernoulli()
    torch.manual_seed(1)
    terms = elbo_terms(model, x, beta=0.5)
    with torch.no_grad():
        mc = torch.stack([elbo_terms(model, x, analytic_kl=False).kl for _ in range(3000)]).mean(0)
    torch.testing.assert_close(mc, terms.kl.detach(), atol=0.05, rtol=0.02)
    # bits per dimension: -ELBO / (D ln 2)
    # (12 ln 2 nats spread over 12 dimensions is one bit each)
    assert bits_per_dim(-12 * math.log(2), 12) == pytest.approx(1.0)
    assert bits_per_dim(torch.tensor([-24 * math.log(2)]), 12).item() == pytest.approx(2.0)


def test_bf16_autocast_keeps_noise_kl_and_likelihood_float32(monkeypatch):
    """Under a bfloat16 autocast the networks run in bfloat16, but the noise, z, the KL and
    the log-likelihood are float32 -- in the trainer's own step, ``make_train_step(bf16=True)``
    (CPU autocast here; on CUDA the same ops are lowered)."""

    model = small_vae()
    x = torch.rand(32, 12).bernoulli()
    seen = {}
    real_reparameterise, real_decode = objectives.reparameterise, model.decode

    def spy_reparameterise(mu, logvar, sample_shape=()):
        seen["mu"], seen["logvar"] = mu.dtype, logvar.dtype
        z = real_reparameterise(mu, logvar, sample_shape)
        seen["z"] = z.dtype
        return z

    def spy_decode(z, x=None):
        out = real_decode(z, x)
        seen["logits"] = out.dtype
        return out

    real_elbo_terms = objectives.elbo_terms

    def spy_elbo_terms(*args, **kwargs):
        terms = real_elbo_terms(*args, **kwargs)
        seen["terms"] = (terms.reconstruction.dtype, terms.kl.dtype, terms.loss.dtype)
        return terms

    monkeypatch.setattr(objectives, "reparameterise", spy_reparameterise)
    monkeypatch.setattr(model, "decode", spy_decode)
    monkeypatch.setattr(train_module, "elbo_terms", spy_elbo_terms)
    step = train_module.make_train_step(model, torch.optim.SGD(model.parameters(), lr=0), bf16=True)
    assert torch.isfinite(step(x)).all()
    assert seen == {
        "mu": torch.float32,
        "logvar": torch.float32,
        "z": torch.float32,
        "logits": torch.bfloat16,  # the networks did run in bf16
        "terms": (torch.float32,) * 3,
    }
    with torch.autocast("cpu", dtype=torch.bfloat16):
        terms = elbo_terms(model, x)
    # the KL is the float32 KL of the bf16-rounded encoder outputs, to float32 rounding
    with torch.autocast("cpu", dtype=torch.bfloat16):
        mu, logvar = model.encode(x)
    torch.testing.assert_close(
        terms.kl, kl_divergence(diag_normal(mu.float(), logvar.float()), model.prior((32,)))
    )


def test_iwae_with_one_sample_is_the_mc_elbo_estimator():
    model = small_vae(likelihood="gaussian")
    x = torch.rand(10, 12)
    torch.manual_seed(5)
    terms = elbo_terms(model, x, analytic_kl=False)
    torch.manual_seed(5)
    bound = iwae_bound(model, x, k=1)
    torch.testing.assert_close(bound, terms.elbo)


def test_iwae_non_decreasing_in_k_on_average():
    model = small_vae()
    x = torch.rand(200, 12).bernoulli()
    torch.manual_seed(0)
    with torch.no_grad():
        means = [
            torch.stack([iwae_bound(model, x, k).mean() for _ in range(20)]).mean().item()
            for k in (1, 5, 50)
        ]
    assert means[0] < means[1] < means[2], means


def test_iwae_bound_matches_torch_distributions_at_the_same_draws():
    model = small_vae(likelihood="gaussian")
    x = torch.rand(3, 12)
    torch.manual_seed(2)
    bound, terms = iwae_terms(model, x, k=4)  # (3,)
    torch.manual_seed(2)
    mu, logvar = model.encode(x)
    z = mu + (0.5 * logvar).exp() * torch.randn(4, 3, 3)
    normal = torch.distributions.Normal
    std = model.log_decoder_std.exp()
    expected = (
        normal(model.decode(z), std).log_prob(x).sum(-1)
        + normal(0.0, 1.0).log_prob(z).sum(-1)
        - normal(mu, (0.5 * logvar).exp()).log_prob(z).sum(-1)
    )  # (4, 3) log importance weights
    torch.testing.assert_close(bound, torch.logsumexp(expected, 0) - math.log(4))
    recon = normal(model.decode(z), std).log_prob(x).sum(-1).mean(0)  # (3,)
    torch.testing.assert_close(terms.reconstruction, recon)


def linear_vae_at_ppca_mle(x, latent_dim, encoder_error=0.0):
    """Linear VAE whose decoder is the pPCA MLE and whose encoder is the exact posterior.

    The exact posterior of pPCA is N(M^-1 W^T (x - b), sigma^2 M^-1), M = W^T W + sigma^2 I,
    diagonal here because the MLE's W has orthogonal columns. ``encoder_error`` > 0
    shrinks the posterior mean and widens the variance, so the ELBO becomes loose.
    """
    mean, w, sigma2 = ppca_mle(x, latent_dim)
    m_inv = torch.linalg.inv(
        w.T @ w + sigma2 * torch.eye(latent_dim, dtype=torch.float64)
    )  # (L, L)
    model = LinearVAE(x.shape[1], latent_dim)
    with torch.no_grad():
        model.decoder.weight.copy_(w)
        model.decoder.bias.copy_(mean)
        model.log_decoder_std.fill_(0.5 * math.log(sigma2))
        enc = (1 - encoder_error) * (m_inv @ w.T)  # (L, D)
        model.encoder.weight.copy_(enc)
        model.encoder.bias.copy_(-enc @ mean)
        model.encoder_logvar.copy_((sigma2 * m_inv.diagonal()).log() + 3 * encoder_error)
    return model, mean, w, sigma2


def test_linear_vae_marginal_matches_scipy_oracle():
    from scipy.stats import multivariate_normal

    x, _ = make_ppca(n=300, data_dim=5, latent_dim=2, seed=3)
    model, mean, w, sigma2 = linear_vae_at_ppca_mle(x, 2)
    cov = (w @ w.T + sigma2 * torch.eye(5, dtype=torch.float64)).numpy()
    oracle = multivariate_normal(mean.numpy(), cov).logpdf(x.double().numpy())
    torch.testing.assert_close(model.exact_log_likelihood(x), torch.from_numpy(oracle))
    assert abs(float(oracle.mean()) - ppca_mle_log_likelihood(x, 2)) < 1e-9


def test_likelihood_estimate_converges_to_exact_log_px_on_linear_vae():
    x, _ = make_ppca(n=400, data_dim=5, latent_dim=2, seed=4)
    model, *_ = linear_vae_at_ppca_mle(x, 2, encoder_error=0.15)
    exact = model.exact_log_likelihood(x).float()  # (N,)
    torch.manual_seed(0)
    with torch.no_grad():
        elbo_gap = (exact - elbo_terms(model, x).elbo).mean().item()
    assert elbo_gap > 0.5  # the perturbed encoder makes the ELBO visibly loose ...
    errors = []
    for k in (1, 10, 100, 5000):
        est = estimate_log_likelihood(
            model, x, k=k, max_elements=1 << 16
        )  # small budget: many chunks
        errors.append((est.per_example - exact).abs().mean().item())
        assert est.mean <= exact.mean().item() + 0.005  # biased low (Jensen), up to noise
    assert errors == sorted(errors, reverse=True), errors  # ... and more samples close the gap
    assert errors[-1] < 0.03
    assert abs(est.mean - exact.mean().item()) < 0.02
    assert est.stderr == pytest.approx(exact.std().item() / math.sqrt(400), rel=0.05)


def test_likelihood_estimate_is_exact_with_the_exact_posterior_for_any_chunking():
    """With q = exact posterior every importance weight equals p(x): no estimator noise."""
    x, _ = make_ppca(n=50, data_dim=5, latent_dim=2, seed=6)
    model, *_ = linear_vae_at_ppca_mle(x, 2)
    exact = model.exact_log_likelihood(x).float()
    for max_elements, data_chunk in [(1 << 30, 1000), (40, 7), (1, 1)]:
        est = estimate_log_likelihood(
            model, x, k=64, max_elements=max_elements, data_chunk=data_chunk
        )
        torch.testing.assert_close(est.per_example, exact, atol=1e-4, rtol=0)
        with torch.no_grad():
            torch.testing.assert_close(
                elbo_terms(model, x, analytic_kl=False).elbo, exact, atol=1e-4, rtol=0
            )


def test_likelihood_estimate_above_elbo_and_iwae_on_mlp():
    model = small_vae()
    x = torch.rand(300, 12).bernoulli()
    torch.manual_seed(9)
    with torch.no_grad():
        elbo = elbo_terms(model, x).elbo.mean().item()
        iwae = iwae_bound(model, x, 10).mean().item()
    est = estimate_log_likelihood(model, x, k=1000, max_elements=2000, data_chunk=16)
    assert elbo < iwae < est.mean
    assert est.per_example.shape == (300,)


def test_diagnostics_kl_per_dim_and_active_units():
    model = small_vae()
    x = torch.rand(500, 12)
    with torch.no_grad():
        model.encoder[-1].weight[1].zero_()  # dim 1 of mu and dim 1 of logvar ignore x ...
        model.encoder[-1].bias[1] = 0.0
        model.encoder[-1].weight[4].zero_()
        model.encoder[-1].bias[4] = 0.0  # ... and equal the prior: KL 0
        model.encoder[-1].weight[0].mul_(50.0)  # dim 0 varies a lot with x
    per_dim = kl_per_latent_dim(model, x)
    assert per_dim.shape == (3,)
    assert per_dim[1].item() == pytest.approx(0.0, abs=1e-6)
    total = kl_divergence(model.posterior(x), model.prior((500,))).mean()
    torch.testing.assert_close(per_dim.sum(), total.detach())
    count, variance = active_units(model, x)
    mu, _ = model.encode(x)
    assert count == int((mu.var(0) > 0.01).sum())
    assert variance[1].item() == 0.0 and variance[0].item() > 0.01 and 1 <= count <= 2


def test_linear_vae_trained_on_ppca_reaches_the_mle():
    """Training the linear VAE's ELBO recovers the closed-form pPCA MLE (within 0.01 nats)."""
    torch.manual_seed(0)
    x, _ = make_ppca(n=2000, data_dim=5, latent_dim=2, seed=1)
    target = ppca_mle_log_likelihood(x, 2)
    model = LinearVAE(5, 2)
    opt = torch.optim.Adam(model.parameters(), lr=0.02)
    sched = torch.optim.lr_scheduler.CosineAnnealingLR(opt, T_max=800)
    for _ in range(800):
        opt.zero_grad(set_to_none=True)
        elbo_terms(model, x).loss.backward()
        opt.step()
        sched.step()
    reached = model.exact_log_likelihood(x).mean().item()
    assert reached <= target + 1e-6  # the MLE is the maximum
    assert target - reached < 0.01


def test_bounds_from_the_same_draws_are_ordered_and_unbiased():
    model = small_vae()
    x = torch.rand(40, 12).bernoulli()
    torch.manual_seed(3)
    est = estimate_log_likelihood(
        model, x, k=600, max_elements=3000, data_chunk=16, bound_ks=(1, 10, 50)
    )
    b1, b10, b50 = est.bounds[1], est.bounds[10], est.bounds[50]
    assert (
        (b1 <= b10 + 1e-5).all()
        and (b10 <= b50 + 1e-5).all()
        and (b50 <= est.per_example + 1e-5).all()
    )
    with torch.no_grad():  # same quantities from independent draws agree on average
        elbo = torch.stack([elbo_terms(model, x, analytic_kl=False).elbo for _ in range(300)]).mean(
            0
        )
        iwae10 = torch.stack([iwae_bound(model, x, 10) for _ in range(60)]).mean(0)
    assert (b1 - elbo).abs().mean() < 0.05 and (b10 - iwae10).abs().mean() < 0.05
    with pytest.raises(ValueError, match="divide"):
        estimate_log_likelihood(model, x, k=100, bound_ks=(30,))
