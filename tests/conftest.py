"""Tiny models gain nothing from several threads, and lose much when the machine is busy; the
real-model tests (marked smollm2) use every core."""

import pytest
import torch


@pytest.fixture(autouse=True)
def threads(request):
    wanted = torch.get_num_threads() if request.node.get_closest_marker("smollm2") else 1
    before = torch.get_num_threads()
    torch.set_num_threads(wanted if wanted > 1 else 1)
    yield
    torch.set_num_threads(before)
