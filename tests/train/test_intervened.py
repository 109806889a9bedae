"""nv.Intervened: the model with a spec's interventions as one module, for your own loops."""

import pytest
import torch
from planted import WIDTH, hook_count, pairs, planted

import nbvene as nv


def test_gradients_reach_the_intervention_and_a_loop_learns():
    model, u = planted()
    model.requires_grad_(False)
    das = nv.Intervened(model, "patch: hidden.output via rotated(k=1)")
    (rotation,) = das.interventions
    assert rotation.width == WIDTH  # built at once: the width is the Linear's out_features
    optimizer = torch.optim.Adam(das.interventions.parameters(), lr=1e-2)
    data = pairs(1000, seed=40)
    g = torch.Generator().manual_seed(0)
    for _ in range(3):
        for chosen in torch.randperm(1000, generator=g).split(64):
            outputs = das(data.base[chosen], data.source[chosen])
            loss = torch.nn.functional.cross_entropy(outputs, data.counterfactual[chosen])
            optimizer.zero_grad()
            loss.backward()
            optimizer.step()
    assert all(p.grad is None for p in model.parameters())
    test = pairs(300, seed=41)
    with torch.no_grad():
        outputs = das(test.base, test.source)
    assert outputs.shape == (300, 19)
    assert (outputs.argmax(-1) == test.counterfactual).float().mean() >= 0.95
    assert abs(float(rotation.basis[:, 0] @ u)) > 0.95
    assert hook_count(model) == 0


def test_outputs_match_nv_run_and_named_inputs():
    model, _ = planted()
    data = pairs(6, seed=42)
    wrapped = nv.Intervened(
        model, "base: {x}\nsource: {y}\npatch: hidden.output via low_rank_rotated(k=2)"
    )
    with torch.no_grad():
        outputs = wrapped(data.base, data.source)
    res = nv.run(
        "base: {x}\nsource: {y}\npatch: hidden.output via {m}\nmetric: logit(4)",
        model=model,
        namespace={"x": data.base, "y": data.source, "m": wrapped.interventions[0]},
    )
    torch.testing.assert_close(res.values, outputs[:, 4])
    assert isinstance(wrapped.model, torch.nn.Module) and wrapped.model is model


def test_a_trained_intervention_inside(das):
    model = das.model
    wrapped = nv.Intervened(model, "patch: hidden.output via {das}", namespace={"das": das})
    assert list(wrapped.interventions.parameters()) == list(das.parameters())
    data = pairs(50, seed=43)
    with torch.no_grad():
        hits = wrapped(data.base, data.source).argmax(-1) == data.counterfactual
    assert hits.float().mean() >= 0.95


def test_bad_specs_fail_before_running():
    model, _ = planted()
    with pytest.raises(nv.NbveneError, match="takes its base as an argument"):
        nv.Intervened(model, 'base: "text"\npatch: hidden.output via rotated(k=1)')
    wrapped = nv.Intervened(model, "patch: hidden.output layer=* via rotated(k=1)")
    with pytest.raises(nv.NbveneError, match="drop layer="):
        wrapped(torch.zeros(2, 20), torch.zeros(2, 20))
    assert hook_count(model) == 0
