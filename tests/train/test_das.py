"""Distributed alignment search finds the planted variable, and only where it exists."""

import math

import pytest
import torch
from planted import WIDTH, pairs, spec, train
from torch import nn

import nbvene as nv


def subspace_cosine(a: torch.Tensor, b: torch.Tensor) -> float:
    """The cosine of the smallest principal angle between the spans of two bases."""
    qa, _ = torch.linalg.qr(a.double())
    qb, _ = torch.linalg.qr(b.double())
    return float(torch.linalg.svdvals(qa.T @ qb).max())


def test_rotated_recovers_the_planted_sum(adder, das, test_data):
    _, u = adder
    assert das.iia >= 0.95  # held out of the training examples
    scores = das.evaluate(namespace=test_data.namespace())
    assert scores["iia"] >= 0.95
    assert math.isfinite(scores["loss"])
    assert das.basis.shape == (WIDTH, 1)
    assert abs(float(das.basis[:, 0] @ u)) > 0.99  # the direction it found is u


def test_history_and_report(das):
    assert [r["epoch"] for r in das.history] == list(range(1, 9))
    first, last = das.history[0], das.history[-1]
    assert last["loss"] < first["loss"]
    assert set(last) == {"epoch", "loss", "held_out_loss", "held_out_iia"}
    assert das.iia == pytest.approx(last["held_out_iia"])
    assert "rotated(k=1)" in repr(das) and "iia" in repr(das)


def test_a_label_no_subspace_carries_stays_at_chance(adder, data, test_data):
    """Random labels: nothing in the hidden layer says which class comes out."""
    model, _ = adder
    g = torch.Generator().manual_seed(7)
    labels = torch.randint(0, 19, (len(data.base),), generator=g)
    trained = train("rotated(k=1)", model, data, label=labels)
    held = torch.randint(0, 19, (len(test_data.base),), generator=g)
    scores = trained.evaluate(namespace=test_data.namespace(held))
    assert scores["iia"] < 0.15  # chance is 1/19 ≈ 0.05
    assert trained.iia < 0.15


def test_boundless_and_low_rank_find_the_same_subspace(adder, data, test_data):
    _, u = adder
    low = train("low_rank_rotated(k=1)", adder[0], data)
    # the planted output is sharp (its loss is large), so the boundary's penalty is raised too
    boundless = train("boundless(penalty=10.0)", adder[0], data, epochs=16)
    for trained in (low, boundless):
        assert trained.evaluate(namespace=test_data.namespace())["iia"] >= 0.95
    assert low.basis.shape == (WIDTH, 1)
    # the learned boundary shrank from half the width to a few dimensions
    assert boundless.basis.shape[1] <= 3
    assert subspace_cosine(low.basis, boundless.basis) > 0.95
    assert subspace_cosine(boundless.basis, u[:, None]) > 0.95


def test_held_out_given_early_stopping_and_seeds(adder, data, test_data):
    model, _ = adder
    given = train(
        "rotated(k=1)", model, data, held_out=test_data.namespace(), epochs=30, patience=2
    )
    assert len(given.history) < 30  # stopped once the held-out loss stopped improving
    assert given.iia >= 0.95
    assert given.settings["held_out"] == "given"
    # the same seed gives the same interventions, bit for bit; another seed another start
    small = pairs(200, seed=3)
    one = train("rotated(k=1)", model, small, epochs=2)
    two = train("rotated(k=1)", model, small, epochs=2)
    other = train("rotated(k=1)", model, small, epochs=2, seed=1)
    assert torch.equal(one.basis, two.basis)
    assert not torch.equal(one.basis, other.basis)


def test_sigmoid_mask_loreft_and_low_rank_add_train(adder, data):
    """The other trainable forms run, learn something, and report a basis."""
    model, _ = adder
    small = pairs(300, seed=4)
    for form in ("sigmoid_mask()", "loreft(k=2)", "low_rank_add(k=2)"):
        trained = train(form, model, small, epochs=4)
        assert trained.history[-1]["loss"] < trained.history[0]["loss"], form
        assert trained.basis.shape[0] == WIDTH


def test_your_own_trainable_module(adder, data, test_data):
    """Any module with parameters is trained: here a learned unit direction, written by hand."""
    model, u = adder

    class Direction(nn.Module):
        def __init__(self):
            super().__init__()
            self.v = nn.Parameter(torch.randn(WIDTH, generator=torch.Generator().manual_seed(0)))

        def forward(self, base, source):
            v = self.v / self.v.norm()
            return base + ((source - base) @ v)[:, None] * v

    mine = Direction()
    trained = nv.train(
        spec("{mine}"),
        model=model,
        namespace={**data.namespace(), "mine": mine},
        epochs=10,
        lr=5e-2,
        progress=False,
    )
    assert trained.intervention is mine
    assert trained.evaluate(namespace=test_data.namespace())["iia"] >= 0.95
    v = mine.v.detach()
    assert abs(float(v @ u / v.norm())) > 0.99


def test_custom_loss_and_progress(adder, data):
    model, _ = adder
    small = pairs(200, seed=5)
    seen, records = [], []

    def loss(outputs, labels):
        seen.append(outputs.shape)
        return torch.nn.functional.cross_entropy(outputs, labels, label_smoothing=0.1)

    trained = train("rotated(k=1)", model, small, epochs=2, loss=loss, progress=records.append)
    assert seen and seen[0] == (64, 19)
    assert [r["epoch"] for r in records] == [1, 2]
    assert trained.history == records
