"""Steered forward passes and decoding: the hooks that add each row's strength × vector at the
positions each term chooses, and a token-by-token loop with or without the KV cache.

Positions are absolute (0 is the prompt's first token, the prompt's length the first generated
one). With the cache, step 0 runs the whole prompt and step k the k-th generated token alone,
so the cached keys and values of steered positions are the steered ones; without it, every step
reruns every position and steers the same ones again.
"""

from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass

import torch

from nbvene.bind.steering import Steering, Term
from nbvene.engine.executor import Executor
from nbvene.engine.hooks import Hooks
from nbvene.engine.memory import Budget


class Steerer:
    """Edits for a batch of rows, one strength per (row, term); `start` is the absolute
    position of the first token the next forward pass sees."""

    def __init__(self, steering: Steering, strengths: torch.Tensor):
        self.steering = steering
        self.strengths = strengths  # (rows, terms)
        self.start = 0

    def attach(self, hooks: Hooks) -> None:
        by_site: dict = defaultdict(list)
        for index, term in enumerate(self.steering.terms):
            by_site[term.site].append((index, term))
        for site, terms in by_site.items():
            hooks.at(site, self._edit(site, terms))

    def _edit(self, site, terms: list[tuple[int, Term]]):
        def edit(raw: torch.Tensor) -> torch.Tensor | None:
            units = site.view.read(raw)  # (rows, tokens, d)
            changed = False
            for index, _ in terms:
                steered = self.steering.steered(index, units, self.start, self.strengths[:, index])
                if steered is not None:
                    units, changed = steered, True
            return site.view.write(raw, units) if changed else None

        return edit


@dataclass
class Decoded:
    """Per row: the generated token ids (up to and including a stop), and why it stopped;
    `first_logits` are the next-token logits after the prompt (rows, vocab). `interrupted`:
    a KeyboardInterrupt stopped the decoding; the ids are those generated so far (the rows it
    stopped say "interrupted"; rows not started have no ids and NaN logits)."""

    ids: list[list[int]]
    stopped: list[str]
    first_logits: torch.Tensor | None
    interrupted: bool = False


def next_logits(
    steering: Steering, strengths: torch.Tensor, budget: Budget | None = None
) -> torch.Tensor:
    """(rows, vocab): the steered prompt's next-token logits, in the budget's chunks of rows."""
    executor = Executor(steering.model)

    def run(rows: list[int]) -> torch.Tensor:
        ids = torch.tensor([steering.prompt.ids] * len(rows), device=executor.device)
        steerer = Steerer(steering, strengths[rows])
        with torch.no_grad(), Hooks(steering.model) as hooks:
            steerer.attach(hooks)
            return executor.next_logits(ids)[0]

    budget = budget or Budget(max(1, len(strengths)))
    parts = [out for _, out in budget.chunks(range(len(strengths)), run, "steered run")]
    return torch.cat(parts) if len(parts) > 1 else parts[0]


def decode(
    steering: Steering,
    strengths: torch.Tensor,
    *,
    use_cache: bool = True,
    budget: Budget | None = None,
) -> Decoded:
    """Generate for every row, in the budget's chunks of rows (all rows share the prompt, so
    nothing is padded; a chunk that runs out of memory starts again, halved).

    Greedy at temperature 0; otherwise each row samples with its own generator seeded with the
    spec's seed, so a row gives the same text in any batch (and baseline and steered rows share
    their random draws). A KeyboardInterrupt returns what was generated so far, marked
    `interrupted`."""
    rows = len(strengths)
    out_ids: list[list[int]] = [[] for _ in range(rows)]
    stopped = ["not started"] * rows
    first: list[torch.Tensor | None] = [None] * rows
    budget = budget or Budget(max(1, rows))
    interrupted = False

    def run(chunk: list[int]) -> None:
        _decode_rows(steering, strengths, chunk, out_ids, stopped, first, use_cache)

    try:
        for _ in budget.chunks(range(rows), run, "generation"):
            pass
    except KeyboardInterrupt:
        interrupted = True
        stopped = ["interrupted" if s in ("not started", "running") else s for s in stopped]
    vocab = next((f.shape[-1] for f in first if f is not None), None)
    logits = None
    if vocab is not None:  # rows not started (an interrupt) have NaN logits
        logits = torch.stack(
            [torch.full((vocab,), float("nan")) if f is None else f for f in first]
        )
    return Decoded(out_ids, stopped, logits, interrupted)


def _decode_rows(
    steering: Steering,
    strengths: torch.Tensor,
    chunk: list[int],
    out_ids: list[list[int]],
    stopped: list[str],
    first: list,
    use_cache: bool,
) -> None:
    """Decode the rows `chunk` together, writing each row's ids, stop and first logits in
    place as they come (so an interrupt keeps them)."""
    g = steering.generate
    executor = Executor(steering.model)
    use_cache = use_cache and executor.takes_cache()
    device = executor.device
    ids = torch.tensor([steering.prompt.ids] * len(chunk), device=device)
    generators = [torch.Generator().manual_seed(g.seed) for _ in chunk]
    eos = steering.eos_ids()
    for row in chunk:  # a chunk retried after an out-of-memory starts over
        out_ids[row].clear()
        stopped[row], first[row] = "running", None
    live = [True] * len(chunk)
    steerer = Steerer(steering, strengths[chunk])
    cache = None
    with torch.no_grad(), Hooks(steering.model) as hooks:
        steerer.attach(hooks)
        for step in range(g.max_new_tokens):
            if use_cache:
                feed = ids if step == 0 else ids[:, -1:]
                steerer.start = 0 if step == 0 else ids.shape[1] - 1
                logits, cache = executor.next_logits(feed, cache, use_cache=True)
            else:
                steerer.start = 0
                logits, _ = executor.next_logits(ids)
            if step == 0:
                for i, row in enumerate(chunk):
                    first[row] = logits[i].cpu()
            chosen = _choose(logits, g.temperature, generators)
            ids = torch.cat([ids, chosen.to(device)[:, None]], dim=1)
            for i, row in enumerate(chunk):
                if not live[i]:
                    continue
                out_ids[row].append(int(chosen[i]))
                reason = steering.stop_reason(out_ids[row], eos)
                if reason is not None:
                    live[i], stopped[row] = False, reason
            if not any(live):
                break
    for i, row in enumerate(chunk):
        if live[i]:
            stopped[row] = "max_new_tokens"


def _choose(logits: torch.Tensor, temperature: float, generators) -> torch.Tensor:
    if temperature == 0:
        return logits.argmax(-1).cpu()
    probs = (logits / temperature).softmax(-1).cpu()
    return torch.cat(
        [torch.multinomial(p, 1, generator=gen) for p, gen in zip(probs, generators, strict=True)]
    )
