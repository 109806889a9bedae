"""Run a Plan through nnsight's tracing: `nv.run(spec, model=nnsight.LanguageModel(...))`.

The binder resolves the spec against the HF model inside (`lm._module`); this backend runs the
Plan's passes as nnsight traces, each row one invoke (rows of one example share a trace, up to
`max_batch` invokes), its edits written on the envoys' `.output` / `.input` in the order the
forward pass reaches them, and its metric computed inside the trace, so only the numbers are
saved and come back. With `remote=True` the same traces run on NDIF.

Supported: patch / restore from the `source:` run, `add:` / `subtract:` a vector or the source,
`zero:`, `mean:` ablation, `corrupt: noise` (ROME's causal trace), at any component whose site is
one module's input or output (block_output, mlp_output, attention_output, head-level `z`, …),
with any metric. Not supported (an `NbveneError` says so, and how to run it): `collect:`,
attention weights, residual-sum sites, named sources, trained interventions, attribution
estimates, float inputs.

Steering runs here too (not remotely): `steered_values` is a steering spec's metric
(`nv.run`), `generated` steered greedy generation through nnsight's `.generate()`
(`nv.generate`).
"""

from __future__ import annotations

import warnings
from collections import defaultdict

import torch
from torch import nn

from nbvene.bind.noise import noise_draws
from nbvene.bind.plan import Plan, Row, Unit, ValueKind
from nbvene.errors import NbveneError
from nbvene.interventions.trainable import Trainable
from nbvene.sites import Site
from nbvene.spec.metrics import lookup

FIX = "run it with the torch model itself: model=lm._module"


def is_nnsight(model) -> bool:
    """Whether `model` is an nnsight model, read from its class's module (so nnsight is
    imported only by those who use it)."""
    return type(model).__module__.split(".")[0] == "nnsight"


def unsupported(what: str) -> NbveneError:
    """The error for what the nnsight backend does not run."""
    return NbveneError(f"the nnsight backend does not run {what}", hint=FIX)


def _nnsight():
    try:
        import nnsight
    except ImportError:  # pragma: no cover - the model is an nnsight one, so it is installed
        raise NbveneError(
            "the nnsight backend needs nnsight", hint="pip install 'nbvene[nnsight]'"
        ) from None
    return nnsight


def check(plan: Plan) -> None:
    """Refuse, before any pass, what this backend does not run."""
    if plan.estimate != "exact":
        raise unsupported("attribution estimates (estimate: attribution)")
    if plan.collect is not None:
        raise unsupported("collect:")
    if plan.named:
        raise unsupported("named sources (source NAME: ...)")
    if any(p.values is not None for p in plan.base):
        raise unsupported("float inputs (prompts given as tensors)")
    for op in plan.ops:
        if isinstance(op.module, Trainable):
            raise unsupported(f"trained interventions (line {op.line}: {op.verb} via ...)")
    for row in plan.rows:
        for unit in row.units:
            if unit.site.io == "weights":
                raise unsupported(f"attention weights ({unit.site.component})")
            if unit.site.residual is not None:
                raise unsupported(f"residual-sum sites ({unit.site.component})")


def run_plan(plan: Plan, lm, *, max_batch: int = 64, remote: bool | str = False):
    """The Plan's values per row, and the metric's clean and corrupted baselines per example
    (None where there are none): `(values, clean, corrupted)`, on the CPU in float32."""
    check(plan)
    with torch.no_grad():
        return Traces(plan, lm, max_batch, remote).run()


class Traces:
    """The passes of one plan as nnsight traces: the source run (its units and logits), the
    `mean:` runs, the corrupted baseline (one per example and noise sample), then the rows."""

    def __init__(self, plan: Plan, lm, max_batch: int, remote: bool | str):
        self.nnsight = _nnsight()
        self.plan, self.lm, self.max_batch, self.remote = plan, lm, max_batch, remote
        if remote:  # the server has no nbvene: the edits' code ships with each request
            self.nnsight.register("nbvene")
        self.model: nn.Module = plan.model
        self.device = next(self.model.parameters()).device
        self.order = execution_order(self.model)
        self.embed = _module_name(self.model, self.model.get_input_embeddings())
        self.noise = noise_draws(plan, self.model)
        self.cache: dict[Site, list[torch.Tensor]] = {}  # source units per source example
        self.means: dict[tuple[int, Site], torch.Tensor] = {}
        metric = plan.metric
        self.metric = None if metric is None else lookup(metric.name)

    # --- the passes ------------------------------------------------------------------------

    def run(self):
        plan = self.plan
        clean_logits = self.source_run()
        self.mean_runs()
        clean = corrupted = None
        if plan.metric is not None:
            samples = plan.corrupt.samples if plan.corrupt else 1
            rows = [Row(e, (), (), k) for e in range(len(plan.base)) for k in range(samples)]
            corrupted = self.measure(rows, clean_logits).reshape(len(plan.base), samples)
            corrupted = corrupted.mean(dim=1)
            if clean_logits is not None:
                clean = torch.stack([self.value(lg, lg) for lg in clean_logits]).float().cpu()
                clean = clean.expand(len(plan.base)) if len(clean) == 1 else clean
        values = self.measure(plan.rows, clean_logits)
        metric = plan.metric
        if metric is not None and metric.normalized:
            rows = [r.example for r in plan.rows]
            values = (values - corrupted[rows]) / (clean[rows] - corrupted[rows])
        return values, clean, corrupted

    def source_run(self) -> list[torch.Tensor] | None:
        """Keep the units every `source:` op reads, per source example; return the source's
        logits at its read position (None without a source)."""
        plan = self.plan
        if plan.source is None:
            return None
        sites = {
            u.site for r in plan.rows for u in r.units if plan.ops[u.op].value == ValueKind.RUN
        }
        logits = []
        for prompt in plan.source:
            units, read = self.stored(prompt, sites)
            for site, value in units.items():
                self.cache.setdefault(site, []).append(value)
            logits.append(read)
        return logits

    def mean_runs(self) -> None:
        """For each `mean:` op, its sites' units averaged over every token of its prompts."""
        plan = self.plan
        for index, op in enumerate(plan.ops):
            if op.value != ValueKind.MEAN:
                continue
            sites = {u.site for r in plan.rows for u in r.units if u.op == index}
            runs = [self.stored(p, sites)[0] for p in op.mean_prompts]
            for site in sites:
                self.means[index, site] = torch.cat([run[site] for run in runs]).mean(dim=0)

    def stored(self, prompt, sites: set[Site]):
        """One unpatched trace of `prompt`: the units at `sites` (seq, units…) and the logits
        at its read position."""
        nnsight, lm, read_at = self.nnsight, self.lm, prompt.read_at
        envoys = [(site, self.envoy(site.module)) for site in _in_order(self.order, sites)]
        with lm.trace(self.inputs(prompt), **self.options()):
            kept = nnsight.save({})
            for site, envoy in envoys:
                raw = envoy.output if site.io == "output" else envoy.input
                raw = raw[0] if isinstance(raw, tuple) else raw
                kept[site] = site.view.read(_batched(raw))[0].save()
            read = lm.output.logits[0, read_at].save()
        return dict(kept), read

    def measure(self, rows: list[Row], clean_logits) -> torch.Tensor:
        """The metric of each row, its edits made in its own invoke: rows of one example
        share a trace, `max_batch` at most."""
        values = torch.full((len(rows),), float("nan"))
        by_example = defaultdict(list)
        for i, row in enumerate(rows):
            by_example[row.example].append(i)
        for example, indices in by_example.items():
            for start in range(0, len(indices), self.max_batch):
                chunk = indices[start : start + self.max_batch]
                values[chunk] = self.chunk([rows[i] for i in chunk], example, clean_logits)
        return values

    def chunk(self, rows: list[Row], example: int, clean_logits) -> torch.Tensor:
        """One trace: one invoke per row of `example`, each saving its metric. The traced block
        reads only plain values (envoys, edits, tensors): it is what `remote=True` ships."""
        nnsight, lm, plan = self.nnsight, self.lm, self.plan
        prompt = plan.base[example]
        inputs, read_at = self.inputs(prompt), prompt.read_at
        reference = None
        if clean_logits is not None:
            reference = clean_logits[plan.source_example(example)]
        measure = _measure(self.metric, plan.metric.token_ids, reference)
        edits = [self.row_edits(row) for row in rows]
        with lm.trace(**self.options()) as tracer:
            saved = nnsight.save([])
            for row_edits in edits:
                with tracer.invoke(inputs):
                    for envoy, io, edit in row_edits:
                        if io == "output":
                            envoy.output = _replaced(envoy.output, edit)
                        else:
                            envoy.input = edit(envoy.input)
                    saved.append(measure(lm.output.logits[0, read_at]).save())
        return torch.stack([torch.as_tensor(v) for v in saved]).float().cpu()

    # --- one row's edits -------------------------------------------------------------------

    def row_edits(self, row: Row):
        """(envoy, io, edit) for each module the row edits, in the order the forward pass
        reaches them (nnsight reads an invoke's modules in that order): ROME's noise first at
        the embeddings' output, then the units of each site, op by op."""
        by_site: dict[tuple[str, str], list] = defaultdict(list)
        if self.noise is not None:
            by_site[self.embed, "output"].append(self.noise_edit(row))
        units: dict[tuple[Site, int], list[Unit]] = defaultdict(list)
        for unit in row.units:
            units[unit.site, unit.op].append(unit)
        for (site, op), members in units.items():
            by_site[site.module, site.io.value].append(self.unit_edit(row, site, op, members))
        ordered = sorted(by_site, key=lambda key: self.order.get(key, len(self.order)))
        return [(self.envoy(m), io, _composed(by_site[m, io])) for m, io in ordered]

    def noise_edit(self, row: Row):
        positions = self.plan.corrupt.positions[row.example]
        index = (torch.zeros(len(positions), dtype=torch.long), torch.tensor(positions))
        added = self.noise[row.example, row.sample]

        def edit(embeds: torch.Tensor) -> torch.Tensor:
            where = tuple(i.to(embeds.device) for i in index)
            return embeds.index_put(where, added.to(embeds.device, embeds.dtype), accumulate=True)

        return edit

    def unit_edit(self, row: Row, site: Site, op_index: int, members: list[Unit]):
        """The edit of one (site, op) in one row: gather its units, run the op, put them back."""
        op = self.plan.ops[op_index]
        pos = [b for u in members for b in u.base_pos]
        src_pos = [s for u in members for s in u.source_pos]
        heads = [u.head for u in members for _ in u.base_pos]
        index = [torch.zeros(len(pos), dtype=torch.long), torch.tensor(pos)]
        if heads[0] is not None:
            index.append(torch.tensor(heads))
        source = self.gather(row, op_index, site, src_pos, heads)

        def edit(raw: torch.Tensor) -> torch.Tensor:
            x = _batched(raw)
            units = site.view.read(x)
            where = tuple(i.to(units.device) for i in index)
            chosen = units[where]
            base = chosen.flatten(1)
            given = None if source is None else _like(source, base)
            new = op.module(base, given)
            units = units.index_put(where, new.reshape(chosen.shape).to(units.dtype))
            return site.view.write(x, units).reshape(raw.shape)

        return edit

    def gather(self, row: Row, op_index: int, site: Site, src_pos, heads):
        op = self.plan.ops[op_index]
        if op.value == ValueKind.RUN:
            cached = self.cache[site][self.plan.source_example(row.example)]
            index = [torch.tensor(src_pos)]
            if heads[0] is not None:
                index.append(torch.tensor(heads))
            return cached[tuple(i.to(cached.device) for i in index)]
        if op.value == ValueKind.VECTOR:
            return op.vector
        if op.value == ValueKind.MEAN:
            mean = self.means[op_index, site]
            return mean[torch.tensor(heads, device=mean.device)] if heads[0] is not None else mean
        return None

    # --- helpers ---------------------------------------------------------------------------

    def value(self, logits: torch.Tensor, reference: torch.Tensor | None) -> torch.Tensor:
        """The metric of one row from its (vocab,) logits, in float32."""
        return _measure(self.metric, self.plan.metric.token_ids, reference)(logits)

    def inputs(self, prompt) -> dict:
        ids = torch.tensor([prompt.ids], device=self.device)
        return {"input_ids": ids, "attention_mask": torch.ones_like(ids)}

    def options(self) -> dict:
        return {"remote": self.remote} if self.remote else {}

    def envoy(self, module: str):
        return _envoy(self.lm, module)


def _envoy(lm, module: str):
    """The nnsight envoy of a module path (`transformer.h.1.attn`)."""
    node = lm
    for name in module.split(".") if module else ():
        node = node[int(name)] if name.isdigit() else getattr(node, name)
    return node


def execution_order(model: nn.Module) -> dict[tuple[str, str], int]:
    """When the forward pass reaches each module's input and output (nnsight reads them in
    that order within an invoke): one forward pass of two tokens with hooks that only look."""
    order: dict[tuple[str, str], int] = {}
    handles = []

    def seen(key):
        order.setdefault(key, len(order))

    for name, module in model.named_modules():
        handles.append(module.register_forward_pre_hook(lambda m, a, n=name: seen((n, "input"))))
        handles.append(module.register_forward_hook(lambda m, a, o, n=name: seen((n, "output"))))
    device = next(model.parameters()).device
    try:
        with torch.no_grad():
            model(input_ids=torch.zeros((1, 2), dtype=torch.long, device=device))
    finally:
        for handle in handles:
            handle.remove()
    return order


def _module_name(model: nn.Module, module: nn.Module) -> str:
    return next(name for name, m in model.named_modules() if m is module)


def _measure(metric, token_ids: tuple[int, ...], reference: torch.Tensor | None):
    """The metric of one row from its (vocab,) logits, in float32 (`reference`: the clean
    run's logits, for metrics that compare with it)."""
    clean = reference.float()[None] if metric.needs_clean else None

    def measure(logits: torch.Tensor) -> torch.Tensor:
        return metric.compute(logits.float()[None], token_ids, clean)[0]

    return measure


def _composed(edits):
    def edit(raw):
        for one in edits:
            raw = one(raw)
        return raw

    return edit


def _replaced(output, edit, *args):
    """A module's output with its first tensor edited (a tuple stays a tuple); `args` go to
    the edit after the tensor."""
    if isinstance(output, tuple):
        return (edit(output[0], *args), *output[1:])
    return edit(output, *args)


def _batched(raw: torch.Tensor) -> torch.Tensor:
    """One invoke's tensor as (1, seq, …): a module that flattens batch and positions (OPT's
    MLP) sees (seq, d)."""
    return raw[None] if raw.dim() == 2 else raw


def _like(source: torch.Tensor, base: torch.Tensor) -> torch.Tensor:
    """The source shaped as the (n, d) base units: per unit, or one vector for all."""
    source = source.to(base.device, base.dtype)
    if source.numel() == base.shape[1]:
        return source.reshape(1, -1).expand_as(base)
    return source.reshape(base.shape)


# --- steered generation ---------------------------------------------------------------------


def generated(steering, strengths: torch.Tensor, lm, *, max_batch: int = 64):
    """Greedy steered generation through nnsight's `.generate()`: one invoke per row (strengths
    (rows, terms)), each step's edits made as nbvene's steering makes them. Returns, per row,
    the generated ids up to and including a stop, why it stopped, and the next-token logits
    after the prompt (rows, vocab)."""
    nnsight = _nnsight()
    g = steering.generate
    if g.temperature != 0:
        raise unsupported("sampled generation (temperature > 0)")
    _check_steering(steering)
    model, prompt = steering.model, steering.prompt
    sites = _in_order(execution_order(model), {t.site for t in steering.terms})
    device = next(model.parameters()).device
    ids = torch.tensor([prompt.ids], device=device)
    inputs = {"input_ids": ids, "attention_mask": torch.ones_like(ids)}
    steps = g.max_new_tokens
    options = {"max_new_tokens": steps, "do_sample": False}
    pad = getattr(steering.tokenizer, "pad_token_id", None)
    options["pad_token_id"] = pad if pad is not None else 0
    rows, outputs, first = len(strengths), [], []
    for start in range(0, rows, max_batch):
        chunk = strengths[start : start + max_batch]
        edits = [
            [(_envoy(lm, s.module), s.io.value, _steer(steering, s, row)) for s in sites]
            for row in chunk
        ]
        with torch.no_grad(), warnings.catch_warnings(), lm.generate(**options) as tracer:
            # the open loop ends with the generation, as nnsight designs it: no warning
            warnings.filterwarnings("ignore", "'.*' was never reached", UserWarning)
            first_logits = nnsight.save([])
            for row_edits in edits:
                with tracer.invoke(inputs):
                    # every step (HF's generate stops early once every row has ended)
                    for step in tracer.iter[:]:
                        for envoy, io, edit in row_edits:
                            if io == "output":
                                envoy.output = _replaced(envoy.output, edit, step)
                            else:
                                envoy.input = edit(envoy.input, step)
                        if step == 0:
                            first_logits.append(lm.output.logits[0, -1].save())
            with tracer.invoke():  # all rows: the generated ids
                result = tracer.result.save()
        outputs += [[int(i) for i in row[len(prompt) :]] for row in result]
        first += [logits.float().cpu() for logits in first_logits]
    ids_out, stopped = [], []
    eos = steering.eos_ids()
    for row in outputs:
        cut, reason = _stopped(steering, row, eos)
        ids_out.append(cut)
        stopped.append(reason)
    return ids_out, stopped, torch.stack(first)


def steered_values(steering, strengths: torch.Tensor, lm, *, max_batch: int = 64):
    """The metric on the steered forward pass of the prompt, per row of strengths (rows,
    terms): one trace of up to `max_batch` invokes, each computing its row's metric inside."""
    nnsight = _nnsight()
    _check_steering(steering)
    model, prompt = steering.model, steering.prompt
    sites = _in_order(execution_order(model), {t.site for t in steering.terms})
    ids = torch.tensor([prompt.ids], device=next(model.parameters()).device)
    inputs, read_at = {"input_ids": ids, "attention_mask": torch.ones_like(ids)}, prompt.read_at
    measure = _measure(lookup(steering.metric.name), steering.metric.token_ids, None)
    values = []
    for start in range(0, len(strengths), max_batch):
        edits = [
            [(_envoy(lm, s.module), s.io.value, _steer(steering, s, row)) for s in sites]
            for row in strengths[start : start + max_batch]
        ]
        with torch.no_grad(), lm.trace() as tracer:
            saved = nnsight.save([])
            for row_edits in edits:
                with tracer.invoke(inputs):
                    for envoy, io, edit in row_edits:
                        if io == "output":
                            envoy.output = _replaced(envoy.output, edit, 0)
                        else:
                            envoy.input = edit(envoy.input, 0)
                    saved.append(measure(lm.output.logits[0, read_at]).save())
        values += [torch.as_tensor(v).float().cpu() for v in saved]
    return torch.stack(values)


def _check_steering(steering) -> None:
    for term in steering.terms:
        if term.site.io == "weights" or term.site.residual is not None:
            raise unsupported(f"steering at {term.site.component}")


def _in_order(order: dict[tuple[str, str], int], sites: set[Site]) -> list[Site]:
    """Sites in the order the forward pass reaches them (`order`: `execution_order`'s)."""
    return sorted(sites, key=lambda s: order.get((s.module, s.io.value), len(order)))


def _steer(steering, site: Site, strengths: torch.Tensor):
    """One row's steering edit at `site` at step `step` of the generation (step 0 sees the
    prompt, step k the k-th generated token alone), as nbvene's own steering decodes it."""
    indices = [i for i, t in enumerate(steering.terms) if t.site == site]
    prompt_length = len(steering.prompt)

    def edit(raw: torch.Tensor, step: int) -> torch.Tensor:
        units = site.view.read(raw)  # (1, tokens, d)
        start = 0 if step == 0 else prompt_length + step - 1
        for index in indices:
            steered = steering.steered(index, units, start, strengths[index : index + 1])
            if steered is not None:
                units = steered
        return site.view.write(raw, units)

    return edit


def _stopped(steering, ids: list[int], eos: set[int]) -> tuple[list[int], str]:
    """The ids up to and including the first stop, and why it stopped: as nbvene's own
    decoding stops a row (`Steering.stop_reason` after each token)."""
    for n in range(1, len(ids) + 1):
        reason = steering.stop_reason(ids[:n], eos)
        if reason is not None:
            return ids[:n], reason
    return ids, "max_new_tokens"
