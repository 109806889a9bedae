"""Gradient checkpointing in `nv.train`: peak memory and time of training steps with long
prompts, with and without `checkpoint=True`, and the losses of both (which must agree).

    .venv/bin/python benchmarks/checkpoint.py [--length 1024] [--layers 8] [--steps 3]

A Llama-style model built from a config (random weights, no download): hidden size 256, MLP
1024, 8 heads (4 key/value heads). DAS (`low_rank_rotated(k=4)`) at layer 0, last position, so
every block lies on the gradient's path; batches of 8 prompts of `--length` random tokens.
Peak MiB is the resident-set high-water mark (VmHWM, reset with /proc/self/clear_refs before
the run) minus the resident size at its start: what training allocates on top of the model
and the inputs. Linux only.
"""

from __future__ import annotations

import argparse
import ctypes
import gc
import re
import time

import torch

import nbvene as nv


def status(key: str) -> int:
    with open("/proc/self/status") as f:
        return int(re.search(rf"^{key}:\s+(\d+) kB", f.read(), re.M).group(1))


def measured(fn):
    """fn()'s result, seconds, and peak MiB above the resident size at the start."""
    gc.collect()
    ctypes.CDLL("libc.so.6").malloc_trim(0)
    with open("/proc/self/clear_refs", "w") as f:
        f.write("5")
    before = status("VmRSS")
    start = time.perf_counter()
    value = fn()
    return value, time.perf_counter() - start, (status("VmHWM") - before) / 1024


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--length", type=int, default=1024)
    parser.add_argument("--layers", type=int, default=8)
    parser.add_argument("--steps", type=int, default=3)
    args = parser.parse_args()
    model, _ = nv.models.tiny(
        "llama",
        layers=args.layers,
        hidden_size=256,
        intermediate_size=1024,
        num_attention_heads=8,
        num_key_value_heads=4,
        max_position_embeddings=args.length,
    )
    g = torch.Generator().manual_seed(0)
    n = 8 * args.steps
    values = {
        "base": torch.randint(4, 1000, (n, args.length), generator=g),
        "source": torch.randint(4, 1000, (n, args.length), generator=g),
        "label": torch.randint(0, 1000, (n,), generator=g),
    }
    spec = """
    base:   {base}
    source: {source}
    patch:  block_output layer=0 pos=-1 via low_rank_rotated(k=4)
    label:  {label}
    """
    print(
        f"torch {torch.__version__}, {torch.get_num_threads()} threads; {args.layers} layers, "
        f"{args.steps} steps of 8 prompts × {args.length} tokens"
    )
    print("| checkpoint | s | peak MiB | losses |\n| --- | ---: | ---: | --- |")
    losses = {}
    for checkpoint in (False, True):

        def fit(checkpoint=checkpoint):
            return nv.train(
                spec,
                model=model,
                namespace=values,
                epochs=1,
                batch_size=8,
                held_out=None,
                progress=False,
                checkpoint=checkpoint,
            )

        trained, seconds, peak = measured(fit)
        losses[checkpoint] = trained.history[0]["loss"]
        print(f"| {checkpoint} | {seconds:.1f} | {peak:.0f} | {losses[checkpoint]:.6f} |")
    assert abs(losses[True] - losses[False]) < 1e-4, losses


if __name__ == "__main__":
    main()
