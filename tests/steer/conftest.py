import pytest

import nbvene as nv


@pytest.fixture(scope="module")
def llama():
    """A tiny random Llama (3 layers): one per test module, never changed by nbvene."""
    return nv.models.tiny("llama", layers=3)
