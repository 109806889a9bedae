"""Mutated specs for the fuzz test: seeds are the spec strings of docs/spec.md and
docs/steering.md, mutated by token: deleted, duplicated, replaced by hostile pieces."""

from __future__ import annotations

import ast
import re
import textwrap
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parents[2]
BASE = "The Colosseum is located in the city of"
SOURCE = "The Eiffel Tower is located in the city of"
_ENTRIES = ("run", "plan", "generate")


def seeds() -> list[tuple[str, str]]:
    """(entry, spec) for every spec string handed to nv.run/plan/generate in the docs."""
    found = []
    for path in ("docs/spec.md", "docs/steering.md"):
        text = (ROOT / path).read_text(encoding="utf-8")
        for code in re.findall(r"```python\n(.*?)```", text, flags=re.S):
            try:
                tree = ast.parse(textwrap.dedent(code))
            except SyntaxError:
                continue
            for call in ast.walk(tree):
                entry = _entry(call)
                if entry and call.args and (spec := _literal(call.args[0])) is not None:
                    found.append((entry, textwrap.dedent(spec).strip()))
    return sorted(set(found))


def _entry(node: ast.AST) -> str | None:
    if isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute):
        return node.func.attr if node.func.attr in _ENTRIES else None
    return None


def _literal(node: ast.AST) -> str | None:
    """A string or f-string, with {BASE} and {SOURCE} filled in."""
    if isinstance(node, ast.Constant) and isinstance(node.value, str):
        return node.value
    if not isinstance(node, ast.JoinedStr):
        return None
    parts = []
    for value in node.values:
        if isinstance(value, ast.Constant):
            parts.append(value.value)
        else:
            name = ast.unparse(value.value)
            parts.append({"BASE": BASE, "SOURCE": SOURCE}.get(name, "x"))
    return "".join(parts)


TOKEN = re.compile(r'"(?:[^"\\]|\\.)*"|->|\.\.|-?\d+(?:\.\d+)?|[A-Za-z_]\w*|\s+|.', re.S)

HOSTILE = (
    "\t",
    "\x00",
    "\x07",
    "\r",
    "\n",
    "\\",
    "\\u",
    "\\ud800",
    "\ud800",
    "é",
    "σ",
    "☃",
    "𝔸",
    "\u200b",
    '"',
    "{",
    "}",
    "[",
    "]",
    "(",
    ")",
    ",",
    "=",
    ":",
    "*",
    "..",
    "->",
    "#",
    "0",
    "-1",
    "-5",
    "1000",
    "999",
    "10" * 3,
    "1" + "0" * 26,
    "9" * 400,
    "-" + "9" * 400,
    "1e9",
    "0.5",
    "-0.0",
    "nan",
    "inf",
    "last",
    "prompt",
    "generated",
    "from s1",
    "into s1",
    "samples=",
    "seed=",
    "layer=",
    "pos=",
    "head=",
    "window=",
    "over=",
    "by",
    "via",
    "step",
    "max_new_tokens=",
    "temperature=",
    "stop=",
    "normalized",
    "{ids}",
    "{floats}",
    "{none}",
    "{wide}",
    "{bad_f}",
    "{fails}",
    "{one}",
    "{prompts}",
    "{big}",
    "{neg}",
    "{nested}",
    '"' + "word " * 300 + '"',
    "slider(",
    "mean_diff(",
    "rotated(",
    "interchange(",
)

NAMESPACE_NAMES = (
    "prompt",
    "ids",
    "steer",
    "reference",
    "layer",
    "where",
    "halfway",
    "scale",
    "base",
    "dims",
    "john",
    "mary",
    "prompts",
    "subject",
    "kind",
    "cruel",
    "v",
    "vector",
    "love",
    "hate",
)


def namespace(width: int = 64) -> dict:
    """Values the doc examples name, and hostile ones under the same and other names."""
    good = ["Rome is a city", "Paris is a city", "I love Paris"]
    return {
        "prompt": SOURCE,
        "prompts": [BASE, SOURCE],
        "ids": torch.tensor([[1, 2, 3], [4, 5, 6]]),
        "steer": torch.randn(width),
        "v": torch.randn(width),
        "vector": torch.randn(width),
        "reference": good,
        "kind": good,
        "cruel": ["I hate you", "You are awful", "Go away"],
        "love": good,
        "hate": ["I hate you"],
        "layer": 1,
        "where": [1, 2, 3, 4],
        "halfway": lambda base, source: (base + source) / 2,
        "scale": lambda base, source: base * 0.5,
        "base": [BASE, SOURCE],
        "dims": [[0, 3], [7]],
        "john": BASE,
        "mary": SOURCE,
        "subject": [[1, 2, 3, 4], [0, 1]],
        "floats": torch.randn(2, 5),
        "none": None,
        "wide": torch.randn(width + 1),
        "bad_f": lambda base, source: None,
        "fails": lambda base, source: 1 / 0,
        "one": torch.randn(1),
        "big": torch.tensor([10**6]),
        "neg": torch.tensor([-5, 3]),
        "nested": [[[1]]],
    }


def mutate(text: str, edits: list[tuple[int, int, int]]) -> str:
    """Apply (kind, where, what) edits to the spec's tokens."""
    tokens = TOKEN.findall(text)
    for kind, where, what in edits:
        if not tokens:
            tokens = [HOSTILE[what % len(HOSTILE)]]
            continue
        i = where % len(tokens)
        if kind == 0:
            del tokens[i]
        elif kind == 1:
            tokens.insert(i, tokens[i])
        elif kind == 2:
            tokens[i] = HOSTILE[what % len(HOSTILE)]
        elif kind == 3:
            tokens.insert(i, HOSTILE[what % len(HOSTILE)])
        elif kind == 4 and tokens[i].startswith('"'):
            tokens[i] = tokens[i][:-1] + HOSTILE[what % len(HOSTILE)] + '"'
        elif kind == 5:
            tokens[i] = "{" + NAMESPACE_NAMES[what % len(NAMESPACE_NAMES)] + "}"
        elif kind == 6:  # a number of the spec becomes a hostile one
            numbers = [k for k, t in enumerate(tokens) if t[-1:].isdigit()]
            if numbers:
                tokens[numbers[where % len(numbers)]] = NUMBERS[what % len(NUMBERS)]
        elif kind == 7:  # a line gains an option, a hostile one as often as not
            lines = "".join(tokens).split("\n")
            k = where % len(lines)
            lines[k] += " " + OPTIONS[what % len(OPTIONS)]
            tokens = TOKEN.findall("\n".join(lines))
        elif kind == 8:  # a line is swapped for one of another example
            lines = "".join(tokens).split("\n")
            lines[where % len(lines)] = LINES[what % len(LINES)]
            tokens = TOKEN.findall("\n".join(lines))
    return "".join(tokens)


OPTIONS = (
    "samples=100000000000",
    "samples=3",
    "seed=-1",
    "seed=" + "9" * 30,
    "pos=0->1",
    "pos=last->last",
    "pos=-1..100000000000000",
    "layer=-1..1000000000000",
    "head=*",
    "head=-1..99999999999",
    "from s1",
    "into s1",
    "via {bad_f}",
    "via {fails}",
    "via {wide}",
    "by {wide}",
    "by {one}",
    "by {ids}",
    "by {none}",
    "window=100000000000",
    "over={ids}",
    "over={floats}",
    "pos={big}",
    "pos={nested}",
    "pos={none}",
    "layer={big}",
    "layer={none}",
    "max_new_tokens=100000000",
    "max_new_tokens=120",
    "temperature=1e300",
    'stop=""',
    "pos=generated",
    "pos=prompt",
    "normalized",
    "* 0..1000000000 step 0.000001",
    "* slider(-1e300, 1e300, 0)",
    "* [1e29, -1e29]",
    "by mean_diff({ids}, {floats})",
)

LINES = (
    "base: {ids}",
    "base: {floats}",
    "base: {big}",
    "base: {neg}",
    "base: {nested}",
    "base: {none}",
    "base: {one}",
    'base: "' + "word " * 200 + '"',
    'base: "a\tb\x00"',
    'base: "\ud800"',
    "source: {ids}",
    "source: {floats}",
    'source: "x"',
    "source: {prompts}",
    'source s1: "The Eiffel Tower is located in the city of"',
    "corrupt: noise 3 on {ids}",
    'corrupt: noise 1e29σ on "Eiffel"',
    'corrupt: noise -3 on "The"',
    "metric: p(1000)",
    "metric: p(-1)",
    "metric: p(999)",
    "metric: logit_diff(0, 99999)",
    "metric: kl",
    "metric: p(3) normalized",
    "collect: block_output layer=0 pos=0->1",
    "zero: block_output layer=0 pos=last->last",
    "zero: block_output layer=-1..1000000000000",
    "add: block_output layer=0 by {wide}",
    "add: block_output layer=0 by {one} * 1e29",
    "patch: block_output layer=0 from s1",
    "patch: block_output layer=0 pos=-1 via {bad_f}",
    "patch: block_output layer=0 via {fails}",
    "mean: mlp_output layer=0 over={ids}",
    "steer: block_output layer=0 by {wide}",
    "steer: block_output layer=0 by {ids}",
    "generate: max_new_tokens=100000000",
    'generate: "' + "word " * 200 + '"',
    "estimate: attribution",
    "label: {none}",
    "label: {prompts}",
)
"""Whole lines, hostile and not, that a mutated spec may take in place of one of its own."""

NUMBERS = (
    "0",
    "-1",
    "-5",
    "1000",
    "999",
    "128",
    "127",
    "-128",
    "3.5",
    "1" + "0" * 26,
    "9" * 400,
    "-" + "9" * 400,
    "100000000000",
    "2",
    "64",
    "65",
)
EDITS = 9
"""How many kinds of edit `mutate` knows."""


TRAIN = """base:   {base}
source: {source}
patch:  block_output layer=1 pos=-1 via low_rank_rotated(k=8)
label:  {label}"""
"""The language-model example of docs/training.md, seed of the nv.train fuzz."""

NAMES = [" Paris", " Rome", " Mary", " John"]


def train_namespace() -> dict:
    return {
        **namespace(),
        "base": [f"I think of{n} and" for n in NAMES],
        "source": [f"I think of{n} and" for n in reversed(NAMES)],
        "label": list(reversed(NAMES)),
    }


def attempt(entry: str, text: str, model, tok, **options):
    """Hand the spec to nv.run / nv.plan / nv.generate / nv.train; the error it raised, or
    None."""
    import nbvene as nv

    call = {"run": nv.run, "plan": nv.plan, "generate": nv.generate, "train": nv.train}[entry]
    values = train_namespace() if entry == "train" else namespace()
    if entry == "generate":
        options = {}
    if entry == "train":
        options = {"epochs": 1, "batch_size": 4, "held_out": None, "progress": False}
    try:
        call(text, model=model, tokenizer=tok, namespace=values, **options)
    except Exception as e:  # the caller sorts the errors
        return e
    return None


if __name__ == "__main__":  # python tests/hardening/fuzz.py N: count errors by cause
    import collections
    import random
    import signal
    import sys
    import traceback

    import nbvene as nv

    def too_slow(*_):
        raise TimeoutError("more than 5 s")

    signal.signal(signal.SIGALRM, too_slow)
    torch.set_num_threads(1)
    rng = random.Random(0)
    models = {"gpt2": nv.models.tiny("gpt2"), "llama": nv.models.tiny("llama")}
    found = seeds()
    causes, bad = collections.Counter(), 0
    n = int(sys.argv[1]) if len(sys.argv) > 1 else 500
    for _ in range(n):
        entry, seed = found[rng.randrange(len(found))]
        edits = [
            (rng.randrange(6), rng.randrange(999), rng.randrange(999))
            for _ in range(rng.randrange(1, 4))
        ]
        text = mutate(seed, edits)
        model, tok = models[rng.choice(["gpt2", "llama"])]
        e = (
            attempt(entry, text, model, tok, max_cells=100_000)
            if False
            else attempt(entry, text, model, tok)
        )
        if e is not None and not isinstance(e, nv.NbveneError):
            bad += 1
            tb = traceback.extract_tb(e.__traceback__)[-1]
            key = f"{type(e).__name__} at {Path(tb.filename).name}:{tb.lineno}"
            if key not in causes:
                print(key, entry, repr(text)[:300], "\n   ", str(e)[:200], flush=True)
            causes[key] += 1
    print(f"{bad} of {n} specs raised a non-NbveneError; {len(causes)} causes")
