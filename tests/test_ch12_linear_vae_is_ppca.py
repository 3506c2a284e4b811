"""Chapter 12's companion, each piece against an independent oracle: the closed-form ELBO
of the linear VAE against Monte Carlo with the model's own ``torch.distributions`` and
against the evidence identity; the exact posterior against Gaussian conditioning of the
joint; principal angles against ``scipy.linalg.subspace_angles``; the principal subspace
against the SVD of the data."""

import math

import numpy as np
import pytest
import scipy.linalg
import scipy.optimize
import scipy.stats
import torch
from torch.distributions import MultivariateNormal, kl_divergence

from vaebook.chapters import ch12_linear_vae_is_ppca as ch12
from vaebook.chapters.ch12_linear_vae_is_ppca import (
    bayes_rule_residual,
    exact_posterior,
    linear_vae_elbo,
    markdown_table,
    plot_training_history,
    ppca_gradient,
    principal_angles,
    top_eigenvectors,
)
from vaebook.vae.models import LinearVAE
from vaebook.vae.ppca import ppca_log_likelihood, ppca_mle


def _random_linear_vae(d=6, latent=3, seed=0) -> LinearVAE:
    torch.manual_seed(seed)
    model = LinearVAE(d, latent).double()
    with torch.no_grad():
        for p in model.parameters():
            p.copy_(0.7 * torch.randn_like(p))
        model.log_decoder_std.fill_(math.log(0.8))
    return model.eval()


def _joint_posterior(model: LinearVAE, x: torch.Tensor):
    """p(z|x) by conditioning the joint Gaussian of (z, x) (D x D solve, not L x L)."""
    w = model.decoder.weight.detach().double()  # (D, L)
    b = model.decoder.bias.detach().double()
    sigma2 = math.exp(2 * model.log_decoder_std.item())
    cov_x = w @ w.T + sigma2 * torch.eye(w.shape[0], dtype=torch.float64)  # (D, D)
    gain = torch.linalg.solve(cov_x, w).T  # (L, D) = W^T cov_x^-1
    means = (x.double() - b) @ gain.T  # (N, L)
    cov = torch.eye(w.shape[1], dtype=torch.float64) - gain @ w  # (L, L)
    return means, cov


def test_closed_form_elbo_matches_monte_carlo():
    model = _random_linear_vae()
    x = torch.randn(4, 6, dtype=torch.float64, generator=torch.Generator().manual_seed(1))
    exact = linear_vae_elbo(model, x)
    n = 400_000
    torch.manual_seed(2)
    with torch.no_grad():
        q = model.posterior(x)  # batch (4,), event (L,)
        z = q.sample((n,))  # (n, 4, L)
        recon = model.likelihood(z).log_prob(x)  # (n, 4)
        log_ratio = q.log_prob(z) - model.prior((4,)).log_prob(z)  # (n, 4)
    for name, samples in (
        ("reconstruction", recon),
        ("kl", log_ratio),
        ("elbo", recon - log_ratio),
    ):
        estimate, se = samples.mean(0), samples.std(0) / math.sqrt(n)
        z_scores = (estimate - exact[name]) / se
        assert z_scores.abs().max() < 5, (name, estimate, exact[name], se)
        assert torch.allclose(estimate, exact[name], rtol=5e-3), name


def test_closed_form_elbo_is_log_likelihood_minus_kl_to_the_posterior():
    """Evidence identity: ELBO = log p(x) - KL(q(z|x) || p(z|x)), all Gaussian."""
    model = _random_linear_vae(seed=3)
    x = torch.randn(7, 6, dtype=torch.float64, generator=torch.Generator().manual_seed(4))
    post_mean, post_cov = _joint_posterior(model, x)
    with torch.no_grad():
        mu, logvar = model.encode(x)
        q = MultivariateNormal(mu, covariance_matrix=torch.diag_embed(logvar.exp()))
        gap = kl_divergence(q, MultivariateNormal(post_mean, covariance_matrix=post_cov))
        expected = model.exact_log_likelihood(x) - gap
    assert torch.allclose(linear_vae_elbo(model, x)["elbo"], expected, atol=1e-10)


def test_exact_posterior_matches_conditioning_the_joint():
    model = _random_linear_vae(d=5, latent=2, seed=5)
    x = torch.randn(3, 5, dtype=torch.float64)
    means, cov = exact_posterior(model, x)
    ref_means, ref_cov = _joint_posterior(model, x)
    assert torch.allclose(means, ref_means, atol=1e-12)
    assert torch.allclose(cov, ref_cov, atol=1e-12)


def test_elbo_at_the_ppca_optimum_equals_the_maximum_likelihood():
    """Decoder at the MLE (orthogonal columns), encoder at the exact posterior: the diagonal
    q is exact and the ELBO equals the pPCA log-likelihood of vaebook.vae.ppca."""
    gen = torch.Generator().manual_seed(6)
    x = torch.randn(500, 3, generator=gen, dtype=torch.float64) @ torch.randn(
        3, 8, generator=gen, dtype=torch.float64
    ) + 0.3 * torch.randn(500, 8, generator=gen, dtype=torch.float64)
    mean, w, sigma2 = ppca_mle(x, 3)
    model = LinearVAE(8, 3).double().eval()
    with torch.no_grad():
        model.decoder.weight.copy_(w)
        model.decoder.bias.copy_(mean)
        model.log_decoder_std.fill_(0.5 * math.log(sigma2))
        m_inv = torch.linalg.inv(w.T @ w + sigma2 * torch.eye(3, dtype=torch.float64))
        model.encoder.weight.copy_(m_inv @ w.T)
        model.encoder.bias.copy_(-(m_inv @ w.T @ mean))
        model.encoder_logvar.copy_((sigma2 * torch.diagonal(m_inv)).log())
    elbo = linear_vae_elbo(model, x)["elbo"]
    assert torch.allclose(elbo, ppca_log_likelihood(x, mean, w, sigma2), atol=1e-9)


@pytest.mark.parametrize("shape", [(10, 2, 2), (10, 3, 2), (7, 1, 4), (40, 5, 5)])
def test_principal_angles_match_scipy(shape):
    d, p, q = shape
    rng = np.random.default_rng(d * p * q)
    a, b = rng.normal(size=(d, p)), rng.normal(size=(d, q))
    assert np.allclose(principal_angles(a, b), scipy.linalg.subspace_angles(a, b), atol=1e-12)


def test_principal_angles_resolve_small_angles_like_scipy():
    rng = np.random.default_rng(0)
    a = rng.normal(size=(10, 2))
    b = a @ rng.normal(size=(2, 2)) + 1e-7 * rng.normal(size=(10, 2))  # nearly the same span
    ours, ref = principal_angles(a, b), scipy.linalg.subspace_angles(a, b)
    assert ref.max() < 1e-6
    assert np.allclose(ours, ref, rtol=1e-5, atol=1e-15)
    assert principal_angles(a, a @ np.array([[2.0, 1.0], [0.0, 3.0]])).max() < 1e-7


def test_top_eigenvectors_span_the_leading_right_singular_vectors():
    rng = np.random.default_rng(1)
    x = rng.normal(size=(300, 6)) * np.array([5.0, 3.0, 1.0, 0.5, 0.2, 0.1]) + 4.0
    u = top_eigenvectors(x, 2)
    assert np.allclose(u.T @ u, np.eye(2), atol=1e-12)
    _, _, vt = np.linalg.svd(x - x.mean(0), full_matrices=False)
    assert scipy.linalg.subspace_angles(u, vt[:2].T).max() < 1e-10


def test_markdown_table_and_history_figure():
    table = markdown_table(["", "a", "b"], [["row", "1.0", "2.0"]])
    assert table.splitlines() == ["|  | a | b |", "|:---|---:|---:|", "| row | 1.0 | 2.0 |"]
    history = [
        {"epoch": e, "test_elbo": -12.0 + 1 - 1 / e, "test_exact_log_likelihood": -11.0 - 1 / e}
        for e in range(1, 101)
    ]
    fig = plot_training_history(history, mle_test=-11.0, zoom_from=10)
    assert len(fig.axes) == 2
    assert fig.get_size_inches()[0] <= 6.8 + 1e-9


def test_bayes_rule_residual_vanishes_for_the_exact_posterior_only(monkeypatch):
    """log p(x|z) + log p(z) = log p(z|x) + log p(x) at random codes, with every density a
    torch.distributions object; a posterior off by a little is caught."""
    model = _random_linear_vae(d=5, latent=2, seed=7)
    gen = torch.Generator().manual_seed(0)
    x = torch.randn(4, 5, generator=gen, dtype=torch.float64)
    z = 2 * torch.randn(6, 2, generator=gen, dtype=torch.float64)
    assert bayes_rule_residual(model, x, z) < 1e-10
    right = ch12.exact_posterior
    monkeypatch.setattr(
        ch12, "exact_posterior", lambda m, xs: (right(m, xs)[0] + 1e-3, right(m, xs)[1])
    )
    assert bayes_rule_residual(model, x, z) > 1e-4


def _ppca_data(n=400, d=5, latent=2, seed=3):
    gen = torch.Generator().manual_seed(seed)
    w = torch.randn(d, latent, generator=gen, dtype=torch.float64)
    z = torch.randn(n, latent, generator=gen, dtype=torch.float64)
    return z @ w.T + 0.5 * torch.randn(n, d, generator=gen, dtype=torch.float64) + 1.0


def test_ppca_gradient_matches_finite_differences_and_vanishes_at_the_mle():
    x = _ppca_data()
    mean, w, sigma2 = ppca_mle(x, 2)
    at_mle = ppca_gradient(x, mean, w, sigma2)
    assert max(at_mle.values()) < 1e-9
    # away from the optimum, against central differences of an independent log-density
    gen = torch.Generator().manual_seed(4)
    w_off = w + 0.3 * torch.randn(w.shape, generator=gen, dtype=torch.float64)
    mean_off, s2_off = mean + 0.2, 1.3 * sigma2

    def mean_loglik(m, ww, s2):
        cov = ww @ ww.T + s2 * np.eye(x.shape[1])
        return scipy.stats.multivariate_normal(m, cov).logpdf(x.numpy()).mean()

    h = 1e-6
    m0, w0 = mean_off.numpy(), w_off.numpy()
    fd_s2 = (mean_loglik(m0, w0, s2_off + h) - mean_loglik(m0, w0, s2_off - h)) / (2 * h)
    fd_w = []
    for idx in np.ndindex(*w0.shape):
        e = np.zeros_like(w0)
        e[idx] = h
        fd_w.append((mean_loglik(m0, w0 + e, s2_off) - mean_loglik(m0, w0 - e, s2_off)) / (2 * h))
    off = ppca_gradient(x, mean_off, w_off, s2_off)
    assert off["sigma2"] == pytest.approx(abs(fd_s2), rel=1e-5)
    assert off["W"] == pytest.approx(max(abs(g) for g in fd_w), rel=1e-5)
    assert off["mean"] > 1e-3


def test_tipping_bishop_solution_is_the_numerical_maximum():
    """The closed-form pPCA fit against a numerical maximisation of the log-likelihood
    (SciPy's multivariate normal density, L-BFGS from random starts): nothing beats it,
    and the optimiser reaches it."""
    x = _ppca_data(n=300, d=4, latent=2, seed=8)
    d, latent = x.shape[1], 2
    mean, w, sigma2 = ppca_mle(x, latent)
    closed = ppca_log_likelihood(x, mean, w, sigma2).mean().item()
    xs = x.numpy()

    def negative(theta):
        m, ww = theta[:d], theta[d : d + d * latent].reshape(d, latent)
        cov = ww @ ww.T + np.exp(theta[-1]) * np.eye(d)
        return -scipy.stats.multivariate_normal(m, cov).logpdf(xs).mean()

    rng = np.random.default_rng(0)
    best = -min(
        scipy.optimize.minimize(
            negative, rng.normal(size=d + d * latent + 1), method="L-BFGS-B"
        ).fun
        for _ in range(3)
    )
    assert best <= closed + 1e-7
    assert closed - best < 1e-5
