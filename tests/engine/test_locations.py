"""Locations that differ per example (ragged), padding on either side, and out-of-memory."""

import pytest
import torch

import nbvene as nv

PROMPTS = ["When John and Mary went to the store", "The Eiffel Tower is in the city of"]
SOURCE = "The Colosseum is located in the city of Rome"


@pytest.fixture(scope="module")
def llama():
    return nv.models.tiny("llama")


def run(llama, body, **namespace):
    model, tok = llama
    spec = f'base: {{prompts}}\nsource: {{source}}\n{body}\nmetric: logit_diff(" Paris", " Rome")'
    namespace = {"prompts": PROMPTS, "source": [SOURCE, SOURCE], **namespace}
    return nv.run(spec, model=model, tokenizer=tok, namespace=namespace).values


def test_ragged_positions_equal_one_example_at_a_time(llama):
    locations = [[0, 2, 5], [1]]
    batched = run(llama, "patch: block_output layer=* pos={locs}", locs=locations)
    for example, (prompt, locs) in enumerate(zip(PROMPTS, locations, strict=True)):
        model, tok = llama
        alone = nv.run(
            f'base: "{prompt}"\nsource: "{SOURCE}"\npatch: block_output layer=* pos={{locs}}\n'
            'metric: logit_diff(" Paris", " Rome")',
            model=model,
            tokenizer=tok,
            namespace={"locs": locs},
        ).values
        torch.testing.assert_close(batched[example], alone, atol=1e-6, rtol=0)


def test_token_text_finds_different_positions_per_example(llama):
    model, tok = llama
    res = nv.run(
        'base: ["I think the city of Paris", "We went to the city of Rome today"]\n'
        'source: "Tokyo is far away from the city"\n'
        'zero: block_output layer=0 pos="city"\nmetric: logit(" Paris")',
        model=model,
        tokenizer=tok,
    )
    assert res.values.shape == (2,)
    assert not torch.equal(res.values, res.corrupted)


def test_the_users_padding_side_does_not_matter(llama):
    _, tok = llama
    results = []
    for side in ("left", "right"):
        tok.padding_side = side
        results.append(run(llama, "patch: head_query_output layer=* pos=-1 head=*"))
    torch.testing.assert_close(results[0], results[1], atol=0, rtol=0)


def test_out_of_memory_halves_the_chunk(llama, monkeypatch):
    model, tok = llama
    sizes = []
    forward = type(model).forward

    def tight(self, input_ids=None, **kwargs):
        sizes.append(input_ids.shape[0])
        if input_ids.shape[0] > 3:
            raise torch.OutOfMemoryError("CUDA out of memory (simulated)")
        return forward(self, input_ids=input_ids, **kwargs)

    spec = (
        'base: "The Eiffel Tower is in the city of"\nsource: "The Colosseum is in the city of"\n'
        'patch: block_output layer=* pos=*\nmetric: p(" Paris")'
    )
    expected = nv.run(spec, model=model, tokenizer=tok, start_at_layer=False).values
    monkeypatch.setattr(type(model), "forward", tight)
    got = nv.run(spec, model=model, tokenizer=tok, max_batch=16, start_at_layer=False).values
    torch.testing.assert_close(got, expected)
    # the source and the baseline in one pass, then halving until it fits
    assert sizes[:5] == [2, 16, 8, 4, 2]
    assert max(sizes[5:]) <= 2


def test_each_examples_tokens_are_kept(llama):
    model, tok = llama
    res = nv.run(
        'base: ["The city of Paris", "We went to the city"]\ncollect: block_output layer=0 pos=-1',
        model=model,
        tokenizer=tok,
    )
    assert [t[-1] for t in res.meta["tokens"]] == [" Paris", " city"]
