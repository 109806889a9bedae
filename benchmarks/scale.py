"""A 1.1 B-parameter model on the CPU: a causal trace of every layer and position with
`max_memory="auto"`, and the memory it takes besides the model's own.

The model is Llama-shaped with TinyLlama-1.1B's config (22 layers, hidden 2048, intermediate
5632, 32 query and 4 key/value heads, vocabulary 32000), randomly initialised: nothing is
downloaded. The prompt is 20 tokens of the tiny models' tokenizer (whose ids all lie inside the
vocabulary; it finds the subject's positions); the metric is p(token 42).

    .venv/bin/python benchmarks/scale.py               # the full model (minutes on 2 cores)
    .venv/bin/python benchmarks/scale.py --layers 4    # a shallower one, same width

It prints the model's size, the rows a pass `max_memory="auto"` chose, the time, and the peak
resident memory (VmHWM), and exits with status 1 if that peak is 2.5 × the model's size or more.
"""

from __future__ import annotations

import argparse
import os
import platform
import sys
import time

import torch
import transformers

import nbvene as nv
from nbvene.engine.memory import free_memory, rows_within

LIMIT = 2.5  # peak RSS over the model's own size
PROMPT = "The Eiffel Tower is in the city of Paris , and the Colosseum is in the city of"
SUBJECT = "Eiffel Tower"
TOKENS = 20


def tinyllama(layers: int, dtype: torch.dtype) -> torch.nn.Module:
    """TinyLlama-1.1B's architecture with random weights, made in `dtype` straight away (no
    float32 copy first), in evaluation mode."""
    config = transformers.LlamaConfig(
        vocab_size=32000,
        hidden_size=2048,
        intermediate_size=5632,
        num_hidden_layers=layers,
        num_attention_heads=32,
        num_key_value_heads=4,
        max_position_embeddings=2048,
        rms_norm_eps=1e-5,
        tie_word_embeddings=False,
    )
    previous = torch.get_default_dtype()
    torch.set_default_dtype(dtype)
    try:
        torch.manual_seed(0)
        model = transformers.LlamaForCausalLM(config)
    finally:
        torch.set_default_dtype(previous)
    return model.eval()


def prompt_ids(tokenizer) -> torch.Tensor:
    """The prompt's first `TOKENS` token ids."""
    ids = tokenizer(PROMPT)["input_ids"]
    if len(ids) < TOKENS:
        raise SystemExit(f"the prompt has {len(ids)} tokens, fewer than {TOKENS}")
    return ids[:TOKENS]


def peak_rss() -> int:
    """The process's peak resident set (VmHWM), in bytes."""
    with open("/proc/self/status") as status:
        for line in status:
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) * 1024
    raise SystemExit("no VmHWM in /proc/self/status (Linux only)")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--layers", type=int, default=22, help="decoder layers (TinyLlama: 22)")
    parser.add_argument("--dtype", choices=["float32", "bfloat16"], default="float32")
    args = parser.parse_args(argv)

    _, tokenizer = nv.models.tiny("llama")
    ids = prompt_ids(tokenizer)
    prompt = tokenizer.decode(ids)
    started = time.perf_counter()
    model = tinyllama(args.layers, getattr(torch, args.dtype))
    built = time.perf_counter() - started
    size = sum(p.numel() * p.element_size() for p in model.parameters())
    parameters = sum(p.numel() for p in model.parameters())
    spec = f"""
base:    "{prompt}"
corrupt: noise 3σ on "{SUBJECT}"
restore: block_output layer=* pos=*
metric:  p(42)
"""
    plan = nv.plan(spec, model=model, tokenizer=tokenizer)
    rows = min(64, rows_within(plan, "auto"))
    free = free_memory(model)
    print(plan.describe(max_memory="auto"))

    started = time.perf_counter()
    result = nv.run(spec, model=model, tokenizer=tokenizer, max_memory="auto", progress=None)
    took = time.perf_counter() - started
    peak = peak_rss()

    assert result.values.shape == (args.layers, TOKENS), result.values.shape
    assert torch.isfinite(result.values).all()
    print()
    print(
        f"machine: {platform.machine()}, {os.cpu_count()} CPUs, torch {torch.__version__}, "
        f"{torch.get_num_threads()} threads, load average {os.getloadavg()[0]:.1f} at the end"
    )
    print(
        f"model: {parameters / 1e9:.2f} B parameters, {args.layers} layers, {args.dtype}, "
        f"{size / 2**30:.2f} GiB (built in {built:.0f} s)"
    )
    print(
        f"sweep: {args.layers} layers × {TOKENS} positions = {len(plan.rows)} restored runs, "
        f"max_memory=auto: {free} → {rows} rows a pass"
    )
    print(f"time: {took:.0f} s")
    print(
        f"peak RSS (VmHWM): {peak / 2**30:.2f} GiB = {peak / size:.2f} × the model's size "
        f"(limit {LIMIT} ×)"
    )
    return 0 if peak < LIMIT * size else 1


if __name__ == "__main__":
    sys.exit(main())
