"""Settings shared by the whole suite."""

import pytest


@pytest.fixture(autouse=True)
def one_torch_thread():
    """One torch thread per test: the tensors here are small (overhead-bound), and more
    threads only contend on shared CPUs. The previous setting is restored after."""
    import torch

    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)
