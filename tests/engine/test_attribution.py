"""`estimate: attribution`: attribution patching, a first-order estimate of a patching sweep
from one forward and one backward pass, in the same Result shape as the exact sweep."""

import copy

import pytest
import torch

import nbvene as nv

PROMPTS = """
base:   "The Colosseum is located in the city of"
source: "The Eiffel Tower is located in the city of"
"""


def hook_count(model: torch.nn.Module) -> int:
    return sum(
        len(m._forward_hooks) + len(m._forward_pre_hooks) + len(m._backward_hooks)
        for m in model.modules()
    )


def linear_head(family: str):
    """A copy of the tiny model without its final norm: the logits are then linear in the last
    block's output, and attribution patching there is exact."""
    model, tok = nv.models.tiny(family)
    model = copy.deepcopy(model)
    if family == "gpt2":
        model.transformer.ln_f = torch.nn.Identity()
    else:
        model.model.norm = torch.nn.Identity()
    return model, tok


def both(spec: str, model, tok, **kw):
    exact = nv.run(spec, model=model, tokenizer=tok, **kw)
    estimated = nv.run(spec + "\nestimate: attribution\n", model=model, tokenizer=tok, **kw)
    return exact, estimated


def same_shape(exact, estimated):
    assert estimated.values.shape == exact.values.shape
    assert estimated.axes == exact.axes
    assert [a.labels for a in estimated.axes] == [a.labels for a in exact.axes]
    assert torch.isfinite(estimated.values).all()


@pytest.mark.parametrize("family", ["llama", "gpt2"])
@pytest.mark.parametrize("metric", ['logit(" Paris")', 'logit_diff(" Paris", " Rome")'])
def test_exact_where_the_metric_is_linear_in_the_patched_activation(family, metric):
    model, tok = linear_head(family)
    last = model.config.num_hidden_layers - 1
    spec = PROMPTS + f"patch: block_output layer={last} pos=*\nmetric: {metric}"
    exact, estimated = both(spec, model, tok)
    same_shape(exact, estimated)
    assert estimated.axes == ("pos",)
    assert torch.allclose(estimated.values, exact.values, rtol=1e-3, atol=1e-6)
    assert torch.allclose(estimated.clean, exact.clean) and torch.allclose(
        estimated.corrupted, exact.corrupted
    )
    effect = (exact.values - exact.corrupted).abs()
    assert effect.max() > 100 * (estimated.values - exact.values).abs().max()


def test_exact_with_noise_samples_a_batch_and_normalisation():
    model, tok = linear_head("llama")
    spec = """
    base: ["The Colosseum is located in the city of", "The Eiffel Tower is located in Paris"]
    corrupt: noise 3σ on "The" samples=3 seed=1
    restore: block_output layer=1 pos=-3..-1
    metric: logit(" Paris") normalized
    """
    exact, estimated = both(spec, model, tok)
    same_shape(exact, estimated)
    assert estimated.axes == ("example", "pos")
    assert torch.allclose(estimated.values, exact.values, rtol=1e-3, atol=1e-4)
    assert torch.allclose(estimated.corrupted, exact.corrupted)
    assert torch.allclose(estimated.values[:, -1], torch.ones(2), atol=1e-4)  # all restored


def test_a_real_sweep_has_the_exact_sweeps_shape():
    model, tok = nv.models.tiny("llama", layers=3)
    spec = PROMPTS + 'patch: block_output layer=* pos=*\nmetric: logit_diff(" Paris", " Rome")'
    exact, estimated = both(spec, model, tok)
    same_shape(exact, estimated)
    assert estimated.axes == ("layer", "pos") and estimated.values.shape == (3, 11)
    assert torch.allclose(estimated.clean, exact.clean)
    assert torch.allclose(estimated.corrupted, exact.corrupted)


@pytest.mark.parametrize(
    "statement",
    [
        "patch: z layer=* head=* pos=-1",
        "patch: mlp_output layer=* pos=-1 window=2",
        "restore: attention_output layer=0 pos=[-2, -1]",
    ],
)
@pytest.mark.parametrize("family", ["llama", "gpt2"])
def test_components_heads_windows(family, statement):
    model, tok = nv.models.tiny(family)
    exact, estimated = both(PROMPTS + statement + '\nmetric: p(" Paris")', model, tok)
    same_shape(exact, estimated)


@pytest.mark.parametrize(
    "statement, what",
    [
        ("zero: block_output layer=* pos=-1", "zero:"),
        ("mean: block_output layer=* pos=-1", "mean:"),
        ("add: block_output layer=* pos=-1 by {v}", "add:"),
        ("collect: block_output layer=0 pos=-1", "collect:"),
        ("patch: block_output layer=* pos=-1 via {f}", "via"),
        ("patch: attention_weight layer=0 head=0 pos=-1", "attention"),
    ],
)
def test_unsupported_statements_name_the_estimate_line(statement, what):
    model, tok = nv.models.tiny("llama")
    spec = PROMPTS + statement + '\nmetric: p(" Paris")\nestimate: attribution'
    namespace = {"v": torch.zeros(64), "f": lambda base, source: source}
    with pytest.raises(nv.NbveneError) as info:
        nv.run(spec, model=model, tokenizer=tok, namespace=namespace)
    assert info.value.line == 6 and "estimate: attribution" in str(info.value)
    assert what in str(info.value)
    with pytest.raises(nv.NbveneError):  # a dry run says so too
        nv.plan(spec, model=model, tokenizer=tok, namespace=namespace)


def test_parse_and_format():
    spec = nv.spec.parse(PROMPTS + "patch: block_output layer=* pos=-1\nestimate: attribution")
    assert spec.estimate == "attribution"
    assert nv.spec.parse(str(spec)) == spec
    assert nv.spec.parse(PROMPTS).estimate == "exact"
    assert nv.spec.parse(PROMPTS + "estimate: exact").estimate == "exact"
    assert "estimate" not in nv.spec.format_spec(nv.spec.parse(PROMPTS + "estimate: exact"))
    with pytest.raises(nv.NbveneError, match="did you mean 'attribution'"):
        nv.spec.parse("estimate: atribution")
    with pytest.raises(nv.NbveneError, match="a second 'estimate'"):
        nv.spec.parse("estimate: exact\nestimate: attribution")


def test_leaves_no_hooks_and_no_parameter_grads():
    model, tok = nv.models.tiny("llama")
    before = hook_count(model)
    weights = {k: v.clone() for k, v in model.state_dict().items()}
    spec = PROMPTS + 'patch: block_output layer=* pos=*\nmetric: logit(" Paris")\n'
    nv.run(spec + "estimate: attribution", model=model, tokenizer=tok)
    assert hook_count(model) == before
    assert all(p.grad is None for p in model.parameters())
    assert all(torch.equal(v, weights[k]) for k, v in model.state_dict().items())


@pytest.mark.smollm2
def test_rank_correlates_with_the_exact_sweep_on_smollm2():
    model, tok = nv.models.load()
    spec = """
    base:   "The Space Needle is located in the city of"
    source: "The Eiffel Tower is located in the city of"
    patch:  block_output layer=* pos=*
    metric: logit_diff(" Paris", " Seattle")
    """
    exact, estimated = both(spec, model, tok)
    same_shape(exact, estimated)
    assert spearman(exact.values.flatten(), estimated.values.flatten()) > 0.5


def spearman(a: torch.Tensor, b: torch.Tensor) -> float:
    def ranks(x):
        return x.argsort().argsort().double()

    ra, rb = ranks(a), ranks(b)
    ra, rb = ra - ra.mean(), rb - rb.mean()
    return float((ra * rb).sum() / (ra.norm() * rb.norm()))
