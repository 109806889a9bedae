"""One nbvene call at a time per model: a second thread waits (or is refused), never mixes its
hooks with the first's, and the model's attention implementation is given back."""

import gc
import threading
import weakref

import pytest
import torch

import nbvene as nv
from nbvene.engine.attention import NAME
from nbvene.engine.hooks import Hooks

PATTERNS = (
    'base: "The Colosseum is located in the city of"\n'
    'source: "The Eiffel Tower is located in the city of"\n'
    "patch: pattern layer=* head=*\n"
    'metric: p(" Paris")'
)


@pytest.fixture
def llama():
    model, tok = nv.models.tiny("llama")
    model.config._attn_implementation = "sdpa"  # patterns switch it to nbvene's eager one
    return model, tok


def in_threads(work, n=2):
    return together(*[work] * n)


def together(*works):
    """Run each function in its own thread; the exceptions they raised."""
    failures = []

    def guarded(work):
        try:
            work()
        except BaseException as e:  # reported by the test, not lost in the thread
            failures.append(e)

    threads = [threading.Thread(target=guarded, args=(work,)) for work in works]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    return failures


def test_two_threads_give_the_sequential_results(llama):
    model, tok = llama
    expected = nv.run(PATTERNS, model=model, tokenizer=tok).values
    seen = []

    def work():
        for _ in range(20):
            seen.append(nv.run(PATTERNS, model=model, tokenizer=tok).values)

    assert in_threads(work) == []
    assert len(seen) == 40
    assert all(torch.equal(v, expected) for v in seen)
    assert model.config._attn_implementation == "sdpa"
    assert not any(m._forward_hooks or m._forward_pre_hooks for m in model.modules())


def test_other_entry_points_share_the_lock(llama):
    """A sweep, a steering vector and generation interleave from three threads."""
    model, tok = llama
    steer = (
        'steer: block_output layer=1 by {v} * 2\ngenerate: "I think that you are" max_new_tokens=4'
    )
    v = nv.vector("You are kind.", "You are cruel.", model=model, tokenizer=tok, layer=1)
    expected = (
        nv.run(PATTERNS, model=model, tokenizer=tok).values,
        nv.vector("You are kind.", "You are cruel.", model=model, tokenizer=tok, layer=1).values,
        nv.generate(steer, model=model, tokenizer=tok, namespace={"v": v}).ids,
    )
    seen = {0: [], 1: [], 2: []}

    def runs():
        for _ in range(5):
            seen[0].append(nv.run(PATTERNS, model=model, tokenizer=tok).values)

    def vectors():
        for _ in range(5):
            made = nv.vector("You are kind.", "You are cruel.", model=model, tokenizer=tok, layer=1)
            seen[1].append(made.values)

    def generations():
        for _ in range(5):
            seen[2].append(nv.generate(steer, model=model, tokenizer=tok, namespace={"v": v}).ids)

    assert together(runs, vectors, generations) == []
    assert all(torch.equal(x, expected[0]) for x in seen[0]) and len(seen[0]) == 5
    assert all(torch.equal(x, expected[1]) for x in seen[1]) and len(seen[1]) == 5
    assert seen[2] == [expected[2]] * 5
    assert model.config._attn_implementation == "sdpa"


def test_a_second_thread_is_refused_when_asked(llama):
    model, tok = llama
    nv.lock(model).wait = False
    with nv.lock(model):  # as if a long sweep held it
        failures = in_threads(lambda: nv.run(PATTERNS, model=model, tokenizer=tok), n=1)
        # the same thread goes on: calls are re-entrant
        assert nv.run(PATTERNS, model=model, tokenizer=tok).values.shape == (2, 4)
    assert len(failures) == 1 and isinstance(failures[0], nv.NbveneError)
    assert "nv.run: the model is running an nbvene call in another thread" in str(failures[0])
    assert "nv.lock(model).wait = True" in failures[0].hint
    assert model.config._attn_implementation == "sdpa"
    assert in_threads(lambda: nv.run(PATTERNS, model=model, tokenizer=tok), n=1) == []


def test_a_second_thread_waits_by_default(llama):
    model, tok = llama
    done = threading.Event()

    def work():
        nv.run(PATTERNS, model=model, tokenizer=tok)
        done.set()

    with nv.lock(model):
        thread = threading.Thread(target=work)
        thread.start()
        thread.join(timeout=0.5)
        assert thread.is_alive() and not done.is_set()
    thread.join()
    assert done.is_set()


def test_each_model_has_its_own_lock_and_keeps_nothing_alive(llama):
    model, tok = llama
    other, _ = nv.models.tiny("llama")
    nv.lock(model).wait = nv.lock(other).wait = False
    with nv.lock(model):
        ran = together(lambda m=other: nv.run(PATTERNS, model=m, tokenizer=tok))
        assert ran == []
    with pytest.raises(nv.NbveneError, match=r"takes a torch\.nn\.Module, got str"):
        nv.lock("gpt2")
    gone = weakref.ref(other)
    del other
    gc.collect()
    assert gone() is None


def test_the_attention_switch_is_given_back_in_any_order(llama):
    """Two runs' edits that end out of order (as two unlocked threads' would): the switch stays
    while either holds it, and the original comes back when the last one goes."""
    model, _ = llama
    attention = model.model.layers[0].self_attn
    first, second = Hooks(model), Hooks(model)
    first.on(attention, "weights", lambda p: None)
    second.on(attention, "weights", lambda p: None)
    assert model.config._attn_implementation == NAME
    first.remove()
    assert model.config._attn_implementation == NAME
    second.remove()
    assert model.config._attn_implementation == "sdpa"
