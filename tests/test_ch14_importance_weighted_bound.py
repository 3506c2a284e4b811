"""Chapter 14's builders against independent oracles: the symbolic sums over draws evaluated
at random probabilities and compared with Monte Carlo draws of the IWAE estimator (NumPy),
the exact multinomial evaluation of L_k against Monte Carlo, the variance of the weight
against sampled weights, and the seeded IWAE bound of a linear VAE against its exact
log-likelihood (its marginal from ``torch.distributions``)."""

import itertools
import math

import matplotlib
import numpy as np
import pytest
import sympy as sp
import torch

from vaebook.chapters import ch14_importance_weighted_bound as ch14
from vaebook.symbolic.derivation import Derivation, StepError
from vaebook.symbolic.families import FiniteLatent
from vaebook.symbolic.notation import ELBO, px
from vaebook.vae.models import LinearVAE

matplotlib.use("Agg")


def random_model(K, seed):
    """Random q, pi (each summing to 1) and likelihoods in (0.05, 1) for K states."""
    rng = np.random.default_rng(seed)
    q, pi = rng.dirichlet(np.full(K, 2.0)), rng.dirichlet(np.full(K, 2.0))
    lik = rng.uniform(0.05, 1.0, K)
    return q, pi, lik


def evaluate(fam, expr, q, pi, lik):
    """A SymPy expression of the family's symbols at the given numbers (float)."""
    values = {
        **dict(zip(fam.q, q, strict=True)),
        **dict(zip(fam.pi, pi, strict=True)),
        **dict(zip(fam.lik, lik, strict=True)),
    }
    return float(
        sp.N(sp.sympify(expr).xreplace({s: sp.Float(v, 30) for s, v in values.items()}), 20)
    )


def mc_check(values, target, sigmas=4.5):
    """The mean of ``values`` is within ``sigmas`` standard errors of ``target``."""
    se = values.std() / math.sqrt(len(values))
    assert abs(values.mean() - target) < sigmas * se + 1e-12, (values.mean(), target, se)


# ---------------------------------------------------------------- the draws


@pytest.mark.parametrize("K,k", [(2, 1), (2, 3), (3, 2), (3, 3), (4, 2)])
def test_draws_are_every_ordered_draw_grouped_by_its_states(K, k):
    groups = ch14.draws(K, k)
    ordered = [d for g in groups.values() for d in g]
    assert sorted(ordered) == sorted(itertools.product(range(K), repeat=k))
    assert len(groups) == math.comb(K + k - 1, k)  # multisets of size k from K states
    for states, members in groups.items():
        assert all(tuple(sorted(d)) == states for d in members)
        counts = [states.count(j) for j in range(K)]
        assert len(members) == math.factorial(k) // math.prod(math.factorial(c) for c in counts)


def test_draw_probabilities_add_up_to_one():
    fam = FiniteLatent(K=3)
    q, pi, lik = random_model(3, 0)
    total = sum(ch14.draw_probability(fam, g) for g in ch14.draws(3, 3).values())
    assert evaluate(fam, total, q, pi, lik) == pytest.approx(1.0, abs=1e-12)


def test_describe_draws():
    assert ch14.describe_draws((0, 0, 1)) == "the draws of states 1, 1 and 2, in any order"


def test_sampled_weights_are_the_weights_of_states_drawn_from_q():
    q, pi, lik = random_model(3, 1)
    w = ch14.sample_weights(q, pi, lik, 300_000, np.random.default_rng(0))
    values = pi * lik / q
    states = np.argmin(np.abs(w[:, None] - values[None, :]), axis=1)
    np.testing.assert_allclose(w, values[states], rtol=1e-12)
    frequencies = np.bincount(states, minlength=3) / len(w)
    assert np.all(np.abs(frequencies - q) < 4.5 * np.sqrt(q * (1 - q) / len(w)))


# ------------------------------------------- symbolic sums against Monte Carlo


@pytest.mark.parametrize("K,k", [(2, 1), (2, 3), (3, 2), (3, 3)])
def test_iwae_bound_is_the_mean_of_the_log_estimate(K, k):
    fam = FiniteLatent(K=K)
    q, pi, lik = random_model(K, 10 * K + k)
    samples = ch14.sample_log_estimates(q, pi, lik, k, 200_000, np.random.default_rng(1))
    symbolic = evaluate(fam, ch14.iwae_bound(fam, k), q, pi, lik)
    mc_check(samples, symbolic)
    # the exact multinomial evaluation, another route to the same number
    assert ch14.exact_iwae_bound(q, pi, lik, k) == pytest.approx(symbolic, abs=1e-10)


def test_elbo_is_the_one_draw_bound_and_its_mean_log_weight_form():
    fam = FiniteLatent(K=3)
    q, pi, lik = random_model(3, 2)
    elbo = float(q @ np.log(pi * lik / q))  # E_q[log p(x, z) - log q(z)]
    assert evaluate(fam, fam.interpret(ELBO), q, pi, lik) == pytest.approx(elbo, abs=1e-12)
    assert evaluate(fam, ch14.iwae_bound(fam, 1), q, pi, lik) == pytest.approx(elbo, abs=1e-12)
    for k in (2, 3):
        form = ch14.mean_log_weight_form(fam, k)
        assert evaluate(fam, form, q, pi, lik) == pytest.approx(elbo, abs=1e-12)


@pytest.mark.parametrize("k", [1, 2, 3])
def test_the_estimate_is_unbiased_and_its_variance_shrinks_like_one_over_k(k):
    fam = FiniteLatent(K=3)
    q, pi, lik = random_model(3, 3)
    w = ch14.sample_weights(q, pi, lik, (400_000, k), np.random.default_rng(k)).mean(axis=1)
    mean = evaluate(fam, ch14.mean_estimate(fam, k), q, pi, lik)
    assert mean == pytest.approx(float(pi @ lik), abs=1e-12)
    mc_check(w, float(pi @ lik))
    variance = evaluate(fam, ch14.estimate_variance(fam, k), q, pi, lik)
    assert variance == pytest.approx(w.var(), rel=0.03)
    assert variance == pytest.approx(ch14.weight_variance(q, pi, lik) / k, rel=1e-10)


@pytest.mark.parametrize("K,k", [(2, 1), (2, 2), (3, 2)])
def test_leave_one_out_form_is_the_bound_of_k_draws_taken_from_k_plus_one(K, k):
    fam = FiniteLatent(K=K)
    q, pi, lik = random_model(K, 7)
    rng = np.random.default_rng(5)
    w = ch14.sample_weights(q, pi, lik, (200_000, k + 1), rng)  # (n, k+1)
    leave_one_out = np.mean(
        [np.log(np.delete(w, j, axis=1).mean(axis=1)) for j in range(k + 1)], axis=0
    )
    form = evaluate(fam, ch14.leave_one_out_form(fam, k), q, pi, lik)
    mc_check(leave_one_out, form)
    assert form == pytest.approx(ch14.exact_iwae_bound(q, pi, lik, k), abs=1e-10)


@pytest.mark.parametrize(
    "steps,start,end",
    [
        (lambda f: ch14.am_gm_steps(f, 2), lambda f: ch14.mean_log_weight_form(f, 2), 2),
        (lambda f: ch14.am_gm_steps(f, 3), lambda f: ch14.mean_log_weight_form(f, 3), 3),
        (lambda f: ch14.leave_one_out_steps(f, 1), lambda f: ch14.leave_one_out_form(f, 1), 2),
        (lambda f: ch14.leave_one_out_steps(f, 2), lambda f: ch14.leave_one_out_form(f, 2), 3),
    ],
)
def test_each_step_rises_by_its_certificate_and_ends_on_the_bound(steps, start, end):
    fam = FiniteLatent(K=3)
    q, pi, lik = random_model(3, 11)
    previous = evaluate(fam, start(fam), q, pi, lik)
    expr = None
    for expr, certificate, note in steps(fam):
        value = evaluate(fam, expr, q, pi, lik)
        gap = evaluate(fam, certificate.expr, q, pi, lik)
        assert gap >= 0 and value - previous == pytest.approx(gap, abs=1e-12)
        assert note.startswith("the draws of states")
        previous = value
    assert sp.srepr(expr) == sp.srepr(ch14.iwae_bound(fam, end))
    assert previous == pytest.approx(ch14.exact_iwae_bound(q, pi, lik, end), abs=1e-10)


@pytest.mark.parametrize("k", [1, 2, 3])
def test_evidence_certificate_is_the_gap_below_log_evidence(k):
    fam = FiniteLatent(K=3)
    q, pi, lik = random_model(3, 20 + k)
    gap = evaluate(fam, ch14.evidence_certificate(fam, k).expr, q, pi, lik)
    assert gap == pytest.approx(
        math.log(pi @ lik) - ch14.exact_iwae_bound(q, pi, lik, k), abs=1e-12
    )


def test_chi_square_certificate_is_the_variance_of_the_weight():
    fam = FiniteLatent(K=4)
    q, pi, lik = random_model(4, 4)
    w = ch14.sample_weights(q, pi, lik, 400_000, np.random.default_rng(4))
    certified = evaluate(fam, ch14.chi_square_certificate(fam).expr, q, pi, lik)
    assert certified == pytest.approx(w.var(), rel=0.03)
    assert certified == pytest.approx(ch14.weight_variance(q, pi, lik), rel=1e-10)
    posterior = pi * lik / (pi @ lik)
    assert certified == pytest.approx((pi @ lik) ** 2 * ch14.chi_square(posterior, q), rel=1e-10)


# ------------------------------------------------------ numerical companions


def test_exact_bound_rises_with_k_towards_log_evidence():
    q, pi, lik = random_model(3, 30)
    bounds = [ch14.exact_iwae_bound(q, pi, lik, k) for k in (1, 2, 3, 5, 10, 100, 400)]
    assert all(a < b for a, b in zip(bounds, bounds[1:], strict=False))
    log_evidence = math.log(pi @ lik)
    assert bounds[-1] < log_evidence and log_evidence - bounds[-1] < 2e-3
    posterior = pi * lik / (pi @ lik)  # q = posterior: every weight is p(x)
    assert ch14.exact_iwae_bound(posterior, pi, lik, 7) == pytest.approx(log_evidence, abs=1e-12)


def test_exact_bound_against_monte_carlo_for_many_draws():
    q, pi, lik = random_model(3, 31)
    samples = ch14.sample_log_estimates(q, pi, lik, 40, 100_000, np.random.default_rng(2))
    mc_check(samples, ch14.exact_iwae_bound(q, pi, lik, 40))


def test_weight_variance_against_sampled_weights_and_zero_at_the_posterior():
    q, pi, lik = random_model(3, 32)
    w = ch14.sample_weights(q, pi, lik, 400_000, np.random.default_rng(3))
    assert ch14.weight_variance(q, pi, lik) == pytest.approx(w.var(), rel=0.03)
    posterior = pi * lik / (pi @ lik)
    assert ch14.weight_variance(posterior, pi, lik) == pytest.approx(0.0, abs=1e-15)
    assert ch14.chi_square(posterior, posterior) == 0.0


def test_path_between():
    start, end = np.array([0.2, 0.8]), np.array([0.6, 0.4])
    path = ch14.path_between(start, end, [0.0, 0.5, 1.0])
    np.testing.assert_allclose(path, [[0.2, 0.8], [0.4, 0.6], [0.6, 0.4]])
    np.testing.assert_allclose(path.sum(axis=1), 1.0)


# ------------------------------------------------------------ a trained VAE


def test_seeded_iwae_bound_approaches_the_exact_log_likelihood_of_a_linear_vae():
    torch.manual_seed(0)
    model = LinearVAE(data_dim=4, latent_dim=2, decoder_std=1.2).double()
    with torch.no_grad():  # encoder: the posterior mean, a variance wider than the posterior's
        w, b, s2 = model.decoder.weight, model.decoder.bias, 1.2**2
        cov = torch.linalg.inv(torch.eye(2, dtype=torch.float64) + w.T @ w / s2)
        model.encoder.weight.copy_(cov @ w.T / s2)
        model.encoder.bias.copy_(-(cov @ w.T / s2) @ b)
        model.encoder_logvar.copy_(torch.log(2 * torch.diagonal(cov)))
    x = torch.randn(5, 4, dtype=torch.float64)
    state = torch.get_rng_state()
    bound = ch14.seeded_iwae_bound(model, x, 20_000, seed=3)
    assert torch.equal(torch.get_rng_state(), state)
    torch.testing.assert_close(bound, ch14.seeded_iwae_bound(model, x, 20_000, seed=3))
    assert not torch.equal(bound, ch14.seeded_iwae_bound(model, x, 20_000, seed=4))
    exact = model.exact_log_likelihood(x)  # (torch.distributions' multivariate normal)
    torch.testing.assert_close(bound, exact, atol=0.03, rtol=0)  # about 5 standard deviations


# ---------------------------------------------------------------- the engine


def test_the_chain_is_accepted_on_two_states_and_the_reversed_step_refused():
    fam = FiniteLatent(K=2)
    d = Derivation(ELBO, title="ELBO below the two-draw bound", family=fam)
    d.step(ch14.iwae_bound(fam, 1), because="definition of the ELBO")
    d.step(ch14.mean_log_weight_form(fam, 2), because=r"$\sum_j q_j = 1$")
    for expr, certificate, note in ch14.am_gm_steps(fam, 2):
        d.bound(expr, gap=certificate, relation="<=", note=note)
    d.conclude(ch14.iwae_bound(fam, 2))
    assert d.relation == "<="
    up = Derivation(ch14.iwae_bound(fam, 2), title="below the evidence", family=fam)
    up.bound(
        sp.log(ch14.mean_estimate(fam, 2)), gap=ch14.evidence_certificate(fam, 2), relation="<="
    )
    up.step(sp.log(px), because="the estimate is unbiased")
    with pytest.raises(StepError):  # log p(x) <= L_2 with the same certificate
        Derivation(ch14.iwae_bound(fam, 2), title="above the evidence", family=fam).bound(
            sp.log(ch14.mean_estimate(fam, 2)), gap=ch14.evidence_certificate(fam, 2)
        )


def test_figures_draw():
    ks = [1, 2, 4]
    fig = ch14.plot_bounds_against_k(ks, {"q": [-1.3, -1.2, -1.15]}, -1.1)
    assert len(fig.axes) == 1
    t = np.linspace(0, 1, 5)
    fig = ch14.plot_variance_and_bias(t, t + 0.1, t[:2], t[:2] + 0.1, {"k = 1": t})
    assert len(fig.axes) == 2
    fig = ch14.plot_nested_and_fresh(np.array([0.1, 0.2]), np.array([-0.1, 0.3]), 5, 50)
    assert len(fig.axes) == 1
