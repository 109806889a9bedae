"""Generation and steering vectors under faults: an out-of-memory halves the rows decoded (or
extracted) together and changes no token; Ctrl-C gives nv.GenerationInterrupted with the text
so far; the model comes out clean."""

import pytest
import torch
from faults import OUT_OF_MEMORY, Passes, Snapshot, on_call

import nbvene as nv

PROMPT = "The Eiffel Tower is located in"
NEW = 6
SPEC = (
    f'steer: block_output layer=1 by {{v}} * [2, 4, 6]\ngenerate: "{PROMPT}" max_new_tokens={NEW}'
)
ROWS = 4  # the baseline and three strengths


def vec(model):
    return torch.randn(model.config.hidden_size, generator=torch.Generator().manual_seed(0))


@pytest.fixture(scope="module")
def full(llama):
    model, tok = llama
    return nv.generate(SPEC, model=model, tokenizer=tok, namespace={"v": vec(model)})


def generate(llama, **options):
    model, tok = llama
    return nv.generate(SPEC, model=model, tokenizer=tok, namespace={"v": vec(model)}, **options)


@pytest.mark.parametrize("cached", [True, False], ids=["kv-cache", "no-cache"])
@pytest.mark.parametrize("form", OUT_OF_MEMORY)
@pytest.mark.parametrize("at", [1, 3], ids=["prompt", "3rd-step"])
def test_out_of_memory_while_decoding_halves_the_rows(llama, full, form, at, cached):
    model, _ = llama
    clean = Snapshot(model)
    with Passes(model.model.layers[-1], on_call(at, error=OUT_OF_MEMORY[form])) as passes:
        gen = generate(llama, use_cache=cached)
    assert passes.rows[at - 1] == ROWS and passes.rows[at] == ROWS // 2
    assert max(passes.rows[at:]) == ROWS // 2
    assert gen.ids == full.ids and gen.texts == full.texts
    torch.testing.assert_close(gen.logits, full.logits, atol=1e-5, rtol=1e-5)
    clean.assert_clean()


def test_out_of_memory_with_one_row_is_one_clear_error(llama):
    model, _ = llama
    clean = Snapshot(model)
    with (
        Passes(model.model.layers[-1], lambda call, rows: OUT_OF_MEMORY["cpu-message"]()),
        pytest.raises(nv.NbveneError, match="one row per forward pass, in the generation"),
    ):
        generate(llama)
    clean.assert_clean()


def test_max_batch_one_decodes_one_row_at_a_time(llama, full):
    model, _ = llama
    with Passes(model.model.layers[0]) as passes:
        gen = generate(llama, max_batch=1)
    assert set(passes.rows) == {1} and len(passes.rows) == ROWS * NEW
    assert gen.ids == full.ids


def test_max_memory_lowers_the_rows_decoded_together(llama, full):
    from nbvene.engine.memory import token_bytes

    model, tok = llama
    tokens = len(tok(PROMPT)["input_ids"]) + NEW
    with Passes(model.model.layers[0]) as passes:
        gen = generate(llama, max_memory=2 * token_bytes(model, tokens, cache=True))
    assert max(passes.rows) == 2
    assert gen.ids == full.ids


@pytest.mark.parametrize("how", ["hook", "signal"])
def test_an_interrupt_returns_the_text_so_far(llama, full, how):
    model, _ = llama
    clean = Snapshot(model)
    stop = (lambda: "SIGINT") if how == "signal" else KeyboardInterrupt
    with (
        Passes(model.model.layers[-1], on_call(3, error=stop)),
        pytest.raises(nv.GenerationInterrupted) as info,
    ):
        generate(llama)
    assert isinstance(info.value, KeyboardInterrupt)
    partial = info.value.result
    assert isinstance(partial, nv.Generation)
    # steps 1 and 2 gave a token each; the third was stopped
    assert partial.ids == [ids[:2] for ids in full.ids]
    assert partial.stopped == ["interrupted"] * ROWS
    assert (
        partial.texts[1]
        == nv.generate(
            SPEC.replace(f"max_new_tokens={NEW}", "max_new_tokens=2"),
            model=model,
            tokenizer=llama[1],
            namespace={"v": vec(model)},
        ).texts[1]
    )
    clean.assert_clean()


def test_an_interrupt_between_chunks_keeps_the_finished_rows(llama, full):
    model, _ = llama
    # max_batch=2: rows 0-1 decode first (NEW passes), then rows 2-3; stop in their 2nd step
    with (
        Passes(model.model.layers[-1], on_call(NEW + 2, error=KeyboardInterrupt)),
        pytest.raises(nv.GenerationInterrupted) as info,
    ):
        generate(llama, max_batch=2)
    partial = info.value.result
    assert partial.ids[:2] == full.ids[:2] and partial.stopped[:2] == full.stopped[:2]
    assert partial.ids[2:] == [ids[:1] for ids in full.ids[2:]]
    assert partial.stopped[2:] == ["interrupted"] * 2


@pytest.mark.parametrize("form", OUT_OF_MEMORY)
def test_out_of_memory_while_extracting_a_vector_halves_the_prompts(llama, form):
    model, tok = llama
    kind = ["You are kind.", "What a lovely day.", "Thank you so much, friend."]
    cruel = ["You are cruel.", "What an awful day.", "I hate you, fool."]
    full = nv.vector(kind, cruel, model=model, tokenizer=tok, layer=1)
    clean = Snapshot(model)
    # the passes stop after block 1, the one the vector reads: the faults are injected there
    with Passes(model.model.layers[1], on_call(1, error=OUT_OF_MEMORY[form])) as passes:
        v = nv.vector(kind, cruel, model=model, tokenizer=tok, layer=1)
    # the positives' pass of 3 rows failed: 3 → 1 row a pass, kept for the negatives too
    assert passes.rows == [3, 1, 1, 1, 1, 1, 1]
    torch.testing.assert_close(v.values, full.values, atol=1e-6, rtol=1e-5)
    clean.assert_clean()
