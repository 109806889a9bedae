"""Calling transformers' `from_pretrained` for nbvene: the packages a file format needs named
before anything loads, progress bars silenced, and a model class that fits the checkpoint.
"""

from __future__ import annotations

import contextlib
import functools
import importlib.util
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import torch

from nbvene.errors import NbveneError

# Where a config names no class: a language model first, then a masked one, then the bare model.
AUTO_CLASSES = ("AutoModelForCausalLM", "AutoModelForMaskedLM", "AutoModel")
TOKENIZER_FILES = (
    "tokenizer.json",
    "tokenizer_config.json",
    "tokenizer.model",
    "vocab.json",
    "vocab.txt",
    "spiece.model",
)


def require(packages: tuple[str, ...], purpose: str) -> None:
    """Raise an NbveneError naming every package of `packages` that is not installed."""
    missing = [name for name in packages if importlib.util.find_spec(name) is None]
    if missing:
        listed = " and ".join(missing)
        raise NbveneError(
            f"{purpose} needs the package{'s' if len(missing) > 1 else ''} {listed}, "
            "which is not installed",
            hint=f"pip install {' '.join(missing)}",
        )


def from_pretrained(
    source: str | Path, *, gguf_file: str | None = None, dtype: torch.dtype = torch.float32
) -> tuple[torch.nn.Module, Any]:
    """Model and tokenizer from a folder, a hub name, or a GGUF file in a folder.

    Errors from transformers pass through (the caller knows what the source was and says so);
    a folder without tokenizer files gives `None` for the tokenizer.
    """
    import transformers

    if gguf_file is not None:
        require(("gguf", "accelerate"), "loading a GGUF file")
    options = {"gguf_file": gguf_file} if gguf_file else {}
    with quiet():
        model = _model(transformers, source, dtype, options)
        tokenizer = None
        if gguf_file or not Path(source).is_dir() or _has_tokenizer_files(Path(source)):
            tokenizer = transformers.AutoTokenizer.from_pretrained(source, **options)
    return model.eval(), tokenizer


def _has_tokenizer_files(folder: Path) -> bool:
    # Without them transformers 5 builds an empty tokenizer from the config, silently.
    return any((folder / name).is_file() for name in TOKENIZER_FILES)


def _model(transformers, source, dtype, options) -> torch.nn.Module:
    """The class the checkpoint was saved from (`architectures` in its config), else the first
    auto class that accepts its config."""
    config = transformers.AutoConfig.from_pretrained(source, **options)
    saved_as = getattr(transformers, (config.architectures or [""])[0], None)
    if saved_as is not None:
        return saved_as.from_pretrained(source, dtype=dtype, **options)
    *fallbacks, last = AUTO_CLASSES
    for name in fallbacks:
        try:
            return getattr(transformers, name).from_pretrained(source, dtype=dtype, **options)
        except ValueError as exc:  # this checkpoint has no such head: try the next
            if "Unrecognized configuration class" not in str(exc):
                raise
    return getattr(transformers, last).from_pretrained(source, dtype=dtype, **options)


@contextlib.contextmanager
def quiet() -> Iterator[None]:
    """Silence transformers' progress bars and notices for the duration of a load."""
    from transformers import modeling_gguf_pytorch_utils as gguf_loading
    from transformers.utils import logging

    # The GGUF converter calls tqdm directly, past transformers' progress-bar switch, and tqdm
    # reads TQDM_DISABLE only when it is imported: swap in a silent tqdm while we load.
    loud_tqdm = getattr(gguf_loading, "tqdm", None)
    bars_were_on = logging.is_progress_bar_enabled()
    level = logging.get_verbosity()
    if loud_tqdm is not None:
        gguf_loading.tqdm = functools.partial(loud_tqdm, disable=True)
    logging.disable_progress_bar()
    logging.set_verbosity_error()
    try:
        yield
    finally:
        logging.set_verbosity(level)
        if bars_were_on:
            logging.enable_progress_bar()
        if loud_tqdm is not None:
            gguf_loading.tqdm = loud_tqdm
