"""Any nn.Module: token ids as tensors, output indices as metric arguments, user site maps."""

import pytest
import torch
from torch import nn

import nbvene as nv


class Block(nn.Module):
    def __init__(self):
        super().__init__()
        self.mix = nn.Linear(8, 8)

    def forward(self, x):
        # a causal running mean lets later positions read earlier ones
        mean = x.cumsum(1) / torch.arange(1, x.shape[1] + 1).view(1, -1, 1)
        return x + torch.tanh(self.mix(mean))


class Toy(nn.Module):
    def __init__(self):
        super().__init__()
        self.embed = nn.Embedding(20, 8)
        self.blocks = nn.ModuleList([Block() for _ in range(3)])
        self.out = nn.Linear(8, 20)

    def forward(self, ids):
        h = self.embed(ids)
        for block in self.blocks:
            h = block(h)
        return self.out(h)


@pytest.fixture
def toy():
    torch.manual_seed(0)
    return Toy().eval()


BASE, SOURCE = torch.tensor([[1, 2, 3, 4]]), torch.tensor([[5, 6, 7, 8]])


def by_hand(model, layer, pos):
    """Patch block `layer`'s output at `pos` from the source, with plain code."""
    with torch.no_grad():
        h, s = model.embed(BASE), model.embed(SOURCE)
        for i, block in enumerate(model.blocks):
            h, s = block(h), block(s)
            if i == layer:
                h[:, pos] = s[:, pos]
        return model.out(h)[0, -1, 7]


def test_discovered_blocks_and_token_id_metric(toy):
    res = nv.run(
        "base: {b}\nsource: {s}\npatch: block_output layer=* pos=1\nmetric: logit(7)",
        model=toy,
        namespace={"b": BASE, "s": SOURCE},
    )
    assert nv.SiteMap(toy).family_name == "discovered"
    assert res.axes == ("example", "layer")
    expected = torch.stack([by_hand(toy, layer, 1) for layer in range(3)])
    torch.testing.assert_close(res.values[0], expected, atol=1e-6, rtol=0)


def test_user_mapping_collects(toy):
    res = nv.run(
        "base: {b}\ncollect: mixed layer=* pos=-1",
        model=toy,
        namespace={"b": BASE},
        sites={"mixed": "blocks[{layer}].mix.output"},
    )
    assert res.values.shape == (1, 3, 8)
    with torch.no_grad():
        h = toy.embed(BASE)
        h = toy.blocks[0](h)
        mean = h.cumsum(1) / torch.arange(1, 5).view(1, -1, 1)
        torch.testing.assert_close(res.values[0, 1], toy.blocks[1].mix(mean)[0, -1])


def test_token_text_needs_a_tokenizer(toy):
    with pytest.raises(nv.NbveneError, match="needs a tokenizer") as info:
        nv.run(
            'base: {b}\nzero: block_output layer=0\nmetric: p(" x")',
            model=toy,
            namespace={"b": BASE},
        )
    assert "p(42)" in info.value.hint
