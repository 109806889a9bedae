"""`%%intervene`: every option, the namespace (`-o`, `NAME <<`, `{name}` reads), the model and
tokenizer it finds, what the cell shows, and what the Result remembers."""

from __future__ import annotations

import copy

import pytest
import torch
from IPython.core.formatters import DisplayFormatter

import nbvene as nv
from tests.outputs import static_svg


def test_the_cell_returns_what_nv_run_returns(cell, patch_spec, expected):
    ran = cell("%%intervene model\n" + patch_spec)
    assert ran.error is None, ran.out
    res = ran.value
    assert isinstance(res, nv.Result) and res.axes == ("layer",)
    assert torch.equal(res.values, expected.values)
    assert "Result(logit_diff(' Paris', ' Rome'): layer 2)" in ran.out  # displayed


def test_the_value_has_a_figure_and_text_for_the_notebook(cell, patch_spec):
    res = cell("%%intervene model\n" + patch_spec).value
    data, _ = DisplayFormatter().format(res)  # a notebook's (the test shell's is text only)
    assert data["text/plain"].startswith("Result(logit_diff")
    assert static_svg(data).startswith("<svg")


@pytest.mark.parametrize("line", ["-o trace", "--out trace", "trace << model", "out=trace"])
def test_out_stores_the_result_and_shows_nothing(shell, cell, patch_spec, expected, line):
    ran = cell(f"%%intervene {line}\n" + patch_spec)
    assert ran.error is None and ran.value is None and ran.out == ""
    assert torch.equal(shell.user_ns["trace"].values, expected.values)


@pytest.mark.parametrize("head", ["trace <<\n", "trace << ", "\n# a comment first\ntrace<<"])
def test_name_capture_at_the_start_of_the_body(shell, cell, patch_spec, expected, head):
    ran = cell("%%intervene model\n" + head + patch_spec)
    assert ran.error is None and ran.value is None, ran.out
    res = shell.user_ns["trace"]
    assert torch.equal(res.values, expected.values)
    assert "<<" not in res.spec_text and res.spec_text.endswith(patch_spec.strip())


def test_no_display(shell, cell, patch_spec, intervene):
    assert cell("%%intervene model --no-display\n" + patch_spec).value is None
    intervene.display = False
    assert cell("%%intervene model\n" + patch_spec).value is None


def test_variables_of_the_notebook_are_read(shell, cell):
    shell.user_ns["prompts"] = ["The Eiffel Tower is in", "The Colosseum is in"]
    shell.user_ns["layers"] = 1
    shell.user_ns["steer"] = torch.ones(64)
    ran = cell(
        "%%intervene model\n"
        "base:   {prompts}\n"
        "add:    block_output layer={layers} pos=-1 by {steer} * 2\n"
        'metric: p(" Paris")\n'
    )
    assert ran.error is None, ran.out
    assert ran.value.axes == ("example",) and ran.value.values.shape == (2,)
    model, tok = shell.user_ns["model"], shell.user_ns["tok"]
    direct = nv.run(
        'base: {p}\nadd: block_output layer=1 pos=-1 by {v} * 2\nmetric: p(" Paris")',
        model=model,
        tokenizer=tok,
        namespace={"p": shell.user_ns["prompts"], "v": torch.ones(64)},
    )
    assert torch.equal(ran.value.values, direct.values)


def test_collect_into_a_name(shell, cell):
    shell.user_ns["prompts"] = ["I love Paris", "I love Rome"]
    ran = cell(
        "%%intervene model\nacts <<\ncollect: mlp_activation layer=0..1 pos=-1\nbase: {prompts}"
    )
    assert ran.error is None, ran.out
    assert shell.user_ns["acts"].values.shape == (2, 2, 128)  # example × layer × units


# --- which model, which tokenizer ---------------------------------------------------------------


def test_the_only_model_and_tokenizer_are_found(cell, patch_spec, expected):
    ran = cell("%%intervene\n" + patch_spec)
    assert ran.error is None and torch.equal(ran.value.values, expected.values)


@pytest.mark.parametrize(
    "line",
    ["model tok", "model -t tok", "model --tokenizer tok", "model tokenizer=tok", "-t tok model"],
)
def test_the_tokenizer_can_be_named(shell, cell, patch_spec, expected, line):
    shell.user_ns["other"] = copy.deepcopy(shell.user_ns["tok"])  # two tokenizers now
    ran = cell(f"%%intervene {line}\n" + patch_spec)
    assert ran.error is None, ran.out
    assert torch.equal(ran.value.values, expected.values)


def test_a_tokenizer_named_like_the_model_is_taken(shell, cell, patch_spec, expected):
    mine = copy.deepcopy(shell.user_ns["tok"])
    mine.name_or_path = shell.user_ns["model"].config._name_or_path
    shell.user_ns.update(a_tok=shell.user_ns["tok"], mine=mine)
    ran = cell("%%intervene model --show-code --dry-run\n" + patch_spec)
    assert "tokenizer=mine" in ran.out


def test_no_tokenizer_says_how_to_name_one(shell, cell, patch_spec):
    shell.user_ns["tok2"] = copy.deepcopy(shell.user_ns["tok"])  # two: none is guessed
    ran = cell("%%intervene model\n" + patch_spec)
    assert isinstance(ran.error, nv.NbveneError)
    assert "no tokenizer was found for model" in ran.out
    assert (
        "hint: name one: %%intervene model -t TOKENIZER, or %nbvene use model TOKENIZER" in ran.out
    )


def test_use_sets_the_default_model(shell, cell, patch_spec, expected, tiny):
    shell.user_ns["gpt2"], shell.user_ns["gpt2_tok"] = nv.models.tiny("gpt2")
    assert "which model?" in cell("%%intervene\n" + patch_spec).out
    cell("%nbvene use model tok")
    ran = cell("%%intervene\n" + patch_spec)
    assert ran.error is None and torch.equal(ran.value.values, expected.values)
    other = cell("%%intervene gpt2 gpt2_tok\n" + patch_spec)  # not the default's tokenizer
    assert other.error is None and other.value.meta["model"] == "nbvene-tiny-gpt2"


def test_a_model_as_an_attribute(shell, cell, patch_spec, expected):
    shell.user_ns["lab"] = type("Lab", (), {"net": shell.user_ns["model"]})()
    ran = cell("%%intervene lab.net tok\n" + patch_spec)
    assert ran.error is None and torch.equal(ran.value.values, expected.values)


# --- options ----------------------------------------------------------------------------------


def test_dry_run_shows_the_plan_and_runs_nothing(shell, cell):
    calls = []
    shell.user_ns["spy"] = lambda base, source: calls.append(1) or source
    ran = cell(
        "%%intervene model --dry-run -o nothing\n"
        f'base:    "{shell.user_ns["BASE"]}"\n'
        f'source:  "{shell.user_ns["SOURCE"]}"\n'
        "patch:   block_output layer=* pos=* via {spy}\n"
        'metric:  p(" Paris")\n'
    )
    assert ran.error is None and ran.value is None and calls == []
    assert "nothing" not in shell.user_ns
    lines = ran.out.splitlines()
    assert lines[0] == "dry run on model (llama, 2 layers): nothing was run"
    assert "grid: layer=2 × pos=11" in lines
    assert "patched runs: 22" in lines
    assert "forward passes: 3 (1 clean + 1 unpatched + 1 of up to 64 patched rows)" in lines
    assert lines[-1].startswith("memory: about ") and "(22 rows)" in lines[-1]


def test_dry_run_counts_passes_with_max_batch(cell):
    ran = cell(
        "%%intervene model --dry-run --max-batch 4\n"
        'base: "The Eiffel Tower is in"\ncorrupt: noise 3σ on "The Eiffel Tower"\n'
        'restore: block_output layer=* pos=*\nmetric: p(" Paris")'
    )
    grid = next(x for x in ran.out.splitlines() if x.startswith("patched runs"))
    rows = int(grid.split(": ")[1])
    assert f"+ {-(-rows // 4)} of up to 4 patched rows" in ran.out


def test_show_code_prints_a_call_that_gives_the_same_result(shell, cell):
    shell.user_ns["prompts"] = ["The Eiffel Tower is in", "The Colosseum is in"]
    body = (
        'base: {prompts}\nzero: mlp_output layer=* pos=-1  # "quoted" # text\nmetric: p(" Paris")\n'
    )
    ran = cell("%%intervene model tok --show-code --max-batch 3 -o res\n" + body)
    assert ran.error is None
    code = ran.out
    assert code.startswith("import nbvene as nv\n\nres = nv.run(\n")
    assert "namespace={'prompts': prompts}" in code and "max_batch=3" in code
    namespace = {k: shell.user_ns[k] for k in ("model", "tok", "prompts")}
    exec(code, namespace)
    assert torch.equal(namespace["res"].values, shell.user_ns["res"].values)


def test_max_batch_and_max_memory_reach_nv_run(shell, cell, patch_spec, monkeypatch):
    seen = {}
    real = nv.run

    def spy(*args, **kwargs):
        seen.update(kwargs)
        return real(*args, **kwargs)

    monkeypatch.setattr(nv, "run", spy)
    cell("%%intervene model --max-batch 5 --max-memory 2GB\n" + patch_spec)
    assert seen["max_batch"] == 5 and seen["max_memory"] == "2GB"
    assert seen["namespace"] is shell.user_ns and seen["tokenizer"] is shell.user_ns["tok"]
    ran = cell("%%intervene model --max-memory 1KB\n" + patch_spec)
    assert "max_memory='1KB' is less than one row needs" in ran.out


def test_device(cell, patch_spec, expected):
    ran = cell("%%intervene model --device cpu\n" + patch_spec)
    assert ran.error is None and "moved" not in ran.out  # already there
    assert torch.equal(ran.value.values, expected.values)
    assert "is not a device" in cell("%%intervene model --device nowhere\n" + patch_spec).out


@pytest.mark.skipif(torch.cuda.is_available(), reason="needs a machine without CUDA")
def test_an_unavailable_device_is_an_error_before_anything_runs(cell, patch_spec):
    ran = cell("%%intervene model --device cuda\n" + patch_spec)
    assert "device 'cuda' is not available on this machine" in ran.out


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
def test_device_moves_the_model(shell, cell, patch_spec, tiny):
    shell.user_ns["model"] = copy.deepcopy(tiny[0])
    ran = cell("%%intervene model --device cuda\n" + patch_spec)
    assert ran.error is None and ran.out.startswith("moved model to cuda")
    assert ran.value.meta["device"].startswith("cuda")


def test_sites_maps_names_to_module_paths(shell, cell):
    shell.user_ns["names"] = {"ffn": "model.layers[{layer}].mlp.output"}
    ran = cell('%%intervene model --sites names\nbase: "I love Paris"\ncollect: ffn layer=1 pos=-1')
    assert ran.error is None, ran.out
    assert ran.value.values.shape == (64,)


# --- what the Result keeps ----------------------------------------------------------------------


def test_the_result_remembers_the_cell(shell, cell, patch_spec):
    cell("%%intervene model -o trace\n" + patch_spec)
    res = shell.user_ns["trace"]
    assert res.meta["cell"] == "%%intervene model -o trace\n" + patch_spec
    assert res.spec_text == patch_spec.strip()
    assert nv.parse(res.spec_text) == res.spec
    for key in ("model", "dtype", "device", "seed", "nbvene", "transformers"):
        assert key in res.meta
    assert res.meta["model"] == "nbvene-tiny-llama" and res.meta["dtype"] == "torch.float32"


def test_an_interrupted_sweep_keeps_its_partial_result(shell, cell):
    calls = []

    def stop_second(base, source):
        calls.append(1)
        if len(calls) == 2:
            raise KeyboardInterrupt
        return source

    shell.user_ns["stop_second"] = stop_second
    ran = cell(
        "%%intervene model --max-batch 1 -o part\n"
        f'base:   "{shell.user_ns["BASE"]}"\n'
        f'source: "{shell.user_ns["SOURCE"]}"\n'
        "patch:  block_output layer=* pos=* via {stop_second}\n"
        'metric: p(" Paris")\n'
    )
    assert ran.error is None
    note = ran.err.strip().splitlines()[-1]  # after the progress bar
    assert note == "interrupted: 1 of 22 cells measured (the others are NaN); stored as part"
    part = shell.user_ns["part"]
    assert part.values.shape == (2, 11) and int(torch.isnan(part.values).sum()) == 21


def test_max_cells_reaches_nv_run_and_the_dry_run(cell, patch_spec):
    ran = cell("%%intervene model --max-cells 1\n" + patch_spec)
    assert "more than max_cells=1" in ran.out and "max_cells=" in ran.out
    assert (
        "more than max_cells=1"
        in cell("%%intervene model --dry-run --max-cells 1\n" + patch_spec).out
    )
    shown = cell("%%intervene model --show-code --max-cells 7\n" + patch_spec).out
    assert "max_cells=7" in shown


def test_the_meta_device_and_no_cells_are_refused(cell, patch_spec, tiny):
    assert "holds no weights" in cell("%%intervene model --device meta\n" + patch_spec).out
    assert next(tiny[0].parameters()).device.type == "cpu"
    assert (
        "--max-cells must be at least 1"
        in cell("%%intervene model --max-cells 0\n" + patch_spec).out
    )
