"""Arrays to and from the front end as binary buffers: `{"shape", "dtype", "data": bytes}`,
which ipywidgets sends as a separate binary frame (never a JSON list of numbers)."""

from __future__ import annotations

import numpy as np
import torch

DTYPES = ("float32", "float64", "int32", "uint8")
"""What the front end can read (JS typed arrays of the same names)."""


def encode(values: torch.Tensor | np.ndarray, dtype: str = "float32") -> dict:
    """An array as a trait value: its shape, its dtype, and its bytes (little-endian, C order).

    >>> encode(torch.ones(2, 3))["shape"]
    [2, 3]
    """
    if dtype not in DTYPES:
        raise ValueError(f"dtype must be one of {DTYPES}, got {dtype!r}")
    if isinstance(values, torch.Tensor):
        values = values.detach().cpu().numpy()
    array = np.ascontiguousarray(values, dtype=np.dtype(dtype).newbyteorder("<"))
    return {"shape": list(array.shape), "dtype": dtype, "data": array.tobytes()}


def decode(state: dict) -> np.ndarray:
    """The array back from a trait value (bytes or memoryview, as a widget's state holds it)."""
    data = state["data"]
    flat = np.frombuffer(bytes(data), dtype=np.dtype(state["dtype"]).newbyteorder("<"))
    return flat.reshape(state["shape"])
