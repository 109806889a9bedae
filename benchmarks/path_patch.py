"""Path patching on SmolLM2-135M: `nv.path_patch` against the same path patching written with
plain PyTorch hooks, one sender head at a time (two forward passes a cell, as it is usually
written). Prints seconds, the ratio, and the largest difference between the two results.

    .venv/bin/python benchmarks/path_patch.py [--first 0] [--layers 30] [--max-batch 64]

IOI prompts (base: "... John gave a bottle to", source: "... Mary gave ..."); senders: every
head's output (`z`) in `--layers` layers from `--first` on; receivers: the queries of every
head of the last layer at the last position; metric: logit_diff(" Mary", " John").
"""

from __future__ import annotations

import argparse
import time

import torch

import nbvene as nv

BASE = "When John and Mary went to the store, John gave a bottle to"
SOURCE = "When John and Mary went to the store, Mary gave a bottle to"


def by_hand(model, tok, layers: range) -> torch.Tensor:
    """Path patching with plain hooks: per sender head, a path run (every head frozen at the
    base but the sender, from the source) recording the receivers' queries, then the base run
    with those queries patched at the last position."""
    blocks = model.model.layers
    heads = model.config.num_attention_heads
    d = model.config.hidden_size // heads
    last = len(blocks) - 1
    base, source = (tok(t, return_tensors="pt")["input_ids"] for t in (BASE, SOURCE))
    mary, john = (tok.encode(w, add_special_tokens=False)[0] for w in (" Mary", " John"))

    def z_of(ids):
        kept, handles = {}, []
        for i, b in enumerate(blocks):
            hook = lambda m, a, i=i: kept.__setitem__(i, a[0].clone())  # noqa: E731
            handles.append(b.self_attn.o_proj.register_forward_pre_hook(hook))
        model(input_ids=ids, use_cache=False)
        for h in handles:
            h.remove()
        return kept

    def cell(z_source, z_base, layer: int, head: int) -> float:
        cols = slice(head * d, (head + 1) * d)

        def frozen(i):
            def hook(m, a):
                z = z_base[i].clone()
                if i == layer:
                    z[..., cols] = z_source[i][..., cols]
                return (z,)

            return hook

        handles = [
            b.self_attn.o_proj.register_forward_pre_hook(frozen(i)) for i, b in enumerate(blocks)
        ]
        q = {}
        handles.append(
            blocks[last].self_attn.q_proj.register_forward_hook(
                lambda m, a, out: q.__setitem__("q", out.clone())
            )
        )
        model(input_ids=base, use_cache=False)
        for h in handles:
            h.remove()

        def patched(m, a, out):
            out = out.clone()
            out[:, -1] = q["q"][:, -1]
            return out

        handle = blocks[last].self_attn.q_proj.register_forward_hook(patched)
        logits = model(input_ids=base, use_cache=False).logits[0, -1]
        handle.remove()
        return float(logits[mary] - logits[john])

    with torch.no_grad():
        z_source, z_base = z_of(source), z_of(base)
        return torch.tensor(
            [[cell(z_source, z_base, layer, head) for head in range(heads)] for layer in layers]
        )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--first", type=int, default=0)
    parser.add_argument("--layers", type=int, default=30)
    parser.add_argument("--max-batch", type=int, default=64)
    args = parser.parse_args()
    model, tok = nv.models.load()
    last = model.config.num_hidden_layers - 1
    print(
        f"torch {torch.__version__}, {torch.get_num_threads()} threads; senders: "
        f"layers {args.first}..{args.first + args.layers - 1} × "
        f"{model.config.num_attention_heads} heads"
    )
    start = time.perf_counter()
    res = nv.path_patch(
        BASE,
        SOURCE,
        senders=f"z layer={args.first}..{args.first + args.layers - 1} head=*",
        receivers=f"q layer={last} pos=-1",
        metric='logit_diff(" Mary", " John")',
        model=model,
        tokenizer=tok,
        max_batch=args.max_batch,
    )
    ours = time.perf_counter() - start
    start = time.perf_counter()
    expected = by_hand(model, tok, range(args.first, args.first + args.layers))
    theirs = time.perf_counter() - start
    diff = float((res.values - expected).abs().max())
    effect = float((res.values - res.corrupted).abs().max())
    print(f"nv.path_patch: {ours:.1f} s; by hand: {theirs:.1f} s; {theirs / ours:.1f}× faster")
    print(f"max |difference|: {diff:.2e}; largest path effect: {effect:.3e}")
    assert diff < 1e-3, diff


if __name__ == "__main__":
    main()
