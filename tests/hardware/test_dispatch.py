"""Models placed by accelerate give the numbers of the same weights undispatched.

On a CPU-only machine three placements work, and each is tested:
* `cpu_offload`: every weight on "meta", brought in by accelerate's hooks at each call;
* `dispatch_model` with a device_map putting some blocks on "cpu" and others on "disk" (an
  `offload_folder`): those blocks' weights are read from memory-mapped files at each call;
* `dispatch_model` with a hand-written device_map that names "cpu" for every block and
  `force_hooks=True` (without it, a map of one device gets no hooks): each block gets its own
  `AlignDevicesHook`, alternate blocks a second one with `io_same_device=True` added by hand,
  as across GPUs (the machine has one CPU device, so the hooks move nothing, but they wrap
  every block's forward as they would across devices).

For each: a restore sweep after noise, a head-level patch, a steered greedy generation and one
DAS step equal the undispatched model's within 1e-5; afterwards nbvene has left no hook, and
accelerate's hooks are all still there.
"""

import copy

import pytest
import torch
from workloads import values

import nbvene as nv

accelerate = pytest.importorskip("accelerate")


def blocks(model):
    return model.model.layers if hasattr(model, "model") else model.transformer.h


def block_names(model):
    prefix = "model.layers" if hasattr(model, "model") else "transformer.h"
    return [f"{prefix}.{i}" for i in range(len(blocks(model)))]


def cpu_offload(model, tmp_path):
    return accelerate.cpu_offload(model, execution_device="cpu")


def cpu_and_disk(model, tmp_path):
    names = block_names(model)
    device_map = {"": "cpu"} | {n: ("cpu" if i % 2 == 0 else "disk") for i, n in enumerate(names)}
    return accelerate.dispatch_model(
        model, device_map=device_map, offload_dir=str(tmp_path / "offload"), main_device="cpu"
    )


def alternate_blocks(model, tmp_path):
    """A hand-written device_map, every block its own entry, and on alternate blocks an extra
    `AlignDevicesHook(io_same_device=True)` appended by hand, as a user splitting blocks over
    two devices would (every "device" is the CPU here)."""
    device_map = {"": "cpu"} | {n: "cpu" for n in block_names(model)}
    model = accelerate.dispatch_model(
        model, device_map=device_map, main_device="cpu", force_hooks=True
    )
    for block in blocks(model)[1::2]:
        hook = accelerate.hooks.AlignDevicesHook(execution_device="cpu", io_same_device=True)
        accelerate.hooks.add_hook_to_module(block, hook, append=True)
    return model


PLACEMENTS = [cpu_offload, cpu_and_disk, alternate_blocks]


def hooks_of(model):
    """Every forward (pre-)hook torch holds, per module, and accelerate's own hooks."""
    torch_hooks = {
        name: (len(m._forward_hooks), len(m._forward_pre_hooks))
        for name, m in model.named_modules()
    }
    return torch_hooks, {name for name, m in model.named_modules() if hasattr(m, "_hf_hook")}


@pytest.mark.parametrize("family", ["llama", "gpt2"])
@pytest.mark.parametrize("place", PLACEMENTS, ids=lambda f: f.__name__)
def test_dispatched_equals_undispatched(family, place, tmp_path):
    model, tok = nv.models.tiny(family, layers=3)
    expected = values(model, tok)
    dispatched = place(copy.deepcopy(model), tmp_path)
    calls = []  # a user's own hook, there before nbvene's and after them
    blocks(dispatched)[1].register_forward_hook(lambda m, a, o: calls.append(1))
    before = hooks_of(dispatched)
    assert {"", *block_names(dispatched)[:1]} & before[1], "accelerate placed its hooks"
    found = values(dispatched, tok)
    assert calls
    for key, want in expected.items():
        if isinstance(want, torch.Tensor):
            torch.testing.assert_close(found[key], want, atol=1e-5, rtol=0, msg=key)
        else:
            assert found[key] == want, key
    assert hooks_of(dispatched) == before
    assert all(hasattr(dispatched.get_submodule(name), "_hf_hook") for name in before[1])
