"""Progress from the first second and nothing dead left behind: a live sweep of any size draws
its first cell after one small pass and can be stopped; `nv.causal_trace(live=True)` fills its
three panels live; a Stop click in a real kernel lands during the first chunk; and a notebook run
headless keeps no progress widget and no progress text."""

import time

import nbformat
import pytest
import torch

import nbvene as nv
from nbvene.widgets import view
from tests.outputs import static_svg

VIEW = "application/vnd.jupyter.widget-view+json"
PROMPT = "The Eiffel Tower is located in the city of"
SMALL = """
base:   "The Eiffel Tower is in"
source: "The Colosseum is in"
patch:  block_output layer=* pos=*
metric: logit_diff(" Paris", " Rome")
"""  # 2 layers × 7 tokens: 14 runs, one chunk of the default 64 before


@pytest.fixture(scope="module")
def tiny():
    return nv.models.tiny("gpt2")


class Shown:
    """What IPython.display.display returns with display_id=True: a handle to update."""

    def __init__(self, widget, then=None):
        self.widget, self.updates = widget, []
        self.drawn: list[dict] = []  # every progress the widget was given
        widget.observe(lambda change: self.drawn.append(dict(change["new"])), "progress")
        if then is not None:
            widget.observe(lambda change: then(widget), "progress")

    def update(self, obj):
        self.updates.append(obj)


class Displays(list):
    """The live displays made; `then(widget)`, if set, acts at each progress drawn."""

    then = None


@pytest.fixture
def shown(monkeypatch):
    import IPython.display

    made = Displays()

    def display(widget, **kw):
        made.append(Shown(widget, made.then))
        return made[-1]

    monkeypatch.setattr(IPython.display, "display", display)
    return made


def test_a_small_live_sweep_fills_in_and_can_be_stopped(tiny, shown):
    model, tok = tiny
    res = nv.run(SMALL, model=model, tokenizer=tok, live=True)
    (live,) = shown
    running = [p for p in live.drawn if p["state"] == "running"]
    assert running[0]["done"] == 1 and running[0]["total"] == 14  # drawn after one cell's pass
    assert live.drawn[-1] == {"state": "done", "done": 14, "total": 14}
    assert view(res) is live.widget and live.updates == [res]
    assert torch.equal(res.values, nv.run(SMALL, model=model, tokenizer=tok).values)

    shown.clear()
    shown.then = lambda widget: setattr(widget, "stop", True)  # clicked as soon as it shows
    with pytest.raises(nv.SweepInterrupted) as stop:
        nv.run(SMALL, model=model, tokenizer=tok, live=True)
    partial = stop.value.result
    assert int(partial.values.isfinite().sum()) == 1  # stopped after the first pass, not the 14th
    assert shown[0].drawn[-1] == {"state": "stopped", "done": 1, "total": 14}
    assert [n for n, m in model.named_modules() if m._forward_hooks or m._forward_pre_hooks] == []


def test_causal_trace_fills_its_three_panels_live(shown):
    model, tok = nv.models.tiny("llama", layers=2)
    for block in model.model.layers:  # a pass outlasts the heatmap's 0.1 s between redraws
        block.register_forward_pre_hook(lambda *a: time.sleep(0.06))
    trace = dict(subject="The Eiffel Tower", target=" Paris", model=model, tokenizer=tok)
    res = nv.causal_trace(PROMPT, **trace, samples=2, live=True)
    (live,) = shown
    cells = res.values.numel()
    assert live.widget.facets == ["block", "mlp", "attention"]
    done = [p["done"] for p in live.drawn if p["state"] == "running"]
    assert done[0] == 1 and all(p["total"] == cells for p in live.drawn)
    assert len(done) > 3 and done == sorted(done)  # drawn through all three panels
    assert live.drawn[-1] == {"state": "done", "done": cells, "total": cells}
    assert view(res) is live.widget and live.updates == [res]
    quiet = nv.causal_trace(PROMPT, **trace, samples=2)
    assert torch.equal(res.values, quiet.values)  # drawn live or not: the very same numbers
    assert torch.equal(res.top["ids"], quiet.top["ids"])

    shown.clear()
    clicks = []

    def stop_in_the_second_panel(widget):
        clicks.append(1)
        if widget.progress["done"] > cells // 3:
            widget.stop = True

    shown.then = stop_in_the_second_panel
    with pytest.raises(nv.SweepInterrupted) as stop:
        nv.causal_trace(PROMPT, **trace, samples=2, live=True)
    partial = stop.value.result
    assert partial.values.shape == res.values.shape
    assert bool(partial.values[0].isfinite().all()) and bool(partial.values[2].isnan().all())
    assert shown[0].drawn[-1]["state"] == "stopped"
    assert view(partial) is shown[0].widget and shown[0].updates == [partial]


KERNEL_CELL = """
import time, nbvene as nv
model, tok = nv.models.tiny("gpt2")
# every block slowed, so one forward pass of the old first chunk (all 28 runs) lasts a while
for block in model.transformer.h:
    block.register_forward_pre_hook(lambda *a: time.sleep(0.05))
spec = '''
base:   "one two three four five six seven eight nine ten eleven twelve"
source: "two one four three six five eight seven ten nine twelve eleven"
patch:  block_output layer=* pos=*
metric: logit_diff(" one", " two")
'''
try:
    nv.run(spec, model=model, tokenizer=tok, live=True)
    print("FINISHED")
except nv.SweepInterrupted as stop:
    print("STOPPED", int(stop.result.values.isfinite().sum()), stop.result.values.numel())
"""


def test_stop_shows_and_lands_before_the_first_chunk_ends_in_a_real_kernel():
    jupyter_client = pytest.importorskip("jupyter_client")
    km, kc = jupyter_client.manager.start_new_kernel(kernel_name="python3")
    try:
        msg_id = kc.execute(KERNEL_CELL)
        comm_id, stoppable, printed, clicked, progress = None, False, "", False, []
        deadline = time.time() + 180
        while time.time() < deadline:
            msg = kc.get_iopub_msg(timeout=deadline - time.time())
            if msg["parent_header"].get("msg_id") != msg_id:
                continue
            kind, content = msg["msg_type"], msg["content"]
            if kind == "comm_open" and "Heatmap" in str(
                content["data"]["state"].get("_anywidget_id")
            ):
                comm_id = content["comm_id"]
            elif kind == "comm_msg" and content["comm_id"] == comm_id:
                state = content["data"].get("state", {})
                stoppable = state.get("stoppable", stoppable)
                if "progress" in state:
                    progress.append(state["progress"])
            elif kind == "display_data" and VIEW in content["data"] and not clicked:
                # the heatmap is on screen: its first view must already draw Stop
                assert content["data"][VIEW]["model_id"] == comm_id
                assert stoppable is True
                click = {"method": "update", "state": {"stop": True}, "buffer_paths": []}
                kc.shell_channel.send(
                    kc.session.msg("comm_msg", {"comm_id": comm_id, "data": click})
                )
                clicked = True
            elif kind == "stream":
                printed += content["text"]
            elif kind == "error":
                pytest.fail("\n".join(content["traceback"]))
            elif kind == "status" and content["execution_state"] == "idle":
                break
    finally:
        kc.stop_channels()
        km.shutdown_kernel(now=True)
    assert clicked, printed
    assert printed.startswith("STOPPED"), printed
    _, finished, total = printed.split()
    assert total == "28" and int(finished) <= 1  # at most the first (one-cell) chunk
    assert progress[-1]["state"] == "stopped"


NOTEBOOK = [
    "import nbvene as nv\nmodel, tok = nv.models.tiny('llama', layers=2)",
    "res = nv.causal_trace('The Eiffel Tower is located in the city of', "
    "subject='The Eiffel Tower', target=' Paris', model=model, tokenizer=tok, samples=2)",
    'grid = nv.run(\'base: "The Eiffel Tower is located in the city of"\\n'
    'source: "The Colosseum is located in the city of"\\n'
    'patch: block_output layer=* pos=*\\nmetric: logit_diff(" Paris", " Rome")\', '
    "model=model, tokenizer=tok, max_batch=2)",
    "live = nv.causal_trace('The Eiffel Tower is located in the city of', "
    "subject='The Eiffel Tower', target=' Paris', model=model, tokenizer=tok, samples=2, "
    "live=True)",
]


def test_a_notebook_run_leaves_no_progress_output(tmp_path):
    from nbclient import NotebookClient

    nb = nbformat.v4.new_notebook(cells=[nbformat.v4.new_code_cell(c) for c in NOTEBOOK])
    client = NotebookClient(
        nb, timeout=300, kernel_name="python3", resources={"metadata": {"path": str(tmp_path)}}
    )
    client.execute()
    for cell in nb.cells[1:3]:  # no live figure: the progress line is emptied, nothing else
        assert cell.outputs, cell.source  # it did show progress
        for out in cell.outputs:
            assert out.output_type == "display_data", out
            assert out.data == {"text/plain": ""}, out
    [figure] = nb.cells[3].outputs  # the live heatmap, become the Result's display
    assert VIEW in figure.data and static_svg(figure.data).lstrip().startswith("<svg")
    for cell in nb.cells:
        for out in cell.outputs:
            assert out.output_type != "stream" or "%|" not in out.text, out
