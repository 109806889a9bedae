"""Named sources in training: `from s1` trains as `source:` does, and a serial chain trains an
intervention made inside another source's run (gradients flow through that run)."""

from __future__ import annotations

import torch
from planted import pairs

import nbvene as nv
from nbvene.train import load_interventions

SETTINGS = {"epochs": 3, "lr": 1e-2, "batch_size": 64, "seed": 0, "progress": False}


def test_a_named_source_trains_like_the_source_line(adder, data):
    model, _ = adder
    plain = nv.train(
        "base: {base}\nsource: {source}\npatch: hidden.output via rotated(k=1)\nlabel: {label}",
        model=model,
        namespace=data.namespace(),
        **SETTINGS,
    )
    named = nv.train(
        "base: {base}\nsource s1: {source}\npatch: hidden.output via rotated(k=1) from s1\n"
        "label: {label}",
        model=model,
        namespace=data.namespace(),
        **SETTINGS,
    )
    assert named.history == plain.history
    assert torch.equal(named.basis, plain.basis)


def test_serial_training_learns_inside_the_middle_run(adder, data, test_data):
    """base ← s2's run, in which the rotation swaps s1's sum in: the output shows s1's sum,
    as if s2 were the base and s1 the source."""
    model, u = adder
    other = pairs(1000, seed=5).base
    body = (
        "base: {base}\nsource s1: {source}\nsource s2: {other}\n"
        "patch: hidden.output via rotated(k=1) from s1 into s2\n"
        "patch: hidden.output from s2\nlabel: {label}"
    )
    serial = nv.train(body, model=model, namespace={**data.namespace(), "other": other}, **SETTINGS)
    direct = nv.train(
        "base: {other}\nsource: {source}\npatch: hidden.output via rotated(k=1)\nlabel: {label}",
        model=model,
        namespace={**data.namespace(), "other": other},
        **SETTINGS,
    )
    for a, b in zip(serial.history, direct.history, strict=True):
        assert a.keys() == b.keys()
        for key in a:
            assert abs(a[key] - b[key]) < 1e-5, (key, a[key], b[key])
    held = {**test_data.namespace(), "other": pairs(400, seed=6).base}
    assert serial.evaluate(namespace=held)["iia"] >= 0.95
    assert abs(float(serial.basis[:, 0] @ u)) > 0.95  # 3 epochs: close to u already


def test_intervened_takes_named_sources_as_keywords(adder, data):
    model, _ = adder
    named = nv.Intervened(model, "source s1: {s1}\npatch: hidden.output via rotated(k=1) from s1")
    plain = nv.Intervened(model, "patch: hidden.output via rotated(k=1)")
    with torch.no_grad():
        got = named(data.base[:5], s1=data.source[:5])
        want = plain(data.base[:5], data.source[:5])
    assert torch.equal(got, want)


def test_save_and_load_keep_the_named_sources(adder, data, test_data, tmp_path):
    model, _ = adder
    other = pairs(1000, seed=5).base
    spec = (
        "base: {base}\nsource s1: {source}\nsource s2: {other}\n"
        "patch: hidden.output via rotated(k=1) from s1 into s2\n"
        "patch: hidden.output from s2\nlabel: {label}"
    )
    trained = nv.train(
        spec, model=model, namespace={**data.namespace(), "other": other}, **SETTINGS
    )
    again = load_interventions(trained.save(tmp_path / "serial"), model=model)
    assert str(again.spec) == str(trained.spec)
    held = {**test_data.namespace(), "other": pairs(400, seed=6).base}
    assert again.evaluate(namespace=held) == trained.evaluate(namespace=held)
