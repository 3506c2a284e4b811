"""The ordinary suite runs on the CPU; ``pytest -m cuda`` runs the CUDA tests.

On a machine with a GPU, ``--device auto`` (the trainer's default) would move the ordinary
tests onto it: one of them asserts that a run says ``cpu`` and one forks worker processes,
which is unsafe once CUDA is initialised. So unless the mark expression selects the
``cuda`` tests, CUDA is hidden (``CUDA_VISIBLE_DEVICES`` set empty) before anything
initialises it; subprocesses and notebook kernels inherit that. The ``cuda`` tests skip
with a reason: CUDA hidden from the ordinary suite, or no CUDA device here.
"""

from __future__ import annotations

import os

import pytest

CUDA_HIDDEN = "the ordinary suite pins the CPU (CUDA hidden); run the CUDA tests with pytest -m cuda"


def selects_cuda_tests(markexpr: str) -> bool:
    """Whether a ``-m`` expression asks for the cuda tests (``cuda``, ``cuda and ...``)."""
    words = markexpr.replace("(", " ").replace(")", " ").split()
    return "cuda" in words and not any(
        a == "not" and b == "cuda" for a, b in zip(words, words[1:], strict=False)
    )


def pytest_configure(config):  # the marker itself is registered in pyproject.toml
    config.vaebook_cuda_hidden = not selects_cuda_tests(config.getoption("markexpr") or "")
    if config.vaebook_cuda_hidden:
        os.environ["CUDA_VISIBLE_DEVICES"] = ""


def pytest_collection_modifyitems(config, items):
    cuda_items = [item for item in items if item.get_closest_marker("cuda")]
    if not cuda_items:
        return
    if config.vaebook_cuda_hidden:
        reason = CUDA_HIDDEN
    else:
        import torch

        reason = None if torch.cuda.is_available() else "no CUDA device here"
    if reason:
        for item in cuda_items:
            item.add_marker(pytest.mark.skip(reason=reason))
