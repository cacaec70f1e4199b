"""One torch thread for the tiny-model tests of the trainable LLM baselines (as in tests/r2rank)."""

from __future__ import annotations

import pytest


@pytest.fixture(autouse=True)
def _one_thread():
    """Tiny matmuls on a shared 2-core box run far faster on one thread (no spin-waiting)."""
    try:
        import torch
    except ImportError:
        yield
        return
    n = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(n)
