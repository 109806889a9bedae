"""Tiny models gain nothing from several threads, and lose much when the machine is busy; the
real-model tests (marked smollm2) use their process's share of the cores. Under pytest-xdist
each worker gets cores / workers threads, and so do the kernels the tests start (through
OMP_NUM_THREADS): more threads than cores make torch's threads wait on each other."""

import os

import pytest
import torch

WORKERS = int(os.environ.get("PYTEST_XDIST_WORKER_COUNT", "1"))
SHARE = max(1, (os.cpu_count() or 1) // WORKERS)
if WORKERS > 1:
    os.environ.setdefault("OMP_NUM_THREADS", str(SHARE))


@pytest.fixture(autouse=True)
def threads(request):
    real_model = request.node.get_closest_marker("smollm2") is not None
    before = torch.get_num_threads()
    torch.set_num_threads(min(SHARE, before) if real_model else 1)
    yield
    torch.set_num_threads(before)
