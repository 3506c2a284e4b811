"""Chapter 9 (``book/09_errata.ipynb``): errata in common derivations.

The chapter-only piece: what one call of a training step changes in a model, by part
(encoder and decoder), to show that a VAE's step moves both at once.
"""

from __future__ import annotations

from collections.abc import Callable

import torch

__all__ = ["parameter_changes"]


def parameter_changes(model: torch.nn.Module, step: Callable, x: torch.Tensor) -> dict:
    """Call ``step(x)`` once and report, for each top-level part of ``model`` that has
    parameters (``"encoder"``, ``"decoder"``, ...), how many of its parameter tensors
    changed and the largest absolute change of any entry:
    ``{part: {"changed": int, "tensors": int, "largest": float}}``."""
    before = {name: p.detach().clone() for name, p in model.named_parameters()}
    step(x)
    parts: dict[str, dict] = {}
    for name, p in model.named_parameters():
        part = parts.setdefault(name.split(".")[0], {"changed": 0, "tensors": 0, "largest": 0.0})
        change = (p.detach() - before[name]).abs().max().item()
        part["tensors"] += 1
        part["changed"] += int(change > 0)
        part["largest"] = max(part["largest"], change)
    return parts
