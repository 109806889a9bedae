"""End to end on the real embedded model, SmolLM2-135M-Instruct (Llama, 30 layers, GQA)."""

import pytest
import torch

import nbvene as nv

pytestmark = pytest.mark.smollm2


@pytest.fixture(scope="module")
def smollm2():
    return nv.models.load()


def test_the_issue_example(smollm2):
    model, tok = smollm2
    res = nv.run(
        """
        base:   "The Colosseum is located in the city of"
        source: "The Eiffel Tower is located in the city of"
        patch:  block_output layer=* pos=-1
        metric: logit_diff(" Paris", " Rome")
        """,
        model=model,
        tokenizer=tok,
    )
    assert isinstance(res.values, torch.Tensor) and res.values.shape == (30,)
    assert res.axes == ("layer",) and res.axes[0].labels == tuple(range(30))
    assert res.corrupted < 0 < res.clean  # the base prefers Rome, the source Paris
    # the last position carries the answer only late: patched at the last layer it is the source
    assert res.values[-1] == pytest.approx(float(res.clean), abs=1e-4)
    assert res.values[:5].max() < float(res.corrupted) + 1.0
    frame = res.to_pandas()
    assert list(frame.columns) == ["layer", "value"] and len(frame) == 30


def test_causal_trace_finds_the_subject_then_the_last_token(smollm2):
    model, tok = smollm2
    res = nv.run(
        """
        base:    "The Eiffel Tower is located in the city of"
        corrupt: noise 3σ on "The Eiffel Tower" samples=3
        restore: block_output layer=* pos=*
        metric:  p(" Paris")
        """,
        model=model,
        tokenizer=tok,
        max_batch=64,
    )
    assert res.axes == ("layer", "pos")
    tokens = res.axes[1].labels
    assert tokens[:4] == ("The", " E", "iffel", " Tower")
    clean, corrupted = float(res.clean), float(res.corrupted)
    assert clean == pytest.approx(0.70, abs=0.03) and corrupted < 0.1
    # "iffel" ends the word that names the subject: restoring it in early-to-middle layers
    # brings back a large part of p(" Paris"); the last token does so only in late layers.
    subject = tokens.index("iffel")
    early = res.values[1:9, subject]
    assert float(early.max()) > corrupted + 0.5 * (clean - corrupted)
    last = res.values[:, -1]
    assert float(last[:10].max()) < corrupted + 0.1
    assert float(last[24:].min()) > corrupted + 0.5 * (clean - corrupted)
