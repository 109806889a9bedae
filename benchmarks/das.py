"""DAS training: `nv.train` against a plain-torch training loop of the same intervention, in
one process, interleaved, on SmolLM2-135M (issue 18, item 6).

The workload is tests/train/test_smollm2_das.py's: "The dog(s) that I saw yesterday", base and
source of opposite grammatical number, `block_output layer=12 pos=1 via low_rank_rotated(k=1)`,
the label the verb the source's number asks for (" was" / " were"), batch 32, Adam, lr 1e-2.
Both start from the same intervention (a copy of one `LowRankRotated(k=1, seed=0)`),
take the same batches in the same order (`nv.train`'s shuffling, seed 0), and end with the
same measure (IIA and loss over the training examples, in batches of 32).

The plain loop, per step: the source run without gradients, keeping block 12's output at
position 1 and stopping after block 12; the base run with a forward hook on block 12 writing
`base + (source - base) @ Q @ Qᵀ` at position 1, the LM head at the last position only;
cross-entropy, backward, Adam.

The trained bases and the losses must agree within 1e-4 (exit status 1 otherwise).

    .venv/bin/python benchmarks/das.py --repeats 3
"""

from __future__ import annotations

import argparse
import copy
import math
import random
import statistics
import sys
import time

import torch
from machine import load_average, print_header

import nbvene as nv
from nbvene.interventions.trainable import LowRankRotated

TOLERANCE = 1e-4
TEMPLATE = "The {} that I saw yesterday"
LAYER, NOUN, BATCH, LR = 12, 1, 32, 1e-2
WORDS = (
    "key dog cat book car house teacher student bird tree girl boy doctor window flower "
    "farmer song painting table friend horse apple chair door letter river road ship star"
)


def examples(tok, n: int, seed: int = 1) -> dict:
    def one_token(text):
        return len(tok(text, add_special_tokens=False).input_ids) == 1

    nouns = [(w, w + "s") for w in WORDS.split() if one_token(" " + w) and one_token(f" {w}s")]
    r = random.Random(seed)
    base, source, label = [], [], []
    for _ in range(n):
        a, b = r.sample(nouns, 2)
        plural = r.random() < 0.5
        base.append(TEMPLATE.format(a[plural]))
        source.append(TEMPLATE.format(b[not plural]))
        label.append(" was" if plural else " were")
    return {"base": base, "source": source, "label": label}


SPEC = (
    "base: {base}\nsource: {source}\n"
    f"patch: block_output layer={LAYER} pos={NOUN} via {{rot}}\nlabel: {{label}}"
)


def run_nbvene(model, tok, data, rot, epochs):
    trained = nv.train(
        SPEC,
        model=model,
        tokenizer=tok,
        namespace={**data, "rot": rot},
        epochs=epochs,
        lr=LR,
        batch_size=BATCH,
        held_out=None,
        seed=0,
        progress=False,
    )
    losses = [r["loss"] for r in trained.history] + [trained.metrics["loss"]]
    return rot.basis, torch.tensor(losses), trained.metrics["iia"]


class _Stop(Exception):
    pass


def run_plain(model, tok, data, rot, epochs):
    """The same training by hand (see the module's docstring)."""
    block = model.model.layers[LAYER]
    base_ids = tok(data["base"], return_tensors="pt")["input_ids"]
    source_ids = tok(data["source"], return_tensors="pt")["input_ids"]
    labels = torch.tensor([tok.encode(t, add_special_tokens=False)[0] for t in data["label"]])
    flags = {p: p.requires_grad for p in model.parameters()}
    for p in flags:
        p.requires_grad_(False)

    def source_units(rows):
        kept = {}

        def keep(module, args, output):
            h = output[0] if isinstance(output, tuple) else output
            kept["units"] = h[:, NOUN]
            raise _Stop

        handle = block.register_forward_hook(keep)
        try:
            with torch.no_grad():
                model(input_ids=source_ids[rows], use_cache=False)
        except _Stop:
            pass
        finally:
            handle.remove()
        return kept["units"]

    def intervened(rows):
        source = source_units(rows)

        def patch(module, args, output):
            h = output[0] if isinstance(output, tuple) else output
            h = h.clone()
            h[:, NOUN] = rot(h[:, NOUN], source)
            return (h, *output[1:]) if isinstance(output, tuple) else h

        handle = block.register_forward_hook(patch)
        try:
            out = model(input_ids=base_ids[rows], use_cache=False, logits_to_keep=1)
        finally:
            handle.remove()
        return out.logits[:, -1].float()

    generator = torch.Generator().manual_seed(0)
    order = torch.randperm(len(base_ids), generator=generator)  # nv.train's split draw
    optimizer = torch.optim.Adam([p for p in rot.parameters() if p.requires_grad], lr=LR)
    losses = []
    try:
        for _ in range(epochs):
            shuffled = order[torch.randperm(len(order), generator=generator)]
            total = 0.0
            for start in range(0, len(shuffled), BATCH):
                rows = shuffled[start : start + BATCH]
                optimizer.zero_grad(set_to_none=True)
                loss = torch.nn.functional.cross_entropy(intervened(rows), labels[rows])
                loss.backward()
                optimizer.step()
                total += float(loss.detach()) * len(rows)
            losses.append(total / len(shuffled))
        hits, total = 0, 0.0
        with torch.no_grad():
            for start in range(0, len(order), BATCH):
                rows = order[start : start + BATCH]
                logits = intervened(rows)
                total += float(torch.nn.functional.cross_entropy(logits, labels[rows])) * len(rows)
                hits += int((logits.argmax(-1) == labels[rows]).sum())
    finally:
        for p, flag in flags.items():
            p.requires_grad_(flag)
    losses.append(total / len(order))
    return rot.basis, torch.tensor(losses), hits / len(order)


METHODS = {"nbvene": run_nbvene, "plain torch": run_plain}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--examples", type=int, default=128)
    parser.add_argument("--epochs", type=int, default=1)
    args = parser.parse_args(argv)
    torch.set_num_threads(args.threads)
    model, tok = nv.models.load()
    data = examples(tok, args.examples)
    start_rot = LowRankRotated(k=1, seed=0, width=model.config.hidden_size)
    print_header()
    steps = args.epochs * math.ceil(args.examples / BATCH)
    print(
        f"{args.examples} examples, {args.epochs} epoch(s), {steps} steps of batch {BATCH}, "
        f"then the measure; repeats: {args.repeats}, interleaved"
    )
    for method in METHODS.values():  # warm up
        method(model, tok, examples(tok, BATCH), copy.deepcopy(start_rot), 1)
    seconds: dict[str, list[float]] = {m: [] for m in METHODS}
    made: dict[str, tuple] = {}
    for _ in range(args.repeats):
        for name, method in METHODS.items():
            start = time.perf_counter()
            made[name] = method(model, tok, data, copy.deepcopy(start_rot), args.epochs)
            seconds[name].append(time.perf_counter() - start)
    print(f"load average after: {load_average()}")
    ours = statistics.median(seconds["nbvene"])
    basis, losses, iia = made["nbvene"]
    print("| method | median s | runs s | nbvene / method | max diff basis | max diff losses |")
    print("|---|---|---|---|---|---|")
    ok = True
    for name in METHODS:
        other_basis, other_losses, other_iia = made[name]
        db = (other_basis - basis).abs().max().item()
        dl = (other_losses - losses).abs().max().item()
        ok &= db <= TOLERANCE and dl <= TOLERANCE and other_iia == iia
        median = statistics.median(seconds[name])
        runs = " ".join(f"{s:.2f}" for s in seconds[name])
        print(f"| {name} | {median:.3f} | {runs} | {ours / median:.3f}x | {db:.1e} | {dl:.1e} |")
    print(f"losses (epochs, then the measure): {[round(x, 4) for x in losses.tolist()]}, iia {iia}")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
