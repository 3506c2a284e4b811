"""The link between the book and the trainer is real: break the training objective at its
definition site (vaebook.vae.objectives) and three things notice -- the unit tests of the
objective, chapter 6's check against the derived closed forms, and the loss that the
trainer's step (make_train_step) computes."""

import random

import pytest
import sympy as sp
import test_objectives as unit  # the unit tests of the objective (tests/ is on sys.path)
import torch
import torch.nn.functional as F

from vaebook.chapters.ch06_reconstruction_regularisation import check_training_objective
from vaebook.symbolic.notation import normal_pdf
from vaebook.vae import objectives
from vaebook.vae.models import VAE
from vaebook.vae.train import make_train_step


def derived_forms():
    """The closed forms chapter 6 derives (the chapter proves them step by step), each
    checked here against its definition: the KL integral by SymPy, the log-likelihoods
    at random points to 30 digits."""
    mu, z, x, a, m = sp.symbols("mu z x a m", real=True)
    sigma, var = sp.symbols("sigma var", positive=True)
    kl = -(1 + sp.log(sigma**2) - mu**2 - sigma**2) / 2
    q, p = normal_pdf(z, mu, sigma**2), normal_pdf(z, 0, 1)
    integral = sp.integrate(
        sp.expand(q * sp.expand_log(sp.log(q / p), force=True)), (z, -sp.oo, sp.oo)
    )
    assert sp.simplify(integral - kl) == 0
    bernoulli = x * a - sp.log(1 + sp.exp(a))
    sig = 1 / (1 + sp.exp(-a))
    bernoulli_definition = sp.log(sig**x * (1 - sig) ** (1 - x))
    gaussian = -((x - m) ** 2) / (2 * var) - sp.log(var) / 2 - sp.log(2 * sp.pi) / 2
    gaussian_definition = sp.log(normal_pdf(x, m, var))
    rng = random.Random(0)
    for _ in range(5):
        at = {s: sp.Rational(rng.randint(-300, 300), 100) for s in (x, a, m)}
        at[var] = sp.Rational(rng.randint(1, 300), 100)
        assert abs(sp.N((bernoulli - bernoulli_definition).subs(at), 30)) < 1e-25
        assert abs(sp.N((gaussian - gaussian_definition).subs(at), 30)) < 1e-25
    return dict(
        kl_closed_form=kl,
        kl_symbols=(mu, sigma),
        bernoulli_log_likelihood=bernoulli,
        bernoulli_symbols=(x, a),
        gaussian_log_likelihood=gaussian,
        gaussian_symbols=(x, m, var),
    )


@pytest.fixture(scope="module")
def forms():
    return derived_forms()


def step_loss(likelihood):
    """The loss the trainer's step reports, for a fixed model, batch and noise."""
    torch.manual_seed(0)
    model = VAE(12, (16,), 3, likelihood=likelihood)
    x = torch.rand(64, 12).bernoulli() if likelihood == "bernoulli" else torch.randn(64, 12)
    step = make_train_step(model, torch.optim.SGD(model.parameters(), lr=0.0), beta=1.0)
    torch.manual_seed(1)
    return step(x)[0].item()


def flip_kl(real):
    return lambda mu, logvar: -real(mu, logvar)


def drop_kl(real):
    return lambda mu, logvar: torch.zeros_like(real(mu, logvar))


def flip_softplus(real):
    return lambda x, logits: (x * logits + F.softplus(logits)).sum(-1)


def flip_kl_in_loss(real):
    return property(lambda self: (-self.beta * self.kl - self.reconstruction).mean())


MUTATIONS = {  # name: (attribute of objectives, replacement, unit tests that must fail)
    "KL with its sign flipped": (
        "kl_to_standard_normal",
        flip_kl,
        [unit.test_kl_matches_torch_kl_divergence, unit.test_analytic_kl_matches_monte_carlo],
    ),
    "KL dropped": (
        "kl_to_standard_normal",
        drop_kl,
        [unit.test_kl_matches_torch_kl_divergence, unit.test_analytic_kl_matches_monte_carlo],
    ),
    "softplus with its sign flipped": (
        "bernoulli_log_likelihood",
        flip_softplus,
        [unit.test_log_likelihoods_and_log_densities_match_torch_distributions],
    ),
}


@pytest.mark.parametrize("name", list(MUTATIONS))
def test_breaking_a_density_fails_the_unit_tests_the_chapter_and_moves_the_trainer(
    name, forms, monkeypatch
):
    attr, mutate, unit_tests = MUTATIONS[name]
    likelihood = "bernoulli"
    honest_loss = step_loss(likelihood)
    check_training_objective(**forms)  # passes on the real objective
    monkeypatch.setattr(objectives, attr, mutate(getattr(objectives, attr)))
    for test in unit_tests:
        with pytest.raises(AssertionError):
            test()
    with pytest.raises(AssertionError):  # the whole objective, against torch.distributions
        unit.test_elbo_terms_match_torch_distributions(likelihood, True)
    with pytest.raises(AssertionError, match="not the derived one"):
        check_training_objective(**forms)
    assert abs(step_loss(likelihood) - honest_loss) > 1e-3  # the trainer runs the broken code


def test_flipping_the_kl_sign_in_the_loss_fails_the_unit_test_and_the_chapter(forms, monkeypatch):
    honest_loss = step_loss("gaussian")
    monkeypatch.setattr(objectives.ElboTerms, "loss", flip_kl_in_loss(None))
    with pytest.raises(AssertionError):
        unit.test_elbo_terms_match_torch_distributions("gaussian", True)
    with pytest.raises(AssertionError, match="loss"):
        check_training_objective(**forms)
    assert abs(step_loss("gaussian") - honest_loss) > 1e-3


def test_chapter_check_reports_every_comparison(forms):
    check = check_training_objective(**forms, n_points=200)
    assert check.passed and len(check.errors) == 13
    assert max(v for k, v in check.errors.items() if not k.endswith("step")) < 1e-13
    assert "max relative error < 1e-12" in check.verdict()
