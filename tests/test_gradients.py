"""vaebook.chapters.ch08_reparameterisation against independent oracles: SymPy's integrator for the
exact moments, autograd estimators against the closed-form score and derivative, and Monte Carlo
against the exact variances."""

import numpy as np
import pytest
import sympy as sp
import torch

from vaebook.chapters.ch08_reparameterisation import (
    ESTIMATORS,
    exact_moments,
    pathwise_estimates,
    plot_variance_study,
    replicate_variance,
    score_function_estimates,
    torch_function,
    variance_with_stderr,
)
from vaebook.symbolic.gaussian import gaussian_expectation
from vaebook.symbolic.notation import normal_pdf

z, mu = sp.symbols("z mu", real=True)
sigma = sp.Symbol("sigma", positive=True)
F = z**2 + 3 * z**3


def sympy_expectation(g):
    return sp.integrate(g * normal_pdf(z, mu, sigma**2), (z, -sp.oo, sp.oo), conds="none")


def test_gaussian_expectation_matches_sympy_integrate():
    g = z**4 - 2 * z
    assert sp.simplify(gaussian_expectation(g, z, mu, sigma**2) - sympy_expectation(g)) == 0


def test_exact_moments_are_unbiased_and_match_sympy():
    m = exact_moments(F, z, mu, sigma)
    gradient = sp.diff(sympy_expectation(F), mu)
    for e in (m.gradient, m.score_mean, m.pathwise_mean):
        assert sp.simplify(e - gradient) == 0
    # single-draw variances against direct integration at a numeric point
    point = {mu: sp.Rational(1, 2), sigma: sp.Rational(3, 4)}
    score = F * (z - mu) / sigma**2
    var_sf = sympy_expectation(score**2) - sympy_expectation(score) ** 2
    var_pw = sympy_expectation(sp.diff(F, z) ** 2) - sympy_expectation(sp.diff(F, z)) ** 2
    assert sp.simplify((m.score_variance - var_sf).subs(point)) == 0
    assert sp.simplify((m.pathwise_variance - var_pw).subs(point)) == 0


def test_exact_moments_detect_a_biased_estimator():
    # a wrong "score" (missing 1/sigma^2) is not unbiased: the check can fail
    m = exact_moments(F, z, mu, sigma)
    wrong = gaussian_expectation(sp.expand(F * (z - mu)), z, mu, sigma**2)
    assert sp.simplify(wrong - m.gradient) != 0


def test_autograd_estimators_equal_closed_form_draws():
    f = torch_function(F, z)
    mu0, s0 = 0.3, 0.7
    g1, g2 = torch.Generator().manual_seed(5), torch.Generator().manual_seed(5)
    sf = score_function_estimates(f, mu0, s0, (1000,), g1)
    pw = pathwise_estimates(f, mu0, s0, (1000,), g2)
    eps = torch.randn(1000, generator=torch.Generator().manual_seed(5), dtype=torch.float64)
    zz = mu0 + s0 * eps
    assert torch.allclose(sf, (zz**2 + 3 * zz**3) * (zz - mu0) / s0**2)
    assert torch.allclose(pw, 2 * zz + 9 * zz**2)
    assert not sf.requires_grad and not pw.requires_grad


def test_torch_function_rejects_non_polynomials():
    with pytest.raises(ValueError):
        torch_function(sp.sin(z), z)


@pytest.mark.parametrize("name", list(ESTIMATORS))
def test_monte_carlo_mean_and_variance_match_exact(name):
    m = exact_moments(F, z, mu, sigma)
    f = torch_function(F, z)
    point = {mu: 0.5, sigma: 0.4}
    draws = ESTIMATORS[name](f, 0.5, 0.4, (200_000,), torch.Generator().manual_seed(11))
    stderr = draws.std().item() / np.sqrt(draws.numel())
    assert abs(draws.mean().item() - float(m.gradient.subs(point))) < 4 * stderr
    v, se = variance_with_stderr(draws)
    exact_expr = m.score_variance if name == "score function" else m.pathwise_variance
    exact = float(exact_expr.subs(point))
    assert abs(v - exact) < 4 * se
    # variance of the n-sample mean is the single-draw variance over n
    vn, sen = replicate_variance(ESTIMATORS[name], f, 0.5, 0.4, 16, replicates=4000, seed=3)
    assert abs(vn - exact / 16) < 4 * sen


def test_variance_with_stderr_against_numpy():
    x = torch.randn(10_000, generator=torch.Generator().manual_seed(0), dtype=torch.float64) * 3
    v, se = variance_with_stderr(x)
    assert v == pytest.approx(np.var(x.numpy(), ddof=1), rel=1e-12)
    assert 0.0 < se < 0.1 * v


def test_plot_variance_study_returns_a_two_panel_figure():
    fig = plot_variance_study(
        [1, 2],
        {"score function": [2, 1], "pathwise": [1, 0.5]},
        {"score function": [2, 1], "pathwise": [1, 0.5]},
        [0.5, 1],
        {"score function": [3, 4], "pathwise": [1, 2]},
        [0.5, 1],
        {"score function": [3, 4], "pathwise": [1, 2]},
        sigma_fixed=1.0,
        mu=0.5,
    )
    assert len(fig.axes) == 2 and fig.axes[0].get_xscale() == "log"


# ------------------------------------------- the trainer's single-sample ELBO (vector z)

from torch.distributions import Bernoulli, Independent, Normal, kl_divergence  # noqa: E402

from vaebook.chapters.ch08_reparameterisation import trainer_estimates  # noqa: E402
from vaebook.vae.models import VAE  # noqa: E402


def _small_vae_and_data(latent_dim=2, seed=0):
    torch.manual_seed(seed)
    model = VAE(data_dim=10, hidden_dims=(16,), latent_dim=latent_dim, likelihood="bernoulli")
    g = torch.Generator().manual_seed(seed + 1)
    x = torch.bernoulli(torch.full((4, 10), 0.4), generator=g)  # (B, D)
    return model.eval(), x


def _oracle_terms(model, x, eps):
    """log p(x|z), log p(z), log q(z|x) and KL(q || p) at z = mu + sigma * eps, by
    torch.distributions: q = Independent(Normal(mu, sigma)), p = Independent(Normal(0, 1))."""
    with torch.no_grad():
        out = model.encoder(x)
        mu, logvar = out.chunk(2, dim=-1)  # (B, L) each
        q = Independent(Normal(mu, (0.5 * logvar).exp()), 1)
        p = Independent(Normal(torch.zeros_like(mu), torch.ones_like(mu)), 1)
        z = mu + (0.5 * logvar).exp() * eps  # (R, B, L)
        log_lik = Independent(Bernoulli(logits=model.decoder(z)), 1).log_prob(x)  # (R, B)
        return log_lik, p.log_prob(z), q.log_prob(z), kl_divergence(q, p), mu, (0.5 * logvar).exp()


def test_trainer_single_sample_estimates_are_the_oracle_at_the_returned_noise():
    model, x = _small_vae_and_data()
    est = trainer_estimates(model, x, n_draws=50, seed=3)
    log_lik, log_p, log_q, kl, mu, sigma = _oracle_terms(model, x, est.eps)
    torch.testing.assert_close(est.mu, mu)
    torch.testing.assert_close(est.sigma, sigma)
    # with the single-sample KL: log p(x|z) + log p(z) - log q(z|x), the chapter's estimate
    torch.testing.assert_close(est.elbo_monte_carlo_kl, log_lik + log_p - log_q, rtol=1e-5, atol=1e-5)
    # with the closed-form KL: log p(x|z) - KL(q || p), at the same z
    torch.testing.assert_close(est.elbo_closed_form_kl, log_lik - kl, rtol=1e-5, atol=1e-5)
    # the two terms
    torch.testing.assert_close(est.reconstruction, log_lik, rtol=1e-5, atol=1e-5)
    torch.testing.assert_close(est.kl_single_sample, log_q - log_p, rtol=1e-5, atol=1e-5)
    assert est.eps.shape == (50, 4, 2) and est.eps.std() > 0.5  # distinct draws per row


def test_density_identity_and_jacobian_of_the_diagonal_gaussian():
    """log q(z|x) = log p(eps) - log |det dz/deps| for z = mu + sigma * eps (the chapter's
    identity), with q and p(eps) from torch.distributions and the Jacobian from autograd."""
    g = torch.Generator().manual_seed(0)
    mu = torch.randn(2, generator=g, dtype=torch.float64)
    sigma = torch.rand(2, generator=g, dtype=torch.float64) + 0.2
    eps = torch.randn(100, 2, generator=g, dtype=torch.float64)
    jac = torch.autograd.functional.jacobian(lambda e: mu + sigma * e, eps[0])  # (2, 2)
    torch.testing.assert_close(jac, torch.diag(sigma))
    log_det = torch.linalg.slogdet(jac).logabsdet
    torch.testing.assert_close(log_det, sigma.log().sum())
    q = Independent(Normal(mu, sigma), 1)
    p_eps = Independent(Normal(torch.zeros(2, dtype=torch.float64), 1.0), 1)
    torch.testing.assert_close(q.log_prob(mu + sigma * eps), p_eps.log_prob(eps) - log_det)


def test_the_two_trainer_estimates_have_the_same_expectation():
    """Same expectation (the chapter's claim): over many draws the mean difference is
    within four standard errors of zero, and the single-sample KL averages to
    torch.distributions' kl_divergence."""
    model, x = _small_vae_and_data(seed=1)
    est = trainer_estimates(model, x, n_draws=20_000, seed=0)
    diff = (est.elbo_monte_carlo_kl - est.elbo_closed_form_kl).double()  # (R, B)
    se = diff.std(0) / diff.shape[0] ** 0.5  # (B,)
    assert (diff.mean(0).abs() < 4 * se).all(), (diff.mean(0), se)
    log_lik, log_p, log_q, kl, _, _ = _oracle_terms(model, x, est.eps)
    mc_kl = (log_q - log_p).double()  # (R, B)
    assert ((mc_kl.mean(0) - kl.double()).abs() < 4 * mc_kl.std(0) / mc_kl.shape[0] ** 0.5).all()
    # the two estimates differ draw by draw (only their means agree)
    assert (diff.std(0) > 1e-3).all()


def test_trainer_estimates_leave_the_training_mode_as_it_was():
    model, x = _small_vae_and_data()
    model.train()
    trainer_estimates(model, x, n_draws=2)
    assert model.training
