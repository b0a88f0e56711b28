"""Shared helpers for the quantization tests (no tests here)."""

from __future__ import annotations

import pytest
import torch

from edgesr.core.models import create


def tiny_deploy(name: str = "sesr_m3_relu", seed: int = 0):
    """Collapsed ``create(name, scale=2, expansion=16)`` with seeded weights (train-form init)."""
    torch.manual_seed(seed)
    return create(name, scale=2, expansion=16).collapse()


@pytest.fixture(scope="module")
def one_thread():
    """One intra-op thread for the module's tiny tensors: two threads contend on a loaded 2-core box
    (and with TensorFlow's pools once it is imported); results do not depend on it."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)
