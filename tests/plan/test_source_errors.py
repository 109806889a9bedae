"""Named sources are checked before anything runs: every name is known, every source is read,
the runs can be ordered, and each error names the spec line with a caret."""

import pytest

import nbvene as nv

BASE = 'base: "The Colosseum is located in the city of"\n'
S1 = 'source s1: "The Eiffel Tower is located in the city of"\n'
S2 = 'source s2: "The Louvre Museum is located in the city of"\n'
METRIC = 'metric: p(" Paris")\n'


@pytest.fixture(scope="module")
def gpt2():
    return nv.models.tiny("gpt2")


@pytest.mark.parametrize(
    ("body", "line", "message", "column", "hint"),
    [
        (
            S1 + "patch: block_output layer=0 from s3\n",
            3,
            "no source is named 's3'",
            28,
            "sources: s1",
        ),
        (S1 + "patch: block_output layer=0 into s3\n", 3, "no source is named 's3'", 28, "s1"),
        (
            S1 + S2 + "patch: block_output layer=0 from s1\n",
            3,
            "source s2 is never used",
            7,
            "from s2",
        ),
        (
            S1 + S2 + "patch: block_output layer=0 from s1 into s2\n",
            3,
            "source s2 is patched but never read",
            7,
            "from s2",
        ),
        (
            S1 + S2 + "patch: block_output layer=0 from s1 into s2\n"
            "patch: block_output layer=1 from s2 into s1\n",
            4,
            "in a cycle",
            36,
            "before it",
        ),
        (S1 + "patch: block_output layer=0 from s1 into s1\n", 3, "in a cycle", 36, None),
        (S1 + "patch: block_output layer=0\n", 3, "patch: which source?", 0, "from s1"),
        (S1 + "add: block_output layer=0\n", 3, "add: which source?", 0, "from s1"),
        (
            'corrupt: noise 3σ on "Colosseum"\n' + S1 + "patch: block_output layer=0 from s1\n",
            3,
            "corrupt: and named sources together",
            0,
            None,
        ),
        (
            'source s1: ["a", "b"]\npatch: block_output layer=0 from s1\n',
            2,
            "2 prompts in source s1 for 1 base prompts",
            0,
            "one per base prompt",
        ),
        (
            S1 + "patch: block_output layer=0 from s1\nestimate: attribution\n",
            4,
            "does not support named sources",
            0,
            "exact run",
        ),
    ],
)
def test_named_source_errors(gpt2, body, line, message, column, hint):
    model, tok = gpt2
    with pytest.raises(nv.NbveneError) as info:
        nv.run(BASE + body + METRIC, model=model, tokenizer=tok)
    e = info.value
    assert message in e.message
    assert e.line == line
    assert e.column == column
    if hint:
        assert hint in e.hint
    assert str(e).splitlines()[2] == "    " + " " * column + "^"


def test_named_sources_take_zero_and_mean_into_their_runs(gpt2):
    """zero: and mean: need no source, and may act inside a named source's run."""
    model, tok = gpt2
    res = nv.run(
        BASE + S1 + "zero: z layer=0 head=1 into s1\nmean: mlp_output layer=0 into s1\n"
        "patch: block_output layer=1 pos=-1 from s1\n" + METRIC,
        model=model,
        tokenizer=tok,
    )
    plain = nv.run(
        BASE + S1 + "patch: block_output layer=1 pos=-1 from s1\n" + METRIC,
        model=model,
        tokenizer=tok,
    )
    assert float(res.values) != float(plain.values)
