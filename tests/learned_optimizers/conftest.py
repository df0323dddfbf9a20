"""One torch thread for these tests: their tensors are tiny, and on a shared, loaded CPU two
threads waiting on each other made them a hundred times slower."""

import pytest
import torch


@pytest.fixture(autouse=True)
def _one_torch_thread():
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)
