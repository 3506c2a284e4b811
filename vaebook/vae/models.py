"""Variational autoencoders: an MLP VAE and a linear VAE with an exact marginal (a VAE with
an autoregressive decoder is :mod:`vaebook.vae.made`'s).

The model exposes its three densities as ``torch.distributions`` objects:

- prior ``p(z) = N(0, I)``                      -- :meth:`VAE.prior`
- encoder ``q(z|x) = N(mu(x), diag sigma^2(x))``  -- :meth:`VAE.posterior`
- decoder ``p(x|z)``: ``Bernoulli(logits=f(z))`` or ``N(f(z), s^2 I)`` with ``s``
  learned (one shared scalar) or fixed                -- :meth:`VAE.likelihood`

These objects are for sampling and inspection, and they are the *test oracle*: the
training objective does not call them. :mod:`vaebook.vae.objectives` writes the same
densities out from the networks' outputs (:meth:`VAE.encode`, :meth:`VAE.decode`,
``log_decoder_std``) -- the Bernoulli log-likelihood from the logits directly -- and
``tests/test_objectives.py`` checks them against these distributions.

Distributions are built with ``validate_args=False``: argument validation costs more
than the arithmetic it guards.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import torch
from torch import nn
from torch.distributions import Bernoulli, Independent, MultivariateNormal, Normal

from .config import ARCHITECTURES, LIKELIHOODS, ModelConfig
from .ppca import ppca_marginal

ACTIVATION_MODULES = {"relu": nn.ReLU, "tanh": nn.Tanh}


def mlp(sizes: Sequence[int], activation: str = "relu") -> nn.Sequential:
    """Linear layers of the given sizes with ``activation`` (relu or tanh) between them
    (none after the last)."""
    layers: list[nn.Module] = []
    for i, (n_in, n_out) in enumerate(zip(sizes[:-1], sizes[1:], strict=True)):
        layers.append(nn.Linear(n_in, n_out))
        if i < len(sizes) - 2:
            layers.append(ACTIVATION_MODULES[activation]())
    return nn.Sequential(*layers)


class VAE(nn.Module):
    """VAE with MLP encoder and decoder and a standard normal prior.

    Args:
        data_dim: dimension D of a flattened data point (64 for 8x8 digits, 784 for MNIST).
        hidden_dims: hidden layer widths of the encoder; the decoder mirrors them.
        latent_dim: dimension L of z.
        likelihood: ``"bernoulli"`` (decoder outputs logits) or ``"gaussian"``.
        decoder_std: Gaussian decoder only. ``None`` learns one shared standard
            deviation (initialised to 1); a float fixes it.
        activation: ``"relu"`` (default) or ``"tanh"`` between the layers.
    """

    def __init__(
        self,
        data_dim: int = 784,
        hidden_dims: Sequence[int] = (400,),
        latent_dim: int = 20,
        likelihood: str = "bernoulli",
        decoder_std: float | None = None,
        activation: str = "relu",
    ) -> None:
        super().__init__()
        if likelihood not in LIKELIHOODS:
            raise ValueError(f"unknown likelihood {likelihood!r}; choose from {LIKELIHOODS}")
        self.data_dim, self.latent_dim, self.likelihood_name = data_dim, latent_dim, likelihood
        self.encoder = mlp([data_dim, *hidden_dims, 2 * latent_dim], activation)  # -> (mu, logvar)
        self.decoder = mlp([latent_dim, *reversed(hidden_dims), data_dim], activation)  # -> out
        self._init_decoder_scale(likelihood, decoder_std)
        self.register_buffer("_zero", torch.zeros(()), persistent=False)  # tracks device/dtype

    def _init_decoder_scale(self, likelihood: str, decoder_std: float | None) -> None:
        self.learn_std = likelihood == "gaussian" and decoder_std is None
        if self.learn_std:
            self.log_decoder_std = nn.Parameter(torch.zeros(()))
        else:
            std = 1.0 if decoder_std is None else float(decoder_std)
            self.register_buffer("log_decoder_std", torch.tensor(math.log(std)))

    # -- the three distributions -------------------------------------------------
    def encode(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Posterior parameters: mean and log-variance, each (B, L), for x (B, D)."""
        mu, logvar = self.encoder(x).chunk(2, dim=-1)  # (B, L), (B, L)
        return mu, logvar

    def posterior(self, x: torch.Tensor) -> Independent:
        """q(z|x) with batch shape (B,) and event shape (L,)."""
        mu, logvar = self.encode(x)  # (B, L), (B, L)
        return Independent(Normal(mu, (0.5 * logvar).exp(), validate_args=False), 1)

    def prior(self, batch_shape: Sequence[int] = ()) -> Independent:
        """p(z) = N(0, I), batch shape ``batch_shape``, event shape (L,)."""
        zeros = self._zero.expand(*batch_shape, self.latent_dim)  # (*batch, L)
        return Independent(Normal(zeros, torch.ones_like(zeros), validate_args=False), 1)

    def decode(self, z: torch.Tensor, x: torch.Tensor | None = None) -> torch.Tensor:
        """Decoder output for z (..., L): logits (Bernoulli) or mean (Gaussian), (..., D).
        ``x``, the data being scored, is not read: these pixels are independent given z (an
        autoregressive decoder, :mod:`vaebook.vae.made`, reads it)."""
        return self.decoder(z)

    def likelihood(self, z: torch.Tensor) -> Independent:
        """p(x|z) with batch shape z.shape[:-1] and event shape (D,)."""
        out = self.decode(z)  # (..., D)
        if self.likelihood_name == "bernoulli":
            return Independent(Bernoulli(logits=out, validate_args=False), 1)
        scale = self.log_decoder_std.exp().expand_as(out)  # (..., D)
        return Independent(Normal(out, scale, validate_args=False), 1)

    def sample(self, n: int) -> torch.Tensor:
        """Decoder means (Bernoulli: probabilities) of n draws from the prior, (n, D)."""
        out = self.decode(self.prior((n,)).sample())  # (n, D)
        return out.sigmoid() if self.likelihood_name == "bernoulli" else out


class LinearVAE(VAE):
    """Linear VAE: q(z|x) = N(A x + c, diag s^2), p(x|z) = N(W z + b, sigma^2 I).

    The encoder variance does not depend on x (the exact posterior of a linear
    Gaussian model has constant covariance), sigma is one learned scalar unless
    fixed. The marginal p(x) = N(b, W W^T + sigma^2 I) is exact
    (:meth:`marginal`), so likelihood estimates can be checked against it.
    """

    def __init__(self, data_dim: int, latent_dim: int, decoder_std: float | None = None) -> None:
        nn.Module.__init__(self)
        self.data_dim, self.latent_dim, self.likelihood_name = data_dim, latent_dim, "gaussian"
        self.encoder = nn.Linear(data_dim, latent_dim)  # x -> posterior mean
        self.encoder_logvar = nn.Parameter(torch.full((latent_dim,), -1.0))  # (L,)
        self.decoder = nn.Linear(latent_dim, data_dim)  # z -> mean of x
        self._init_decoder_scale("gaussian", decoder_std)
        self.register_buffer("_zero", torch.zeros(()), persistent=False)

    def encode(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        mu = self.encoder(x)  # (B, L)
        return mu, self.encoder_logvar.expand_as(mu)  # (B, L), (B, L)

    def marginal(self) -> MultivariateNormal:
        """Exact p(x) = N(b, W W^T + sigma^2 I), event shape (D,), in float64
        (:func:`~vaebook.vae.ppca.ppca_marginal` of the decoder's parameters)."""
        sigma2 = (2 * self.log_decoder_std.double()).exp()  # ()
        return ppca_marginal(self.decoder.bias, self.decoder.weight, sigma2)  # W: (D, L)

    def exact_log_likelihood(self, x: torch.Tensor) -> torch.Tensor:
        """log p(x) per example, (B,), float64."""
        return self.marginal().log_prob(x.double())


def build_model(model: ModelConfig, data_dim: int) -> VAE:
    """The VAE the model section describes, for data of ``data_dim`` dimensions (unset sizes
    filled in by :meth:`~vaebook.vae.config.ModelConfig.resolved`)."""
    m = model.resolved(data_dim)
    if m.architecture == "mlp":
        return VAE(data_dim, m.hidden_dims, m.latent_dim, m.likelihood, m.decoder_std, m.activation)
    if m.architecture == "linear":
        if m.likelihood != "gaussian":
            raise ValueError("the linear VAE has a Gaussian decoder; use likelihood='gaussian'")
        return LinearVAE(data_dim, m.latent_dim, m.decoder_std)
    if m.architecture == "made":
        if m.likelihood != "bernoulli":
            raise ValueError("the autoregressive decoder is Bernoulli; use likelihood='bernoulli'")
        from .made import MadeVAE  # made.py builds on this module

        return MadeVAE(data_dim, m.hidden_dims, m.latent_dim, m.activation)
    raise ValueError(
        f"unknown architecture {m.architecture!r}; choose from {', '.join(ARCHITECTURES)}"
    )
