"""Tab completion in the kernel, asked as ipykernel asks it (the whole cell and an offset):
statements, the model's components, `key=` words, ranges, `{variables}`, and the magic lines."""

from __future__ import annotations

import pytest
import torch

import nbvene as nv

HEAD = "%%intervene model\n"


@pytest.fixture
def variables(shell):
    shell.user_ns.update(
        prompts=["The Eiffel Tower is in", "The Colosseum is in"],
        steer=torch.ones(64),
        layer_ids=[0, 1],
        count=3,
        fn=lambda base, source: source,
    )


def test_statements_at_the_start_of_a_line(complete):
    assert complete(HEAD + "pat") == ["patch:"]
    assert complete(HEAD + "me") == ["mean:", "metric:"]
    assert set(complete(HEAD + "")) == {k + ":" for k in nv.spec.KEYWORDS}
    assert complete(HEAD + "trace << ba") == ["base:"]  # after a capture too


def test_components_of_the_current_model(complete):
    assert complete(HEAD + "patch: block_o") == ["block_output"]
    assert complete(HEAD + "restore: resid_p") == ["resid_pre", "resid_post"]
    offered = complete(HEAD + "zero: head_")
    assert "head_query_output" in offered and "head_attention_value_output" in offered
    # the cursor on an earlier line of a longer cell
    text = HEAD + 'base: "x"\npatch: mlp_a\nmetric: p(" Paris")'
    assert complete(text, text.index("mlp_a") + len("mlp_a")) == ["mlp_activation"]


def test_the_component_list_follows_the_model_on_the_magic_line(shell, complete):
    shell.user_ns["bert"], _ = nv.models.tiny("bert")
    llama = complete(HEAD + "patch: resid_m")
    bert = complete("%%intervene bert\npatch: resid_m")
    assert llama == ["resid_mid"] and bert == ["resid_mid"]
    assert "attention_weight" in complete(HEAD + "collect: attention_w")


def test_module_paths(complete):
    offered = complete(HEAD + "patch: model.layers.1.mlp.down")
    assert offered == ["model.layers.1.mlp.down_proj.input", "model.layers.1.mlp.down_proj.output"]


def test_keys_after_the_component(complete):
    assert complete(HEAD + "patch: block_output la") == ["layer="]
    assert set(complete(HEAD + "patch: block_output layer=* ")) == {"pos=", "window=", "via {"}
    assert "head=" in complete(HEAD + "patch: z layer=* ")  # head= only at head-level sites
    assert "by {" in complete(HEAD + "add: block_output layer=0 ")
    assert "over=" in complete(HEAD + "mean: mlp_output layer=0 ")


def test_layer_and_head_ranges(shell, complete):
    assert complete(HEAD + "patch: block_output layer=") == ["*", "0..1"]
    assert complete(HEAD + "patch: z layer=* head=") == ["*", "0..3"]
    assert complete(HEAD + "patch: k layer=* head=") == ["*", "0..1"]  # 2 key/value heads
    assert complete(HEAD + "patch: block_output layer=0 pos=") == ["-1", "last", "*"]
    shell.user_ns["big"], _ = nv.models.tiny("llama", layers=6)
    assert complete("%%intervene big\npatch: block_output layer=") == ["*", "0..5", "0..2", "3..5"]


def test_variables_by_what_they_can_be(complete, variables):
    assert complete(HEAD + "base: {") == ["{BASE}", "{SOURCE}", "{prompts}"]
    assert complete(HEAD + "base: {pr") == ["{prompts}"]
    assert complete(HEAD + "add: block_output layer=0 by {") == ["{steer}"]
    assert complete(HEAD + "patch: block_output layer={") == ["{count}", "{layer_ids}"]
    assert complete(HEAD + "patch: block_output layer=0 via {") == ["{fn}"]


def test_metrics(complete):
    assert complete(HEAD + "metric: logit") == ["logit(", "logit_diff("]
    assert complete(HEAD + 'metric: logit_diff(" a", " b") nor') == ["normalized"]


def test_corrupt(complete):
    assert complete(HEAD + "corrupt: ") == ["noise"]
    assert complete(HEAD + 'corrupt: noise 3σ on "The Eiffel Tower" s') == ["samples=", "seed="]


def test_discover(complete):
    assert complete(HEAD + "discover: ") == ["circuit"]
    assert complete(HEAD + "discover: circuit ") == ["by"]
    assert complete(HEAD + "discover: circuit by ") == ["eap", "eap-ig", "acdc"]
    assert complete(HEAD + "discover: circuit by eap ") == ["top=", "threshold=", "ablation="]
    assert complete(HEAD + "discover: circuit by eap top=3 ") == ["ablation="]
    assert "steps=" in complete(HEAD + "discover: circuit by eap-ig ")
    assert complete(HEAD + "discover: circuit by acdc t") == ["tau="]
    offered = complete(HEAD + "discover: circuit by acdc ablation=")
    assert offered == ["ablation=corrupted", "ablation=mean"]


def test_nothing_inside_strings_and_comments(complete):
    assert "patch:" not in complete(HEAD + 'base: "pat')
    assert "patch:" not in complete(HEAD + "# pat")


def test_the_magic_line(shell, complete, variables):
    shell.user_ns["gpt2"], shell.user_ns["gpt2_tok"] = nv.models.tiny("gpt2")
    assert complete("%%intervene mo") == ["model"]
    assert complete("%%intervene g") == ["gpt2"]  # models only, not gpt2_tok
    assert complete("%%intervene model --dr") == ["--dry-run"]
    assert complete("%%intervene model --max") == ["--max-batch", "--max-memory", "--max-cells"]
    assert complete("%%intervene model -t ") == ["gpt2_tok", "tok"]
    assert complete("%%intervene model ")[:2] == ["gpt2_tok", "tok"]
    assert "--dry-run" in complete("%%intervene model ")
    assert "--dry-run" not in complete("%%intervene model --dry-run -")
    assert complete("%%intervene model tokenizer=g") == ["tokenizer=gpt2_tok"]
    assert complete("%%intervene model --device ")[0] == "cpu"
    assert complete("%%intervene trace << mo") == ["model"]
    assert complete("%%intervene trace<<mo") == ["model"]


def test_the_line_magic(complete, variables):
    assert complete("%nbvene ") == ["use", "sites", "config", "debug", "help"]
    assert complete("%nbvene s") == ["sites"]
    assert complete("%nbvene use ") == ["model"]
    assert complete("%nbvene use model ") == ["tok"]
    assert complete("%nbvene sites m") == ["model"]
    assert complete("%nbvene debug o") == ["on", "off"]
    assert complete("x = 1\n%nbvene help me") == ["mean", "metric"]


def test_other_cells_are_left_to_ipython(complete):
    assert "model" in complete("x = 1\nmod")
    assert "patch:" not in complete("pat")


def test_unloading_removes_completion(shell, complete):
    shell.extension_manager.unload_extension("nbvene")
    assert "patch:" not in complete(HEAD + "pat")
