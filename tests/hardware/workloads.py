"""The workloads the hardware tests compare across placements and dtypes: a restore sweep after
noise, a head-level patch, a steered generation and one DAS training step, on a tiny model."""

import torch

import nbvene as nv

PROMPT = "The Eiffel Tower is located in the city of"
TRACE = (
    f'base: "{PROMPT}"\ncorrupt: noise 3σ on "The Eiffel Tower" samples=2 seed=3\n'
    'restore: block_output layer=* pos=*\nmetric: p(" Paris")'
)
HEADS = (
    'base: "When John and Mary went to the store, Mary gave a drink to"\n'
    'source: "When John and Mary went to the store, John gave a drink to"\n'
    'patch: z layer=* head=* pos=-1\nmetric: logit_diff(" John", " Mary")'
)
STEER = (
    'steer: block_output layer=1 pos=* by {v} * 6\ngenerate: "The Eiffel Tower" max_new_tokens=6'
)
NAMES = [" Paris", " Rome", " Mary", " John"]
DAS = (
    "base: {base}\nsource: {source}\n"
    "patch: block_output layer=1 pos=-1 via low_rank_rotated(k=4)\nlabel: {label}"
)


def das_step(model, tok):
    """One DAS training step (four pairs, one batch): the trained intervention."""
    base = [f"I think of{n} and" for n in NAMES]
    source = [f"I think of{n} and" for n in reversed(NAMES)]
    return nv.train(
        DAS,
        model=model,
        tokenizer=tok,
        namespace={"base": base, "source": source, "label": [5, 6, 7, 8]},
        epochs=1,
        batch_size=4,
        held_out=None,
        progress=False,
        seed=0,
    )


def steered(model, tok):
    """The greedy tokens of a steered generation (a fixed random vector, times 6)."""
    v = torch.randn(model.config.hidden_size, generator=torch.Generator().manual_seed(0))
    return nv.generate(
        STEER, model=model, tokenizer=tok, namespace={"v": v}, use_cache=False
    ).tokens


def values(model, tok):
    """Everything the contract compares, from one model."""
    trace = nv.run(TRACE, model=model, tokenizer=tok).values
    heads = nv.run(HEADS, model=model, tokenizer=tok).values
    trained = das_step(model, tok)
    return {
        "trace": trace,
        "heads": heads,
        "tokens": steered(model, tok),
        "loss": torch.tensor([h["loss"] for h in trained.history]),
        "basis": trained.basis,
    }
