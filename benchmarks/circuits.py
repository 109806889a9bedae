"""Circuit discovery on SmolLM2-135M: the time of EAP, EAP-IG and the ACDC pass for one fixed
IOI prompt set, and of exact patching of the best edges (one edge ablated at a time) for the
ratio; with the machine and its load, since a shared machine's times vary. ACDC runs over the
`--acdc-edges` best EAP edges (the rest removed from the start): over all ~70,000 edges of
SmolLM2 it is hours on a CPU.

    .venv/bin/python benchmarks/circuits.py [--prompts 4] [--steps 5] [--exact 200]
                                            [--acdc-edges 200] [--tau 0.02] [--no-discover]

The prompts: "When{A} and{B} went to the store,{A} gave a bottle to" (clean) against the same
with{B} as the second subject (corrupted), metric logit_diff({B}, {A}) per prompt. Exact
patching runs the edge-patched forward with each of the `--exact` best EAP edges removed,
batched as the curve is; its time is scaled to every edge for the ratio, and its values give
the rank correlation of EAP's scores with the exact effects on those edges.
"""

from __future__ import annotations

import argparse
import os
import platform
import time

import torch

import nbvene as nv
from nbvene.bind.circuit import resolve_discovery
from nbvene.circuits.acdc import acdc
from nbvene.circuits.eap import edge_scores
from nbvene.circuits.edges import graph_of, layout_of
from nbvene.circuits.forward import (
    check_pair,
    inputs,
    patched_metric,
    positions,
    reference_outputs,
    valid,
)

PAIRS = [
    (" John", " Mary"),
    (" Tom", " Anna"),
    (" James", " Sarah"),
    (" David", " Emma"),
    (" Paul", " Lisa"),
    (" Mark", " Kate"),
    (" Peter", " Alice"),
    (" Mike", " Laura"),
]
SPEC = """base:     {clean}
source:   {corrupted}
discover: circuit by {how}
metric:   logit_diff({correct}, {wrong})"""


def names(count: int) -> dict:
    pairs = PAIRS[:count]
    return {
        "clean": [f"When{a} and{b} went to the store,{a} gave a bottle to" for a, b in pairs],
        "corrupted": [f"When{a} and{b} went to the store,{b} gave a bottle to" for a, b in pairs],
        "correct": [b for _, b in pairs],
        "wrong": [a for a, _ in pairs],
    }


def quiet(done: int, total: int) -> None:
    """No progress bar."""


def machine() -> str:
    load = " ".join(f"{x:.1f}" for x in os.getloadavg())
    return (
        f"{platform.system()} {platform.machine()}, {os.cpu_count()} cores, "
        f"torch {torch.__version__} ({torch.get_num_threads()} threads), "
        f"nbvene {nv.__version__}, load average {load}"
    )


def exact_patching(model, tok, namespace: dict, edges, scores, eap_s: float, count: int) -> None:
    """Patch each of the `count` best EAP edges alone, exactly (every other edge kept), batched
    as the curve is: its time, scaled to every edge, and how EAP's estimate ranks them."""
    metric = resolve_discovery(nv.parse(SPEC.replace("{how}", "eap")), model, tok, namespace).metric
    layout = layout_of(model)
    clean, corrupted = check_pair(
        inputs(tok, namespace["clean"]), inputs(tok, namespace["corrupted"])
    )
    order = scores.abs().argsort(descending=True)[:count].tolist()
    start = time.perf_counter()
    reference = reference_outputs(model, layout, clean, corrupted, "corrupted")
    # variant 0 removes nothing (the full model); variant k + 1 removes the k-th edge alone
    removed = torch.zeros((len(order) + 1, *valid(layout).shape), dtype=torch.bool)
    r, s = positions(layout, [edges[i] for i in order])
    removed[torch.arange(1, len(order) + 1), r, s] = True
    full, *patched = patched_metric(model, layout, clean, reference, metric, removed).tolist()
    seconds = time.perf_counter() - start
    scaled = seconds * len(edges) / len(order)
    exact = torch.tensor(patched) - full
    rho = spearman(exact, scores[order])
    print(
        f"exact patching of the {len(order)} best EAP edges: {seconds:.1f}s; every edge at that "
        f"rate {scaled / 60:.1f} min = {scaled / eap_s:.0f}× EAP's "
        f"scoring; Spearman(EAP, exact) on them {rho:.3f}"
    )


def spearman(a: torch.Tensor, b: torch.Tensor) -> float:
    """Spearman's rank correlation (ties ranked by order, as argsort does)."""
    ra, rb = (x.flatten().argsort().argsort().double() for x in (a, b))
    ra, rb = ra - ra.mean(), rb - rb.mean()
    return float((ra * rb).sum() / (ra.norm() * rb.norm()))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--prompts", type=int, default=4)
    parser.add_argument("--steps", type=int, default=5, help="EAP-IG's steps (0: none)")
    parser.add_argument("--exact", type=int, default=200, help="edges patched exactly (0: none)")
    parser.add_argument(
        "--acdc-edges", type=int, default=200, help="ACDC's candidates: the best EAP edges"
    )
    parser.add_argument("--tau", type=float, default=0.02)
    parser.add_argument(
        "--no-discover", dest="discover", action="store_false", help="skip the whole nv.discover"
    )
    args = parser.parse_args()
    print("machine at the start:", machine())
    model, tok = nv.models.load()
    namespace = names(args.prompts)
    spec = nv.parse(SPEC.replace("{how}", "eap"))
    metric = resolve_discovery(spec, model, tok, namespace).metric
    clean, corrupted = inputs(tok, namespace["clean"]), inputs(tok, namespace["corrupted"])

    edge_scores(model, clean, corrupted, metric)  # warm-up: the first pass pays for allocation
    start = time.perf_counter()
    scores = edge_scores(model, clean, corrupted, metric)
    eap_s = time.perf_counter() - start
    edges = graph_of(model)
    print(f"prompts: {args.prompts}, edges: {len(edges)}")
    print(f"EAP scores                       {eap_s:8.1f}s")
    if args.discover:
        start = time.perf_counter()
        circ = nv.discover(
            SPEC.replace("{how}", "eap top=200"),
            model=model,
            tokenizer=tok,
            namespace=namespace,
            progress=quiet,
        )
        print(
            f"nv.discover by eap top=200       {time.perf_counter() - start:8.1f}s  (scores, "
            f"curve over {len(circ.curve)} sizes; faithfulness {circ.faithfulness:.3f})"
        )

    if args.steps:
        start = time.perf_counter()
        ig = edge_scores(model, clean, corrupted, metric, method="eap-ig", steps=args.steps)
        ig_s = time.perf_counter() - start
        rho = spearman(ig, scores)
        print(
            f"EAP-IG scores, steps={args.steps}        {ig_s:8.1f}s  (Spearman with EAP {rho:.3f})"
        )

    if args.acdc_edges:
        best = scores.abs().argsort(descending=True)[: args.acdc_edges].tolist()
        candidates = [edges[i] for i in best]
        start = time.perf_counter()
        kept, _ = acdc(model, clean, corrupted, metric, tau=args.tau, edges=candidates)
        acdc_s = time.perf_counter() - start
        print(
            f"ACDC over the {len(candidates)} best EAP edges, tau={args.tau}: {acdc_s:8.1f}s "
            f"(kept {len(kept)})"
        )
    if args.exact:
        exact_patching(model, tok, namespace, edges, scores, eap_s, args.exact)
    print("machine at the end:  ", machine())


if __name__ == "__main__":
    main()
