"""Shared fixtures: the planted network of `planted.py`, its data, and one trained DAS."""

from contextlib import contextmanager

import pytest
import torch
from planted import pairs, planted, train


@contextmanager
def one_thread():
    """Session fixtures are made before the per-test thread setting (tests/conftest.py)."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        yield
    finally:
        torch.set_num_threads(before)


@pytest.fixture(scope="session")
def adder():
    return planted()


@pytest.fixture(scope="session")
def data():
    return pairs(1000, seed=1)


@pytest.fixture(scope="session")
def test_data():
    return pairs(400, seed=2)


@pytest.fixture(scope="session")
def das(adder, data):
    """rotated(k=1) trained once on the planted network (shared: tests must not change it)."""
    model, _ = adder
    with one_thread():
        return train("rotated(k=1)", model, data)
