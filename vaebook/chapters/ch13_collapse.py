"""Chapter 13 (``book/13_posterior_collapse_and_beta.ipynb``), its section on collapse with a
decoder that can model x without z: what the engine checks on the finite family, what is
measured on the committed runs, and the figure.

Derivations (finite family, K latent states):

- :func:`prior_encoder_derivation` -- ``log p(x) = ELBO(p(z)) + KL(p(z) || p(z|x)) >=
  ELBO(p(z)) = E_{p(z)}[log p(x|z)]``: the bound of an encoder collapsed to the prior, and
  what it loses (Gibbs' certificate of :meth:`~vaebook.symbolic.families.FiniteLatent.kl_nonneg`).
- :func:`encoder_gain_derivation` -- ``ELBO(q) - ELBO(p(z)) = KL(p(z) || p(z|x)) -
  KL(q || p(z|x)) <= KL(p(z) || p(z|x))``: the most any encoder gains over the prior.
- :class:`IgnoredLatent` -- a decoder that ignores z (``p(x | z=k) = l`` for every k), with
  a prior ``pi_k = b_k / sum_j b_j``: its posterior is the prior (:meth:`posterior_rows`)
  and the bound at ``q = p(z)`` is ``log p(x)`` exactly (:meth:`exact_bound_derivation`).
- :func:`prior_gap` -- ``KL(p(z) || p(z|x))`` of a finite model given by numbers, exactly.

Measurements: :data:`COLLAPSE_RUNS` (the committed runs, by what they are),
:func:`prior_reconstruction` (``E_{p(z)}[log p(x|z)]`` of a trained model, by Monte
Carlo), :func:`plot_collapse` (KL of each latent dimension; test KL during training).
"""

from __future__ import annotations

from collections.abc import Sequence

import matplotlib.pyplot as plt
import numpy as np
import sympy as sp
import torch

from ..plots import COLORS, figure, style
from ..symbolic.certificates import Nonneg
from ..symbolic.derivation import Derivation
from ..symbolic.families import Concrete, FiniteLatent
from ..symbolic.notation import ELBO, KL_post, integral, px, px_z, pxz, pz, pz_x
from ..vae.objectives import reconstruction_log_likelihood

__all__ = [
    "COLLAPSE_RUNS",
    "FREE_BITS",
    "ELBO_AT_PRIOR",
    "KL_PRIOR_POSTERIOR",
    "prior_posterior_certificate",
    "prior_encoder_derivation",
    "encoder_gain_derivation",
    "IgnoredLatent",
    "prior_gap",
    "prior_reconstruction",
    "plot_collapse",
]

#: the committed runs of the section, by what they are: one recipe (hidden widths 64-64,
#: latent size 8, Adam 1e-2 decaying by 0.97 per epoch, batch 10, 150 epochs)
COLLAPSE_RUNS = {
    "factorised decoder": "digits-collapse-factorised",
    "autoregressive decoder": "digits-collapse-made",
    "autoregressive, KL warm-up": "digits-collapse-made-warmup",
    "autoregressive, free bits": "digits-collapse-made-freebits",
}
#: the free-bits run's lambda, nats per latent dimension (its recipe's ``free_bits``)
FREE_BITS = 0.25

#: the ELBO at q = p(z), ``∫ p(z) log p(x, z) / p(z) dz``
ELBO_AT_PRIOR = integral(pz * sp.log(pxz / pz))
#: ``KL(p(z) || p(z|x)) = ∫ p(z) log p(z) / p(z|x) dz``
KL_PRIOR_POSTERIOR = integral(pz * sp.log(pz / pz_x))


def prior_posterior_certificate(family: FiniteLatent) -> Nonneg:
    """``KL(p(z) || p(z|x)) >= 0`` on a finite family: Gibbs' inequality with the prior in
    the place of q."""
    return family.kl_nonneg(family.pi, [family.posterior(k) for k in range(family.K)])


def prior_encoder_derivation(K: int = 3, recheck: Sequence[int] = (4,)) -> Derivation:
    """``log p(x) = ELBO(p(z)) + KL(p(z) || p(z|x)) >= ELBO(p(z)) = ∫ p(z) log p(x|z) dz``,
    checked on the finite family with K states and re-checked with each of ``recheck``."""
    d = (
        Derivation(
            sp.log(px),
            title="the bound of an encoder collapsed to the prior",
            family=FiniteLatent(K),
        )
        .step(
            ELBO_AT_PRIOR + KL_PRIOR_POSTERIOR,
            because="the evidence identity {eq}`eq-evidence-identity` at $q = p(z)$",
        )
        .bound(ELBO_AT_PRIOR, gap=prior_posterior_certificate)
        .step(integral(pz * sp.log(px_z)), because=r"$p(x, z) = p(z)\, p(x \mid z)$")
    )
    return d.recheck(*(FiniteLatent(k) for k in recheck)) if recheck else d


def encoder_gain_derivation(K: int = 3, recheck: Sequence[int] = (4,)) -> Derivation:
    """``ELBO(q) - ELBO(p(z)) = KL(p(z) || p(z|x)) - KL(q || p(z|x)) <= KL(p(z) || p(z|x))``
    on the finite family with K states (re-checked with each of ``recheck``)."""
    d = (
        Derivation(
            ELBO - ELBO_AT_PRIOR,
            title="what an encoder can gain over the prior",
            family=FiniteLatent(K),
        )
        .step(
            KL_PRIOR_POSTERIOR - KL_post,
            because="the evidence identity {eq}`eq-evidence-identity`, for $q$ and for $p(z)$",
        )
        .bound(KL_PRIOR_POSTERIOR, gap=lambda fam: fam.kl_q_posterior_nonneg(), relation="<=")
    )
    return d.recheck(*(FiniteLatent(k) for k in recheck)) if recheck else d


class IgnoredLatent:
    """A finite model whose decoder ignores z: ``p(x | z = k) = l`` for each of the K
    states, prior ``pi_k := b_k / sum_j b_j`` (any positive distribution on K states is of
    that form). Its :attr:`family` is the concrete family with those definitions;
    :attr:`latex_names` prints ``pi_k`` and ``l`` as in the book."""

    def __init__(self, K: int = 3):
        if K < 2:
            raise ValueError(f"need at least 2 latent states, got {K}")
        self.K = K
        self.b = [sp.Symbol(f"b_{k + 1}", positive=True) for k in range(K)]
        self.pi = [sp.Symbol(f"pi_{k + 1}", positive=True) for k in range(K)]
        self.ell = sp.Symbol("ell", positive=True)
        total = sp.Add(*self.b)
        self.family = Concrete({p: b / total for p, b in zip(self.pi, self.b, strict=True)})
        self.latex_names = {p: rf"\pi_{{{k + 1}}}" for k, p in enumerate(self.pi)}
        self.latex_names[self.ell] = r"\ell"

    def evidence(self) -> sp.Expr:
        """``p(x) = sum_k pi_k l``."""
        return sp.Add(*(p * self.ell for p in self.pi))

    def posterior(self, k: int) -> sp.Expr:
        """``p(z = k | x) = pi_k l / p(x)`` by Bayes' rule (before anything cancels)."""
        return self.pi[k] * self.ell / self.evidence()

    def posterior_rows(self) -> list[tuple[sp.Expr, sp.Expr]]:
        """``(p(z = k | x), pi_k)`` for each k: rows for a typeset display checked on
        :attr:`family` (the posterior is the prior)."""
        return [(self.posterior(k), self.pi[k]) for k in range(self.K)]

    def exact_bound_derivation(self) -> Derivation:
        """``log p(x) = log l = sum_k pi_k log l``, the last being the ELBO at ``q = p(z)``
        (``∫ p(z) log p(x|z) dz``): the bound is exact."""
        return (
            Derivation(
                sp.log(self.evidence()),
                title="the bound of a decoder that ignores $z$",
                family=self.family,
                latex_names=self.latex_names,
            )
            .step(sp.log(self.ell), because=r"$\ell$ taken out; the prior sums to one")
            .step(
                sp.Add(*(p * sp.log(self.ell) for p in self.pi)),
                because="the prior sums to one",
            )
        )


def prior_gap(prior: Sequence, likelihoods: Sequence) -> sp.Expr:
    """``KL(p(z) || p(z|x))`` of the finite model with the given prior probabilities and
    likelihoods ``l_k = p(x | z = k)`` (exact numbers, e.g. SymPy rationals): the finite
    family's own formula, evaluated."""
    K = len(prior)
    fam = FiniteLatent(K)
    values = dict(zip(fam.pi, map(sp.sympify, prior), strict=True))
    values |= dict(zip(fam.lik, map(sp.sympify, likelihoods), strict=True))
    return sp.simplify(fam.interpret(KL_PRIOR_POSTERIOR).xreplace(values))


@torch.no_grad()
def prior_reconstruction(model, x: torch.Tensor, draws: int = 200, seed: int = 0):
    """``E_{p(z)}[log p(x|z)]`` for each row of x (N, D), by Monte Carlo over ``draws``
    draws from the prior (seeded; the global RNG is left as it was): the ELBO an encoder
    collapsed to the prior would get. Returns the per-example means (N,) and their Monte
    Carlo standard errors (N,)."""
    was_training = model.training
    model.eval()
    with torch.random.fork_rng():
        torch.manual_seed(seed)
        z = model.prior((draws, x.shape[0])).sample()  # (S, N, L)
        values = reconstruction_log_likelihood(model, z, x)  # (S, N)
    model.train(was_training)
    return values.mean(0), values.std(0) / draws**0.5


def plot_collapse(
    kl_per_dim: dict[str, Sequence[float]],
    histories: dict[str, Sequence[dict]],
    free_bits: float = FREE_BITS,
):
    """Left: the test-set KL of each latent dimension of each run, largest first (grouped
    bars), with the free-bits level. Right: the test KL after each epoch, with the legend
    of both panels; the epochs in which some run's beta is below its final value (KL
    warm-up) are shaded."""
    fig, axes = figure(ncols=2, width=3.5, height=3.2)
    palette = [COLORS[k] for k in ("true", "reverse", "q", "forward")]
    with style():
        width = 0.8 / len(kl_per_dim)
        for i, (label, values) in enumerate(kl_per_dim.items()):
            ranked = np.sort(np.asarray(values, dtype=float))[::-1]
            rank = np.arange(1, len(ranked) + 1)
            axes[0].bar(
                rank + (i - (len(kl_per_dim) - 1) / 2) * width,
                ranked,
                width,
                color=palette[i % len(palette)],
                label=label,
            )
        axes[0].axhline(free_bits, color=COLORS["gap"], ls=":", lw=1.3)
        axes[0].text(
            len(ranked) + 0.45,
            free_bits,
            r"$\lambda$",
            color=COLORS["gap"],
            va="bottom",
            ha="right",
            fontsize=9,
        )
        axes[0].set_xticks(rank)
        axes[0].set_xlabel("latent dimension, by KL (rank)")
        axes[0].set_ylabel("KL per dimension, nats")
        axes[0].set_title("KL of each dimension")
        ramp_end = 0
        for i, (label, hist) in enumerate(histories.items()):
            epoch = np.array([h["epoch"] for h in hist])
            beta = np.array([h["beta"] for h in hist])
            ramp = epoch[beta < beta[-1]]
            ramp_end = max(ramp_end, int(ramp.max()) if ramp.size else 0)
            axes[1].plot(
                epoch,
                [h["test_kl"] for h in hist],
                lw=1.4,
                color=palette[i % len(palette)],
                label=label,
            )
        if ramp_end:
            axes[1].axvspan(0, ramp_end, color=COLORS["mc"], alpha=0.25, lw=0)
        axes[1].set_xlabel("epoch")
        axes[1].set_ylabel("test KL, nats")
        axes[1].set_title("rate during training")
        axes[1].legend(loc="upper right", fontsize=8)
    plt.close(fig)
    return fig
