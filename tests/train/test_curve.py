"""The live loss curve of `nv.train` in a notebook: the drawing, its throttling, what nv.train
sends to the display, and (in a real Jupyter kernel) one output updated in place."""

from __future__ import annotations

import importlib
import re

import nbformat
from nbclient import NotebookClient

import nbvene as nv
from nbvene.train import curve as curve_module
from nbvene.train.curve import LiveCurve, in_notebook


class Screen:
    """Stands in for IPython's display: the first drawing, then the updates."""

    def __init__(self):
        self.shown: list[str] = []
        self.updates: list[str] = []

    def show(self, text: str):
        self.shown.append(text)
        return self.updates.append


def points(svg: str) -> list[tuple[float, float]]:
    line = re.search(r'class="loss" points="([^"]*)"', svg).group(1)
    return [tuple(map(float, p.split(","))) for p in line.split()]


def test_the_curve_grows_and_marks_held_out_losses():
    screen, now = Screen(), [0.0]
    curve = LiveCurve(6, 2, show=screen.show, interval=0.5, clock=lambda: now[0])
    for loss in (3.0, 2.0, 1.5):
        curve.step(loss)  # the same instant: drawn once, then throttled
    assert len(screen.shown) == 1 and not screen.updates
    now[0] = 1.0
    curve.epoch({"epoch": 1, "loss": 2.1, "held_out_loss": 1.8, "held_out_iia": 0.25})
    assert len(screen.updates) == 1
    svg = screen.updates[-1]
    assert len(points(svg)) == 3 and svg.count('class="held-out"') == 1
    assert "epoch 1/2" in svg and "held-out iia 0.250" in svg
    ys = [y for _, y in points(svg)]
    assert ys[0] > ys[1] > ys[2] or ys[0] < ys[1] < ys[2]  # monotone losses, monotone line
    xs = [x for x, _ in points(svg)]
    assert xs == sorted(xs) and xs[-1] <= LiveCurve.WIDTH / 2  # 3 of 6 steps: the left half
    curve.step(1.0)  # throttled ...
    assert len(screen.updates) == 1
    curve.close()  # ... but the last drawing always happens
    assert len(points(screen.updates[-1])) == 4


def test_nv_train_draws_in_a_notebook_only(adder, data, monkeypatch):
    model, _ = adder
    screen = Screen()
    monkeypatch.setattr(curve_module, "_display", screen.show)
    options = dict(model=model, namespace=data.namespace(), epochs=3, lr=1e-2, batch_size=200)
    spec = "base: {base}\nsource: {source}\npatch: hidden.output via rotated(k=1)\nlabel: {label}"
    nv.train(spec, progress=True, **options)
    assert not screen.shown  # not in a kernel: the text bar only
    monkeypatch.setattr(importlib.import_module("nbvene.train.loop"), "in_notebook", lambda: True)
    trained = nv.train(spec, progress=True, **options)
    assert len(screen.shown) == 1  # one output, then updated in place
    final = screen.updates[-1]
    assert len(points(final)) == 3 * 5  # 900 training examples, batches of 200: 5 steps/epoch
    assert final.count('class="held-out"') == 3
    assert "epoch 3/3" in final and f"held-out iia {trained.iia:.3f}" in final
    nv.train(spec, progress=False, **options)
    assert len(screen.shown) == 1  # progress=False: nothing drawn


def test_outside_a_kernel_there_is_no_notebook():
    assert not in_notebook()


def test_a_real_kernel_shows_one_curve_updated_in_place(tmp_path):
    cells = [
        "import torch, nbvene as nv\n"
        "from torch import nn\n"
        "torch.manual_seed(0)\n"
        "net = nn.Sequential(); net.hidden = nn.Linear(4, 8); net.out = nn.Linear(8, 3)\n"
        "B, S, Y = torch.randn(256, 4), torch.randn(256, 4), torch.randint(0, 3, (256,))",
        "trained = nv.train('base: {B}\\nsource: {S}\\npatch: hidden.output via rotated(k=2)\\n'\n"
        "                   'label: {Y}', model=net, namespace=dict(B=B, S=S, Y=Y), epochs=4,\n"
        "                   batch_size=32, lr=1e-2)\n"
        "len(trained.history)",
    ]
    nb = nbformat.v4.new_notebook(cells=[nbformat.v4.new_code_cell(c) for c in cells])
    client = NotebookClient(
        nb, timeout=300, kernel_name="python3", resources={"metadata": {"path": str(tmp_path)}}
    )
    client.execute()
    outputs = nb.cells[1].outputs
    drawings = [
        o
        for o in outputs
        if o.output_type == "display_data" and "<svg" in o.get("data", {}).get("text/html", "")
    ]
    assert len(drawings) == 1  # updated in place, not appended
    svg = drawings[0].data["text/html"]
    # the last drawing: every step of 4 epochs (230 training examples: 8 batches an epoch)
    assert len(points(svg)) == 4 * 8 and "epoch 4/4" in svg
    result = next(o for o in outputs if o.output_type == "execute_result")
    assert result.data["text/plain"] == "4"
