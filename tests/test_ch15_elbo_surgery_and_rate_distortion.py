"""Chapter 15's companion against independent oracles: the finite families' sums against
SciPy's entropy and KL at random values (and the engine accepting, or refusing, their
certificates), the aggregate posterior's density against ``torch.distributions``' mixture,
the surgery estimates against closed forms and SciPy quadrature, the entropy of a Bernoulli
mixture against exact enumeration."""

import itertools
import math

import numpy as np
import pytest
import sympy as sp
import torch
from scipy import integrate, stats
from scipy.special import rel_entr
from torch.distributions import Categorical, Independent, MixtureSameFamily, Normal

from vaebook.chapters.ch15_elbo_surgery_and_rate_distortion import (
    FiniteChannel,
    FiniteDataSet,
    aggregate_log_density,
    aggregate_samples,
    bernoulli_mixture_entropy,
    entropy_certificate,
    mean_over_seeds,
    plot_aggregate_posterior_2d,
    plot_rate_distortion_plane,
    surgery_estimate,
)
from vaebook.symbolic.derivation import Derivation, StepError
from vaebook.symbolic.families import FiniteLatent


@pytest.fixture(autouse=True)
def one_thread():
    """One torch thread, as in the chapter (small tensors: more threads only contend)."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


def _evaluate(family, expr, values):
    """``expr`` with the family's definitions substituted, at the numbers ``values``."""
    return float(family.interpret(expr).subs(values).evalf(30))


def _random_values(symbols, seed):
    rng = np.random.default_rng(seed)
    return {s: sp.Float(rng.uniform(0.2, 3.0), 30) for s in symbols}


# -- the finite data set ---------------------------------------------------------------------
@pytest.mark.parametrize("n_points, n_states", [(2, 2), (2, 3), (3, 2)])
def test_surgery_terms_match_scipy(n_points, n_states):
    fs = FiniteDataSet(n_points, n_states)
    values = _random_values([*itertools.chain(*fs.a), *fs.b], seed=n_points * 10 + n_states)
    a = np.array([[float(values[s]) for s in row] for row in fs.a])
    b = np.array([float(values[s]) for s in fs.b])
    q, pi = a / a.sum(1, keepdims=True), b / b.sum()
    qbar = q.mean(0)
    # the oracle: KLs from scipy; I(n; z) = H(z) - H(z | n) under the joint q(z | x_n) / N
    average_kl = np.mean([stats.entropy(q[n], pi) for n in range(n_points)])
    information = stats.entropy(qbar) - np.mean([stats.entropy(q[n]) for n in range(n_points)])
    marginal = stats.entropy(qbar, pi)
    assert _evaluate(fs.family, fs.average_kl_symbol, values) == pytest.approx(average_kl, rel=1e-12)
    assert _evaluate(fs.family, fs.mutual_information_symbol, values) == pytest.approx(information, rel=1e-12)
    assert _evaluate(fs.family, fs.marginal_kl_symbol, values) == pytest.approx(marginal, rel=1e-12)
    assert average_kl == pytest.approx(information + marginal, rel=1e-12)  # surgery, in floats
    assert 0 < information < math.log(n_points)
    # each certificate is the quantity it certifies (at these values)
    assert _evaluate(fs.family, fs.mutual_information_certificate().expr, values) == pytest.approx(information)
    assert _evaluate(fs.family, fs.marginal_kl_certificate().expr, values) == pytest.approx(marginal)
    assert _evaluate(fs.family, fs.log_n_certificate().expr, values) == pytest.approx(
        math.log(n_points) - information
    )


def test_surgery_identity_is_accepted_and_a_wrong_split_refused():
    fs = FiniteDataSet(2, 2, normalised=False)
    d = Derivation(fs.average_kl_symbol, title="surgery", family=fs.family, latex_names=fs.latex_names)
    d.step(fs.split_average_kl(), because="multiply and divide")
    d.step(fs.mutual_information_symbol + fs.marginal_kl_symbol, because="definitions")
    assert d.n_verified == 2
    with pytest.raises(StepError, match="false"):  # the information counted twice
        Derivation(fs.average_kl_symbol, title="wrong", family=fs.family,
                   latex_names=fs.latex_names).step(
            2 * fs.mutual_information_symbol + fs.marginal_kl_symbol, because="no")


def test_certificates_are_accepted_where_they_hold_and_refused_where_not():
    normalised, free = FiniteDataSet(2, 2), FiniteDataSet(2, 2, normalised=False)
    ok = Derivation(normalised.average_kl_symbol, title="bounds", family=normalised.family,
                    latex_names=normalised.latex_names)
    ok.step(normalised.mutual_information_symbol + normalised.marginal_kl_symbol, because="surgery")
    ok.bound(normalised.mutual_information_symbol, gap=normalised.marginal_kl_certificate())
    ok.bound(0, gap=normalised.mutual_information_certificate())
    assert ok.relation == ">="
    # the information bound needs no normalisation ...
    Derivation(free.mutual_information_symbol, title="information non-negative", family=free.family,
               latex_names=free.latex_names).bound(0, gap=free.mutual_information_certificate())
    # ... the marginal KL's does
    with pytest.raises(StepError, match="not the certified gap"):
        Derivation(free.marginal_kl_symbol, title="marginal KL non-negative", family=free.family,
                   latex_names=free.latex_names).bound(0, gap=free.marginal_kl_certificate())
    # and the wrong direction of log N is refused
    with pytest.raises(StepError):
        Derivation(normalised.mutual_information_symbol, title="information above log N",
                   family=normalised.family, latex_names=normalised.latex_names).bound(
            sp.log(2), gap=normalised.log_n_certificate())


def test_finite_data_set_rejects_too_small_sizes():
    with pytest.raises(ValueError):
        FiniteDataSet(1, 3)


# -- the finite channel ----------------------------------------------------------------------
def test_channel_terms_match_numpy_and_the_entropy_bound_holds():
    ch = FiniteChannel(2, 3)
    symbols = sorted(
        set().union(*(ch.family.interpret(e).free_symbols for e in (ch.rate, ch.distortion, ch.entropy))),
        key=lambda s: s.name,
    )
    values = _random_values(symbols, seed=3)
    pstar = np.array([_evaluate(ch.family, p, values) for p in ch.pstar])
    q = np.array([[_evaluate(ch.family, s, values) for s in row] for row in ch.q])  # (M, K)
    pi = np.array([_evaluate(ch.family, s, values) for s in ch.pi])
    d = np.array([[_evaluate(ch.family, s, values) for s in row] for row in ch.d])  # (K, M)
    assert pstar.sum() == pytest.approx(1) and np.allclose(d.sum(1), 1) and np.allclose(q.sum(1), 1)
    joint = pstar[:, None] * q  # (M, K)
    distortion = -(joint * np.log(d.T)).sum()
    rate = (pstar * np.array([stats.entropy(q[m], pi) for m in range(2)])).sum()
    entropy = stats.entropy(pstar)
    information = rel_entr(joint, pstar[:, None] * joint.sum(0)[None, :]).sum()
    assert _evaluate(ch.family, ch.distortion, values) == pytest.approx(distortion, rel=1e-12)
    assert _evaluate(ch.family, ch.rate, values) == pytest.approx(rate, rel=1e-12)
    assert _evaluate(ch.family, ch.entropy, values) == pytest.approx(entropy, rel=1e-12)
    assert _evaluate(ch.family, -ch.elbo, values) == pytest.approx(distortion + rate, rel=1e-12)
    assert _evaluate(ch.family, ch.mutual_information_symbol, values) == pytest.approx(information)
    assert entropy - distortion <= information <= rate
    assert _evaluate(ch.family, ch.decoder_certificate().expr, values) == pytest.approx(
        information - (entropy - distortion)
    )


def test_entropy_bound_needs_a_proper_decoder():
    proper, improper = FiniteChannel(2, 2), FiniteChannel(2, 2, proper_decoder=False)
    Derivation(proper.mutual_information_symbol, title="bound", family=proper.family,
               latex_names=proper.latex_names).bound(
        proper.entropy - proper.distortion, gap=proper.decoder_certificate())
    with pytest.raises(StepError, match="not the certified gap"):
        Derivation(improper.mutual_information_symbol, title="bound", family=improper.family,
                   latex_names=improper.latex_names).bound(
            improper.entropy - improper.distortion, gap=improper.decoder_certificate())
    # and it can fail: a decoder that puts mass 3 on every x beats the entropy
    values = {s: sp.Rational(1, 2) for s in improper.family.interpret(improper.rate).free_symbols}
    values |= {d: 3 for row in improper.d for d in row}
    gap = improper.family.interpret(
        improper.mutual_information_symbol - (improper.entropy - improper.distortion)
    ).subs(values)
    assert float(gap) < 0
    with pytest.raises(ValueError):
        FiniteChannel(2, 2, weights=False, proper_decoder=True)


@pytest.mark.parametrize("K", [3, 4])
def test_entropy_certificate(K):
    finite = FiniteLatent(K=K)
    cert = entropy_certificate(finite.q)
    entropy = -sp.Add(*(q * sp.log(q) for q in finite.q))
    Derivation(sp.log(K) - entropy, title="KL to uniform", family=finite).bound(
        sp.log(K), gap=cert, relation="<=")
    probs = np.random.default_rng(K).dirichlet(np.ones(K))
    values = dict(zip(finite.q, probs, strict=True))
    assert float(cert.expr.subs(values)) == pytest.approx(stats.entropy(probs))


# -- the aggregate posterior -------------------------------------------------------------------
def _codes(n=5, dim=3, seed=0):
    gen = torch.Generator().manual_seed(seed)
    mu = torch.randn((n, dim), generator=gen, dtype=torch.float64)
    logvar = 0.5 * torch.randn((n, dim), generator=gen, dtype=torch.float64) - 1.0
    return mu, logvar


def test_aggregate_log_density_is_the_mixture_density():
    mu, logvar = _codes()
    mixture = MixtureSameFamily(
        Categorical(probs=torch.full((5,), 0.2, dtype=torch.float64)),
        Independent(Normal(mu, (0.5 * logvar).exp()), 1),
    )
    z = torch.randn((50, 3), generator=torch.Generator().manual_seed(1), dtype=torch.float64)
    assert torch.allclose(aggregate_log_density(z, mu, logvar, chunk=7), mixture.log_prob(z), atol=1e-12)


def test_identical_encoders_carry_no_information():
    mu = torch.tensor([[0.3, -0.2]], dtype=torch.float64).repeat(4, 1)
    logvar = torch.tensor([[-0.5, 0.2]], dtype=torch.float64).repeat(4, 1)
    est = surgery_estimate(mu, logvar, samples_per_point=200, prior_samples=100, seed=0)
    assert est.mutual_information == pytest.approx(0.0, abs=1e-12)
    assert est.largest_sample_information == pytest.approx(0.0, abs=1e-12)
    # then the marginal KL is the KL of that one Gaussian, which the rate is exactly
    closed = 0.5 * float((mu[0] ** 2 + logvar[0].exp() - 1 - logvar[0]).sum())
    assert est.average_kl == pytest.approx(closed, rel=1e-12)
    assert abs(est.marginal_kl - closed) < 4 * est.marginal_kl_se


def test_two_point_mixture_against_quadrature():
    means, variances = np.array([-1.0, 0.8]), np.array([0.3, 0.6])
    comps = [stats.norm(m, math.sqrt(v)) for m, v in zip(means, variances, strict=True)]
    prior = stats.norm(0, 1)

    def mixture(z):
        return 0.5 * (comps[0].pdf(z) + comps[1].pdf(z))

    information = 0.5 * sum(
        integrate.quad(lambda z, c=c: c.pdf(z) * (c.logpdf(z) - np.log(mixture(z))), -12, 12)[0]
        for c in comps
    )
    marginal = integrate.quad(lambda z: mixture(z) * (np.log(mixture(z)) - prior.logpdf(z)), -12, 12)[0]
    reverse = integrate.quad(lambda z: prior.pdf(z) * (prior.logpdf(z) - np.log(mixture(z))), -12, 12)[0]
    mu = torch.tensor(means, dtype=torch.float64)[:, None]
    logvar = torch.tensor(np.log(variances), dtype=torch.float64)[:, None]
    est = surgery_estimate(mu, logvar, samples_per_point=20000, prior_samples=40000, seed=3)
    assert abs(est.mutual_information - information) < 4 * est.mutual_information_se
    assert abs(est.marginal_kl - marginal) < 4 * est.marginal_kl_se
    assert abs(est.reverse_marginal_kl - reverse) < 4 * est.reverse_marginal_kl_se
    assert est.average_kl == pytest.approx(information + marginal, abs=1e-7)  # surgery
    assert est.mutual_information_se < 0.01 and est.largest_sample_information <= math.log(2)


def test_well_separated_codes_reach_log_n():
    mu = torch.tensor([[-30.0], [0.0], [30.0]], dtype=torch.float64)
    logvar = torch.full((3, 1), -2.0, dtype=torch.float64)
    est = surgery_estimate(mu, logvar, samples_per_point=50, prior_samples=10, seed=0)
    assert est.mutual_information == pytest.approx(math.log(3), abs=1e-9)
    assert est.log_n == pytest.approx(math.log(3))


def test_aggregate_samples_follow_the_mixture():
    mu, logvar = _codes(n=3, dim=2, seed=4)
    z = aggregate_samples(mu, logvar, 200000, seed=0)
    mean = mu.mean(0)
    second = (logvar.exp() + mu**2).mean(0)
    assert torch.allclose(z.mean(0), mean, atol=0.01)
    assert torch.allclose((z**2).mean(0), second, atol=0.02)
    assert torch.equal(aggregate_samples(mu, logvar, 5, seed=1), aggregate_samples(mu, logvar, 5, seed=1))


# -- the data entropy --------------------------------------------------------------------------
def test_bernoulli_mixture_entropy_against_enumeration():
    probs = torch.tensor(
        [[0.0, 0.5, 1.0, 0.25, 0.9, 0.1], [0.5, 0.5, 0.2, 1.0, 0.0, 0.6], [0.3, 0.7, 0.7, 0.1, 0.4, 0.0]]
    )
    xs = np.array(list(itertools.product([0, 1], repeat=6)), dtype=float)  # all 64 images
    p = probs.double().numpy()
    component = np.prod(np.where(xs[:, None, :] == 1, p[None], 1 - p[None]), axis=2)  # (64, 3)
    exact = stats.entropy(component.mean(1))
    estimate, se = bernoulli_mixture_entropy(probs, n_samples=50000, seed=0, chunk=999)
    assert abs(estimate - exact) < 4 * se and se < 0.02


# -- tables and figures --------------------------------------------------------------------------
def test_mean_over_seeds():
    points = [
        {"latent_dim": 4, "beta": 1.0, "rate": 1.0, "distortion": 10.0},
        {"latent_dim": 4, "beta": 1.0, "rate": 3.0, "distortion": 12.0},
        {"latent_dim": 16, "beta": 1.0, "rate": 5.0, "distortion": 8.0},
    ]
    rows = mean_over_seeds(points, ["rate", "distortion"])
    assert rows == [
        {"latent_dim": 4, "beta": 1.0, "n": 2, "rate": 2.0, "distortion": 11.0},
        {"latent_dim": 16, "beta": 1.0, "n": 1, "rate": 5.0, "distortion": 8.0},
    ]


def test_figures_draw():
    mu, logvar = _codes(n=6, dim=2)
    fig = plot_aggregate_posterior_2d(mu, logvar, steps=21)
    assert len(fig.axes) == 3  # two panels and a colour bar
    points = [
        {"latent_dim": 4, "beta": 1.0, "rate": 3.0, "distortion": 20.0},
        {"latent_dim": 16, "beta": 4.0, "rate": 0.1, "distortion": 27.0},
    ]
    fig = plot_rate_distortion_plane(points, 19.0, {1.0: "black", 4.0: "red"})
    (ax,) = fig.axes
    assert ax.get_ylim()[0] < 19.0 - 0.1  # the entropy line is in view
