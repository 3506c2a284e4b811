"""Chapter 6 (``book/06_reconstruction_regularisation.ipynb``): reconstruction versus
regularisation.

The beta-weighted objective ``E_q[log p(x|z)] - beta KL(q || p(z))`` on the scalar
linear-Gaussian family and its optimum (:func:`beta_objective`, :func:`beta_optimum`),
decoder log-likelihood helpers, a Monte Carlo KL estimate, the chapter's figures, and
:func:`check_training_objective`: the trainer's objective (:mod:`vaebook.vae.objectives`,
the functions :func:`vaebook.vae.train.make_train_step` calls) against the closed forms
the chapter derives.
"""

from __future__ import annotations

import functools
import math
from collections.abc import Sequence
from dataclasses import dataclass, field

import matplotlib.pyplot as plt
import numpy as np
import sympy as sp
import torch

from ..plots import COLORS, figure, style
from ..symbolic import notation as N
from ..symbolic.families import LinearGaussian
from ..vae import objectives
from ..vae import train as trainer
from ..vae.models import VAE

__all__ = [
    "ObjectiveCheck",
    "beta_objective",
    "beta_optimum",
    "check_training_objective",
    "gaussian_nll",
    "monte_carlo_kl_to_standard_normal",
    "plot_beta_optimum",
    "plot_gaussian_nll_variance",
]


def beta_objective(lg: LinearGaussian, beta) -> tuple[sp.Expr, sp.Expr, sp.Expr]:
    """``(objective, reconstruction, kl)`` on the scalar linear-Gaussian family, exact:
    reconstruction ``E_q[log p(x|z)]``, ``kl = KL(q || p(z))`` and
    ``objective = reconstruction - beta * kl`` (eq-recon-beta), functions of ``lg.m, lg.v``."""
    recon = lg.interpret(N.expectation(sp.log(N.px_z)))
    kl = lg.interpret(N.KL_prior)
    return recon - beta * kl, recon, kl


def beta_optimum(lg: LinearGaussian, beta) -> tuple[sp.Expr, sp.Expr]:
    """The unique stationary ``(m*, v*)`` of :func:`beta_objective`, by ``sympy.solve``
    of the two first-order conditions; raises unless there is exactly one solution."""
    objective, _, _ = beta_objective(lg, beta)
    sols = sp.solve([sp.diff(objective, lg.m), sp.diff(objective, lg.v)], [lg.m, lg.v], dict=True)
    if len(sols) != 1:
        raise ValueError(f"expected one stationary point, found {sols}")
    return sp.simplify(sols[0][lg.m]), sp.simplify(sols[0][lg.v])


def gaussian_nll(x, mu, var, *, keep_log_var: bool = True, keep_constant: bool = True):
    """Sum over entries of ``-log N(x; mu, var)`` (eq-recon-gauss-nll):
    ``(x - mu)^2 / (2 var) + 1/2 log var + 1/2 log(2 pi)``.

    ``keep_log_var=False`` drops ``1/2 log var`` and ``keep_constant=False`` drops
    ``1/2 log(2 pi)`` -- to show what each omission does. NumPy arrays, broadcasting.
    """
    x, mu, var = np.asarray(x, float), np.asarray(mu, float), np.asarray(var, float)
    out = (x - mu) ** 2 / (2 * var)
    if keep_log_var:
        out = out + 0.5 * np.log(var)
    if keep_constant:
        out = out + 0.5 * np.log(2 * np.pi)
    return np.sum(out, axis=-1) if out.ndim else out


def monte_carlo_kl_to_standard_normal(
    mu: torch.Tensor, logvar: torch.Tensor, n_samples: int, seed: int = 0
) -> tuple[float, float]:
    """Monte Carlo estimate of ``KL(q || N(0, I))`` for one ``q = N(mu, diag exp(logvar))``
    (mu, logvar: (L,)): the mean of ``log q(z) - log p(z)`` over ``n_samples`` draws
    ``z ~ q`` (seeded), and its standard error. Densities from ``torch.distributions``."""
    from torch.distributions import Independent, Normal

    gen = torch.Generator().manual_seed(seed)
    std = (0.5 * logvar).exp()  # (L,)
    eps = torch.randn((n_samples, mu.shape[-1]), generator=gen, dtype=mu.dtype)  # (S, L)
    z = mu + std * eps  # (S, L)
    q = Independent(Normal(mu, std), 1)
    p = Independent(Normal(torch.zeros_like(mu), torch.ones_like(mu)), 1)
    log_ratio = q.log_prob(z) - p.log_prob(z)  # (S,)
    return float(log_ratio.mean()), float(log_ratio.std() / math.sqrt(n_samples))


# ------------------------------------------------- the trainer's objective, checked


@dataclass
class ObjectiveCheck:
    """Result of :func:`check_training_objective`: for each compared quantity its largest
    relative error ``|trainer - derived| / (1 + |derived|)``, the tolerance it had to meet,
    and where it was evaluated (e.g. ``"1000 random points"``)."""

    errors: dict[str, float] = field(default_factory=dict)
    tolerances: dict[str, float] = field(default_factory=dict)
    where: dict[str, str] = field(default_factory=dict)
    descriptions: dict[str, str] = field(default_factory=dict)

    def add(self, name: str, description: str, got, derived, where: str, tol: float) -> None:
        if isinstance(got, torch.Tensor):
            got = got.detach().double().cpu().numpy()
        got = np.asarray(got, dtype=float)
        derived = np.asarray(derived, dtype=float)
        assert got.shape == derived.shape, f"{name}: shape {got.shape} != {derived.shape}"
        error = float(np.max(np.abs(got - derived) / (1 + np.abs(derived))))
        self.errors[name], self.tolerances[name] = error, tol
        self.where[name], self.descriptions[name] = where, description

    @property
    def passed(self) -> bool:
        return all(self.errors[k] <= self.tolerances[k] for k in self.errors)

    def failures(self) -> list[str]:
        return [
            f"{self.descriptions[k]}: relative error {self.errors[k]:.3g} > {self.tolerances[k]:g}"
            for k in self.errors
            if not self.errors[k] <= self.tolerances[k]  # NaN fails too
        ]

    def verdict(self) -> str:
        """One line per comparison, in words, with the tolerance it met (stable across
        machines)."""
        width = max(len(d) for d in self.descriptions.values())
        return "\n".join(
            f"{self.descriptions[k]:{width}s}  max relative error < {self.tolerances[k]:.0e}"
            f"  ({self.where[k]})"
            for k in self.errors
        )


def _lambdified(expr: sp.Expr, symbols: Sequence[sp.Symbol]):
    """``expr`` as a float64 NumPy function of ``symbols`` (broadcasting)."""
    return sp.lambdify(list(symbols), expr, modules="numpy")


def _keeps_global_rng(fn):
    """Run ``fn`` under a forked torch RNG: the caller's global RNG is left as it was."""

    @functools.wraps(fn)
    def wrapper(*args, **kwargs):
        with torch.random.fork_rng(devices=[]):
            return fn(*args, **kwargs)

    return wrapper


@_keeps_global_rng
def check_training_objective(
    kl_closed_form: sp.Expr,
    kl_symbols: tuple[sp.Symbol, sp.Symbol],
    bernoulli_log_likelihood: sp.Expr,
    bernoulli_symbols: tuple[sp.Symbol, sp.Symbol],
    gaussian_log_likelihood: sp.Expr,
    gaussian_symbols: tuple[sp.Symbol, sp.Symbol, sp.Symbol],
    *,
    n_points: int = 1000,
    latent_dim: int = 4,
    data_dim: int = 16,
    betas: Sequence[float] = (0.5, 1.0, 4.0),
    seed: int = 0,
    tol: float = 1e-12,
    float32_tol: float = 1e-6,
) -> ObjectiveCheck:
    """Check the trainer's objective against the chapter's derived closed forms.

    The derived forms are SymPy expressions for *one* coordinate:
    ``kl_closed_form(mu, sigma)`` (one latent dimension of ``KL(q || N(0, 1))``),
    ``bernoulli_log_likelihood(x, a)`` (one pixel, logit a) and
    ``gaussian_log_likelihood(x, mean, variance)`` (one pixel). They are lambdified and
    summed over latent dimensions / pixels (the objective's convention), in float64, at
    ``n_points`` seeded random rows, and compared with:

    1. ``objectives.kl_to_standard_normal``, ``objectives.bernoulli_log_likelihood`` and
       ``objectives.gaussian_log_likelihood`` -- the densities the trainer uses;
    2. ``objectives.elbo_terms`` on a float64 VAE whose decoder output does not depend on z
       (zero decoder weights, so the single-sample reconstruction is exact): its
       reconstruction, KL, ELBO = reconstruction - KL, and loss =
       ``-mean(reconstruction - beta KL)`` for each ``beta`` and both likelihoods;
    3. the loss that ``vaebook.vae.train.make_train_step`` reports for a step (learning
       rate 0), which the trainer returns in float32 (``float32_tol``).

    Every function is looked up on its module at call time, so a change to the training
    code (or a monkeypatch of it) is what gets checked. Returns an :class:`ObjectiveCheck`;
    raises ``AssertionError`` if any relative error exceeds its tolerance.
    """
    g = torch.Generator().manual_seed(seed)
    f64 = dict(generator=g, dtype=torch.float64)
    check = ObjectiveCheck()
    kl_1d = _lambdified(kl_closed_form, kl_symbols)  # (mu, sigma) -> KL of one dimension
    bern_1d = _lambdified(bernoulli_log_likelihood, bernoulli_symbols)  # (x, a)
    gauss_1d = _lambdified(gaussian_log_likelihood, gaussian_symbols)  # (x, mean, variance)

    def derived_kl(mu, logvar):  # (n, L) -> (n,)
        mu, logvar = mu.detach().numpy(), logvar.detach().numpy()
        return np.sum(kl_1d(mu, np.exp(0.5 * logvar)), axis=-1)

    def derived_bernoulli(x, logits):  # (n, D) -> (n,)
        return np.sum(bern_1d(x.numpy(), logits.detach().numpy()), axis=-1)

    def derived_gaussian(x, mean, log_std):  # (n, D), (n, D), broadcastable -> (n,)
        var = np.exp(2 * log_std.detach().numpy())
        return np.sum(gauss_1d(x.numpy(), mean.detach().numpy(), var), axis=-1)

    # 1. the densities, at random parameters
    n, L, D = n_points, latent_dim, data_dim
    points = f"{n} random points"
    over_betas = f"beta = {', '.join(f'{b:g}' for b in betas)}; batch of {n}"
    mu, logvar = 2 * torch.randn(n, L, **f64), 2 * torch.randn(n, L, **f64)
    check.add(
        "kl",
        "trainer's KL vs derived closed form",
        objectives.kl_to_standard_normal(mu, logvar),
        derived_kl(mu, logvar),
        points,
        tol,
    )
    x_bin = (torch.rand(n, D, **f64) < 0.5).double()
    logits = 5 * torch.randn(n, D, **f64)
    check.add(
        "bernoulli",
        "trainer's Bernoulli log p(x|z) vs derived",
        objectives.bernoulli_log_likelihood(x_bin, logits),
        derived_bernoulli(x_bin, logits),
        points,
        tol,
    )
    x_real, mean = 3 * torch.randn(n, D, **f64), torch.randn(n, D, **f64)
    log_std = 3 * torch.rand(n, 1, **f64) - 2  # one decoder scale per row, in [e^-2, e]
    check.add(
        "gaussian",
        "trainer's Gaussian log p(x|z) vs derived",
        objectives.gaussian_log_likelihood(x_real, mean, log_std),
        derived_gaussian(x_real, mean, log_std),
        points,
        tol,
    )

    # 2. and 3. the assembled objective, through elbo_terms and the trainer's step
    for likelihood, x in (("bernoulli", x_bin), ("gaussian", x_real)):
        name = likelihood.capitalize()  # as the verdict says it
        torch.manual_seed(seed)
        model = VAE(D, hidden_dims=(), latent_dim=L, likelihood=likelihood).double()
        with torch.no_grad():
            model.decoder[0].weight.zero_()  # p(x|z) does not depend on z ...
            model.decoder[0].bias.copy_(torch.randn(D, **f64))  # ... logits or mean
            model.log_decoder_std.fill_(-0.4)
        mu_x, logvar_x = model.encode(x)  # (n, L), (n, L)
        out = model.decoder[0].bias.expand(n, D)  # (n, D)
        if likelihood == "bernoulli":
            reconstruction = derived_bernoulli(x, out)
        else:
            reconstruction = derived_gaussian(x, out, model.log_decoder_std)
        kl = derived_kl(mu_x, logvar_x)
        terms = objectives.elbo_terms(model, x, beta=1.0)
        check.add(
            f"{likelihood}-reconstruction",
            f"ELBO terms, reconstruction ({name}) vs derived",
            terms.reconstruction,
            reconstruction,
            points,
            tol,
        )
        check.add(
            f"{likelihood}-kl",
            f"ELBO terms, KL ({name}) vs derived",
            terms.kl,
            kl,
            points,
            tol,
        )
        check.add(
            f"{likelihood}-elbo",
            f"ELBO terms, ELBO ({name}) vs derived recon - KL",
            terms.elbo,
            reconstruction - kl,
            points,
            tol,
        )
        losses, step_losses = [], []
        for beta in betas:
            derived_loss = -np.mean(reconstruction - beta * kl)
            losses.append((objectives.elbo_terms(model, x, beta=beta).loss, derived_loss))
            step = trainer.make_train_step(
                model, torch.optim.SGD(model.parameters(), lr=0.0), beta=beta
            )
            step_losses.append((step(x)[0], derived_loss))
        check.add(
            f"{likelihood}-loss",
            f"ELBO terms, loss ({name}) vs -mean(recon - beta KL)",
            [got.item() for got, _ in losses],
            [want for _, want in losses],
            over_betas,
            tol,
        )
        check.add(
            f"{likelihood}-step",
            f"training step, loss ({name}, float32) vs derived",
            [got.item() for got, _ in step_losses],
            [want for _, want in step_losses],
            over_betas,
            float32_tol,
        )
    failures = check.failures()
    assert not failures, "the trainer's objective is not the derived one:\n" + "\n".join(failures)
    return check


def plot_beta_optimum(betas, m_opt, v_opt, recon, kl, m_post, v_post):
    """Left: optimal variational mean and variance against ``beta`` (log axis), with the
    true posterior at ``beta = 1``. Right: reconstruction term and KL term at the optimum."""
    fig, axes = figure(ncols=2, width=4.6, height=3.6)
    with style():
        axes[0].plot(betas, m_opt, color=COLORS["q"], label=r"$m^*(\beta)$")
        axes[0].plot(betas, v_opt, color=COLORS["reverse"], label=r"$v^*(\beta)$")
        axes[0].plot(
            [1, 1],
            [m_post, v_post],
            "*",
            color=COLORS["true"],
            ms=12,
            label=r"true posterior ($\beta = 1$)",
        )
        axes[0].set_xscale("log")
        axes[0].set_xlabel(r"$\beta$")
        axes[0].set_ylabel("optimal parameter of $q$")
        axes[0].set_title("the optimal $q$ moves towards the prior")
        axes[0].legend()
        axes[1].plot(betas, recon, color=COLORS["q"], label=r"$\mathbb{E}_q[\log p(x|z)]$")
        axes[1].plot(betas, kl, color=COLORS["reverse"], label=r"$\mathrm{KL}(q \| p(z))$")
        axes[1].axvline(1, color="grey", ls=":", lw=1)
        axes[1].set_xscale("log")
        axes[1].set_xlabel(r"$\beta$")
        axes[1].set_ylabel("nats")
        axes[1].set_title("reconstruction versus regularisation")
        axes[1].legend()
    plt.close(fig)
    return fig


def plot_gaussian_nll_variance(var_grid, full, no_log_var, var_opt):
    """Gaussian negative log-likelihood of fixed residuals against a learned variance:
    the full NLL (minimum at the mean squared residual ``var_opt``) and the NLL without
    its ``1/2 log var`` term (decreasing forever: no minimum)."""
    fig, ax = figure(width=5.6, height=3.8)
    with style():
        ax.plot(
            var_grid, full, color=COLORS["q"], label=r"full $-\log \mathcal{N}(x; \mu, \sigma^2)$"
        )
        ax.plot(
            var_grid,
            no_log_var,
            color=COLORS["reverse"],
            label=r"without $\frac{1}{2} \log \sigma^2$",
        )
        ax.axvline(var_opt, color="grey", ls=":", label=rf"mean squared residual {var_opt:.3g}")
        ax.set_xscale("log")
        full, no_log_var = np.asarray(full), np.asarray(no_log_var)
        low = min(full.min(), no_log_var.min())
        top = np.interp(np.log(var_opt / 10), np.log(var_grid), full)  # show the bowl
        ax.set_ylim(low - 0.05 * (top - low), top)
        ax.set_xlabel(r"decoder variance $\sigma^2$")
        ax.set_ylabel("negative log-likelihood (nats)")
        ax.set_title("a learned variance needs the log term")
        ax.legend()
    plt.close(fig)
    return fig
