"""Chapter 15 (``book/15_elbo_surgery_and_rate_distortion.ipynb``): ELBO surgery, rate and
distortion, and the VQ-VAE objective.

Two halves, as in the package:

**Finite families in SymPy** (checked by the engine in the chapter):

- :class:`FiniteDataSet` -- ``N`` data points, ``K`` latent states: the encoder's
  ``q_{n,k} = q(z=k | x_n)``, the prior ``pi_k`` and the aggregate posterior
  ``qbar_k = (1/N) sum_n q_{n,k}``; the average KL to the prior, the mutual information
  ``I_q(x; z)`` and the marginal KL ``KL(qbar || pi)`` (Hoffman & Johnson, 2016), and the
  Gibbs certificates of ``I_q >= 0``, ``KL(qbar || pi) >= 0`` and ``I_q <= log N``.
- :class:`FiniteChannel` -- a data distribution over ``M`` values, an encoder, a prior and
  a decoder over ``K`` latent states: distortion, rate, the averaged ELBO, the data entropy
  ``H`` and the certificate of ``H - D <= I_q`` that needs a proper decoder (Alemi et al.,
  2018).

Probabilities that must sum to one are written as positive weights over their sum,
``q_{n,k} = a_{n,k} / sum_j a_{n,j}``: every distribution with positive probabilities is of
that form (take ``a = q``), each is positive by the symbols' assumptions (which the
certificates need), and the normalisation holds identically.

**Estimators on a trained VAE** (torch, with the package's one Gaussian log-density):

- :func:`aggregate_log_density` -- ``log q(z)`` of the aggregate posterior
  ``q(z) = (1/N) sum_n q(z | x_n)``, a mixture of N diagonal Gaussians, by logsumexp;
- :func:`surgery_estimate` -- the average KL (closed form) and, by stratified Monte Carlo,
  the mutual information and ``KL(q(z) || p(z))``, with standard errors; also
  ``KL(p(z) || q(z))``, the prior mass where the aggregate posterior is thin;
- :func:`aggregate_samples` -- draws from the aggregate posterior;
- :func:`bernoulli_mixture_entropy` -- the entropy of the data distribution the binarised
  digits are drawn from (a mixture of products of Bernoullis), by Monte Carlo;
- :func:`plot_aggregate_posterior_2d`, :func:`plot_rate_distortion_plane` -- the figures.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import matplotlib.pyplot as plt
import numpy as np
import sympy as sp
import torch

from ..plots import COLORS, figure, style
from ..symbolic.certificates import Nonneg, log_tangent_lemma
from ..symbolic.families import Concrete
from ..vae.objectives import (
    diag_gaussian_log_density,
    kl_to_standard_normal,
    mean_and_stderr,
    standard_normal_log_density,
)

__all__ = [
    "FiniteDataSet",
    "FiniteChannel",
    "entropy_certificate",
    "aggregate_log_density",
    "SurgeryEstimate",
    "surgery_estimate",
    "aggregate_samples",
    "bernoulli_mixture_entropy",
    "mean_over_seeds",
    "plot_aggregate_posterior_2d",
    "plot_rate_distortion_plane",
]


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
            *(
                sp.Mul(c, term(n, k), evaluate=False)
                for n in range(self.N)
                for k in range(self.K)
            )
        )

    def average_kl(self) -> sp.Expr:
        """``(1/N) sum_n KL(q(z|x_n) || p(z)) = (1/N) sum_{n,k} q_{n,k} log(q_{n,k}/pi_k)``."""
        return self._mean_over_data(lambda n, k: self.q[n][k] * sp.log(self.q[n][k] / self.pi[k]))

    def split_average_kl(self) -> sp.Expr:
        """The average KL with ``qbar_k`` multiplied and divided inside each logarithm."""
        return self._mean_over_data(
            lambda n, k: self.q[n][k]
            * (sp.log(self.q[n][k] / self.qbar[k]) + sp.log(self.qbar[k] / self.pi[k]))
        )

    def mutual_information(self) -> sp.Expr:
        """``I_q(x; z) = (1/N) sum_{n,k} q_{n,k} log(q_{n,k} / qbar_k)``: the mutual
        information of the joint ``q(x_n, z) = q(z | x_n) / N``."""
        return self._mean_over_data(
            lambda n, k: self.q[n][k] * sp.log(self.q[n][k] / self.qbar[k])
        )

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
    """A data distribution ``p*(x = m)`` over ``M`` values, an encoder ``q(z = k | x = m)``,
    a prior ``pi_k`` and a decoder ``d(x = m | z = k)`` over ``K`` latent states.

    Display symbols: ``pstar[m]``, ``q[m][k]``, ``pi[k]``, ``d[k][m]``, the aggregate
    posterior ``qbar[k] := sum_m pstar_m q_{m,k}``, and the totals ``rate``, ``distortion``,
    ``entropy``, ``mutual_information``, ``marginal_kl`` and ``elbo`` (the ELBO averaged
    over the data), each defined in :attr:`family` as its sum. With ``weights=True``
    (default) ``pstar``, ``q`` and ``pi`` are positive weights over their sums, and the
    decoder too when ``proper_decoder=True``: ``d_{k,m} := w_{k,m} / sum_j w_{k,j}``, a
    distribution over x for every z. With ``proper_decoder=False`` the ``d_{k,m}`` are free
    positive numbers (a decoder that is not a density over x). With ``weights=False`` every
    probability is a free positive number (enough for the identity ``-ELBO = D + R``).
    """

    def __init__(self, M: int = 2, K: int = 2, weights: bool = True, proper_decoder: bool = True):
        if M < 2 or K < 2:
            raise ValueError(f"need at least 2 data values and 2 latent states, got {M}, {K}")
        self.M, self.K = M, K
        self.pstar = [_positive(f"pstar_{m + 1}") for m in range(M)]
        self.q = [[_positive(f"q_{m + 1}{k + 1}") for k in range(K)] for m in range(M)]
        self.pi = [_positive(f"pi_{k + 1}") for k in range(K)]
        self.d = [[_positive(f"d_{k + 1}{m + 1}") for m in range(M)] for k in range(K)]
        self.qbar = [_positive(f"qbar_{k + 1}") for k in range(K)]
        self.rate, self.distortion = sp.Symbol("rate"), sp.Symbol("distortion")
        self.entropy, self.elbo = sp.Symbol("entropy"), sp.Symbol("mean ELBO")
        self.mutual_information_symbol = sp.Symbol("mutual information")
        self.marginal_kl_symbol = sp.Symbol("marginal KL")
        names = {
            **{self.pstar[m]: f"p^*_{{{m + 1}}}" for m in range(M)},
            **{self.q[m][k]: f"q_{{{m + 1},{k + 1}}}" for m in range(M) for k in range(K)},
            **{self.pi[k]: rf"\pi_{{{k + 1}}}" for k in range(K)},
            **{self.d[k][m]: f"d_{{{k + 1},{m + 1}}}" for k in range(K) for m in range(M)},
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
            c = [_positive(f"c_{m + 1}") for m in range(M)]
            a = [[_positive(f"a_{m + 1}{k + 1}") for k in range(K)] for m in range(M)]
            b = [_positive(f"b_{k + 1}") for k in range(K)]
            names |= {a[m][k]: f"a_{{{m + 1},{k + 1}}}" for m in range(M) for k in range(K)}
            definitions |= dict(zip(self.pstar, _normalised(c), strict=True))
            for m in range(M):
                definitions |= dict(zip(self.q[m], _normalised(a[m]), strict=True))
            definitions |= dict(zip(self.pi, _normalised(b), strict=True))
            if proper_decoder:
                w = [[_positive(f"w_{k + 1}{m + 1}") for m in range(M)] for k in range(K)]
                names |= {w[k][m]: f"w_{{{k + 1},{m + 1}}}" for k in range(K) for m in range(M)}
                for k in range(K):
                    definitions |= dict(zip(self.d[k], _normalised(w[k]), strict=True))
        elif proper_decoder:
            raise ValueError("a proper decoder is written with weights (weights=True)")
        definitions |= {
            self.qbar[k]: sp.Add(*(self.pstar[m] * self.q[m][k] for m in range(M)))
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
        """``sum_m pstar_m sum_k q_{m,k} term(m, k)``."""
        return sp.Add(
            *(
                self.pstar[m] * self.q[m][k] * term(m, k)
                for m in range(self.M)
                for k in range(self.K)
            )
        )

    def distortion_sum(self) -> sp.Expr:
        """``D = -E_{p*} E_q[log d(x | z)]``."""
        return -self._expect(lambda m, k: sp.log(self.d[k][m]))

    def rate_sum(self) -> sp.Expr:
        """``R = E_{p*} KL(q(z | x) || pi)``."""
        return self._expect(lambda m, k: sp.log(self.q[m][k] / self.pi[k]))

    def elbo_sum(self) -> sp.Expr:
        """The ELBO averaged over the data, ``E_{p*} E_q[log pi(z) d(x | z) / q(z | x)]``."""
        return self._expect(lambda m, k: sp.log(self.pi[k] * self.d[k][m] / self.q[m][k]))

    def entropy_sum(self) -> sp.Expr:
        """``H = -sum_m pstar_m log pstar_m``, the entropy of the data distribution."""
        return -sp.Add(*(p * sp.log(p) for p in self.pstar))

    def mutual_information(self) -> sp.Expr:
        """``I_q(x; z) = E_{p*} KL(q(z | x) || qbar)`` under the joint ``p*(x) q(z | x)``."""
        return self._expect(lambda m, k: sp.log(self.q[m][k] / self.qbar[k]))

    def marginal_kl(self) -> sp.Expr:
        """``KL(qbar || pi)``."""
        return sp.Add(*(qb * sp.log(qb / p) for qb, p in zip(self.qbar, self.pi, strict=True)))

    def marginal_kl_certificate(self) -> Nonneg:
        """``sum_k qbar_k h(pi_k / qbar_k) >= 0`` (Gibbs); equals ``KL(qbar || pi)`` when both
        sum to one."""
        return _marginal_kl_certificate(self.qbar, self.pi)

    def decoder_certificate(self) -> Nonneg:
        """``sum_{m,k} pstar_m q_{m,k} h(qbar_k d_{k,m} / (pstar_m q_{m,k})) >= 0``: it equals
        ``I_q - (H - D)`` (the KL from the encoder's joint ``p*(x) q(z|x)`` to
        ``qbar(z) d(x|z)``) when ``sum_m d_{k,m} = 1`` for every k, a decoder that is a
        distribution over x."""
        h = log_tangent_lemma()
        return Nonneg.total(
            [
                h.at(self.qbar[k] * self.d[k][m] / (self.pstar[m] * self.q[m][k])).scale(
                    self.pstar[m] * self.q[m][k]
                )
                for m in range(self.M)
                for k in range(self.K)
            ],
            note=r"Gibbs' inequality for the joint $p^*(x)\, q(z \mid x)$ against "
            r"$\bar{q}(z)\, d(x \mid z)$",
        )


# -- the aggregate posterior of a trained VAE -----------------------------------------------
def aggregate_log_density(
    z: torch.Tensor, mu: torch.Tensor, logvar: torch.Tensor, chunk: int = 1024
) -> torch.Tensor:
    """``log q(z)`` of the aggregate posterior ``q(z) = (1/N) sum_n N(z; mu_n, diag
    exp(logvar_n))``: z (S, L), mu and logvar (N, L) -> (S,), by logsumexp over the N
    components (in chunks of ``chunk`` rows of z)."""
    n = mu.shape[0]
    parts = [
        torch.logsumexp(diag_gaussian_log_density(part[:, None, :], mu, logvar), dim=1)  # (s,)
        for part in z.split(chunk)
    ]
    return torch.cat(parts) - math.log(n)  # (S,)


@dataclass(frozen=True)
class SurgeryEstimate:
    """ELBO surgery measured on a data set of ``n`` points (nats): ``average_kl`` exact (the
    closed-form KL of each point, averaged), the rest Monte Carlo with standard errors."""

    n: int
    average_kl: float
    mutual_information: float
    mutual_information_se: float
    marginal_kl: float
    marginal_kl_se: float
    reverse_marginal_kl: float  # KL(p(z) || q(z)), from draws of the prior
    reverse_marginal_kl_se: float
    largest_sample_information: float  # max over the draws of log q(z|x_n) - log q(z)

    @property
    def log_n(self) -> float:
        return math.log(self.n)

    @property
    def sum_se(self) -> float:
        """Standard error of ``mutual_information + marginal_kl`` (the two estimates come
        from the same draws and their sum is the estimate of ``average_kl``; bounded by the
        sum of the two errors)."""
        return self.mutual_information_se + self.marginal_kl_se


def _stratified(values: torch.Tensor) -> tuple[float, float]:
    """Mean and standard error of ``values`` (S, N): S draws for each of N strata of equal
    weight; the error is ``sqrt(sum_n var_n / S) / N``."""
    s, n = values.shape
    values = values.double()
    within = values.var(dim=0) if s > 1 else torch.full((n,), float("nan"))  # (N,)
    return values.mean().item(), math.sqrt(within.sum().item() / s) / n


@torch.no_grad()
def surgery_estimate(
    mu: torch.Tensor,
    logvar: torch.Tensor,
    samples_per_point: int = 4,
    prior_samples: int = 4000,
    seed: int = 0,
) -> SurgeryEstimate:
    """ELBO surgery of a VAE's encoder outputs ``mu``, ``logvar`` (N, L) on N data points:

    - ``average_kl`` = ``(1/N) sum_n KL(q(z|x_n) || N(0, I))`` in closed form;
    - ``mutual_information`` = ``(1/N) sum_n E_{q(z|x_n)}[log q(z|x_n) - log q(z)]`` and
      ``marginal_kl`` = ``E_{q(z)}[log q(z) - log p(z)]``, from the same
      ``samples_per_point`` draws of each ``q(z | x_n)`` (a stratified sample of the
      aggregate posterior ``q(z)``, :func:`aggregate_log_density`);
    - ``reverse_marginal_kl`` = ``E_{p(z)}[log p(z) - log q(z)]`` from ``prior_samples``
      draws of the prior.

    Each draw of the mutual information is at most ``log N`` (``q(z) >= q(z|x_n) / N``),
    so the estimate is too. Seeded with ``seed`` (the global generator is left alone)."""
    gen = torch.Generator().manual_seed(seed)
    mu, logvar = mu.double(), logvar.double()
    n, dim = mu.shape
    eps = torch.randn((samples_per_point, n, dim), generator=gen, dtype=torch.float64)
    z = mu + (0.5 * logvar).exp() * eps  # (S, N, L)
    log_q_point = diag_gaussian_log_density(z, mu, logvar)  # (S, N)
    log_q = aggregate_log_density(z.reshape(-1, dim), mu, logvar).reshape(samples_per_point, n)
    log_p = standard_normal_log_density(z)  # (S, N)
    information = log_q_point - log_q  # (S, N)
    mi, mi_se = _stratified(information)
    kl, kl_se = _stratified(log_q - log_p)
    z_prior = torch.randn((prior_samples, dim), generator=gen, dtype=torch.float64)
    reverse = standard_normal_log_density(z_prior) - aggregate_log_density(z_prior, mu, logvar)
    rev, rev_se = mean_and_stderr(reverse)
    return SurgeryEstimate(
        n=n,
        average_kl=kl_to_standard_normal(mu, logvar).mean().item(),
        mutual_information=mi,
        mutual_information_se=mi_se,
        marginal_kl=kl,
        marginal_kl_se=kl_se,
        reverse_marginal_kl=rev,
        reverse_marginal_kl_se=rev_se,
        largest_sample_information=information.max().item(),
    )


@torch.no_grad()
def aggregate_samples(mu: torch.Tensor, logvar: torch.Tensor, n: int, seed: int = 0) -> torch.Tensor:
    """``n`` draws (n, L) of the aggregate posterior: a data point chosen uniformly, then
    ``z ~ q(z | x)``; seeded."""
    gen = torch.Generator().manual_seed(seed)
    rows = torch.randint(0, mu.shape[0], (n,), generator=gen)
    eps = torch.randn((n, mu.shape[1]), generator=gen, dtype=mu.dtype)
    return mu[rows] + (0.5 * logvar[rows]).exp() * eps


@torch.no_grad()
def bernoulli_mixture_entropy(
    probs: torch.Tensor, n_samples: int = 20000, seed: int = 0, chunk: int = 2000
) -> tuple[float, float]:
    """Entropy (nats) and its standard error of the mixture ``p*(x) = (1/N) sum_n prod_i
    Bernoulli(x_i; probs[n, i])`` over binary x (probs (N, D), entries in [0, 1]), by Monte
    Carlo: ``-mean log p*(x)`` over ``n_samples`` seeded draws. ``log p*(x)`` is exact: a
    logsumexp over the components, a component with ``probs`` 0 or 1 excluding the values it
    cannot produce."""
    gen = torch.Generator().manual_seed(seed)
    probs = probs.double()
    rows = torch.randint(0, probs.shape[0], (n_samples,), generator=gen)
    x = torch.bernoulli(probs[rows], generator=gen)  # (S, D)
    log_on = torch.where(probs > 0, probs.clamp_min(1e-300).log(), 0.0)  # (N, D)
    log_off = torch.where(probs < 1, (1 - probs).clamp_min(1e-300).log(), 0.0)  # (N, D)
    impossible_on, impossible_off = (probs == 0).double(), (probs == 1).double()
    log_p = []
    for part in x.split(chunk):  # (s, D)
        ll = part @ log_on.T + (1 - part) @ log_off.T  # (s, N) log of each component
        blocked = part @ impossible_on.T + (1 - part) @ impossible_off.T  # (s, N)
        ll = ll.masked_fill(blocked > 0, -math.inf)
        log_p.append(torch.logsumexp(ll, dim=1) - math.log(probs.shape[0]))
    return mean_and_stderr(-torch.cat(log_p))


def mean_over_seeds(points: Sequence[dict], keys: Sequence[str], by=("latent_dim", "beta")) -> list[dict]:
    """The points (dicts) grouped by the fields ``by``, in first-seen order: each group's
    ``by`` values, ``n`` (points) and the mean of every field of ``keys``."""
    groups: dict[tuple, list[dict]] = {}
    for p in points:
        groups.setdefault(tuple(p[k] for k in by), []).append(p)
    return [
        dict(zip(by, key, strict=True))
        | {"n": len(members)}
        | {k: float(np.mean([m[k] for m in members])) for k in keys}
        for key, members in groups.items()
    ]


# -- figures ------------------------------------------------------------------------------
def plot_aggregate_posterior_2d(mu, logvar, limit: float = 3.5, steps: int = 161):
    """A two-dimensional latent space: left, the aggregate posterior's density ``q(z)``
    with the prior's 1-, 2- and 3-sigma circles; right, ``log q(z) / p(z)`` clipped to
    [-3, 3] nats (blue where the aggregate posterior is denser than the prior, red where the
    prior puts mass the data do not use), with the contour ``q(z) = p(z) / 10``."""
    grid = torch.linspace(-limit, limit, steps, dtype=torch.float64)
    zz = torch.cartesian_prod(grid, grid)  # (steps^2, 2), first coordinate slowest
    log_q = aggregate_log_density(zz, mu.double(), logvar.double()).reshape(steps, steps)
    log_p = standard_normal_log_density(zz).reshape(steps, steps)
    g = grid.numpy()
    q, ratio = log_q.exp().numpy().T, (log_q - log_p).numpy().T  # rows: second coordinate
    fig, axes = figure(ncols=2, width=3.4, height=3.2)
    theta = np.linspace(0, 2 * np.pi, 200)
    with style():
        axes[0].pcolormesh(g, g, q, cmap="Greys", shading="auto")
        for r in (1, 2, 3):
            axes[0].plot(r * np.cos(theta), r * np.sin(theta), color=COLORS["reverse"], lw=0.9, ls=":")
        axes[0].set_title(r"aggregate posterior $\bar{q}(z)$")
        bound = 3.0
        mesh = axes[1].pcolormesh(
            g, g, np.clip(ratio, -bound, bound), cmap="RdBu", vmin=-bound, vmax=bound, shading="auto"
        )
        axes[1].contour(g, g, ratio, levels=[-math.log(10)], colors=[COLORS["true"]], linewidths=0.9)
        axes[1].set_title(r"$\log \bar{q}(z) / p(z)$")
        fig.colorbar(mesh, ax=axes[1], shrink=0.85, label="nats")
        for ax in axes:
            ax.set_aspect("equal")
            ax.set_xlabel("$z_1$")
            ax.grid(False)
        axes[0].set_ylabel("$z_2$")
    plt.close(fig)
    return fig


def plot_rate_distortion_plane(points: Sequence[dict], entropy: float, beta_colors: dict):
    """The rate-distortion plane: each point a dict with ``rate``, ``distortion``, ``beta``
    and ``latent_dim`` (one marker per latent size, one colour per beta); dotted lines of
    constant ``D + R`` (= -ELBO, slope -1) and the line ``D + R = H`` below which (in
    expectation over the data) no model with a proper decoder lies, shaded."""
    fig, ax = figure(width=5.6, height=4.2)
    markers = {size: m for size, m in zip(sorted({p["latent_dim"] for p in points}), "os^D", strict=False)}
    rates = np.array([p["rate"] for p in points])
    dists = np.array([p["distortion"] for p in points])
    r_lim = (0.0, rates.max() * 1.08)
    d_lim = (min(dists.min(), entropy) - 1.5, dists.max() + 1.0)
    with style():
        r = np.linspace(*r_lim, 50)
        totals = rates + dists
        for total in np.arange(np.floor(totals.min()), np.ceil(totals.max()) + 1, 1.0):
            ax.plot(r, total - r, ":", color="0.6", lw=0.8, zorder=1)
        ax.fill_between(r, d_lim[0], entropy - r, color=COLORS["mc"], alpha=0.35, lw=0, zorder=0)
        ax.plot(r, entropy - r, "-", color=COLORS["gap"], lw=1.3, zorder=1,
                label=r"$\mathcal{D} + \mathcal{R} = H$")
        for p in points:
            ax.scatter(p["rate"], p["distortion"], s=30, marker=markers[p["latent_dim"]],
                       color=beta_colors[p["beta"]], zorder=3)
        for beta in sorted({p["beta"] for p in points}):
            ax.scatter([], [], s=30, color=beta_colors[beta], label=rf"$\beta$ = {beta:g}")
        for size, marker in markers.items():
            ax.scatter([], [], s=30, marker=marker, color="0.4", label=f"latent size {size}")
        ax.set_xlim(*r_lim)
        ax.set_ylim(*d_lim)
        ax.set_xlabel(r"rate $\mathcal{R}$, nats")
        ax.set_ylabel(r"distortion $\mathcal{D}$, nats")
        ax.legend(loc="upper left", bbox_to_anchor=(1.0, 1.0), fontsize=8)
    plt.close(fig)
    return fig
