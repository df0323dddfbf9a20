"""One torch thread for these tests (`one_torch_thread` in tests/conftest.py): their tensors are tiny."""

import pytest


@pytest.fixture(autouse=True)
def _one_torch_thread(one_torch_thread):
    yield
