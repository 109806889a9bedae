"""Prompts as token ids, and the edge-patched forward pass every circuit method runs.

In the edge-patched forward each receiver reads its own copy of the residual stream:

    input_r = resid − Σ_{s ∉ C(r)} (out_s − ref_s)

where C(r) are the senders whose edges into r are kept, out_s is sender s's output in this
run and ref_s its output in the corrupted run (or its mean over the clean batch). A head's
query, key and value inputs are separate copies: the hook on each projection recomputes the
norm and the head's slice of the projection from the adjusted stream; an MLP's input is the
norm before it applied to its copy, and the logits read the final norm of theirs. Several
kept-sets run at once as copies of the batch ("variants"). Hooks are always removed and the
weights never change.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass

import torch
from torch import nn

from nbvene.circuits.edges import Layout, Port
from nbvene.circuits.graph import Edge
from nbvene.errors import NbveneError


@dataclass(frozen=True)
class Inputs:
    """A batch of prompts: token ids and attention mask [B, T], the position whose logits the
    metric reads in each row [B] (the last real token), and the texts when made from text."""

    ids: torch.Tensor
    mask: torch.Tensor
    read: torch.Tensor
    texts: tuple[str, ...] = ()

    @property
    def rows(self) -> int:
        return self.ids.shape[0]

    @classmethod
    def of(cls, ids: torch.Tensor, mask: torch.Tensor | None = None) -> Inputs:
        """Inputs from token ids (and a mask; all ones when None), read at each row's last
        real token."""
        ids = torch.as_tensor(ids).long()
        if ids.dim() == 1:
            ids = ids[None]
        mask = torch.ones_like(ids) if mask is None else torch.as_tensor(mask).long()
        positions = torch.arange(ids.shape[1]).expand_as(ids)
        read = torch.where(mask.bool(), positions, -1).max(dim=1).values
        return cls(ids, mask, read)


def inputs(tokenizer, texts: Sequence[str]) -> Inputs:
    """Tokenize `texts` into `Inputs`, padded on the right (so every prompt starts at
    position 0 and reads at its last token, whatever the tokenizer's padding side or
    whether it has a pad token)."""
    if isinstance(texts, str):
        texts = [texts]
    if not texts:
        raise NbveneError("circuit discovery needs at least one prompt")
    rows = [list(tokenizer(text)["input_ids"]) for text in texts]
    width = max(len(row) for row in rows)
    pad = getattr(tokenizer, "pad_token_id", None) or 0
    ids = torch.tensor([row + [pad] * (width - len(row)) for row in rows])
    mask = torch.tensor([[1] * len(row) + [0] * (width - len(row)) for row in rows])
    made = Inputs.of(ids, mask)
    return Inputs(made.ids, made.mask, made.read, tuple(texts))


def check_pair(clean: Inputs, corrupted: Inputs) -> tuple[Inputs, Inputs]:
    """`clean` and `corrupted` padded to one width; NbveneError unless they have as many rows
    and each pair as many tokens (the edge patch adds outputs position by position)."""
    if clean.rows != corrupted.rows:
        raise NbveneError(
            f"{clean.rows} clean prompts but {corrupted.rows} corrupted ones",
            hint="give one corrupted prompt per clean prompt",
        )
    lengths = clean.mask.sum(dim=1).tolist(), corrupted.mask.sum(dim=1).tolist()
    for row, (a, b) in enumerate(zip(*lengths, strict=True)):
        if a != b:
            raise NbveneError(
                f"clean and corrupted prompts of pair {row} differ in length "
                f"({a} and {b} tokens): {_name(clean, corrupted, row)}",
                hint="edges are patched position by position: make each corrupted prompt "
                "tokenize to as many tokens as its clean prompt",
            )
    width = max(clean.ids.shape[1], corrupted.ids.shape[1])
    return _padded(clean, width), _padded(corrupted, width)


def _padded(x: Inputs, width: int) -> Inputs:
    extra = width - x.ids.shape[1]
    if extra == 0:
        return x
    ids = torch.nn.functional.pad(x.ids, (0, extra), value=0)
    mask = torch.nn.functional.pad(x.mask, (0, extra), value=0)
    return Inputs(ids, mask, x.read, x.texts)


def _name(clean: Inputs, corrupted: Inputs, row: int) -> str:
    if clean.texts and corrupted.texts:
        return f"{clean.texts[row]!r} / {corrupted.texts[row]!r}"
    return f"row {row}"


ABLATIONS = ("corrupted", "mean")


class EdgeRun:
    """The hooks of one edge-patched forward pass over `variants` copies of a batch of `rows`.

    `reference` [S, rows, T, d]: each sender's output that an ablated edge carries instead
    (None: nothing is patched). `removed` [variants, R, S]: which edges are ablated in each
    copy. `probe`: add a zero leaf to every receiver's input, so the gradient of a loss with
    respect to `probes` is its gradient with respect to each receiver's input. `embed`
    [variants·rows, T, d]: replaces the embedding (the first block's input). `outputs`
    collects every sender's output [variants·rows, T, d], in the order of `layout.senders`
    (in a run that ablates, `deltas` holds their differences from the reference instead).
    """

    def __init__(
        self,
        model: nn.Module,
        layout: Layout,
        *,
        reference: torch.Tensor | None = None,
        removed: torch.Tensor | None = None,
        probe: bool = False,
        embed: torch.Tensor | None = None,
    ):
        self.model, self.layout = model, layout
        self.reference, self.removed, self.probe, self.embed = reference, removed, probe, embed
        self.outputs: list[torch.Tensor] = []
        self.deltas: torch.Tensor | None = None
        self.recorded = 0
        self.probes: list[torch.Tensor] = []
        self.resid: torch.Tensor | None = None
        self.handles: list = []

    @property
    def ablating(self) -> bool:
        """Whether some edges carry the reference instead of their sender's output."""
        return self.removed is not None and self.reference is not None

    @property
    def patches(self) -> bool:
        """Whether receivers read their own copies (else the hooks only record senders)."""
        return self.probe or self.ablating

    def __enter__(self) -> EdgeRun:
        try:
            self._register()
        except BaseException:
            self.remove()
            raise
        return self

    def __exit__(self, *exc) -> None:
        self.remove()

    def remove(self) -> None:
        for handle in self.handles:
            handle.remove()
        self.handles.clear()

    def _register(self) -> None:
        layout, model = self.layout, self.model
        blocks = model.get_submodule(layout.blocks)
        pre, post = self._pre, self._post
        pre(blocks[0], self._embedding, kwargs=True)
        per_layer = layout.heads + 2 * layout.kv_heads + 1
        for layer, block in enumerate(blocks):
            first = layer * per_layer
            attention_norm = block.get_submodule(layout.attention_norm)
            pre(attention_norm, self._keep_resid)
            if self.patches:
                starts = {"q": first, "k": first + layout.heads}
                starts["v"] = starts["k"] + layout.kv_heads
                projections: dict[str, list[tuple[Port, int]]] = {}
                for port in layout.ports:
                    projections.setdefault(port.projection, []).append((port, starts[port.name]))
                for path, ports in projections.items():
                    hook = self._heads(layer, attention_norm, block.get_submodule(path), ports)
                    post(block.get_submodule(path), hook)
            pre(block.get_submodule(layout.output_projection), self._head_outputs)
            mlp_norm = block.get_submodule(layout.mlp_norm)
            pre(mlp_norm, self._keep_resid)
            mlp = block.get_submodule(layout.mlp)
            if self.patches:
                pre(mlp, self._mlp_input(layer, mlp_norm, first + per_layer - 1))
            post(mlp, self._mlp_output)
        if self.patches:
            pre(model.get_submodule(layout.final_norm), self._logits_input)

    def _pre(self, module: nn.Module, hook, *, kwargs: bool = False) -> None:
        self.handles.append(module.register_forward_pre_hook(hook, with_kwargs=kwargs))

    def _post(self, module: nn.Module, hook) -> None:
        self.handles.append(module.register_forward_hook(hook))

    # --- senders --------------------------------------------------------------------------

    def _embedding(self, module, args, kwargs):
        if self.embed is not None:
            args = (self.embed.to(args[0].dtype), *args[1:])
        self._record([args[0]])
        return args, kwargs

    def _head_outputs(self, module, args):
        z = args[0]
        heads = self.layout.heads
        weight = _input_major(module)
        weight = weight.reshape(heads, -1, weight.shape[-1])
        per_head = torch.einsum("nthk,hkd->nthd", z.unflatten(-1, (heads, -1)), weight)
        self._record(per_head.unbind(dim=2))

    def _mlp_output(self, module, args, output):
        self._record([output])

    def _record(self, outputs) -> None:
        """Keep senders' outputs; in an ablating run, only their differences from the
        reference, [variants, S, rows, T, d], written into one buffer as they come."""
        if not self.ablating:
            self.outputs.extend(outputs)
            return
        for output in outputs:
            output = output.unflatten(0, (self.removed.shape[0], -1))
            if self.deltas is None:
                variants, rows = output.shape[:2]
                shape = (variants, len(self.layout.senders), rows, *output.shape[2:])
                self.deltas = output.new_empty(shape)
            reference = self.reference[self.recorded].to(output.dtype)
            self.deltas[:, self.recorded] = output - reference
            self.recorded += 1

    # --- receivers ------------------------------------------------------------------------

    def _keep_resid(self, module, args):
        self.resid = args[0]

    def _copies(self, count: int, first: int, senders: int) -> torch.Tensor:
        """The receivers' inputs `first` .. `first + count`: [count, N, T, d]."""
        resid = self.resid
        x = resid.unsqueeze(0).expand(count, *resid.shape)
        removed = self.removed[:, first : first + count, :senders] if self.ablating else None
        if removed is not None and removed.any():
            delta = self.deltas[:, :senders]  # [variants, senders, rows, T, d]
            shift = torch.matmul(removed.to(delta.dtype), delta.flatten(2))
            shift = shift.unflatten(2, delta.shape[2:]).transpose(0, 1).flatten(1, 2)
            x = x - shift
        if self.probe:
            leaf = torch.zeros_like(x, requires_grad=True)
            self.probes.append(leaf)
            x = x + leaf
        return x

    def _heads(self, layer: int, norm: nn.Module, projection: nn.Module, ports):
        def hook(module, args, output):
            for port, first in ports:
                count = self.layout.receiver_heads(port.name)
                senders = self.layout.available(layer, port.name)
                x = norm.forward(self._copies(count, first, senders))  # [heads, N, T, d]
                # each head's slice of the projection, from its own input
                weight = port.view.read(_input_major(projection))  # [d, heads, dh]
                units = torch.einsum("hntd,dhk->nthk", x, weight.to(x.dtype))
                if projection.bias is not None:
                    units = units + port.view.read(projection.bias).to(x.dtype)
                output = port.view.write(output, units)
            return output

        return hook

    def _mlp_input(self, layer: int, norm: nn.Module, receiver: int):
        def hook(module, args):
            senders = self.layout.available(layer, "in")
            return (norm.forward(self._copies(1, receiver, senders)[0]), *args[1:])

        return hook

    def _logits_input(self, module, args):
        self.resid = args[0]
        receiver = len(self.layout.receivers) - 1
        return (self._copies(1, receiver, len(self.layout.senders))[0], *args[1:])


def _input_major(module: nn.Module) -> torch.Tensor:
    """A projection's weight as [in, out] (nn.Linear keeps [out, in], GPT-2's Conv1D [in, out]);
    NbveneError for a projection that is neither."""
    if isinstance(module, nn.Linear):
        return module.weight.t()
    if type(module).__name__ == "Conv1D":
        return module.weight
    raise NbveneError(f"circuit discovery cannot split the output projection {module}")


# --- runs -------------------------------------------------------------------------------------


def device_inputs(model: nn.Module, x: Inputs) -> tuple[torch.Tensor, torch.Tensor]:
    device = next(model.parameters()).device
    return x.ids.to(device), x.mask.to(device)


def read_logits(model: nn.Module, x: Inputs, run: EdgeRun, variants: int = 1) -> torch.Tensor:
    """The logits at each row's read position, [variants·rows, vocab], of `model` on
    `variants` copies of `x` under `run`'s hooks."""
    ids, mask = device_inputs(model, x)
    with run:
        logits = model(input_ids=ids.repeat(variants, 1), attention_mask=mask.repeat(variants, 1))
    logits = logits.logits if hasattr(logits, "logits") else logits[0]
    rows = torch.arange(logits.shape[0], device=logits.device)
    return logits[rows, x.read.to(logits.device).repeat(variants)]


def per_variant(metric: Callable, logits: torch.Tensor, rows: int) -> torch.Tensor:
    """The metric of each copy of the batch: [variants, rows], `metric` called once per copy
    (it knows each row's answer tokens)."""
    values = [torch.as_tensor(metric(chunk)) for chunk in logits.split(rows)]
    for value in values:
        if value.shape != (rows,):
            raise NbveneError(
                f"the metric returned shape {tuple(value.shape)}, not one value per prompt "
                f"({rows})",
                hint="metric(logits) maps the logits at the read position, [B, vocab], to [B]",
            )
    return torch.stack(values).float()


def sender_outputs(model: nn.Module, layout: Layout, x: Inputs) -> torch.Tensor:
    """Every sender's output on `x`: [S, B, T, d] (no patching, no gradient)."""
    with torch.no_grad():
        run = EdgeRun(model, layout)
        read_logits(model, x, run)
    return torch.stack(run.outputs).detach()


def reference_outputs(
    model: nn.Module, layout: Layout, clean: Inputs, corrupted: Inputs, ablation: str
) -> torch.Tensor:
    """What an ablated edge carries: each sender's output on the corrupted prompts, or
    ("mean") its mean over the clean prompts at each position (real tokens only)."""
    if ablation not in ABLATIONS:
        raise NbveneError(
            f"unknown ablation {ablation!r}", hint=f"use one of {', '.join(ABLATIONS)}"
        )
    if ablation == "corrupted":
        return sender_outputs(model, layout, corrupted)
    outputs = sender_outputs(model, layout, clean)
    weights = clean.mask.to(outputs.device, outputs.dtype)[None, :, :, None]
    mean = (outputs * weights).sum(dim=1, keepdim=True) / weights.sum(dim=1, keepdim=True).clamp(
        min=1
    )
    return mean.expand_as(outputs)


def valid(layout: Layout) -> torch.Tensor:
    """[R, S]: True where sender s has an edge into receiver r."""
    mask = torch.zeros(len(layout.receivers), len(layout.senders), dtype=torch.bool)
    for r, (node, port) in enumerate(layout.receivers):
        mask[r, : layout.available(node.layer, port)] = True
    return mask


def positions(layout: Layout, edges: Iterable[Edge]) -> tuple[torch.Tensor, torch.Tensor]:
    """The (receiver, sender) indices of `edges` in [R, S] masks; NbveneError for an edge
    the model does not have."""
    senders = {node: i for i, node in enumerate(layout.senders)}
    receivers = {key: i for i, key in enumerate(layout.receivers)}
    rs, ss = [], []
    for edge in edges:
        r = receivers.get((edge.receiver, edge.port))
        s = senders.get(edge.sender)
        if r is None or s is None or s >= layout.available(edge.receiver.layer, edge.port):
            raise NbveneError(f"{edge.name} is not an edge of this model")
        rs.append(r)
        ss.append(s)
    return torch.tensor(rs, dtype=torch.long), torch.tensor(ss, dtype=torch.long)


def removal(layout: Layout, kept: Iterable[Iterable[Edge]]) -> torch.Tensor:
    """[variants, R, S]: True where an edge exists and is not kept in that variant."""
    every = valid(layout)
    masks = []
    for edges in kept:
        mask = every.clone()
        mask[positions(layout, edges)] = False
        masks.append(mask)
    return torch.stack(masks) if masks else every[None][:0]


def patched_metric(
    model: nn.Module,
    layout: Layout,
    clean: Inputs,
    reference: torch.Tensor,
    metric: Callable,
    removed: torch.Tensor,
    *,
    progress: Callable[[int, int], None] | None = None,
) -> torch.Tensor:
    """The batch-mean metric for each variant of `removed` [variants, R, S] (True: that edge
    ablated), several variants per forward pass: [variants]. `progress(done, total)` after
    each pass."""
    removed = removed.to(reference.device)
    per_pass = variants_per_pass(reference)
    means = []
    with torch.no_grad():
        for start in range(0, removed.shape[0], per_pass):
            chunk = removed[start : start + per_pass]
            run = EdgeRun(model, layout, reference=reference, removed=chunk)
            logits = read_logits(model, clean, run, variants=chunk.shape[0])
            means.append(per_variant(metric, logits, clean.rows).mean(dim=1))
            if progress is not None:
                progress(start + chunk.shape[0], removed.shape[0])
    return torch.cat(means)


PASS_ROWS = 256
"""The most rows (copies of the batch, stacked) one forward pass runs."""
PASS_BYTES = 1 << 29
"""The most memory the senders' differences from the reference take in one pass (512 MiB)."""


def variants_per_pass(reference: torch.Tensor) -> int:
    """How many copies of the batch one edge-patched pass runs: at most PASS_ROWS rows, and
    their senders' differences (S × rows × T × d) within PASS_BYTES."""
    senders, rows = reference.shape[:2]
    per_copy = reference[0].numel() * senders * max(reference.element_size(), 4)
    return max(1, min(PASS_ROWS // rows, PASS_BYTES // per_copy))
