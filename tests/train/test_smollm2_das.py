"""DAS on the real embedded model, SmolLM2-135M: a one-dimensional subspace of the subject
noun's residual stream carries its grammatical number, which the verb agrees with.

Prompts are "The dog that I saw yesterday" / "The dogs that I saw yesterday"; the model continues
with " was" / " were". Base and source differ in number (and noun); the label is the verb the
source's number asks for, so a subspace that carries number, swapped in from the source at the
noun, turns " was" into " were" and back. Nouns are split between training and test pairs.

(The first hypothesis tried, which of two people a question asks about in "Alice lives in France.
Bob lives in Japan. So Alice lives in", does not hold on this model. Its top token was the right
country for every question about the second person, but for only 14% of those about the first.)
"""

import random

import pytest
import torch

import nbvene as nv

pytestmark = pytest.mark.smollm2

TEMPLATE = "The {} that I saw yesterday"
NOUN = 1  # "The" is token 0 (no BOS), the noun token 1
LAYER = 12
WORDS = (
    "key dog cat book car house teacher student bird tree girl boy doctor window flower "
    "farmer song painting table friend horse apple chair door letter river road ship star "
    "child woman man box bottle cup phone computer garden lamp picture plant shoe stone "
    "wall king queen soldier nurse worker player singer writer artist officer driver cook "
    "baby"
)
IRREGULAR = {"child": "children", "woman": "women", "man": "men", "box": "boxes", "baby": "babies"}


@pytest.fixture(scope="module")
def smollm2():
    return nv.models.load()


def nouns(tok, model):
    """(singular, plural) pairs, each one token, that the model itself agrees with."""

    def ids(text):
        return tok(text, add_special_tokens=False).input_ids

    pairs = [(w, IRREGULAR.get(w, w + "s")) for w in WORDS.split()]
    pairs = [(s, p) for s, p in pairs if len(ids(" " + s)) == 1 and len(ids(" " + p)) == 1]
    prompts = [TEMPLATE.format(w) for pair in pairs for w in pair]
    with torch.no_grad():
        top = model(**tok(prompts, return_tensors="pt")).logits[:, -1].argmax(-1)
    was, were = ids(" was")[0], ids(" were")[0]
    return [pair for i, pair in enumerate(pairs) if top[2 * i] == was and top[2 * i + 1] == were]


def examples(n, seed, nouns):
    """Base and source of opposite number; the label is the source's verb."""
    r = random.Random(seed)
    base, source, label = [], [], []
    for _ in range(n):
        a, b = r.sample(nouns, 2)
        plural = r.random() < 0.5  # the base's number
        base.append(TEMPLATE.format(a[plural]))
        source.append(TEMPLATE.format(b[not plural]))
        label.append(" was" if plural else " were")
    return {"base": base, "source": source, "label": label}


def spec(via):
    return (
        "base: {base}\nsource: {source}\n"
        f"patch: block_output layer={LAYER} pos={NOUN} via {via}\nlabel: {{label}}"
    )


def test_das_finds_grammatical_number_in_one_dimension(smollm2):
    model, tok = smollm2
    agreeing = nouns(tok, model)
    assert len(agreeing) >= 20
    random.Random(0).shuffle(agreeing)
    cut = len(agreeing) * 2 // 3
    train_set, test_set = examples(160, 1, agreeing[:cut]), examples(96, 2, agreeing[cut:])

    def measured(via, epochs=0):
        return nv.train(
            spec(via),
            model=model,
            tokenizer=tok,
            namespace=train_set,
            epochs=epochs,
            lr=1e-2,
            batch_size=32,
            held_out=None,
            seed=0,
            progress=False,
        )

    trained = measured("low_rank_rotated(k=1)", epochs=2)
    iia = trained.evaluate(namespace=test_set)["iia"]
    untrained = measured("low_rank_rotated(k=1)").evaluate(namespace=test_set)["iia"]
    whole = measured("interchange(subspace=576)").evaluate(namespace=test_set)["iia"]
    assert trained.basis.shape == (576, 1)
    # measured on 2 CPU threads: trained 0.958, untrained 0.0, whole vector 0.844 (swapping the
    # whole noun vector brings the other noun too, which sometimes derails the continuation)
    assert iia >= 0.85
    assert untrained <= 0.1  # a random direction carries no number
    assert whole >= 0.75
    assert iia >= untrained + 0.7
