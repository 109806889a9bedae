"""nv.causal_trace: ROME's three panels, each equal to its own spec."""

import torch

import nbvene as nv
from tests.outputs import static_svg

PROMPT = "The Eiffel Tower is located in the city of"


def test_three_panels_equal_their_specs():
    model, tok = nv.models.tiny("llama", layers=4)
    res = nv.causal_trace(
        PROMPT,
        subject="The Eiffel Tower",
        target=" Paris",
        model=model,
        tokenizer=tok,
        samples=2,
        window=3,
    )
    n_tokens = len(tok(PROMPT).input_ids)
    assert res.axes == ("panel", "layer", "pos")
    assert res.axes[0].labels == ("block", "mlp", "attention")
    assert res.values.shape == (3, 4, n_tokens)
    mlp = nv.run(
        f'base: "{PROMPT}"\ncorrupt: noise 3σ on "The Eiffel Tower" samples=2\n'
        'restore: mlp_output layer=* pos=* window=3\nmetric: p(" Paris")',
        model=model,
        tokenizer=tok,
    )
    torch.testing.assert_close(res.values[1], mlp.values)
    assert "panel=attention" in repr(res)
    assert len(res.to_pandas()) == 3 * 4 * n_tokens


def test_every_result_shape_displays():
    model, tok = nv.models.tiny("gpt2")
    pair = 'base: "a b c"\nsource: "a b d"\n'
    specs = {
        "layer x pos": pair + "patch: block_output layer=* pos=*\nmetric: kl",
        "one value": pair + "patch: block_output layer=0\nmetric: kl",
        "collected": 'base: "a b c"\ncollect: block_output layer=* pos=-1',
    }
    for name, spec in specs.items():
        bundle = nv.run(spec, model=model, tokenizer=tok)._repr_mimebundle_()
        assert {"text/plain", "text/html"} <= set(bundle), name
        assert bundle["text/plain"].startswith("Result("), name
    bundle = nv.run(specs["layer x pos"], model=model, tokenizer=tok)._repr_mimebundle_()
    assert bundle["text/plain"].startswith("Result(kl: layer 2 × pos 3)")
    assert static_svg(bundle).count('class="cell"') == 2 * 3  # layer × pos
