"""Stop reaches a running sweep: a real ipykernel, a live sweep in an executing cell, and a
comm message sent exactly as a front end sends a Stop click. No browser (the JupyterLab test
does the same through the UI)."""

import time

import pytest

jupyter_client = pytest.importorskip("jupyter_client")

CELL = """
import time, nbvene as nv
model, tok = nv.models.tiny("gpt2")
# the user's own hook on the LM head, which every pass computes (rows that start at their
# layer or position skip the rest of the model), slowing each pass so the sweep lasts (the
# engine leaves it be)
model.lm_head.register_forward_pre_hook(lambda *a: time.sleep(0.02))
spec = '''
base:   "one two three four five six seven eight nine ten eleven twelve"
source: "two one four three six five eight seven ten nine twelve eleven"
patch:  block_output layer=* pos=*
metric: logit_diff(" one", " two")
'''
try:
    nv.run(spec, model=model, tokenizer=tok, max_batch=1, live=True)
    print("FINISHED")
except nv.SweepInterrupted as stop:
    print("STOPPED", int(stop.result.values.isfinite().sum()), stop.result.values.numel())
"""


@pytest.fixture
def kernel():
    km, kc = jupyter_client.manager.start_new_kernel(kernel_name="python3")
    try:
        yield kc
    finally:
        kc.stop_channels()
        km.shutdown_kernel(now=True)


def test_stop_click_ends_a_running_sweep(kernel):
    kc = kernel
    msg_id = kc.execute(CELL)
    comm_id, done, printed, stopped_at = None, 0, "", None
    deadline = time.time() + 120
    while time.time() < deadline:
        msg = kc.get_iopub_msg(timeout=deadline - time.time())
        if msg["parent_header"].get("msg_id") != msg_id:
            continue
        kind, content = msg["msg_type"], msg["content"]
        if kind == "comm_open" and "Heatmap" in str(content["data"]["state"].get("_anywidget_id")):
            comm_id = content["comm_id"]
        elif kind == "comm_msg" and content["comm_id"] == comm_id:
            progress = content["data"].get("state", {}).get("progress") or {}
            done = progress.get("done", done)
            if done >= 3 and stopped_at is None:  # the sweep is under way: click Stop
                stop = kc.session.msg(
                    "comm_msg",
                    {
                        "comm_id": comm_id,
                        "data": {"method": "update", "state": {"stop": True}, "buffer_paths": []},
                    },
                )
                kc.shell_channel.send(stop)
                stopped_at = done
        elif kind == "stream":
            printed += content["text"]
        elif kind == "error":
            pytest.fail("\n".join(content["traceback"]))
        elif kind == "status" and content["execution_state"] == "idle":
            break
    assert stopped_at is not None, f"the live heatmap never showed progress: {printed!r}"
    assert printed.startswith("STOPPED"), printed
    _, finished, total = printed.split()
    assert total == "28"  # 2 layers × 14 tokens
    # it stopped within a few forward passes (20 ms each) of the click, long before the end
    print("stop clicked after", stopped_at, "cells; sweep ended after", finished)
    assert stopped_at <= int(finished) <= stopped_at + 8, (stopped_at, printed)


def test_outside_a_kernel_nothing_is_routed():
    from nbvene.widgets import Heatmap
    from nbvene.widgets.kernel import can_route, messages_while_running

    class Widget:
        comm = object()  # a comm the kernel would not ask where its messages go

    assert not can_route()
    with messages_while_running(Widget()) as routed:
        assert routed is False
    assert Heatmap.class_traits()["stoppable"].default_value is False
