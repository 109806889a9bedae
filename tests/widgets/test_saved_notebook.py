"""A notebook run headless (nbclient, a real kernel): a Result's display carries the widget view
and the static SVG, and the saved widget state holds the ESM and the values as a binary buffer,
so the saved notebook re-renders the heatmap (and shows the SVG where widgets cannot run)."""

import base64
import json

import nbformat
import numpy as np
from nbclient import NotebookClient

from tests.outputs import static_svg

VIEW = "application/vnd.jupyter.widget-view+json"
STATE = "application/vnd.jupyter.widget-state+json"

CELLS = [
    "import nbvene as nv\nmodel, tok = nv.models.tiny('gpt2')",
    'res = nv.run(\'base: "The Eiffel Tower is in"\\nsource: "The Colosseum is in"\\n'
    'patch: block_output layer=* pos=*\\nmetric: logit_diff(" Paris", " Rome")\', '
    "model=model, tokenizer=tok)\nres",
    "print(res.values.T.flatten().tolist())",
]


def test_saved_notebook_keeps_widget_state_and_static_figure(tmp_path):
    nb = nbformat.v4.new_notebook(cells=[nbformat.v4.new_code_cell(c) for c in CELLS])
    client = NotebookClient(
        nb, timeout=300, kernel_name="python3", resources={"metadata": {"path": str(tmp_path)}}
    )
    client.execute()
    [out] = nb.cells[1].outputs
    assert out.output_type == "execute_result"
    assert static_svg(out.data).startswith("<svg")  # GitHub, nbviewer, untrusted Lab
    assert out.data["text/plain"].startswith("Result(")
    model_id = out.data[VIEW]["model_id"]
    saved = nb.metadata["widgets"][STATE]["state"][model_id]
    assert saved["model_module"] == "anywidget"
    assert "nbvene-heatmap" in saved["state"]["_esm"] and ".nv-cell" in saved["state"]["_css"]
    [buffer] = [b for b in saved["buffers"] if b["path"] == ["values", "data"]]
    got = np.frombuffer(base64.b64decode(buffer["data"]), dtype="<f4")
    want = json.loads(nb.cells[2].outputs[0]["text"])  # the kernel's own values, pos-major
    assert np.allclose(got, want)
    assert saved["state"]["values"]["shape"][1:] == [7, 2]
