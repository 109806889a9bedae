"""The trainable interventions as modules, and as `via name(...)` in nv.run."""

import pytest
import torch
from planted import WIDTH, pairs

import nbvene as nv
from nbvene.train import (
    Boundless,
    Interchange,
    LoReFT,
    LowRankAdd,
    LowRankRotated,
    Rotated,
    SigmoidMask,
)

RUN = "base: {base}\nsource: {source}\npatch: hidden.output{via}\nmetric: logit(3)"


def run(model, data, via: str = "", **namespace):
    return nv.run(
        RUN.replace("{via}", via),
        model=model,
        namespace={"base": data.base, "source": data.source, **namespace},
    )


def test_rotation_is_orthogonal_and_seeded():
    r = Rotated(k=2, width=8)
    eye = torch.eye(8)
    torch.testing.assert_close(r.matrix.T @ r.matrix, eye, atol=1e-5, rtol=0)
    assert torch.equal(Rotated(k=2, width=8).matrix, r.matrix)  # same seed, same start
    assert not torch.equal(Rotated(k=2, seed=1, width=8).matrix, r.matrix)
    assert r.basis.shape == (8, 2) and r.basis.dtype == torch.float32
    q = LowRankRotated(k=3, width=8).basis
    torch.testing.assert_close(q.T @ q, torch.eye(3), atol=1e-5, rtol=0)
    assert Rotated(dims=[1, 5], width=8).basis.shape == (8, 2)


def test_swapping_every_rotated_dimension_of_the_identity_is_plain_interchange(adder):
    """rotated(k=d) with R = I takes the whole source: exactly what `patch:` does."""
    model, _ = adder
    data = pairs(16, seed=9)
    identity = Rotated(k=WIDTH, width=WIDTH)
    identity.rotation.weight = torch.eye(WIDTH)
    assert torch.equal(identity.matrix, torch.eye(WIDTH))
    plain = run(model, data)
    rotated = run(model, data, " via {r}", r=identity)
    torch.testing.assert_close(rotated.values, plain.values, atol=0, rtol=0)
    # any rotation, with every dimension swapped, is the interchange (up to rounding)
    turned = run(model, data, " via rotated(k=16)")
    torch.testing.assert_close(turned.values, plain.values, atol=1e-3, rtol=1e-4)


def test_fixed_subspaces(adder):
    """interchange(dims=...) and interchange(subspace=...) need no training."""
    model, u = adder
    data = pairs(32, seed=10)
    base, source = torch.randn(4, WIDTH), torch.randn(4, WIDTH)
    dims = Interchange(dims=[0, 3], width=WIDTH)(base, source)
    expected = base.clone()
    expected[:, [0, 3]] = source[:, [0, 3]]
    torch.testing.assert_close(dims, expected)
    first = Interchange(subspace=2, width=WIDTH)(base, source)
    assert torch.equal(first[:, 2:], base[:, 2:]) and torch.allclose(first[:, :2], source[:, :2])
    # the planted direction as a fixed subspace moves the sum: the output is the source's sum
    res = nv.run(
        "base: {base}\nsource: {source}\npatch: hidden.output via interchange(subspace={u})\n"
        "metric: logit(3)",
        model=model,
        namespace={"base": data.base, "source": data.source, "u": u[:, None]},
    )
    assert res.values.shape == (32,)
    with torch.no_grad():
        h, hs = model.hidden(data.base), model.hidden(data.source)
        patched = h + ((hs - h) @ u)[:, None] * u
        torch.testing.assert_close(res.values, model.out(patched)[:, 3], atol=1e-3, rtol=1e-5)
        assert torch.equal(model.out(patched).argmax(-1), data.counterfactual)


def test_each_form_runs_and_keeps_dtype():
    base, source = torch.randn(5, 8, dtype=torch.float64), torch.randn(5, 8, dtype=torch.float64)
    for module in (
        Rotated(k=2),
        LowRankRotated(k=2),
        Boundless(),
        SigmoidMask(),
        LoReFT(k=2),
        LowRankAdd(k=2),
        Interchange(dims=[1]),
    ):
        out = module(base, source)  # made at the first call, for width 8
        assert out.shape == base.shape and out.dtype == torch.float64, module
        assert module.width == 8
        assert module.basis.shape[0] == 8
        for p in module.parameters():
            assert p.dtype == torch.float32  # learned in float32, whatever the model's dtype
    # starts as the identity (up to float32: the learned forms compute in float32)
    torch.testing.assert_close(LowRankAdd(k=2)(base, None), base, atol=1e-6, rtol=1e-6)


def test_width_is_checked():
    r = Rotated(k=1, width=8)
    with pytest.raises(nv.NbveneError, match="width 8, and this site's units have 6"):
        r(torch.randn(2, 6), torch.randn(2, 6))
    with pytest.raises(nv.NbveneError, match="k=9 is more than the 8 units"):
        Rotated(k=9, width=8)
    with pytest.raises(nv.NbveneError, match="not distinct"):
        Rotated(dims=[1, 1], width=8)


def test_spec_errors_name_the_line(adder):
    model, _ = adder
    data = pairs(4, seed=11)
    cases = [
        (" via rotatd(k=1)", "unknown intervention 'rotatd'", "did you mean 'rotated'"),
        (" via rotated(kk=1)", "rotated takes no 'kk'", "did you mean 'k'"),
        (" via rotated(k=0)", "k must be a positive integer", None),
        (" via interchange()", "interchange takes one of", "dims="),
        (" via interchange(subspace={nothing})", "{nothing} is not defined", None),
    ]
    for via, message, hint in cases:
        with pytest.raises(nv.NbveneError) as info:
            run(model, data, via)
        assert message in info.value.message, via
        assert info.value.line == 3
        if hint:
            assert hint in info.value.hint
    with pytest.raises(nv.NbveneError, match="k=20 is more than the 16 units"):
        run(model, data, " via rotated(k=20)")  # the width is known when the model runs
