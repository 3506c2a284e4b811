"""Chapter 13's section on collapse with an autoregressive decoder: the finite-family
derivations evaluated at numbers against NumPy/SciPy, the gap of a finite model against
scipy.stats.entropy, the prior's reconstruction term against torch.distributions (and, for
a decoder that ignores z, against the log-likelihood estimate, which it then equals), and
the figure."""

import math

import numpy as np
import pytest
import sympy as sp
import torch
from scipy.stats import entropy

from vaebook.chapters.ch13_collapse import (
    COLLAPSE_RUNS,
    FREE_BITS,
    IgnoredLatent,
    encoder_gain_derivation,
    plot_collapse,
    prior_encoder_derivation,
    prior_gap,
    prior_reconstruction,
)
from vaebook.plots import COLUMN_WIDTH
from vaebook.symbolic.families import FiniteLatent
from vaebook.vae.made import MadeVAE
from vaebook.vae.models import VAE
from vaebook.vae.objectives import estimate_log_likelihood
from vaebook.vae.recipes import RUNS


def test_the_runs_are_committed_recipes_differing_only_where_named():
    configs = {label: RUNS[name].config for label, name in COLLAPSE_RUNS.items()}
    base = configs["autoregressive decoder"]
    assert base["architecture"] == "made" and base.get("free_bits", 0) == 0
    assert configs["autoregressive, free bits"] == {**base, "free_bits": FREE_BITS}
    assert configs["autoregressive, KL warm-up"] == {**base, "kl_warmup_epochs": 50}
    factorised = dict(configs["factorised decoder"])
    assert factorised.pop("architecture", "mlp") == "mlp"
    assert {k: v for k, v in base.items() if k != "architecture"} == factorised


@pytest.mark.parametrize("seed", range(4))
def test_prior_gap_is_the_kl_from_the_prior_to_the_posterior(seed):
    rng = np.random.default_rng(seed)
    K = int(rng.integers(2, 5))
    prior = [sp.Rational(int(v), 100) for v in rng.integers(5, 60, K)]
    prior[-1] = 1 - sum(prior[:-1]) if 1 - sum(prior[:-1]) > 0 else sp.Rational(1, 100)
    prior = [p / sum(prior) for p in prior]
    lik = [sp.Rational(int(v), 97) for v in rng.integers(1, 97, K)]
    p, l = np.array(prior, dtype=float), np.array(lik, dtype=float)
    posterior = p * l / (p * l).sum()
    assert math.isclose(float(prior_gap(prior, lik)), entropy(p, posterior), rel_tol=1e-12)
    # and it is zero when every likelihood is the same
    assert prior_gap(prior, [lik[0]] * K) == 0


def _at_numbers(expr, fam, rng):
    values = {s: sp.Rational(int(rng.integers(1, 50)), 50) for s in (*fam.lik, *fam.pi[:-1])}
    pis = np.array([float(values[s]) for s in fam.pi[:-1]])
    pis = pis / (pis.sum() * 1.5)  # leave room for the last state
    values |= {s: sp.nsimplify(v) for s, v in zip(fam.pi[:-1], pis, strict=True)}
    values[fam.pi[-1]] = 1 - sum(values[s] for s in fam.pi[:-1])
    return float(fam.interpret(expr).xreplace(values)), values


def test_the_collapsed_encoders_bound_at_numbers():
    """log p(x) and the last line, the decoder's mean log-likelihood under the prior, at
    numbers: their difference is the KL from the prior to the posterior (SciPy)."""
    d = prior_encoder_derivation(K=3, recheck=())
    assert d.relation == ">=" and len(d.families) == 1
    fam = FiniteLatent(3)
    rng = np.random.default_rng(0)
    end, values = _at_numbers(d.current, fam, rng)
    pi = np.array([float(values[s]) for s in fam.pi])
    lik = np.array([float(values[s]) for s in fam.lik])
    assert math.isclose(end, float(pi @ np.log(lik)), rel_tol=1e-12)
    gap = math.log(pi @ lik) - end
    assert math.isclose(gap, entropy(pi, pi * lik / (pi @ lik)), rel_tol=1e-10)
    assert {f.K for f in prior_encoder_derivation().families} == {3, 4}


def test_what_an_encoder_gains_at_numbers():
    d = encoder_gain_derivation(K=3, recheck=())
    assert d.relation == "<="
    fam = FiniteLatent(3)
    R = sp.Rational
    pi, lik, q = (
        [R(1, 2), R(1, 5), R(3, 10)],
        [R(1, 7), R(2, 3), R(1, 4)],
        [R(1, 5), R(3, 10), R(1, 2)],
    )
    values = dict(zip((*fam.pi, *fam.lik, *fam.q), (*pi, *lik, *q), strict=True))
    gained = float(fam.interpret(d.start).xreplace(values))
    bound = float(fam.interpret(d.current).xreplace(values))
    pi, lik, q = (np.array(v, dtype=float) for v in (pi, lik, q))
    posterior = pi * lik / (pi @ lik)
    elbo = q @ np.log(pi * lik / q)
    assert math.isclose(gained, elbo - pi @ np.log(lik), rel_tol=1e-10)
    assert math.isclose(gained, entropy(pi, posterior) - entropy(q, posterior), rel_tol=1e-10)
    assert math.isclose(bound, entropy(pi, posterior), rel_tol=1e-10) and gained <= bound


def test_a_decoder_that_ignores_z_has_the_prior_as_posterior_and_an_exact_bound():
    model = IgnoredLatent(K=4)
    rng = np.random.default_rng(2)
    b = rng.uniform(0.1, 3, 4)
    ell = 0.37
    values = {s: v for s, v in zip(model.b, b, strict=True)} | {model.ell: ell}
    for lhs, rhs in model.posterior_rows():
        sub = {k: v for k, v in values.items()}
        pis = {p: model.family.definitions()[p].xreplace(sub) for p in model.pi}
        assert math.isclose(float(lhs.xreplace(pis).xreplace(sub)), float(rhs.xreplace(pis)))
    d = model.exact_bound_derivation()
    assert d.relation == "=" and d.current == sp.Add(*(p * sp.log(model.ell) for p in model.pi))
    assert math.isclose(
        float(
            sp.log(model.evidence()).xreplace(
                {p: v for p, v in zip(model.pi, b / b.sum(), strict=True)} | {model.ell: ell}
            )
        ),
        math.log(ell),
    )


def _vae(seed=0):
    torch.manual_seed(seed)
    return VAE(data_dim=7, hidden_dims=[6], latent_dim=3).double()


@pytest.mark.parametrize("kind", ["factorised", "autoregressive"])
def test_prior_reconstruction_against_torch_distributions(kind):
    torch.manual_seed(0)
    model = _vae() if kind == "factorised" else MadeVAE(7, [6, 5], 3).double()
    x = torch.bernoulli(torch.full((11, 7), 0.5, dtype=torch.float64))
    mean, stderr = prior_reconstruction(model, x, draws=50, seed=3)
    with torch.random.fork_rng():
        torch.manual_seed(3)
        z = model.prior((50, 11)).sample()  # the same draws
    with torch.no_grad():
        if kind == "factorised":
            values = model.likelihood(z).log_prob(x)  # (50, 11)
        else:
            values = model.likelihood(z, x.expand(50, 11, 7)).log_prob(x)
    assert torch.allclose(mean, values.mean(0), rtol=0, atol=1e-10)
    assert torch.allclose(stderr, values.std(0) / math.sqrt(50), rtol=0, atol=1e-10)


def test_for_a_decoder_that_ignores_z_it_is_the_log_likelihood():
    """With the decoder's first layer zeroed, p(x|z) does not depend on z: the prior's
    reconstruction term is log p(x) itself (torch.distributions at any z); with the encoder
    collapsed to the prior as well, the ELBO and the importance-sampling estimate are
    exactly that number too (the bound of a decoder that ignores z is exact)."""
    model = _vae(1)
    with torch.no_grad():
        model.decoder[0].weight.zero_()
    x = torch.bernoulli(torch.full((9, 7), 0.5, dtype=torch.float64))
    mean, stderr = prior_reconstruction(model, x, draws=20)
    with torch.no_grad():
        exact = model.likelihood(torch.randn(9, 3, dtype=torch.float64)).log_prob(x)
    assert torch.allclose(mean, exact, rtol=0, atol=1e-12)
    assert torch.all(stderr < 1e-12)
    with torch.no_grad():  # q(z|x) = N(0, I) = p(z) for every x
        model.encoder[-1].weight.zero_()
        model.encoder[-1].bias.zero_()
    estimate = estimate_log_likelihood(model, x, k=10, bound_ks=(1,))
    assert torch.allclose(estimate.per_example.double(), exact, rtol=0, atol=1e-5)
    assert torch.allclose(estimate.bounds[1].double(), exact, rtol=0, atol=1e-5)


def test_the_figure():
    kl = {f"run {i}": np.abs(np.random.default_rng(i).normal(size=8)) for i in range(4)}
    histories = {
        label: [
            {"epoch": e, "beta": min(1.0, e / 5) if i == 2 else 1.0, "test_kl": 1.0 / e}
            for e in range(1, 11)
        ]
        for i, label in enumerate(kl)
    }
    fig = plot_collapse(kl, histories)
    left, right = fig.axes[:2]
    assert len(left.patches) >= 32 and len(right.lines) == 4
    assert fig.get_figwidth() <= COLUMN_WIDTH + 1e-9
