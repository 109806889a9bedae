"""What every benchmark prints about where it ran: the machine, its threads, the versions, and
the load average (other processes on a shared machine slow every method; compare ratios)."""

from __future__ import annotations

import os
import platform

import torch
import transformers


def load_average() -> str:
    """The 1, 5 and 15 minute load averages ("n/a" where the OS does not tell)."""
    try:
        return ", ".join(f"{x:.2f}" for x in os.getloadavg())
    except OSError:
        return "n/a"


def print_header() -> None:
    """The machine, the CPUs and torch threads, torch and transformers, the load at the start."""
    print(f"machine: {platform.platform()}, {platform.processor() or platform.machine()}")
    print(f"cpus: {os.cpu_count()}, torch threads: {torch.get_num_threads()}")
    print(f"torch {torch.__version__}, transformers {transformers.__version__}")
    print(f"load average at start (1, 5, 15 min): {load_average()}")
