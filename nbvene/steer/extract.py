"""Steering vectors from prompts: the activations at a site for contrasting prompts, reduced to
a `Vector` by mean difference, the first principal component of paired differences, or the
position-by-position difference of two prompts (activation addition)."""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import nn

from nbvene.bind import limits
from nbvene.bind.prompts import Prompt, tokenize
from nbvene.bind.steering import steered_site
from nbvene.engine.executor import Executor
from nbvene.engine.lock import runs_model
from nbvene.engine.memory import Budget
from nbvene.errors import NbveneError
from nbvene.sites import Site, SiteMap
from nbvene.steer.vector import Vector

METHODS = ("mean_diff", "pca", "diff")


@runs_model
def vector(
    positive: str | Sequence[str],
    negative: str | Sequence[str],
    *,
    model: nn.Module,
    tokenizer,
    layer: int,
    site: str = "block_output",
    method: str = "mean_diff",
    normalize: bool = False,
    sites: SiteMap | dict | None = None,
    max_batch: int = 64,
    max_memory: int | str | None = None,
) -> Vector:
    """A steering vector at `site` and `layer` from contrasting prompts.

    >>> v = nv.vector(["You are kind."], ["You are cruel."], model=model, tokenizer=tok, layer=12)

    * `mean_diff`: mean of the positive prompts' last-token activations minus the negatives'
      (contrastive activation addition);
    * `pca`: the first principal component of the paired differences (positive i minus
      negative i), signed and scaled to the mean difference's projection on it;
    * `diff`: two prompts of equal token length, one vector per position (activation
      addition); it is added at positions 0..k-1 of the steered prompt.

    `normalize=True` gives unit norm (each position's vector, for `diff`). The prompts run
    `max_batch` a forward pass (fewer if `max_memory` says so; halved on out-of-memory).
    """
    if method not in METHODS:
        raise NbveneError(f"unknown method {method!r}", hint="methods: " + ", ".join(METHODS))
    sitemap = sites if isinstance(sites, SiteMap) else SiteMap(model, sites)
    where = steered_site(sitemap, site, layer)
    pos = [positive] if isinstance(positive, str) else list(positive)
    neg = [negative] if isinstance(negative, str) else list(negative)
    if not pos or not neg:
        raise NbveneError("a steering vector needs positive and negative prompts")
    plus_prompts = [_fitting(model, tokenizer, p) for p in pos]
    minus_prompts = [_fitting(model, tokenizer, n) for n in neg]
    longest = max(len(p) for p in plus_prompts + minus_prompts)
    budget = Budget.within(max_batch, max_memory, model, longest)
    if method == "diff":
        values = _aligned_difference(model, where, pos, neg, plus_prompts, minus_prompts, budget)
    else:
        plus = last_token_units(model, plus_prompts, where, budget)
        minus = last_token_units(model, minus_prompts, where, budget)
        values = _principal(plus, minus) if method == "pca" else plus.mean(0) - minus.mean(0)
    config = getattr(model, "config", None)
    made = Vector(
        values.float().cpu(),
        site,
        where.layer,
        getattr(config, "_name_or_path", None) or type(model).__name__,
        {
            "method": method,
            "positive": pos,
            "negative": neg,
            "position": "aligned" if method == "diff" else "last",
            "normalized": False,
            "norm": float(values.float().norm(dim=-1).mean()),
        },
    )
    return made.normalized() if normalize else made


def units(
    model: nn.Module, prompts: list[Prompt], site: Site, budget: Budget | None = None
) -> torch.Tensor:
    """The site's units for right-padded prompts (the pad id is never read): (prompts, tokens,
    d), in the budget's chunks of prompts; each pass stops after the site's block."""
    with torch.no_grad():
        _, stored = Executor(model).stored(
            prompts, {site}, "steering vector's run", budget=budget or Budget()
        )
    return stored[site].float()


def last_token_units(
    model: nn.Module, prompts: list[Prompt], site: Site, budget: Budget | None = None
) -> torch.Tensor:
    """(prompts, d): each prompt's units at its last token."""
    found = units(model, prompts, site, budget)
    last = torch.tensor([len(p) - 1 for p in prompts], device=found.device)
    return found[torch.arange(len(prompts), device=found.device), last]


def _fitting(model: nn.Module, tokenizer, text: str) -> Prompt:
    """A prompt of the vector, tokenised and checked to fit the model's context window."""
    prompt = tokenize(tokenizer, text)
    window = limits.context(model)
    if window is not None and len(prompt) > window:
        raise NbveneError(
            f"the prompt {text[:40]!r}… has {len(prompt)} tokens, and the model takes at most "
            f"{window}",
            hint="shorten the prompts the vector is made from",
        )
    return prompt


def _aligned_difference(
    model, site: Site, pos: list[str], neg: list[str], plus_prompts, minus_prompts, budget: Budget
):
    if len(pos) != 1 or len(neg) != 1:
        raise NbveneError("diff takes two prompts: one positive, one negative")
    plus, minus = plus_prompts[0], minus_prompts[0]
    if len(plus) != len(minus):
        raise NbveneError(
            f"diff: {pos[0]!r} is {len(plus)} tokens and {neg[0]!r} is {len(minus)}: they are "
            "subtracted position by position",
            hint=f"make them the same length in tokens: {list(plus.tokens)} vs "
            f"{list(minus.tokens)} (or use mean_diff of their last tokens)",
        )
    both = units(model, [plus, minus], site, budget)
    return both[0] - both[1]


def _principal(plus: torch.Tensor, minus: torch.Tensor) -> torch.Tensor:
    if len(plus) != len(minus) or len(plus) < 2:
        raise NbveneError(
            f"pca needs pairs: as many positive as negative prompts, at least 2 "
            f"(got {len(plus)} and {len(minus)})",
            hint="pair each positive prompt with its negative one, or use mean_diff",
        )
    differences = plus - minus
    # the first right singular vector of the uncentred differences: the direction that carries
    # most of the pairs' differences (RepE's PCA on paired differences)
    direction = torch.linalg.svd(differences, full_matrices=False).Vh[0]
    projection = differences @ direction
    if projection.mean() < 0:
        direction, projection = -direction, -projection
    return direction * projection.mean()
