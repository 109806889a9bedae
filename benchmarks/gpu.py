"""nbvene on a GPU, in one go: a causal trace, a steering generation and a DAS training step on
`cuda` in float32 and bfloat16, each compared with the same run on the CPU in float32 (max
|diff|) and timed against plain torch hooks (and pyvene, for the trace).

    .venv/bin/python benchmarks/gpu.py                       # tiny GPT-2 (random), ~1 minute
    .venv/bin/python benchmarks/gpu.py --workload smollm2    # SmolLM2-135M (nv.models.load)
    .venv/bin/python benchmarks/gpu.py --out table.md        # also write the table to a file

It prints one Markdown table in the format of benchmarks/RESULTS.md, headed by the card's name;
record it there. Without a CUDA device it says so and exits with status 2 (`--device cpu`
runs the same comparisons on the CPU, to check the script itself).
"""

from __future__ import annotations

import argparse
import copy
import dataclasses
import sys
import time
from collections.abc import Callable

import torch
import transformers
from causal_trace import (
    WORKLOADS,
    Workload,
    block_outputs,
    max_diff,
    pyvene,
    run_hooks,
    run_nbvene,
    run_pyvene_packed,
)

import nbvene as nv

DTYPES = {"float32": torch.float32, "bfloat16": torch.bfloat16}
KIND = ["I love this, it is wonderful and kind.", "You are a good friend to me."]
CRUEL = ["I hate this, it is awful and cruel.", "You are a bad friend to me."]
STEER = """
steer:    block_output layer={layer} by {{v}} * 4
generate: "I think that you are" max_new_tokens=10
metric:   p(" Paris")
"""
DAS = """
base:   {base}
source: {source}
patch:  block_output layer={layer} pos=-1 via rotated(k=1)
label:  {label}
"""


@dataclasses.dataclass
class Row:
    """One task on one device and dtype: its time, its largest difference from the CPU
    float32 run, and the baselines' times."""

    task: str
    device: str
    dtype: str
    seconds: float
    diff: float
    hooks: float | None = None
    pyvene: float | None = None
    note: str = ""


def moved(w: Workload, device: torch.device, dtype: torch.dtype) -> Workload:
    """A copy of the workload with its model (and token ids) on `device` in `dtype`."""
    path = next(name for name, m in w.model.named_modules() if m is w.blocks)
    model = copy.deepcopy(w.model).to(device=device, dtype=dtype).eval()
    return dataclasses.replace(
        w,
        model=model,
        blocks=model.get_submodule(path),
        base_ids=w.base_ids.to(device),
        source_ids=w.source_ids.to(device),
    )


def timed(run: Callable[[], object], device: torch.device) -> tuple[object, float]:
    """`run()` and its wall time, the device's queue drained before and after."""
    sync = torch.cuda.synchronize if device.type == "cuda" else (lambda: None)
    sync()
    start = time.perf_counter()
    out = run()
    sync()
    return out, time.perf_counter() - start


def best(run: Callable[[], object], device: torch.device, repeats: int) -> tuple[object, float]:
    """The fastest of `repeats` runs (after one untimed warm-up: kernels, caches)."""
    run()
    outs = [timed(run, device) for _ in range(repeats)]
    return outs[-1][0], min(seconds for _, seconds in outs)


# --- the tasks: each returns the values compared across devices ------------------------------


def trace(w: Workload, max_batch: int) -> torch.Tensor:
    """The causal trace of benchmarks/causal_trace.py: p(target), (layers, positions)."""
    with torch.no_grad():
        return run_nbvene(w, max_batch).float().cpu()


def steering(w: Workload, layer: int) -> tuple[torch.Tensor, list[list[int]]]:
    """A steering vector from contrasting prompts (made on the workload's device and dtype) and
    a generation steered by it: every row's first next-token probabilities, and the greedy
    tokens."""
    return steered(
        w, layer, nv.vector(KIND, CRUEL, layer=layer, model=w.model, tokenizer=w.tokenizer)
    )


def steered(w: Workload, layer: int, vector) -> tuple[torch.Tensor, list[list[int]]]:
    """The generation steered by `vector` (its baseline row and its steered row), as timed."""
    kwargs = dict(model=w.model, tokenizer=w.tokenizer)
    gen = nv.generate(STEER.format(layer=layer), namespace={"v": vector}, **kwargs)
    return gen.logits.float().softmax(-1).cpu(), gen.ids


def steering_hooks(w: Workload, layer: int, vector: torch.Tensor) -> list[int]:
    """The same steered generation by hand: a forward hook adding the vector at the block's
    output, and `generate`."""
    v = vector.to(w.base_ids.device, next(w.model.parameters()).dtype)

    def add(module, args, output):
        if isinstance(output, tuple):
            return (output[0] + 4 * v, *output[1:])
        return output + 4 * v

    handle = w.blocks[layer].register_forward_hook(add)
    try:
        ids = w.tokenizer("I think that you are", return_tensors="pt")["input_ids"]
        with torch.no_grad():
            out = w.model.generate(
                ids.to(w.base_ids.device), max_new_tokens=10, do_sample=False, pad_token_id=0
            )
    finally:
        handle.remove()
    return out[0, ids.shape[1] :].tolist()


def das_step(w: Workload, layer: int) -> float:
    """One epoch of one step of DAS (a rotation of rank 1) on 16 examples: its loss."""
    n = 16
    base = [f"The {word} is in the city of" for word in ["cat", "dog", "car", "house"] * 4]
    source = [f"The {word} is in the city of" for word in ["sun", "sea", "hat", "cup"] * 4]
    label = torch.randint(10, 900, (n,), generator=torch.Generator().manual_seed(0)).tolist()
    trained = nv.train(
        DAS.replace("{layer}", str(layer)),
        model=w.model,
        tokenizer=w.tokenizer,
        namespace={"base": base, "source": source, "label": label},
        epochs=1,
        batch_size=n,
        held_out=None,
        progress=False,
        seed=0,
    )
    return float(trained.history[-1]["loss"])


def das_hooks(w: Workload, layer: int) -> None:
    """The plain-torch cost of one such step: a rank-1 rotation applied by a hook at the last
    position, cross-entropy at the last position, backward and an Adam step."""
    hidden = w.model.config.hidden_size
    dtype = next(w.model.parameters()).dtype
    rotation = torch.nn.utils.parametrizations.orthogonal(
        torch.nn.Linear(hidden, 1, bias=False, device=w.base_ids.device)
    )
    optimizer = torch.optim.Adam(rotation.parameters(), lr=1e-3)
    ids = w.base_ids.expand(16, -1)
    source = block_outputs(w, w.source_ids)[layer, -1]

    def swap(module, args, output):
        h = output[0] if isinstance(output, tuple) else output
        r = rotation.weight.to(dtype)
        last = h[:, -1] + ((source - h[:, -1]) @ r.T) @ r
        h = torch.cat([h[:, :-1], last[:, None]], 1)
        return (h, *output[1:]) if isinstance(output, tuple) else h

    handle = w.blocks[layer].register_forward_hook(swap)
    try:
        logits = w.model(input_ids=ids, logits_to_keep=1, use_cache=False).logits[:, -1]
        labels = torch.zeros(16, dtype=torch.long, device=ids.device)
        torch.nn.functional.cross_entropy(logits.float(), labels).backward()
        optimizer.step()
    finally:
        handle.remove()


# --- the run ---------------------------------------------------------------------------------


def measure(w: Workload, device: torch.device, args: argparse.Namespace) -> list[Row]:
    """Every task on the CPU in float32 (the reference), then on `device` in each dtype; a task
    that fails gets a row saying why, and the others still run."""
    layer = w.layers // 2
    reference = moved(w, torch.device("cpu"), torch.float32)
    trace_cpu = trace(reference, args.max_batch)
    probs_cpu, ids_cpu = steering(reference, layer)
    loss_cpu = das_step(reference, layer)
    rows = []
    for name, dtype in DTYPES.items():
        on = moved(w, device, dtype)
        tasks = {
            "causal trace": lambda on=on: trace_row(on, device, args, trace_cpu),
            "steered generation": lambda on=on: steering_row(on, device, args, probs_cpu, ids_cpu),
            "DAS step": lambda on=on: das_row(on, device, args, loss_cpu),
        }
        for task, run in tasks.items():
            try:
                row = run()
            except Exception as error:  # reported in the table; the other tasks still run
                first = (str(error).strip().splitlines() or [type(error).__name__])[0][:120]
                row = Row(task, "", "", float("nan"), float("nan"), note=f"error: {first}")
            row.task, row.device, row.dtype = task, str(device), name
            rows.append(row)
        del on
        if device.type == "cuda":
            torch.cuda.empty_cache()
    return rows


def trace_row(on: Workload, device, args, reference: torch.Tensor) -> Row:
    values, seconds = best(lambda: trace(on, args.max_batch), device, args.repeats)
    with torch.no_grad():
        _, hooks = best(lambda: run_hooks(on, args.max_batch), device, args.repeats)
        packed = None
        if args.pyvene:
            _, packed = best(lambda: run_pyvene_packed(on, args.max_batch), device, args.repeats)
    return Row("", "", "", seconds, max_diff(values, reference), hooks, packed)


def steering_row(on: Workload, device, args, probs_cpu: torch.Tensor, ids_cpu) -> Row:
    layer = on.layers // 2
    vector = nv.vector(KIND, CRUEL, layer=layer, model=on.model, tokenizer=on.tokenizer)
    (probs, ids), seconds = best(lambda: steered(on, layer, vector), device, args.repeats)
    _, hooks = best(lambda: steering_hooks(on, layer, vector.values), device, args.repeats)
    same = "same greedy tokens" if ids == ids_cpu else "greedy tokens differ"
    return Row("", "", "", seconds, max_diff(probs, probs_cpu), hooks, note=same)


def das_row(on: Workload, device, args, loss_cpu: float) -> Row:
    layer = on.layers // 2
    loss, seconds = best(lambda: das_step(on, layer), device, args.repeats)
    _, hooks = best(lambda: das_hooks(on, layer), device, args.repeats)
    return Row("", "", "", seconds, abs(loss - loss_cpu), hooks, note="diff: the loss")


def table(rows: list[Row], w: Workload, card: str) -> str:
    """The figures as a RESULTS.md section."""
    lines = [
        f"### {card}: {w.name} ({type(w.model).__name__}, {w.layers} layers), `benchmarks/gpu.py`",
        "",
        "| task | device | dtype | nbvene s | plain hooks s | pyvene s | max \\|diff\\| vs CPU "
        "float32 | note |",
        "| --- | --- | --- | ---: | ---: | ---: | ---: | --- |",
    ]
    for r in rows:
        hooks = f"{r.hooks:.3f}" if r.hooks is not None else "n/a"
        pv = f"{r.pyvene:.3f}" if r.pyvene is not None else "n/a"
        lines.append(
            f"| {r.task} | {r.device} | {r.dtype} | {r.seconds:.3f} | {hooks} | {pv} | "
            f"{r.diff:.1e} | {r.note} |"
        )
    lines += [
        "",
        "Times: the fastest of the repeats after a warm-up, the device synchronised. The trace's "
        "diff is in probability; the generation's is in the first next-token probabilities of "
        "every row; the DAS step's is the loss. The generation makes 10 tokens for the baseline "
        "and the steered row (the hooks: the steered row only), the vector made before; the DAS "
        "step is `nv.train` for one step of 16 examples (the hooks: one forward, backward and Adam "
        "step of a rank-1 rotation).",
    ]
    return "\n".join(lines)


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--workload", choices=list(WORKLOADS), default="gpt2")
    parser.add_argument("--device", default="cuda", help="cuda (or cuda:N); cpu checks the script")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--max-batch", type=int, default=64, help="cells per forward pass")
    parser.add_argument("--no-pyvene", dest="pyvene", action="store_false")
    parser.add_argument("--out", help="also write the table to this file")
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    device = torch.device(args.device)
    if device.type == "cuda" and not torch.cuda.is_available():
        print(
            "benchmarks/gpu.py: no CUDA device here (torch "
            f"{torch.__version__}, torch.cuda.is_available() is False); run it on a machine "
            "with an NVIDIA GPU and a CUDA build of torch",
            file=sys.stderr,
        )
        return 2
    if args.pyvene:
        try:
            pyvene()
        except ImportError:
            print("pyvene is not installed: no pyvene column (pip install pyvene)")
            args.pyvene = False
    card = torch.cuda.get_device_name(device) if device.type == "cuda" else "CPU"
    print(
        f"{card}; torch {torch.__version__}, transformers {transformers.__version__}, "
        f"nbvene {nv.__version__}"
    )
    w = WORKLOADS[args.workload]()
    text = table(measure(w, device, args), w, card)
    print(text)
    if args.out:
        with open(args.out, "w") as out:
            out.write(text + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
