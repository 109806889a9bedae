"""nbvene: causal interventions on PyTorch models, from a notebook cell."""
