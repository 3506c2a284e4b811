"""Chapter 11's helpers against independent oracles: a linear-Gaussian VAE, whose posterior
is Gaussian and known in closed form (``LinearVAE.exact_log_likelihood``; the best diagonal
Gaussian has the posterior's mean and the inverse diagonal of its precision, and its gap
is a KL that ``torch.distributions`` computes), Jensen's ordering of the IWAE bounds, and
NumPy for the standard errors."""

import math

import matplotlib
import numpy as np
import pytest
import torch
from torch.distributions import MultivariateNormal, kl_divergence

from vaebook.chapters import ch11_how_tight_is_the_bound as ch11
from vaebook.vae.models import VAE, LinearVAE

matplotlib.use("Agg")


@pytest.fixture
def linear():
    torch.manual_seed(0)
    model = LinearVAE(data_dim=5, latent_dim=2, decoder_std=1.5).double()
    with torch.no_grad():
        model.decoder.weight.copy_(torch.randn(5, 2, dtype=torch.float64))
        model.decoder.bias.copy_(torch.randn(5, dtype=torch.float64))
    x = torch.randn(6, 5, dtype=torch.float64) * 1.5
    return model, x


def exact_posterior(model, x):
    """p(z|x) = N(m, S) of the linear-Gaussian model: precision I + W^T W / s^2."""
    w, b = model.decoder.weight, model.decoder.bias  # (D, L), (D,)
    s2 = (2 * model.log_decoder_std).exp()
    precision = torch.eye(w.shape[1], dtype=w.dtype) + w.T @ w / s2
    cov = torch.linalg.inv(precision)
    mean = (x - b) @ w @ cov / s2  # (N, L) (cov symmetric)
    return mean, cov, precision


def test_gaussian_elbo_of_the_exact_posterior_marginal_is_log_p_minus_kl(linear):
    """Any diagonal q: ELBO = log p(x) - KL(q || p(z|x)), the evidence identity."""
    model, x = linear
    mean, cov, _ = exact_posterior(model, x)
    mu = mean + 0.3
    logvar = torch.log(torch.diagonal(cov)).expand_as(mu) + 0.2
    elbo = ch11.gaussian_elbo(model, x, mu, logvar, samples=20000, seed=1)
    q = MultivariateNormal(mu, torch.diag_embed(logvar.exp()))
    kl = kl_divergence(q, MultivariateNormal(mean, cov.expand(len(x), -1, -1)))
    torch.testing.assert_close(elbo, model.exact_log_likelihood(x) - kl, atol=0.03, rtol=0)


def test_per_point_fit_finds_the_best_diagonal_gaussian(linear):
    model, x = linear
    mean, cov, precision = exact_posterior(model, x)
    start_mu, start_logvar = torch.zeros_like(mean), torch.zeros_like(mean)
    fit = ch11.fit_gaussian_per_point(
        model, x, start_mu, start_logvar, steps=600, samples=64, lr=0.05, seed=0
    )
    torch.testing.assert_close(fit.mu, mean, atol=0.03, rtol=0)
    best_var = 1 / torch.diagonal(precision)  # mean-field optimum of KL(q || p(z|x))
    torch.testing.assert_close(fit.logvar.exp(), best_var.expand_as(mean), atol=0, rtol=0.1)
    # the approximation gap: KL from the best diagonal Gaussian to the full posterior
    q_best = MultivariateNormal(mean, torch.diag(best_var).expand(len(x), -1, -1))
    gap = kl_divergence(q_best, MultivariateNormal(mean, cov.expand(len(x), -1, -1)))
    elbo = ch11.gaussian_elbo(model, x, fit.mu, fit.logvar, samples=20000, seed=2)
    torch.testing.assert_close(model.exact_log_likelihood(x) - elbo, gap, atol=0.03, rtol=0)
    assert fit.trace[-50:].mean() > fit.trace[:10].mean()
    assert all(p.requires_grad for p in model.parameters())


def test_per_point_fit_closes_the_gap_when_the_posterior_is_diagonal():
    """Orthogonal decoder columns: the posterior is diagonal, the approximation gap 0."""
    torch.manual_seed(3)
    model = LinearVAE(data_dim=4, latent_dim=2, decoder_std=0.7).double()
    with torch.no_grad():
        q_, _ = torch.linalg.qr(torch.randn(4, 2, dtype=torch.float64))
        model.decoder.weight.copy_(q_ * torch.tensor([2.0, 0.5], dtype=torch.float64))
    x = torch.randn(5, 4, dtype=torch.float64)
    fit = ch11.fit_gaussian_per_point(
        model, x, *model.encode(x), steps=600, samples=64, lr=0.05, seed=0
    )
    elbo = ch11.gaussian_elbo(model, x, fit.mu, fit.logvar, samples=20000, seed=4)
    torch.testing.assert_close(elbo, model.exact_log_likelihood(x), atol=0.02, rtol=0)


def test_bounds_are_ordered_and_seeded():
    torch.manual_seed(0)
    model = VAE(data_dim=12, hidden_dims=(16,), latent_dim=3).eval()
    x = torch.bernoulli(torch.full((20, 12), 0.4), generator=torch.Generator().manual_seed(0))
    state = torch.get_rng_state()
    est = ch11.likelihood_with_bounds(model, x, k=200, bound_ks=(1, 10, 50), seed=0)
    assert torch.equal(torch.get_rng_state(), state)
    again = ch11.likelihood_with_bounds(model, x, k=200, bound_ks=(1, 10, 50), seed=0)
    torch.testing.assert_close(est.per_example, again.per_example)
    chain = [est.bounds[k] for k in (1, 10, 50)] + [est.per_example]
    for lo, hi in zip(chain, chain[1:], strict=False):
        assert torch.all(lo <= hi + 1e-5)


def test_recorded_bounds_and_stderr():
    m = {
        "test": {
            "elbo": -3.0,
            "elbo_stderr": 0.1,
            "iwae_50": -2.5,
            "iwae_50_stderr": 0.1,
            "iwae_5": -2.7,
            "iwae_5_stderr": 0.1,
            "iwae_5_note": 0,
            "log_likelihood": -2.4,
            "log_likelihood_stderr": 0.1,
            "log_likelihood_k": 500,
        }
    }
    c = ch11.recorded_bounds(m)
    np.testing.assert_array_equal(c.ks, [1, 5, 50])
    np.testing.assert_array_equal(c.means, [-3.0, -2.7, -2.5])
    assert c.ll == -2.4 and c.ll_k == 500
    v = torch.tensor([1.0, 2.0, 4.0, 7.0])
    mean, se = ch11.mean_and_stderr(v)
    assert mean == pytest.approx(3.5)
    assert se == pytest.approx(np.std(v.numpy(), ddof=1) / math.sqrt(4))
    for fig in (
        ch11.plot_bounds_against_k({"a": c}),
        ch11.plot_gap_split(["a", "b"], [1, 2], [0.5, 0.4], [0.1, 0.1], [0.1, 0.1]),
        ch11.plot_active_units({"a": [1.0, 0.001], "b": [0.5, 0.2]}),
    ):
        assert fig.get_figwidth() <= 6.8 + 1e-9


def test_paired_difference_against_scipy():
    """The paired standard error against SciPy's paired t-test (statistic = mean / stderr)
    and against the unpaired error, which ignores the shared per-example variation."""
    import scipy.stats

    gen = torch.Generator().manual_seed(0)
    shared = 3 * torch.randn(50, generator=gen, dtype=torch.float64)  # varies per example
    a = shared + 0.1 * torch.randn(50, generator=gen, dtype=torch.float64) + 0.2
    b = shared + 0.1 * torch.randn(50, generator=gen, dtype=torch.float64)
    mean, se = ch11.paired_difference(a, b)
    t = scipy.stats.ttest_rel(a.numpy(), b.numpy())
    assert mean == pytest.approx(float(np.mean(a.numpy() - b.numpy())), rel=1e-12)
    assert se == pytest.approx(mean / t.statistic, rel=1e-10)
    unpaired = math.hypot(ch11.mean_and_stderr(a)[1], ch11.mean_and_stderr(b)[1])
    assert se < unpaired / 10
    with pytest.raises(ValueError):
        ch11.paired_difference(a, b[:-1])


def test_ordering_violations_counts_broken_chains():
    from vaebook.vae.objectives import LikelihoodEstimate

    torch.manual_seed(1)
    model = VAE(data_dim=12, hidden_dims=(16,), latent_dim=3).eval()
    x = torch.bernoulli(torch.full((15, 12), 0.4), generator=torch.Generator().manual_seed(2))
    est = ch11.likelihood_with_bounds(model, x, k=100, bound_ks=(1, 5, 25), seed=0)
    assert ch11.ordering_violations(est) == 0
    swapped = LikelihoodEstimate(
        est.mean,
        est.stderr,
        est.per_example,
        est.k,
        {1: est.bounds[25], 5: est.bounds[5], 25: est.bounds[1]},
    )  # ELBO and IWAE-25 exchanged: broken wherever IWAE-25 exceeds IWAE-5
    expected = int((est.bounds[25] > est.bounds[5] + 1e-4).sum())
    assert ch11.ordering_violations(swapped) >= expected > 0


def test_snapshots_and_trace_figure(linear):
    model, x = linear
    fit = ch11.fit_gaussian_per_point(
        model, x, *model.encode(x), steps=30, samples=8, lr=0.05, seed=0, snapshots=(10, 30)
    )
    assert set(fit.snapshots) == {10, 30} and len(fit.trace) == 30
    torch.testing.assert_close(fit.snapshots[30][0], fit.mu)
    assert not torch.equal(fit.snapshots[10][0], fit.mu)
    with pytest.raises(ValueError):
        ch11.fit_gaussian_per_point(model, x, *model.encode(x), steps=5, snapshots=(6,))
    fig = ch11.plot_fit_trace({"a": fit.trace, "b": fit.trace})
    assert fig.get_figwidth() <= 6.8 + 1e-9


def test_gaussian_iwae_bound_of_the_exact_posterior_is_log_p_for_every_k():
    """Orthogonal decoder columns: the exact posterior is a diagonal Gaussian, every weight
    is p(x), and the bound of every k is the exact log-likelihood (no sampling error)."""
    torch.manual_seed(3)
    model = LinearVAE(data_dim=4, latent_dim=2, decoder_std=0.7).double()
    with torch.no_grad():
        q_, _ = torch.linalg.qr(torch.randn(4, 2, dtype=torch.float64))
        model.decoder.weight.copy_(q_ * torch.tensor([2.0, 0.5], dtype=torch.float64))
    x = torch.randn(5, 4, dtype=torch.float64)
    mean, cov, _ = exact_posterior(model, x)
    logvar = torch.log(torch.diagonal(cov)).expand_as(mean)
    for k in (1, 5, 50):
        bound = ch11.gaussian_iwae_bound(model, x, mean, logvar, k, repeats=3, seed=k)
        torch.testing.assert_close(bound, model.exact_log_likelihood(x), atol=1e-9, rtol=0)


def test_gaussian_iwae_bound_rises_with_k_from_the_elbo_to_log_p(linear):
    """A diagonal q, shifted and broader than the correlated posterior: k = 1 is the ELBO
    (against the ELBO's own estimate), the bound rises with k, stays below the exact
    log-likelihood and closes most of the gap; the draws are seeded."""
    model, x = linear
    mean, cov, _ = exact_posterior(model, x)
    mu, logvar = mean + 0.4, torch.log(torch.diagonal(cov)).expand_as(mean) + 0.7
    exact = model.exact_log_likelihood(x)
    one = ch11.gaussian_iwae_bound(model, x, mu, logvar, 1, repeats=4000, seed=0)
    elbo = ch11.gaussian_elbo(model, x, mu, logvar, samples=20000, seed=1)
    torch.testing.assert_close(one, elbo, atol=0.05, rtol=0)
    bounds = [ch11.gaussian_iwae_bound(model, x, mu, logvar, k, 200, seed=2) for k in (5, 50)]
    for lo, hi in zip([one, *bounds], [*bounds, exact], strict=True):
        assert torch.all(lo < hi + 0.01)
    assert torch.all(exact - bounds[-1] < (exact - one) / 4)
    again = ch11.gaussian_iwae_bound(model, x, mu, logvar, 5, 200, seed=2)
    torch.testing.assert_close(again, bounds[0], atol=0, rtol=0)


def test_the_trainers_iwae_gradient_is_the_normalised_weight_average():
    """The gradient the trainer follows, autograd of the package's IWAE bound, equals the
    average of the log-weights' gradients weighted by the normalised weights (the weights
    held constant), on the same reparameterisation noise: every encoder and decoder
    parameter, k = 1 (the ELBO's single-sample gradient) and k = 7."""
    from vaebook.vae.objectives import iwae_bound, log_weights

    torch.manual_seed(5)
    model = VAE(data_dim=10, hidden_dims=(8,), latent_dim=3).double()
    x = torch.bernoulli(torch.full((6, 10), 0.4, dtype=torch.float64))
    params = list(model.parameters())
    for k in (1, 7):
        torch.manual_seed(11)
        autograd = torch.autograd.grad(iwae_bound(model, x, k).sum(), params)
        torch.manual_seed(11)  # the same noise: the bound draws eps after encoding
        mu, logvar = model.encode(x)
        eps = torch.randn((k, *mu.shape), dtype=mu.dtype)  # (k, B, L)
        log_w = log_weights(model, x, mu, logvar, mu + (0.5 * logvar).exp() * eps)  # (k, B)
        normalised = torch.softmax(log_w, dim=0).detach()  # (k, B), sums to one over k
        weighted = torch.autograd.grad((normalised * log_w).sum(), params, retain_graph=True)
        for a, b in zip(autograd, weighted, strict=True):
            torch.testing.assert_close(a, b, atol=1e-10, rtol=1e-10)
        if k > 1:  # the plain average of the log-weights' gradients is another direction
            plain = torch.autograd.grad((log_w.mean(0)).sum(), params)
            assert any(
                not torch.allclose(a, b, atol=1e-6) for a, b in zip(autograd, plain, strict=True)
            )
