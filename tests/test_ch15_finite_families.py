"""Chapter 15's finite families against independent oracles: their sums against SciPy's
entropy and KL at random values, and the engine accepting, or refusing, their
certificates."""

import itertools
import math

import numpy as np
import pytest
import sympy as sp
from scipy import stats
from scipy.special import rel_entr

from vaebook.chapters.ch15_finite_families import FiniteChannel, FiniteDataSet, entropy_certificate
from vaebook.symbolic.derivation import Derivation, StepError
from vaebook.symbolic.families import FiniteLatent


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
    assert _evaluate(fs.family, fs.average_kl_symbol, values) == pytest.approx(
        average_kl, rel=1e-12
    )
    assert _evaluate(fs.family, fs.mutual_information_symbol, values) == pytest.approx(
        information, rel=1e-12
    )
    assert _evaluate(fs.family, fs.marginal_kl_symbol, values) == pytest.approx(marginal, rel=1e-12)
    assert average_kl == pytest.approx(information + marginal, rel=1e-12)  # surgery, in floats
    assert 0 < information < math.log(n_points)
    # each certificate is the quantity it certifies (at these values)
    assert _evaluate(fs.family, fs.mutual_information_certificate().expr, values) == pytest.approx(
        information
    )
    assert _evaluate(fs.family, fs.marginal_kl_certificate().expr, values) == pytest.approx(
        marginal
    )
    assert _evaluate(fs.family, fs.log_n_certificate().expr, values) == pytest.approx(
        math.log(n_points) - information
    )


def test_surgery_identity_is_accepted_and_a_wrong_split_refused():
    fs = FiniteDataSet(2, 2, normalised=False)
    d = Derivation(
        fs.average_kl_symbol, title="surgery", family=fs.family, latex_names=fs.latex_names
    )
    d.step(fs.split_average_kl(), because="multiply and divide")
    d.step(fs.mutual_information_symbol + fs.marginal_kl_symbol, because="definitions")
    assert d.n_verified == 2
    with pytest.raises(StepError, match="false"):  # the information counted twice
        Derivation(
            fs.average_kl_symbol, title="wrong", family=fs.family, latex_names=fs.latex_names
        ).step(2 * fs.mutual_information_symbol + fs.marginal_kl_symbol, because="no")


def test_certificates_are_accepted_where_they_hold_and_refused_where_not():
    normalised, free = FiniteDataSet(2, 2), FiniteDataSet(2, 2, normalised=False)
    ok = Derivation(
        normalised.average_kl_symbol,
        title="bounds",
        family=normalised.family,
        latex_names=normalised.latex_names,
    )
    ok.step(normalised.mutual_information_symbol + normalised.marginal_kl_symbol, because="surgery")
    ok.bound(normalised.mutual_information_symbol, gap=normalised.marginal_kl_certificate())
    ok.bound(0, gap=normalised.mutual_information_certificate())
    assert ok.relation == ">="
    # the information bound needs no normalisation ...
    Derivation(
        free.mutual_information_symbol,
        title="information non-negative",
        family=free.family,
        latex_names=free.latex_names,
    ).bound(0, gap=free.mutual_information_certificate())
    # ... the marginal KL's does
    with pytest.raises(StepError, match="not the certified gap"):
        Derivation(
            free.marginal_kl_symbol,
            title="marginal KL non-negative",
            family=free.family,
            latex_names=free.latex_names,
        ).bound(0, gap=free.marginal_kl_certificate())
    # and the wrong direction of log N is refused
    with pytest.raises(StepError):
        Derivation(
            normalised.mutual_information_symbol,
            title="information above log N",
            family=normalised.family,
            latex_names=normalised.latex_names,
        ).bound(sp.log(2), gap=normalised.log_n_certificate())


def test_finite_data_set_rejects_too_small_sizes():
    with pytest.raises(ValueError):
        FiniteDataSet(1, 3)


# -- the finite channel ----------------------------------------------------------------------
def test_channel_terms_match_numpy_and_the_entropy_bound_holds():
    ch = FiniteChannel(2, 3)
    symbols = sorted(
        set().union(
            *(ch.family.interpret(e).free_symbols for e in (ch.rate, ch.distortion, ch.entropy))
        ),
        key=lambda s: s.name,
    )
    values = _random_values(symbols, seed=3)
    pstar = np.array([_evaluate(ch.family, p, values) for p in ch.pstar])
    q = np.array([[_evaluate(ch.family, s, values) for s in row] for row in ch.q])  # (N, K)
    pi = np.array([_evaluate(ch.family, s, values) for s in ch.pi])
    lik = np.array([[_evaluate(ch.family, s, values) for s in row] for row in ch.lik])  # (N, K)
    assert (
        pstar.sum() == pytest.approx(1) and np.allclose(lik.sum(0), 1) and np.allclose(q.sum(1), 1)
    )
    joint = pstar[:, None] * q  # (N, K)
    distortion = -(joint * np.log(lik)).sum()
    rate = (pstar * np.array([stats.entropy(q[n], pi) for n in range(2)])).sum()
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
    Derivation(
        proper.mutual_information_symbol,
        title="bound",
        family=proper.family,
        latex_names=proper.latex_names,
    ).bound(proper.entropy - proper.distortion, gap=proper.decoder_certificate())
    with pytest.raises(StepError, match="not the certified gap"):
        Derivation(
            improper.mutual_information_symbol,
            title="bound",
            family=improper.family,
            latex_names=improper.latex_names,
        ).bound(improper.entropy - improper.distortion, gap=improper.decoder_certificate())
    # and it can fail: a decoder that puts mass 3 on every x beats the entropy
    values = {s: sp.Rational(1, 2) for s in improper.family.interpret(improper.rate).free_symbols}
    values |= {lik: 3 for row in improper.lik for lik in row}
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
        sp.log(K), gap=cert, relation="<="
    )
    probs = np.random.default_rng(K).dirichlet(np.ones(K))
    values = dict(zip(finite.q, probs, strict=True))
    assert float(cert.expr.subs(values)) == pytest.approx(stats.entropy(probs))
