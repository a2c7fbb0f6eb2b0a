"""Shared settings for the RAG tests."""

import pytest


@pytest.fixture(autouse=True, scope="session")
def _one_torch_thread():
    # The tiny models here are overhead-bound; one thread avoids oversubscribing shared CPUs.
    import torch

    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)
