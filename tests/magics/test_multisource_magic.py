"""Named sources through `%%intervene`: the cell runs as `nv.run` runs it, and errors point at
the cell's line."""

from __future__ import annotations

import torch

import nbvene as nv

CELL = """%%intervene model -o res
base:      {BASE}
source s1: {SOURCE}
source s2: "The Louvre Museum is located in the city of"
patch:     z layer=0 head=* pos=-1 from s1 into s2
patch:     block_output layer=1 pos=-1 from s2
metric:    logit_diff(" Paris", " Rome")
"""


def test_a_serial_spec_in_a_cell(shell, cell, tiny):
    ran = cell(CELL)
    assert ran.error is None, ran.err
    res = shell.user_ns["res"]
    model, tok = tiny
    body = CELL.split("\n", 1)[1]
    expected = nv.run(body, model=model, tokenizer=tok, namespace=shell.user_ns)
    assert res.axes == ("head",) and torch.equal(res.values, expected.values)


def test_an_unknown_source_in_a_cell(cell):
    ran = cell(CELL.replace("from s2\n", "from s3\n"))
    message = str(ran.error)
    assert message.startswith("line 5: no source is named 's3'")
    assert "from s3" in message and "hint: sources: s1, s2" in message
