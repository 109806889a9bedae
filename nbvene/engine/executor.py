"""The one forward executor: every forward pass nbvene runs goes through an `Executor`.

It owns what each pass shares, whoever drives it (sweeps, attribution patching, a heatmap cell
run again, training, steering vectors, generation): how the model is called, which device its
inputs go on, right padding to a common width (so a pass in chunks gives what one pass would),
the LM head computed only at the positions that are read, the passes that keep activations in
`Budget` chunks, and stopping the forward pass after the last block such a pass needs (like
baukit's `StopForward`). The drivers register their edits on a `Hooks` and hand it over.
`stop_between_blocks` asks a sweep's Stop before each block of whatever pass runs.

Generation is the second entry point: `next_logits` runs unpadded ids (all rows share the
prompt), with or without the KV cache, and returns the last position's logits.
"""

from __future__ import annotations

import contextlib
import inspect
from collections.abc import Callable, Collection, Iterable

import torch
from torch import nn

from nbvene.bind.prompts import Prompt, pad
from nbvene.engine.edits import store_edit
from nbvene.engine.hooks import Hooks
from nbvene.engine.memory import Budget
from nbvene.errors import NbveneError
from nbvene.sites import Site
from nbvene.sites.families import dimensions


def device_of(model: nn.Module) -> torch.device:
    """The device a model takes its inputs on: the one its input embeddings compute on (`home`:
    accelerate's execution device for a dispatched or offloaded model), the model's for a model
    without them; the CPU when neither tells."""
    embeddings = None
    with contextlib.suppress(AttributeError, NotImplementedError):
        embeddings = model.get_input_embeddings()
    for module in (embeddings, model):
        if isinstance(module, nn.Module):
            found = home(module)
            if found is not None:
                return found
    return torch.device("cpu")


def home(module: nn.Module) -> torch.device | None:
    """The device `module` computes on: the execution device of accelerate's hook on it or on
    its first submodule that has one (its weights may sit on "meta", brought in at each call
    from the CPU or disk), else its first parameter's; None when neither tells."""
    for each in module.modules():
        hook = getattr(each, "_hf_hook", None)
        for one in getattr(hook, "hooks", None) or [hook]:  # a SequentialHook holds several
            device = getattr(one, "execution_device", None)
            if device is not None:
                return torch.device(f"cuda:{device}" if isinstance(device, int) else device)
    for p in module.parameters():
        return None if p.device.type == "meta" else p.device
    return None


class _StopForward(Exception):
    """Raised after the last block a pass that keeps activations needs; caught by `Executor`."""


class Executor:
    """Forward passes of one model on prompts, under the edits of the caller's `Hooks`.

    >>> executor = Executor(model, pad_id=tok.pad_token_id)  # doctest: +SKIP
    >>> with Hooks(model) as hooks:
    ...     hooks.at(site, edit)
    ...     logits = executor.forward(prompts)  # (prompts, vocabulary) at read positions
    """

    def __init__(self, model: nn.Module, pad_id: int = 0, budget: Budget | None = None):
        self.model = model
        self.pad_id = pad_id
        self.budget = budget or Budget()
        self.device = device_of(model)
        self._takes = inspect.signature(model.forward).parameters

    # --- calling the model ---------------------------------------------------------------

    def call(self, ids, mask=None, *, cache=None, use_cache=False, last_only=False):
        """Run the model on `ids` (and the attention `mask`, if given): a transformers model
        takes keywords, builds no KV cache unless `use_cache` (then `cache` holds the steps'
        before), and with `last_only` computes the LM head at the last position only where it
        allows that; any other module gets the ids as its one argument."""
        if "input_ids" not in self._takes:
            return self.model(ids)
        keywords = {}
        if use_cache:
            keywords.update(past_key_values=cache, use_cache=True)
        elif "use_cache" in self._takes:
            keywords["use_cache"] = False
        if mask is not None and "attention_mask" in self._takes:
            keywords["attention_mask"] = mask
        if last_only and "logits_to_keep" in self._takes:
            keywords["logits_to_keep"] = 1
        return self.model(input_ids=ids, **keywords)

    def pad(self, prompts: list[Prompt], width: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
        """Right-padded ids and mask on the input device, at least `width` tokens wide: a pass
        in chunks pads every chunk as the whole batch would be, so chunks join and give what
        one pass would."""
        ids, mask = pad(prompts, self.pad_id, self.device)
        extra = width - mask.shape[1]
        if extra <= 0 or ids.shape[:2] != mask.shape:
            return ids, mask
        mask = torch.nn.functional.pad(mask, (0, extra))
        if ids.dtype == torch.long:
            return torch.nn.functional.pad(ids, (0, extra), value=self.pad_id), mask
        zeros = ids.new_zeros((ids.shape[0], extra, *ids.shape[2:]))
        return torch.cat([ids, zeros], dim=1), mask

    # --- one forward pass ----------------------------------------------------------------

    def forward(
        self,
        prompts: list[Prompt],
        *,
        width: int = 0,
        read: bool = True,
        stop_after: Collection[Site] = (),
    ) -> torch.Tensor | None:
        """One forward pass of `prompts` (right-padded to at least `width` tokens), under the
        edits the caller's `Hooks` hold. With `read`, the output at each prompt's read position,
        the LM head computed there only (an output without a sequence axis, (batch, classes),
        is returned whole). Without, None: the pass is for activations, its LM head runs at one
        position, and it stops after the last block that `stop_after`'s sites live in."""
        ids, mask = self.pad(prompts, width)
        head = _output_embeddings(self.model)
        n = len(prompts)
        at = torch.tensor([p.read_at for p in prompts], device=self.device)
        # the pass's own hooks, run after the caller's edits; they go when the pass ends (the
        # caller's may be kept for a backward pass)
        with Hooks(self.model) as own:
            if not read:
                if head is not None:
                    own.on(head, "input", lambda h: h[:, -1:] if h.dim() == 3 else None)
                block = last_block(self.model, stop_after)
                if block is not None:
                    own.on(block, "output", _stop)
                with contextlib.suppress(_StopForward):  # raised after the last block needed
                    self.call(ids, mask)
                return None
            if head is not None:
                own.on(
                    head,
                    "input",
                    lambda h: h[torch.arange(n, device=h.device), at.to(h.device)][:, None],
                )
            logits = _logits(self.call(ids, mask))
        if head is not None:
            return logits[:, -1]
        if logits.dim() == 2:
            return logits
        return logits[torch.arange(n, device=logits.device), at.to(logits.device)]

    def stored(
        self,
        prompts: list[Prompt],
        sites: Iterable[Site],
        what: str,
        *,
        budget: Budget | None = None,
        read: bool = False,
        grad: bool = False,
        keep: list[Hooks] | None = None,
    ) -> tuple[torch.Tensor | None, dict[Site, torch.Tensor]]:
        """Run `prompts` (right-padded to the longest) and keep the units at `sites`, one entry
        per prompt, in `budget`'s chunks (one pass without a budget); with `grad` they keep
        their gradients, and `keep` is `Hooks`'. With `read`, also the outputs at the read
        positions; without, each pass stops after the last block the sites need (unless its
        hooks are kept: gradient checkpointing runs the blocks again)."""
        sites = set(sites)
        width = max(len(p) for p in prompts)
        stop = () if keep is not None else sites

        def run(chunk: list[Prompt]):
            found: dict = {}
            with Hooks(self.model, keep) as hooks:
                for site in sites:
                    hooks.at(site, store_edit(site, found, (len(chunk), width), detach=not grad))
                output = self.forward(chunk, width=width, read=read, stop_after=stop)
            return output, found

        if budget is None:
            return run(list(prompts))
        return _joined(budget.chunks(prompts, run, what))

    # --- generation ----------------------------------------------------------------------

    def next_logits(self, ids: torch.Tensor, cache=None, *, use_cache: bool = False):
        """Generation's forward pass: `ids` unpadded (every row the same length), with the KV
        cache of the steps before if `use_cache`. Returns the last position's logits (rows,
        vocabulary) in float32 and the cache (None without one); the LM head runs at the last
        position only where the model allows it."""
        out = self.call(ids, cache=cache, use_cache=use_cache, last_only=True)
        logits = _logits(out)
        if not isinstance(logits, torch.Tensor) or logits.dim() != 3:
            raise NbveneError(
                "steering needs a language model: (batch, tokens, vocabulary) logits",
                hint="use a causal LM such as nv.models.load() or AutoModelForCausalLM",
            )
        return logits[:, -1].float(), (out.past_key_values if use_cache else None)

    def takes_cache(self) -> bool:
        """Whether the model's forward takes a KV cache."""
        return "past_key_values" in self._takes

    def takes_mask(self) -> bool:
        """Whether the model's forward takes an attention mask (then right padding a prompt
        leaves its real positions as they were)."""
        return "attention_mask" in self._takes


@contextlib.contextmanager
def stop_between_blocks(model: nn.Module, blocks: str | None, stop: Callable[[], bool] | None):
    """While the `with` block runs, ask `stop()` before the model and before each of its
    `blocks` (the path of its list of blocks; None: the model only) runs, and raise
    KeyboardInterrupt once it says True: a Stop click lands within one block's time, not at
    the end of a forward pass or of a chunk of them. Without `stop`, nothing is registered."""
    with Hooks(model) as hooks:
        if stop is not None:

            def check(args, kwargs) -> None:
                if stop():
                    raise KeyboardInterrupt

            for module in (model, *(model.get_submodule(blocks) if blocks else ())):
                hooks.on_call(module, check)
        yield


def last_block(model: nn.Module, sites: Collection[Site]) -> nn.Module | None:
    """The block after which nothing at `sites` changes: the deepest one of them lives in, when
    every site lives in a numbered block of one list of blocks; None otherwise (a site outside
    the blocks, or blocks called more often than the list holds them)."""
    if not sites or any(site.layer is None for site in sites):
        return None
    containers = set()
    for site in sites:
        for path in (site.module, site.residual):
            if path is not None:
                containers.add(_blocks_of(model, path, site.layer))
    if len(containers) != 1 or None in containers:
        return None
    blocks = model.get_submodule(containers.pop())
    layers = dimensions(model).layers
    deepest = max(site.layer for site in sites)
    if deepest >= len(blocks) or (layers is not None and layers != len(blocks)):
        return None
    return blocks[deepest]


def _blocks_of(model: nn.Module, path: str, layer: int) -> str | None:
    """The path of the list of blocks whose block `layer` holds the module at `path`."""
    parts = path.split(".")
    for i, part in enumerate(parts):
        if part == str(layer):
            container = ".".join(parts[:i])
            try:
                if isinstance(model.get_submodule(container), nn.ModuleList):
                    return container
            except AttributeError:
                return None
    return None


def _stop(output) -> None:
    raise _StopForward


def _output_embeddings(model: nn.Module) -> nn.Module | None:
    return getattr(model, "get_output_embeddings", lambda: None)()


def _logits(output):
    logits = output.logits if hasattr(output, "logits") else output
    return logits[0] if isinstance(logits, tuple) else logits


def _joined(chunks) -> tuple[torch.Tensor | None, dict[Site, torch.Tensor]]:
    """Concatenate the chunks' (output, units kept per site): one output (None, or a tensor),
    and the units per site."""
    outputs, parts = [], {}
    for _, (output, found) in chunks:
        outputs.append(output)
        for site, units in found.items():
            parts.setdefault(site, []).append(units)
    stored = {}
    while parts:  # one site at a time: the chunks of the others are not copied twice at once
        site, units = parts.popitem()
        stored[site] = torch.cat(units) if len(units) > 1 else units[0]
        del units
    if not outputs or outputs[0] is None:
        return None, stored
    return (torch.cat(outputs) if len(outputs) > 1 else outputs[0]), stored
