"""Chapter 15 (``book/15_elbo_surgery_and_rate_distortion.ipynb``), the derivations: the finite
families on which the engine checks ELBO surgery, rate and distortion, and the KL term of
the VQ-VAE objective. The Monte Carlo measurements on trained VAEs and the figures are in
:mod:`~vaebook.chapters.ch15_measurements`.

- :class:`FiniteDataSet` -- ``N`` data points, ``K`` latent states: the encoder's
  ``q_{n,k} = q(z=k | x_n)``, the prior ``pi_k`` and the aggregate posterior
  ``qbar_k = (1/N) sum_n q_{n,k}``; the average KL to the prior (the rate), the mutual
  information ``I_q(x; z)`` and the marginal KL ``KL(qbar || pi)`` (Hoffman & Johnson, 2016),
  and the Gibbs certificates of ``I_q >= 0``, ``KL(qbar || pi) >= 0`` and ``I_q <= log N``.
- :class:`FiniteChannel` -- a data distribution ``p*`` over ``N`` values ``x_1..x_N``, an
  encoder, a prior and a decoder ``l_{n,k} = p(x_n | z=k)`` over ``K`` latent states:
  distortion, rate, the averaged ELBO, the data entropy ``H`` and the certificate of
  ``H - D <= I_q``, which needs a decoder that is a distribution over x (Alemi et al., 2018).
- :func:`entropy_certificate` -- ``H(q) >= 0`` for a distribution over K states (the KL
  from a uniform prior is ``log K - H(q) <= log K``: the VQ-VAE's KL term).

Probabilities that must sum to one are written as positive weights over their sum,
``q_{n,k} = a_{n,k} / sum_j a_{n,j}``: every distribution with positive probabilities is of
that form (take ``a = q``), each is positive by the symbols' assumptions (which the
certificates need), and the normalisation holds identically.
"""

from __future__ import annotations

from collections.abc import Sequence

import sympy as sp

from ..symbolic.certificates import Nonneg, log_tangent_lemma
from ..symbolic.families import Concrete

__all__ = ["FiniteDataSet", "FiniteChannel", "entropy_certificate"]


def _positive(name: str) -> sp.Symbol:
    return sp.Symbol(name, positive=True)


def _normalised(weights: Sequence[sp.Expr]) -> list[sp.Expr]:
    """``w_k / sum_j w_j`` for each k: a distribution, positive by assumptions."""
    total = sp.Add(*weights)
    return [w / total for w in weights]


def _marginal_kl_certificate(qbar, pi) -> Nonneg:
    """``sum_k qbar_k h(pi_k / qbar_k) >= 0``, which is ``KL(qbar || pi)`` when
    ``sum qbar = sum pi``."""
    h = log_tangent_lemma()
    return Nonneg.total(
        [h.at(p / qb).scale(qb) for qb, p in zip(qbar, pi, strict=True)],
        note=r"Gibbs' inequality, the gap $\sum_k \bar{q}_k\, h(\pi_k / \bar{q}_k)$",
    )


def entropy_certificate(q: Sequence[sp.Expr]) -> Nonneg:
    """Certificate of ``H(q) = -sum_k q_k log q_k >= 0`` for positive ``q`` summing to one:
    ``sum_k q_k h(q_k) + sum_{j != k} q_j q_k`` (``h(t) = t - 1 - log t``), which equals
    ``H(q) + (sum_k q_k)^2 - sum_k q_k``."""
    h = log_tangent_lemma()
    cross = Nonneg.by_assumptions(
        sp.Add(*(qj * qk for j, qj in enumerate(q) for k, qk in enumerate(q) if j != k))
    )
    return Nonneg.total(
        [h.at(qk).scale(qk) for qk in q] + [cross],
        note=r"the entropy is $\sum_k q_k\, h(q_k) + \sum_{j \neq k} q_j q_k$ when "
        r"$\sum_k q_k = 1$",
    )


# -- ELBO surgery on a finite data set ------------------------------------------------------
class FiniteDataSet:
    """``N`` data points ``x_1..x_N`` and a latent variable with ``K`` states.

    ``q[n][k]`` is the display symbol ``q_{n,k}`` of ``q(z = k | x_n)``, ``pi[k]`` of the
    prior ``p(z = k)``, ``qbar[k]`` of the aggregate posterior
    ``qbar_k := (1/N) sum_n q_{n,k}``. With ``normalised=True`` (default) the family defines
    ``q_{n,k} := a_{n,k} / sum_j a_{n,j}`` and ``pi_k := b_k / sum_j b_j`` with free positive
    ``a``, ``b``, so every check holds for every data set of N points whose encoder
    distributions and prior are positive distributions on K states; with
    ``normalised=False`` the ``q_{n,k}`` and ``pi_k`` are free positive numbers (no
    normalisation), which is all the identity and ``I_q >= 0`` need.

    ``average_kl`` (its display symbol ``average_kl_symbol`` prints as the rate, ``R``),
    ``mutual_information`` (``I_q(x; z)``) and ``marginal_kl`` (``KL(qbar || pi)``) are the
    three terms of ELBO surgery; their display symbols are defined in :attr:`family` as
    those sums.
    """

    def __init__(self, N: int = 2, K: int = 2, normalised: bool = True):
        if N < 2 or K < 2:
            raise ValueError(f"need at least 2 data points and 2 latent states, got {N}, {K}")
        self.N, self.K, self.normalised = N, K, normalised
        self.q = [[_positive(f"q_{n + 1}{k + 1}") for k in range(K)] for n in range(N)]
        self.pi = [_positive(f"pi_{k + 1}") for k in range(K)]
        self.qbar = [_positive(f"qbar_{k + 1}") for k in range(K)]
        self.average_kl_symbol = sp.Symbol("rate")
        self.mutual_information_symbol = sp.Symbol("mutual information")
        self.marginal_kl_symbol = sp.Symbol("marginal KL")
        names = {
            **{self.q[n][k]: f"q_{{{n + 1},{k + 1}}}" for n in range(N) for k in range(K)},
            **{self.pi[k]: rf"\pi_{{{k + 1}}}" for k in range(K)},
            **{self.qbar[k]: rf"\bar{{q}}_{{{k + 1}}}" for k in range(K)},
            self.average_kl_symbol: r"\mathcal{R}",
            self.mutual_information_symbol: r"I_q(x; z)",
            self.marginal_kl_symbol: r"\mathrm{KL}\left(\bar{q} \,\|\, \pi\right)",
        }
        definitions: dict = {}
        if normalised:
            self.a = [[_positive(f"a_{n + 1}{k + 1}") for k in range(K)] for n in range(N)]
            self.b = [_positive(f"b_{k + 1}") for k in range(K)]
            names |= {self.a[n][k]: f"a_{{{n + 1},{k + 1}}}" for n in range(N) for k in range(K)}
            for n in range(N):
                definitions |= dict(zip(self.q[n], _normalised(self.a[n]), strict=True))
            definitions |= dict(zip(self.pi, _normalised(self.b), strict=True))
        c = sp.Rational(1, N)
        definitions |= {
            self.qbar[k]: c * sp.Add(*(self.q[n][k] for n in range(N))) for k in range(K)
        }
        definitions |= {
            self.average_kl_symbol: self.average_kl(),
            self.mutual_information_symbol: self.mutual_information(),
            self.marginal_kl_symbol: self.marginal_kl(),
        }
        self.latex_names = names
        self.family = Concrete(definitions)

    def _mean_over_data(self, term) -> sp.Expr:
        """``(1/N) sum_n sum_k term(n, k)``, written as a sum of the terms ``term(n, k) / N``
        (so that a long sum can be broken over lines on the page)."""
        c = sp.Rational(1, self.N)
        return sp.Add(
            *(sp.Mul(c, term(n, k), evaluate=False) for n in range(self.N) for k in range(self.K))
        )

    def average_kl(self) -> sp.Expr:
        """``(1/N) sum_n KL(q(z|x_n) || p(z)) = (1/N) sum_{n,k} q_{n,k} log(q_{n,k}/pi_k)``."""
        return self._mean_over_data(lambda n, k: self.q[n][k] * sp.log(self.q[n][k] / self.pi[k]))

    def split_average_kl(self) -> sp.Expr:
        """The average KL with ``qbar_k`` multiplied and divided inside each logarithm."""
        return self._mean_over_data(
            lambda n, k: (
                self.q[n][k]
                * (sp.log(self.q[n][k] / self.qbar[k]) + sp.log(self.qbar[k] / self.pi[k]))
            )
        )

    def mutual_information(self) -> sp.Expr:
        """``I_q(x; z) = (1/N) sum_{n,k} q_{n,k} log(q_{n,k} / qbar_k)``: the mutual
        information of the joint ``q(x_n, z) = q(z | x_n) / N``."""
        return self._mean_over_data(lambda n, k: self.q[n][k] * sp.log(self.q[n][k] / self.qbar[k]))

    def marginal_kl(self) -> sp.Expr:
        """``KL(qbar || pi) = sum_k qbar_k log(qbar_k / pi_k)``."""
        return sp.Add(*(qb * sp.log(qb / p) for qb, p in zip(self.qbar, self.pi, strict=True)))

    def mutual_information_certificate(self) -> Nonneg:
        """``sum_{n,k} (1/N) q_{n,k} h(qbar_k / q_{n,k}) >= 0`` (``h(t) = t - 1 - log t``): it
        equals ``I_q`` for any positive ``q``, because ``sum_k qbar_k`` is the mean over n of
        ``sum_k q_{n,k}``."""
        h = log_tangent_lemma()
        return Nonneg.total(
            [
                h.at(self.qbar[k] / self.q[n][k]).scale(sp.Rational(1, self.N) * self.q[n][k])
                for n in range(self.N)
                for k in range(self.K)
            ],
            note=r"Gibbs' inequality for each $q(z \mid x_n)$ against $\bar{q}$, the gap "
            r"$\frac{1}{N} \sum_{n,k} q_{n,k}\, h(\bar{q}_k / q_{n,k})$",
        )

    def marginal_kl_certificate(self) -> Nonneg:
        """``sum_k qbar_k h(pi_k / qbar_k) >= 0``: Gibbs' inequality; it equals
        ``KL(qbar || pi)`` when ``sum_k pi_k = sum_k qbar_k`` (both distributions)."""
        return _marginal_kl_certificate(self.qbar, self.pi)

    def log_n_certificate(self) -> Nonneg:
        """``(1/N) sum_{n,k} q_{n,k} log(1 + sum_{m != n} q_{m,k} / q_{n,k}) >= 0`` (each
        logarithm of a number above one): it equals ``log N - I_q`` when every
        ``q(z | x_n)`` sums to one."""
        terms = [
            self.q[n][k]
            * sp.log(1 + sp.Add(*(self.q[m][k] for m in range(self.N) if m != n)) / self.q[n][k])
            for n in range(self.N)
            for k in range(self.K)
        ]
        return Nonneg.by_assumptions(
            sp.Rational(1, self.N) * sp.Add(*terms),
            note=r"each term is $q_{n,k}$ times the logarithm of "
            r"$\sum_m q_{m,k} / q_{n,k} > 1$",
        )


# -- rate and distortion on a finite channel ------------------------------------------------
class FiniteChannel:
    """A data distribution ``p*(x = x_n)`` over ``N`` values ``x_1..x_N``, an encoder
    ``q(z = k | x_n)``, a prior ``pi_k`` and a decoder ``p(x = x_n | z = k)`` over ``K``
    latent states (with equally likely values, the data set of :class:`FiniteDataSet`).

    Display symbols: ``pstar[n]`` (``p^*_n``), ``q[n][k]`` (``q_{n,k}``), ``pi[k]``, the
    decoder's ``lik[n][k]`` (``l_{n,k}``, the likelihood of ``x_n`` under code k, as
    ``l_k`` is in the finite family of Part I), the aggregate posterior
    ``qbar[k] := sum_n pstar_n q_{n,k}``, and the totals ``rate``, ``distortion``,
    ``entropy``, ``mutual_information``, ``marginal_kl`` and ``elbo`` (the ELBO averaged
    over the data), each defined in :attr:`family` as its sum. With ``weights=True``
    (default) ``pstar``, ``q`` and ``pi`` are positive weights over their sums
    (``c_n``, ``a_{n,k}``, ``b_k``), and the decoder too when ``proper_decoder=True``:
    ``l_{n,k} := g_{n,k} / sum_m g_{m,k}``, a distribution over x for every z. With
    ``proper_decoder=False`` the ``l_{n,k}`` are free positive numbers (a decoder that is
    not a density over x). With ``weights=False`` every probability is a free positive
    number (enough for the identity ``-ELBO = D + R``).
    """

    def __init__(self, N: int = 2, K: int = 2, weights: bool = True, proper_decoder: bool = True):
        if N < 2 or K < 2:
            raise ValueError(f"need at least 2 data values and 2 latent states, got {N}, {K}")
        self.N, self.K = N, K
        self.pstar = [_positive(f"pstar_{n + 1}") for n in range(N)]
        self.q = [[_positive(f"q_{n + 1}{k + 1}") for k in range(K)] for n in range(N)]
        self.pi = [_positive(f"pi_{k + 1}") for k in range(K)]
        self.lik = [[_positive(f"l_{n + 1}{k + 1}") for k in range(K)] for n in range(N)]
        self.qbar = [_positive(f"qbar_{k + 1}") for k in range(K)]
        self.rate, self.distortion = sp.Symbol("rate"), sp.Symbol("distortion")
        self.entropy, self.elbo = sp.Symbol("entropy"), sp.Symbol("mean ELBO")
        self.mutual_information_symbol = sp.Symbol("mutual information")
        self.marginal_kl_symbol = sp.Symbol("marginal KL")
        names = {
            **{self.pstar[n]: f"p^*_{{{n + 1}}}" for n in range(N)},
            **{self.q[n][k]: f"q_{{{n + 1},{k + 1}}}" for n in range(N) for k in range(K)},
            **{self.pi[k]: rf"\pi_{{{k + 1}}}" for k in range(K)},
            **{self.lik[n][k]: f"l_{{{n + 1},{k + 1}}}" for n in range(N) for k in range(K)},
            **{self.qbar[k]: rf"\bar{{q}}_{{{k + 1}}}" for k in range(K)},
            self.rate: r"\mathcal{R}",
            self.distortion: r"\mathcal{D}",
            self.entropy: "H",
            self.elbo: r"\bar{\mathcal{L}}",
            self.mutual_information_symbol: r"I_q(x; z)",
            self.marginal_kl_symbol: r"\mathrm{KL}\left(\bar{q} \,\|\, \pi\right)",
        }
        definitions: dict = {}
        if weights:
            c = [_positive(f"c_{n + 1}") for n in range(N)]
            a = [[_positive(f"a_{n + 1}{k + 1}") for k in range(K)] for n in range(N)]
            b = [_positive(f"b_{k + 1}") for k in range(K)]
            names |= {a[n][k]: f"a_{{{n + 1},{k + 1}}}" for n in range(N) for k in range(K)}
            definitions |= dict(zip(self.pstar, _normalised(c), strict=True))
            for n in range(N):
                definitions |= dict(zip(self.q[n], _normalised(a[n]), strict=True))
            definitions |= dict(zip(self.pi, _normalised(b), strict=True))
            if proper_decoder:  # for each code k, a distribution over the N values of x
                g = [[_positive(f"g_{n + 1}{k + 1}") for k in range(K)] for n in range(N)]
                names |= {g[n][k]: f"g_{{{n + 1},{k + 1}}}" for n in range(N) for k in range(K)}
                for k in range(K):
                    column = _normalised([g[n][k] for n in range(N)])
                    definitions |= {self.lik[n][k]: column[n] for n in range(N)}
        elif proper_decoder:
            raise ValueError("a proper decoder is written with weights (weights=True)")
        definitions |= {
            self.qbar[k]: sp.Add(*(self.pstar[n] * self.q[n][k] for n in range(N)))
            for k in range(K)
        }
        definitions |= {
            self.rate: self.rate_sum(),
            self.distortion: self.distortion_sum(),
            self.entropy: self.entropy_sum(),
            self.elbo: self.elbo_sum(),
            self.mutual_information_symbol: self.mutual_information(),
            self.marginal_kl_symbol: self.marginal_kl(),
        }
        self.latex_names = names
        self.family = Concrete(definitions)

    def _expect(self, term) -> sp.Expr:
        """``sum_n pstar_n sum_k q_{n,k} term(n, k)``."""
        return sp.Add(
            *(
                self.pstar[n] * self.q[n][k] * term(n, k)
                for n in range(self.N)
                for k in range(self.K)
            )
        )

    def distortion_sum(self) -> sp.Expr:
        """``D = -E_{p*} E_q[log p(x | z)]``."""
        return -self._expect(lambda n, k: sp.log(self.lik[n][k]))

    def rate_sum(self) -> sp.Expr:
        """``R = E_{p*} KL(q(z | x) || pi)``."""
        return self._expect(lambda n, k: sp.log(self.q[n][k] / self.pi[k]))

    def elbo_sum(self) -> sp.Expr:
        """The ELBO averaged over the data, ``E_{p*} E_q[log pi(z) p(x | z) / q(z | x)]``."""
        return self._expect(lambda n, k: sp.log(self.pi[k] * self.lik[n][k] / self.q[n][k]))

    def entropy_sum(self) -> sp.Expr:
        """``H = -sum_n pstar_n log pstar_n``, the entropy of the data distribution."""
        return -sp.Add(*(p * sp.log(p) for p in self.pstar))

    def mutual_information(self) -> sp.Expr:
        """``I_q(x; z) = E_{p*} KL(q(z | x) || qbar)`` under the joint ``p*(x) q(z | x)``."""
        return self._expect(lambda n, k: sp.log(self.q[n][k] / self.qbar[k]))

    def marginal_kl(self) -> sp.Expr:
        """``KL(qbar || pi)``."""
        return sp.Add(*(qb * sp.log(qb / p) for qb, p in zip(self.qbar, self.pi, strict=True)))

    def marginal_kl_certificate(self) -> Nonneg:
        """``sum_k qbar_k h(pi_k / qbar_k) >= 0`` (Gibbs); equals ``KL(qbar || pi)`` when both
        sum to one."""
        return _marginal_kl_certificate(self.qbar, self.pi)

    def decoder_certificate(self) -> Nonneg:
        """``sum_{n,k} pstar_n q_{n,k} h(qbar_k l_{n,k} / (pstar_n q_{n,k})) >= 0``: it equals
        ``I_q - (H - D)`` (the KL from the encoder's joint ``p*(x) q(z|x)`` to
        ``qbar(z) p(x|z)``) when ``sum_n l_{n,k} = 1`` for every k, a decoder that is a
        distribution over x."""
        h = log_tangent_lemma()
        return Nonneg.total(
            [
                h.at(self.qbar[k] * self.lik[n][k] / (self.pstar[n] * self.q[n][k])).scale(
                    self.pstar[n] * self.q[n][k]
                )
                for n in range(self.N)
                for k in range(self.K)
            ],
            note=r"Gibbs' inequality for the joint $p^*(x)\, q(z \mid x)$ against "
            r"$\bar{q}(z)\, p(x \mid z)$",
        )
