"""Chapter 9's companion: what one training step changes, per part of the model, against
an independent oracle (the gradient torch computes for the same loss, through plain SGD)
and against steps built to move one part only."""

import copy

import pytest
import torch

from vaebook.chapters.ch09_errata import parameter_changes
from vaebook.vae.models import VAE
from vaebook.vae.objectives import elbo_terms
from vaebook.vae.train import make_optimizer, make_train_step


def _model_and_batch(seed=0):
    torch.manual_seed(seed)
    model = VAE(12, [16], 3)
    x = (torch.rand(20, 12) > 0.5).float()  # (B, D) binary
    return model, x


def test_a_step_that_moves_only_the_decoder_is_reported_as_such():
    model, x = _model_and_batch()
    decoder_only = torch.optim.SGD(model.decoder.parameters(), lr=0.1)

    def m_step(xb):  # the decoder follows the gradient, the encoder is held fixed
        decoder_only.zero_grad()
        elbo_terms(model, xb).loss.backward()
        decoder_only.step()

    parts = parameter_changes(model, m_step, x)
    n_enc = len(list(model.encoder.parameters()))
    n_dec = len(list(model.decoder.parameters()))
    assert parts["encoder"] == {"changed": 0, "tensors": n_enc, "largest": 0.0}
    assert parts["decoder"]["changed"] == n_dec == parts["decoder"]["tensors"]
    assert parts["decoder"]["largest"] > 0


def test_largest_change_is_lr_times_the_largest_gradient_under_sgd():
    """Oracle: torch.autograd.grad of the same loss at the same noise, on a copy."""
    model, x = _model_and_batch(1)
    twin = copy.deepcopy(model)
    lr = 0.05
    torch.manual_seed(7)
    grads = torch.autograd.grad(elbo_terms(twin, x).loss, list(twin.parameters()))
    expected = {}
    for (name, _), g in zip(twin.named_parameters(), grads, strict=True):
        part = name.split(".")[0]
        expected[part] = max(expected.get(part, 0.0), lr * g.abs().max().item())
    sgd = torch.optim.SGD(model.parameters(), lr=lr)

    def step(xb):
        sgd.zero_grad()
        torch.manual_seed(7)
        elbo_terms(model, xb).loss.backward()
        sgd.step()

    parts = parameter_changes(model, step, x)
    for part, value in expected.items():
        assert parts[part]["largest"] == pytest.approx(value, rel=1e-5)


def test_the_trainers_step_moves_encoder_and_decoder_in_one_call():
    model, x = _model_and_batch(2)
    step = make_train_step(model, make_optimizer(model, 1e-3))
    parts = parameter_changes(model, step, x)
    assert set(parts) == {"encoder", "decoder"}
    for part in parts.values():
        assert part["changed"] == part["tensors"] and part["largest"] > 0
