"""A planted circuit: a two-layer attention-only GPT-2 trained in a few seconds to copy the
first token of a prompt to the end through a known route, so that circuit discovery can be
checked against the truth.

The prompt is `answer f1 f2 f3` (fillers from a fixed set). Head a0.h0 attends from each
position to the previous one, so it moves the answer into position 1; head a1.h1 attends from
the last position to position 1 and writes the answer to the logits. The other heads attend
to their own position and the MLPs are zero. The corrupted prompt changes only the answer, so
the true circuit is `embed -> a0.h0.v`, `a0.h0 -> a1.h1.v`, `a1.h1 -> logits`.

The route is forced, not hoped for: training adds to the answer's cross-entropy a loss on the
attention patterns (each head's target position above), and the MLPs are zero and frozen, so
the answer can reach the last position by no other path."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import torch
from torch import nn

from nbvene.circuits.forward import Inputs, check_pair, inputs
from nbvene.circuits.graph import Edge, Node


@dataclass
class Planted:
    """The trained model and its tokenizer, clean and corrupted prompts (texts and `Inputs`),
    the answer token ids (clean, corrupted), the logit-difference `metric`, and `edges`, the
    true circuit."""

    model: nn.Module
    tokenizer: object
    clean_texts: list[str]
    corrupted_texts: list[str]
    clean: Inputs
    corrupted: Inputs
    answers: torch.Tensor
    wrong: torch.Tensor
    metric: Callable[[torch.Tensor], torch.Tensor]
    edges: frozenset[Edge]


ANSWERS = ("Paris", "London", "Rome", "Berlin", "Tokyo", "Madrid", "Mary", "John")
FILLERS = ("the", "of", "and", "in", "to", "a", "is", "was")
LENGTH = 4
ROUTE = (0, 0), (1, 1)
"""(layer, head) of the head that moves the answer to position 1, then to the last one."""

TRUE_EDGES = frozenset(
    {
        Edge(Node(-1, "embed"), Node(0, "head", 0), "v"),
        Edge(Node(0, "head", 0), Node(1, "head", 1), "v"),
        Edge(Node(1, "head", 1), Node(2, "logits"), "in"),
    }
)


def _targets(layer: int, head: int) -> list[int]:
    """The position each position of a prompt attends to, per head (see the module
    docstring)."""
    positions = list(range(LENGTH))
    if (layer, head) == ROUTE[0]:
        return [max(p - 1, 0) for p in positions]
    if (layer, head) == ROUTE[1]:
        return [*positions[:-1], 1]
    return positions


def _prompts(generator: torch.Generator, count: int) -> tuple[list[str], list[str]]:
    clean, corrupted = [], []
    for _ in range(count):
        a, b = torch.randperm(len(ANSWERS), generator=generator)[:2].tolist()
        fill = torch.randint(len(FILLERS), (LENGTH - 1,), generator=generator).tolist()
        words = [FILLERS[f] for f in fill]
        clean.append(" " + " ".join([ANSWERS[a], *words]))
        corrupted.append(" " + " ".join([ANSWERS[b], *words]))
    return clean, corrupted


def planted(seed: int = 0, *, prompts: int = 16, steps: int = 300) -> Planted:
    """Train the planted-circuit model (seeded, deterministic, no downloads; a few seconds on
    a CPU) and return it with `prompts` clean/corrupted pairs and the true circuit.

    Trained on one CPU thread: a float sum's order depends on the thread count, and 300 Adam
    steps carry that rounding into a different model (with two threads the planted edges
    alone gave faithfulness 0.84 instead of 1.0). One thread gives the same model on every
    machine with this torch."""
    from transformers import GPT2Config, GPT2LMHeadModel

    from nbvene.models.tokenizer import tiny_tokenizer

    tokenizer = tiny_tokenizer()
    answer_ids = [tokenizer(" " + w)["input_ids"][0] for w in ANSWERS]
    filler_ids = [tokenizer(" " + w)["input_ids"][0] for w in FILLERS]
    config = GPT2Config(
        vocab_size=len(tokenizer),
        n_positions=LENGTH,
        n_embd=32,
        n_layer=2,
        n_head=2,
        n_inner=32,
        resid_pdrop=0.0,
        embd_pdrop=0.0,
        attn_pdrop=0.0,
        pad_token_id=tokenizer.pad_token_id,
        bos_token_id=tokenizer.bos_token_id,
        eos_token_id=tokenizer.eos_token_id,
    )
    config.name_or_path = "nbvene-planted"
    targets = torch.tensor([[_targets(layer, h) for h in range(2)] for layer in range(2)])
    threads = torch.get_num_threads()
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        model = GPT2LMHeadModel._from_config(config, attn_implementation="eager")
        torch.set_num_threads(1)
        try:
            _train(model, torch.tensor(answer_ids), torch.tensor(filler_ids), targets, steps)
        finally:
            torch.set_num_threads(threads)
        generator = torch.Generator().manual_seed(seed + 1)
        clean_texts, corrupted_texts = _prompts(generator, prompts)
    model.eval()
    clean, corrupted = inputs(tokenizer, clean_texts), inputs(tokenizer, corrupted_texts)
    clean, corrupted = check_pair(clean, corrupted)
    answers, wrong = clean.ids[:, 0].clone(), corrupted.ids[:, 0].clone()

    def metric(logits: torch.Tensor) -> torch.Tensor:
        """Logit difference, the clean answer's logit minus the corrupted answer's."""
        rows = torch.arange(logits.shape[0], device=logits.device)
        return logits[rows, answers.to(logits.device)] - logits[rows, wrong.to(logits.device)]

    return Planted(
        model=model,
        tokenizer=tokenizer,
        clean_texts=clean_texts,
        corrupted_texts=corrupted_texts,
        clean=clean,
        corrupted=corrupted,
        answers=answers,
        wrong=wrong,
        metric=metric,
        edges=TRUE_EDGES,
    )


def _train(model, answers, fillers, targets, steps: int, batch: int = 64) -> None:
    """Cross-entropy of the answer at the last position plus the attention-pattern loss; the
    MLPs are zeroed and frozen."""
    for block in model.transformer.h:
        nn.init.zeros_(block.mlp.c_proj.weight)
        nn.init.zeros_(block.mlp.c_proj.bias)
        block.mlp.requires_grad_(False)
    params = [p for p in model.parameters() if p.requires_grad]
    optimizer = torch.optim.Adam(params, lr=1e-2)
    model.train()
    for _ in range(steps):
        first = answers[torch.randint(len(answers), (batch,))]
        rest = fillers[torch.randint(len(fillers), (batch, LENGTH - 1))]
        ids = torch.cat([first[:, None], rest], dim=1)
        out = model(input_ids=ids, output_attentions=True)
        loss = nn.functional.cross_entropy(out.logits[:, -1], first)
        for layer, pattern in enumerate(out.attentions):  # [batch, heads, T, T]
            index = targets[layer].expand(pattern.shape[0], -1, -1).unsqueeze(-1)
            chosen = pattern.gather(-1, index)  # [batch, heads, T, 1]
            loss = loss - chosen.clamp_min(1e-9).log().mean()
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
