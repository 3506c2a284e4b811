"""A VAE whose decoder is autoregressive over the pixels: a MADE (Germain et al., 2015)
conditioned on z.

The decoder models ``p(x|z) = prod_i p(x_i | x_1..x_{i-1}, z)``, each factor a Bernoulli
with logit ``a_i(x_<i, z)``. One pass computes all D logits: the weight matrices of an MLP
over x are masked so that ``a_i`` reads only the pixels before ``i`` (Germain et al.,
2015: hidden unit k of degree ``m(k)`` sees pixel j when ``m(k) >= j`` and the
units of the layer below whose degree is at most ``m(k)``; output i sees hidden unit k
when ``i > m(k)``), plus a masked direct connection from the pixels before ``i`` to
``a_i``. z enters the first hidden layer through an unmasked linear map (z is not a
pixel). So the decoder can model x without z -- pixel i from the pixels before it --
which is what makes the VAE around it prone to posterior collapse (chapter 13).

:class:`MadeVAE` has the encoder of :class:`~vaebook.vae.models.VAE` and this decoder;
:meth:`MadeVAE.decode` needs the data it scores (``decode(z, x)``, which is how the
objectives of :mod:`vaebook.vae.objectives` call every model's decoder), and
:meth:`MadeVAE.sample` draws pixel by pixel.
"""

from __future__ import annotations

from collections.abc import Sequence
from itertools import pairwise

import torch
from torch import nn
from torch.distributions import Bernoulli, Independent

from .models import ACTIVATION_MODULES, VAE, mlp

__all__ = ["MaskedLinear", "hidden_degrees", "made_masks", "MadeDecoder", "MadeVAE"]


class MaskedLinear(nn.Linear):
    """``y = (W * M) x + b`` with a fixed 0/1 mask ``M`` of the weight's shape (out, in).
    The mask is a buffer rebuilt from the architecture, not stored in checkpoints."""

    def __init__(self, n_in: int, n_out: int, mask: torch.Tensor, bias: bool = True) -> None:
        super().__init__(n_in, n_out, bias=bias)
        if mask.shape != self.weight.shape:
            raise ValueError(f"mask of shape {tuple(mask.shape)} for a weight {(n_out, n_in)}")
        self.register_buffer("mask", mask.to(self.weight.dtype), persistent=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return nn.functional.linear(x, self.weight * self.mask, self.bias)


def hidden_degrees(width: int, data_dim: int) -> torch.Tensor:
    """Degrees ``m(k)`` of a hidden layer's units, cycling through 1..D-1 (deterministic,
    so every degree is used when ``width >= D - 1``): (width,)."""
    return torch.arange(width) % max(data_dim - 1, 1) + 1


def made_masks(data_dim: int, widths: Sequence[int]) -> list[torch.Tensor]:
    """The masks of a MADE over ``data_dim`` pixels (numbered 1..D) with hidden ``widths``,
    first layer first, each of the shape (out, in) of its weight: input -> hidden (unit k
    sees pixel j when ``m(k) >= j``), hidden -> hidden (``m'(k') >= m(k)``), hidden ->
    output (output i sees unit k when ``i > m(k)``); and last, the direct input -> output
    mask (output i sees pixel j when ``i > j``)."""
    pixels = torch.arange(1, data_dim + 1)  # pixel j has degree j
    degrees = [pixels, *(hidden_degrees(w, data_dim) for w in widths)]
    masks = [above[:, None] >= below[None, :] for below, above in pairwise(degrees)]
    masks.append(pixels[:, None] > degrees[-1][None, :])  # strictly: a_i never sees x_i
    masks.append(pixels[:, None] > pixels[None, :])  # the direct connection
    return [m.float() for m in masks]


class MadeDecoder(nn.Module):
    """Logits ``a_i(x_<i, z)`` of all D pixels in one pass:
    ``h_1 = act(M_1 x + A z + b_1)``, ``h_l = act(M_l h_{l-1} + b_l)``,
    ``a = M_out h_L + M_direct x + b`` (each ``M`` a masked weight, ``A`` unmasked)."""

    def __init__(
        self, data_dim: int, latent_dim: int, widths: Sequence[int], activation: str = "relu"
    ) -> None:
        super().__init__()
        if not widths:
            raise ValueError("a MADE needs at least one hidden layer")
        *layer_masks, direct_mask = made_masks(data_dim, widths)
        sizes = [data_dim, *widths, data_dim]
        self.masked = nn.ModuleList(
            MaskedLinear(n_in, n_out, mask)
            for n_in, n_out, mask in zip(sizes[:-1], sizes[1:], layer_masks, strict=True)
        )
        self.from_z = nn.Linear(latent_dim, widths[0], bias=False)  # z -> first hidden layer
        self.direct = MaskedLinear(data_dim, data_dim, direct_mask, bias=False)
        self.act = ACTIVATION_MODULES[activation]()

    def forward(self, z: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
        """Logits (..., D) for z (..., L) and the data x (..., D) they score, broadcast
        against each other (x (B, D) with z (S, B, L) gives (S, B, D))."""
        h = self.act(self.masked[0](x) + self.from_z(z))  # (..., width)
        for layer in self.masked[1:-1]:
            h = self.act(layer(h))
        return self.masked[-1](h) + self.direct(x)  # (..., D)


class MadeVAE(VAE):
    """A VAE with the MLP encoder of :class:`~vaebook.vae.models.VAE`, a standard normal prior
    and the autoregressive Bernoulli decoder :class:`MadeDecoder` (hidden widths: the
    encoder's, mirrored)."""

    def __init__(
        self,
        data_dim: int,
        hidden_dims: Sequence[int] = (64, 64),
        latent_dim: int = 8,
        activation: str = "relu",
    ) -> None:
        nn.Module.__init__(self)
        self.data_dim, self.latent_dim, self.likelihood_name = data_dim, latent_dim, "bernoulli"
        self.encoder = mlp([data_dim, *hidden_dims, 2 * latent_dim], activation)  # -> (mu, logvar)
        self.decoder = MadeDecoder(data_dim, latent_dim, list(reversed(hidden_dims)), activation)
        self._init_decoder_scale("bernoulli", None)
        self.register_buffer("_zero", torch.zeros(()), persistent=False)

    def decode(self, z: torch.Tensor, x: torch.Tensor | None = None) -> torch.Tensor:
        """Logits (..., D) of ``p(x_i | x_<i, z)`` for the data x (..., D) they score."""
        if x is None:
            raise ValueError(
                "the autoregressive decoder's logits depend on the data they score: "
                "decode(z, x); draw images with sample()"
            )
        return self.decoder(z, x.to(z.dtype))

    def likelihood(self, z: torch.Tensor, x: torch.Tensor | None = None) -> Independent:
        """The Bernoulli factors ``p(x_i | x_<i, z)`` of the data x, event shape (D,): its
        ``log_prob(x)``, of that same x, is ``log p(x|z)``."""
        return Independent(Bernoulli(logits=self.decode(z, x), validate_args=False), 1)

    @torch.no_grad()
    def sample_pixels(
        self, n: int, z: torch.Tensor | None = None
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """Ancestral sampling, pixel by pixel (D passes of the decoder), for n draws z from
        the prior (or the given z (n, L)): the binary images x (n, D) and the probability
        ``sigmoid(a_i(x_<i, z))`` with which each pixel was drawn (n, D)."""
        z = self.prior((n,)).sample() if z is None else z  # (n, L)
        x = torch.zeros(n, self.data_dim, dtype=z.dtype, device=z.device)  # (n, D)
        probs = torch.zeros_like(x)
        for i in range(self.data_dim):  # a_i reads x_<i only: fill x in order
            p = self.decode(z, x)[:, i].sigmoid()  # (n,)
            probs[:, i] = p
            x[:, i] = torch.bernoulli(p)
        return x, probs

    def sample(self, n: int) -> torch.Tensor:
        """The probabilities with which the pixels of n ancestral samples were drawn, (n, D)
        (the analogue of a factorised decoder's means; :meth:`sample_pixels`)."""
        return self.sample_pixels(n)[1]
