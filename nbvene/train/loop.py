"""`nv.train`: fit a spec's interventions so the intervened model outputs the labels.

The model's own weights are frozen (and bitwise unchanged) unless `train_model=True`
(interchange intervention training); only the interventions learn.
"""

from __future__ import annotations

import math
import signal
import threading
from collections.abc import Callable, Mapping
from contextlib import contextmanager, nullcontext

import torch
from torch import nn

from nbvene.bind.plan import Plan
from nbvene.bind.training import check_trainable, plan_examples, resolve_calls, via_modules
from nbvene.engine.lock import runs_model
from nbvene.engine.memory import Budget, rows_within
from nbvene.errors import NbveneError, TrainingInterrupted
from nbvene.sites import SiteMap
from nbvene.spec import Spec, parse
from nbvene.train.checkpoint import checkpointed
from nbvene.train.curve import LiveCurve, in_notebook
from nbvene.train.forward import Forward
from nbvene.train.measure import Loss, labels_of, measure, objective
from nbvene.train.trained import Trained

"""`loss(outputs, labels) -> scalar`: outputs (batch, classes) at the read position."""


@runs_model
def train(
    spec: str | Spec,
    *,
    model: nn.Module,
    tokenizer=None,
    namespace: Mapping | None = None,
    sites: Mapping[str, str] | SiteMap | None = None,
    epochs: int = 10,
    lr: float = 1e-3,
    batch_size: int = 64,
    seed: int = 0,
    held_out: float | Mapping | None = 0.1,
    patience: int | None = None,
    loss: Loss | None = None,
    train_model: bool = False,
    progress: bool | Callable[[dict], None] = True,
    checkpoint: bool = False,
    max_memory: int | str | None = None,
) -> Trained:
    """Train the interventions of a spec with a `label:` line; return a `Trained`.

    >>> trained = nv.train('''
    ... base:   {base}
    ... source: {source}
    ... patch:  hidden.output via rotated(k=1)
    ... label:  {label}
    ... ''', model=model, namespace=dict(base=B, source=S, label=Y), epochs=30, lr=1e-2)
    >>> trained.iia, trained.basis.shape
    (0.99, torch.Size([16, 1]))

    Each example is one base input, its source (or the one source), and its label: the class
    index or token id the intervened model should output at the base's last position (or in
    its (batch, classes) output). The loss is cross-entropy there, or `loss(outputs, labels)`.

    `held_out`: a fraction of the examples kept out of training and measured after each epoch,
    or a namespace with held-out `base`/`source`/`label` values, or None. `patience`: stop after
    that many epochs without a better held-out loss, keeping the best interventions. `seed`
    seeds the shuffling, the split and the interventions' initial values. `progress`: a text
    bar (True; in a notebook also a live loss curve), nothing (False), or a function called
    with each epoch's record.
    `checkpoint`: gradient checkpointing, for long prompts: the model's blocks keep only their
    inputs and run again in the backward pass (less memory, about a third more time).
    `max_memory` (bytes, "2GB", or "auto": a share of the model's devices' free memory) caps
    the examples one forward and backward pass holds; a step of more runs in parts.

    A step that runs out of memory is split in halves whose gradients add up to the same
    step (a custom `loss` must then be a mean over the batch). Interrupting raises
    `nv.TrainingInterrupted`, whose `.result` is the `Trained` as of the last finished step.
    """
    if epochs < 0 or batch_size < 1 or not lr > 0:
        raise NbveneError(
            f"epochs must be ≥ 0, batch_size ≥ 1 and lr > 0; got epochs={epochs}, "
            f"batch_size={batch_size}, lr={lr}"
        )
    if not isinstance(model, nn.Module):
        raise NbveneError(f"model must be a torch.nn.Module, got {type(model).__name__}")
    parsed = parse(spec)
    if parsed.label is None:
        raise NbveneError(
            "nv.train needs a label: line",
            hint="add 'label: {labels}': per example, the class or token the intervened model "
            "should output",
        )
    namespace = dict(namespace or {})
    bound, built = resolve_calls(parsed, namespace, seed)
    modules = {**via_modules(bound, namespace), **built}
    plan = plan_examples(bound, model, tokenizer, {**namespace, **built}, sites)
    check_trainable(plan)
    labels = labels_of(plan, namespace, tokenizer, loss is None)

    generator = torch.Generator().manual_seed(seed)
    examples = torch.randperm(len(plan.base), generator=generator)
    held: tuple[Plan, torch.Tensor, torch.Tensor] | None = None
    if isinstance(held_out, Mapping):
        other = {**namespace, **dict(held_out), **built}
        held_plan = plan_examples(bound, model, tokenizer, other, sites)
        check_trainable(held_plan)
        held_labels = labels_of(held_plan, other, tokenizer, loss is None)
        held = (held_plan, torch.arange(len(held_plan.base)), held_labels)
    elif held_out:
        if not 0 < held_out < 1:
            raise NbveneError(f"held_out must be a fraction in (0, 1), got {held_out}")
        n_held = max(1, round(len(examples) * held_out))
        if n_held >= len(examples):
            raise NbveneError(
                f"{len(examples)} examples are too few to hold {held_out:.0%} out",
                hint="give more examples, or held_out=None",
            )
        held = (plan, examples[:n_held].sort().values, labels)
        examples = examples[n_held:]

    frozen = {p: p.requires_grad for p in model.parameters()}
    for p in frozen:
        p.requires_grad_(train_model)
    stopped, metrics = False, {"iia": math.nan, "loss": math.nan}
    try:
        rows = batch_size if max_memory is None else rows_within(plan, max_memory, grad=True)
        budget = Budget(min(batch_size, rows))
        run = _Training(
            plan, labels, modules, loss, train_model, generator, held, checkpoint, budget
        )
        with checkpointed(model, plan.sites) if checkpoint else nullcontext():
            try:
                run.fit(examples, epochs, lr, batch_size, patience, progress)
                metrics = run.scores(examples)
            except KeyboardInterrupt:  # keep what the finished steps learnt
                stopped = True
    finally:
        for p, flag in frozen.items():
            p.requires_grad_(flag)

    trained = Trained(
        spec=parsed,
        bound=bound,
        modules=modules,
        built=set(built),
        model=model,
        tokenizer=tokenizer,
        sites=plan.sites.mapping or None,
        namespace=namespace,
        history=run.history,
        loss=loss,
        metrics=metrics,
        settings={
            "epochs": epochs,
            "lr": lr,
            "batch_size": batch_size,
            "seed": seed,
            "train_model": train_model,
            "checkpoint": checkpoint,
            "patience": patience,
            "held_out": held_out if not isinstance(held_out, Mapping) else "given",
            "examples": len(examples),
            **({"interrupted_after_steps": run.done} if stopped else {}),
        },
    )
    if stopped:
        raise TrainingInterrupted(trained)
    return trained


class _Training:
    def __init__(
        self, plan, labels, modules, loss, train_model, generator, held, checkpoint, budget: Budget
    ):
        self.budget = budget
        # checkpointing runs the blocks again in backward(), from the model's own forward
        reuse = not checkpoint
        self.forward = Forward(plan, grad_source=train_model, budget=budget, reuse=reuse)
        self.checkpoint = checkpoint
        self.held = held
        if held is not None:
            self.held_forward = (
                self.forward if held[0] is plan else Forward(held[0], budget=budget, reuse=reuse)
            )
        self.labels = labels
        self.modules = list(modules.values())
        self.loss = loss
        self.generator = generator
        self.model = plan.model
        self.train_model = train_model
        self.history: list[dict] = []
        self.done = 0  # optimizer steps finished

    def parameters(self) -> list[nn.Parameter]:
        found = {id(p): p for m in self.modules for p in m.parameters() if p.requires_grad}
        if self.train_model:
            found.update({id(p): p for p in self.model.parameters()})
        return list(found.values())

    def scores(self, examples) -> dict:
        """IIA and loss on the held-out examples, or on the training ones without them."""
        if self.held is None:
            return measure(
                self.forward, examples.tolist(), self.labels, self.loss, budget=self.budget
            )
        _, indices, labels = self.held
        return measure(self.held_forward, indices.tolist(), labels, self.loss, budget=self.budget)

    def fit(self, examples, epochs, lr, batch_size, patience, progress) -> None:
        with torch.no_grad():  # one pass makes the parameters of interventions built lazily
            self.forward(examples[:1].tolist())
        params = self.parameters()
        if not params and epochs > 0:  # with epochs=0 a spec is only measured
            raise NbveneError(
                "nothing to train: no intervention has parameters, and train_model is False",
                hint="use a trainable intervention (via rotated(k=1), via low_rank_rotated(k=2), "
                "via boundless(), ...), or train_model=True for interchange intervention training",
            )
        optimizer = torch.optim.Adam(params, lr=lr) if params else None
        steps = epochs * math.ceil(len(examples) / batch_size)
        # in a notebook the live curve is the progress (a tqdm widget would be left dead in the
        # saved notebook); elsewhere a text bar
        curve = LiveCurve(steps, epochs) if progress is True and in_notebook() else None
        bar = _bar(epochs) if progress is True and curve is None else None
        best, best_state, waited = math.inf, None, 0
        try:
            for epoch in range(1, epochs + 1):
                order = examples[torch.randperm(len(examples), generator=self.generator)]
                total, seen = 0.0, 0
                for start in range(0, len(order), batch_size):
                    chosen = order[start : start + batch_size].tolist()
                    try:
                        value = self.gradients(chosen, optimizer)
                        with _whole():  # applied and counted, or not at all
                            optimizer.step()
                            self.done += 1
                            for m in self.modules:
                                if hasattr(m, "schedule") and getattr(m, "width", 0) is not None:
                                    m.schedule(self.done / max(steps, 1))
                            total += float(value) * len(chosen)
                            seen += len(chosen)
                    except KeyboardInterrupt:
                        if seen:  # the unfinished epoch's finished steps stay on the curve
                            self.history.append(
                                {"epoch": epoch, "loss": total / seen, "interrupted": True}
                            )
                        raise
                    if curve is not None:
                        curve.step(float(value))
                record = {"epoch": epoch, "loss": total / len(order)}
                if self.held is not None:
                    scores = self.scores(examples)
                    record.update(held_out_loss=scores["loss"], held_out_iia=scores["iia"])
                self.history.append(record)
                if bar is not None:
                    bar.update(record)
                elif callable(progress):
                    progress(dict(record))
                if curve is not None:
                    curve.epoch(record)
                if patience is not None:
                    watched = record.get("held_out_loss", record["loss"])
                    if watched < best:
                        best, waited = watched, 0
                        best_state = self.state()
                    else:
                        waited += 1
                        if waited >= patience:
                            self.restore(best_state)
                            break
        finally:
            if bar is not None:
                bar.close()
            if curve is not None:
                curve.close()

    def gradients(self, chosen: list[int], optimizer) -> torch.Tensor:
        """The gradients of one step on the examples `chosen` (in the parameters' `.grad`), and
        the loss. Made in parts of the budget's size whose gradients add up to the whole
        batch's (halved on out-of-memory: the step then starts over)."""

        def gradients(size: int) -> torch.Tensor:
            optimizer.zero_grad(set_to_none=True)
            value = torch.zeros(())
            for start in range(0, len(chosen), size):
                part = chosen[start : start + size]
                weight = len(part) / len(chosen)  # 1.0 (exactly) for a step in one part
                # under checkpointing the blocks run again in backward(), with the hooks on
                with self.forward.kept() if self.checkpoint else nullcontext():
                    outputs = self.forward(part)
                    loss = objective(outputs, self.labels[part], self.loss)
                    extra = [m.penalty() for m in self.modules if hasattr(m, "penalty")]
                    full = loss + sum(p for p in extra if p is not None)
                    (full * weight if weight != 1 else full).backward()
                value = value + loss.detach().float().cpu() * weight
            return value

        return self.budget.run(gradients, "training step")

    def state(self) -> list[dict]:
        states = [{k: v.detach().clone() for k, v in m.state_dict().items()} for m in self.modules]
        if self.train_model:
            states.append({k: v.detach().clone() for k, v in self.model.state_dict().items()})
        return states

    def restore(self, states) -> None:
        if states is None:
            return
        targets = [*self.modules, *([self.model] if self.train_model else [])]
        with torch.no_grad():
            for module, state in zip(targets, states, strict=True):
                module.load_state_dict(state)


@contextmanager
def _whole():
    """Hold Ctrl-C until the block ends (an optimizer step half applied is no state to keep);
    a KeyboardInterrupt raised in the block itself (by a hook) still comes out at once."""
    if threading.current_thread() is not threading.main_thread():
        yield  # signal handlers belong to the main thread; other threads are not interrupted
        return
    caught: list = []
    previous = signal.signal(signal.SIGINT, lambda *args: caught.append(args))
    try:
        yield
    finally:
        signal.signal(signal.SIGINT, previous)
        if caught and callable(previous):
            previous(*caught[0])


class _bar:
    """A text progress bar over epochs, showing the last loss and held-out IIA (outside a
    notebook)."""

    def __init__(self, epochs: int):
        from tqdm import tqdm

        self.tqdm = tqdm(total=epochs, unit="epoch", desc="nv.train", leave=False)

    def update(self, record: dict) -> None:
        shown = {"loss": f"{record['loss']:.3f}"}
        if "held_out_iia" in record:
            shown["iia"] = f"{record['held_out_iia']:.3f}"
        self.tqdm.set_postfix(shown, refresh=False)
        self.tqdm.update(1)

    def close(self) -> None:
        self.tqdm.close()
