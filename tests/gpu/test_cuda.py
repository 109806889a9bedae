"""What runs on a GPU (docs/scale.md): a sweep on `cuda` gives the CPU's numbers, in float32
within float rounding and in bfloat16 within half precision's; `max_memory="auto"` sizes its
passes from the CUDA driver's free memory. Skipped on machines without CUDA."""

import copy

import pytest
import torch

import nbvene as nv
from nbvene.engine import memory

pytestmark = pytest.mark.skipif(
    not torch.cuda.is_available(), reason="needs a CUDA device (torch.cuda.is_available() is False)"
)

TRACE = """
base:    ["The Colosseum is located in the city of", "Big Ben is in the city of"]
corrupt: noise 3σ on "city" samples=2
restore: block_output layer=* pos=-3..-1
metric:  logit_diff(" Paris", " Rome")
"""
# bf16 keeps 8 bits of mantissa: a logit difference of the tiny models (a few units) moves by
# a few hundredths through 2-4 blocks
TOLERANCE = {torch.float32: 1e-4, torch.bfloat16: 5e-2}


@pytest.fixture(scope="module", params=["llama", "gpt2"])
def tiny(request):
    return nv.models.tiny(request.param)


@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16], ids=["float32", "bfloat16"])
def test_a_sweep_on_cuda_equals_the_cpu(tiny, dtype):
    model, tok = tiny
    on_cpu = nv.run(TRACE, model=model, tokenizer=tok)
    on_gpu = copy.deepcopy(model).to("cuda", dtype)
    res = nv.run(TRACE, model=on_gpu, tokenizer=tok)
    assert res.values.shape == on_cpu.values.shape
    diff = (res.values.float().cpu() - on_cpu.values).abs().max().item()
    assert diff <= TOLERANCE[dtype], f"max |diff| {diff:.2e} on cuda in {dtype}"
    assert next(on_gpu.parameters()).dtype == dtype  # the model is left as it was


def test_auto_reads_the_cuda_free_memory(tiny, monkeypatch):
    model, tok = tiny
    on_gpu = copy.deepcopy(model).to("cuda")
    calls = []
    real = torch.cuda.mem_get_info

    def spy(device=None):
        calls.append(torch.device(device))
        return real(device)

    monkeypatch.setattr(torch.cuda, "mem_get_info", spy)
    plan = nv.plan(TRACE, model=on_gpu, tokenizer=tok)
    assert memory.model_devices(on_gpu) == [torch.device("cuda", torch.cuda.current_device())]
    text = plan.describe(max_memory="auto")
    assert calls and all(d.type == "cuda" for d in calls)
    assert f"free on {memory.model_devices(on_gpu)[0]} →" in text
    free, _ = real()
    assert memory.free_memory(on_gpu).bytes >= free * 0.9
    res = nv.run(TRACE, model=on_gpu, tokenizer=tok, max_memory="auto")
    assert torch.isfinite(res.values).all()
