"""Steering the real SmolLM2-135M: a kind−cruel vector (mean difference of last-token
block_output over a few contrastive sentence pairs) added at every position of layer 12 raises
the summed probability of positive words after "I think that you are" monotonically for
strengths 0, 1, 2, and strength −2 raises that of negative words; a one-token difference
(`diff("Good", "Bad")`) steers nothing at position 0 and wrecks the output at every position.

docs/steering.md reports the numbers: `python tests/steer/test_smollm2_steering.py` prints them.
"""

import pytest

import nbvene as nv

pytestmark = pytest.mark.smollm2

KIND = [
    "You are kind.",
    "You are so nice to me.",
    "You are a good person.",
    "You are wonderful and caring.",
]
CRUEL = [
    "You are cruel.",
    "You are so mean to me.",
    "You are a bad person.",
    "You are horrible and heartless.",
]
POSITIVE = [
    " kind",
    " nice",
    " good",
    " wonderful",
    " amazing",
    " great",
    " sweet",
    " lovely",
    " beautiful",
    " awesome",
    " friendly",
    " caring",
]
NEGATIVE = [
    " cruel",
    " mean",
    " evil",
    " stupid",
    " terrible",
    " horrible",
    " bad",
    " rude",
    " awful",
    " selfish",
    " ugly",
    " wrong",
]
PAIRS = "steer: block_output layer=12 pos=* by mean_diff({kind}, {cruel}) * [-2, 1, 2]"
PAIRS_AT_0 = PAIRS.replace("pos=*", "pos=0")
ONE_TOKEN_AT_0 = 'steer: block_output layer=12 by diff("Good", "Bad") * [-2, 1, 2, 20]'
ONE_TOKEN_EVERYWHERE = "steer: block_output layer=12 pos=* by {good_bad} * [-2, 1, 2]"


@pytest.fixture(scope="module")
def smollm2():
    return nv.models.load()


def word_mass(model, tok, steer: str) -> dict[float, tuple[float, float]]:
    """Per strength: the summed next-token probability of the positive and negative words."""
    ids = {
        name: [tok.encode(w, add_special_tokens=False) for w in words]
        for name, words in (("pos", POSITIVE), ("neg", NEGATIVE))
    }
    assert all(len(i) == 1 for group in ids.values() for i in group)  # one token each
    namespace = {"kind": KIND, "cruel": CRUEL}
    if "{good_bad}" in steer:
        namespace["good_bad"] = nv.vector("Good", "Bad", model=model, tokenizer=tok, layer=12)
    gen = nv.generate(
        steer + '\ngenerate: "I think that you are" max_new_tokens=1',
        model=model,
        tokenizer=tok,
        namespace=namespace,
    )
    probs = gen.logits.softmax(-1)
    return {
        row[0]: tuple(float(p[[i[0] for i in ids[k]]].sum()) for k in ("pos", "neg"))
        for row, p in zip(gen.strengths, probs, strict=True)
    }


def test_kind_vector_raises_positive_words_monotonically(smollm2):
    mass = word_mass(*smollm2, PAIRS)
    positive = [mass[s][0] for s in (0.0, 1.0, 2.0)]
    assert positive[0] < positive[1] < positive[2]
    assert positive[2] > 1.5 * positive[0]
    # and strength −2 raises the negative words' mass
    assert mass[-2.0][1] > 3 * mass[0.0][1]
    assert mass[-2.0][0] < mass[0.0][0]


def test_what_breaks_one_token_differences_and_position_0(smollm2):
    at_0 = word_mass(*smollm2, PAIRS_AT_0)
    base = at_0[0.0][0]
    # position 0 is an attention sink: the same vector added there barely moves anything
    assert all(abs(at_0[s][0] - base) < 0.1 * base for s in (-2.0, 1.0, 2.0))
    one = word_mass(*smollm2, ONE_TOKEN_AT_0)
    assert all(abs(one[s][0] - base) < 0.1 * base for s in (-2.0, 1.0, 2.0, 20.0))
    # at every position the one-token difference wrecks the output: both word groups vanish
    wrecked = word_mass(*smollm2, ONE_TOKEN_EVERYWHERE)
    assert all(wrecked[s][0] < 0.2 * base for s in (1.0, 2.0))


def test_the_issue_example_as_written(smollm2):
    model, tok = smollm2
    res = nv.run(
        """
        base: "I think that you are"
        add: block_output layer=12 pos=* by mean_diff({kind}, {cruel}) * 2
        metric: logit_diff(" kind", " cruel")
        """,
        model=model,
        tokenizer=tok,
        namespace={"kind": KIND, "cruel": CRUEL},
    )
    assert res.values.shape == () and res.axes == ()
    assert float(res.values) > float(res.corrupted) + 1.0  # towards " kind", away from " cruel"


if __name__ == "__main__":
    model, tok = nv.models.load()
    for steer in (PAIRS, PAIRS_AT_0, ONE_TOKEN_AT_0, ONE_TOKEN_EVERYWHERE):
        print(steer)
        for strength, (pos, neg) in sorted(word_mass(model, tok, steer).items()):
            print(f"  strength {strength:+g}: positive words {pos:.4f}, negative words {neg:.4f}")
