"""Project defaults for the magic's options: `[tool.nbvene]` in the nearest pyproject.toml.

[tool.nbvene]
max_batch = 32
max_memory = "4GB"
device = "cuda"
"""

from __future__ import annotations

import sys
from dataclasses import dataclass, field
from pathlib import Path

from traitlets import TraitError
from traitlets.config import Configurable

from nbvene.errors import did_you_mean

try:
    import tomllib
except ModuleNotFoundError:  # Python 3.10
    try:
        import tomli as tomllib
    except ModuleNotFoundError:
        tomllib = None


@dataclass(frozen=True)
class Defaults:
    """The `[tool.nbvene]` table of `path` (empty when no pyproject.toml has one)."""

    values: dict = field(default_factory=dict)
    path: Path | None = None

    @classmethod
    def find(cls, start: Path | str | None = None) -> Defaults:
        """The nearest pyproject.toml with a `[tool.nbvene]` table, from `start` upwards."""
        folder = Path.cwd() if start is None else Path(start)
        for where in (folder, *folder.parents):
            path = where / "pyproject.toml"
            if not path.is_file():
                continue
            if tomllib is None:
                _warn(f"{path}: cannot read TOML on this Python; pip install tomli")
                return cls()
            try:
                data = tomllib.loads(path.read_text(encoding="utf-8"))
            except (OSError, UnicodeDecodeError, tomllib.TOMLDecodeError) as e:
                _warn(f"{path}: not read ({e})")
                continue
            table = data.get("tool", {}).get("nbvene")
            if isinstance(table, dict):
                return cls(dict(table), path)
        return cls()

    def apply(self, target: Configurable) -> dict[str, object]:
        """Set `target`'s options from the table, except those the IPython configuration
        (ipython_config.py, command line) sets; returns what was set."""
        section = type(target).__name__
        explicit = target.config.get(section, {})
        names = target.class_trait_names(config=True)
        applied = {}
        for key, value in self.values.items():
            name = key.replace("-", "_")
            if name not in names:
                hint = did_you_mean(name, names) or "options: " + ", ".join(sorted(names))
                _warn(f"{self.path}: [tool.nbvene] has no option {key!r}; {hint}")
                continue
            if name in explicit:
                continue
            try:
                setattr(target, name, value)
            except TraitError as e:
                _warn(f"{self.path}: [tool.nbvene] {key} = {value!r} is not used: {e}")
                continue
            applied[name] = value
        return applied


def _warn(message: str) -> None:
    print(f"nbvene: {message}", file=sys.stderr)
