"""`Trained`: the interventions `nv.train` fitted, what they scored, and their files.

A saved intervention is a folder: `config.json` (the spec, the site, each intervention's type,
arguments and tensor shapes, the model's name, the nbvene version, the training record) and
`interventions.safetensors` (the tensors). Nothing is pickled.
"""

from __future__ import annotations

import json
import math
from collections.abc import Mapping
from dataclasses import replace
from pathlib import Path

import torch
from torch import nn

from nbvene.bind.training import check_trainable, named_calls, plan_examples, via_modules
from nbvene.engine.executor import device_of
from nbvene.engine.lock import holding
from nbvene.errors import NbveneError
from nbvene.files import (
    DTYPES,
    FLOATS,
    bad,
    read_header,
    read_json,
    read_tensors,
    write_bytes,
    write_safetensors,
)
from nbvene.interventions.trainable import CONSTRUCTORS, Trainable, build
from nbvene.sites import Site, SiteMap
from nbvene.spec import Index, Spec, Var, format_spec, parse
from nbvene.train.forward import Forward
from nbvene.train.measure import labels_of, measure
from nbvene.version import __version__

FORMAT = "nbvene-interventions"
FORMAT_VERSION = 1
CONFIG = "config.json"
TENSORS = "interventions.safetensors"


class Trained(nn.Module):
    """Trained interventions, bound to their spec and model.

    - `iia`, `loss`: interchange intervention accuracy and loss on the held-out examples (on the
      training examples when none were held out) at the end of training;
    - `history`: one record per epoch (`loss`, and `held_out_loss`, `held_out_iia`);
    - `basis`: the learned directions, a (width, k) tensor (for one trained intervention);
    - `evaluate(namespace=...)`, `save(folder)`; `nv.load_interventions(folder, model=...)`
      reads it back;
    - called as `trained(base, source)`, it is the intervention itself, so `via {das}` with
      `namespace={"das": trained}` applies it in `nv.run`.
    """

    def __init__(
        self,
        *,
        spec: Spec,
        bound: Spec,
        modules: Mapping[str, nn.Module],
        built: set[str],
        model: nn.Module,
        tokenizer=None,
        sites=None,
        namespace: Mapping | None = None,
        history=(),
        loss=None,
        settings: Mapping | None = None,
        metrics: Mapping | None = None,
    ):
        super().__init__()
        self.names = list(modules)
        self.interventions = nn.ModuleList(modules.values())
        # the model is not a part of this module (its weights are the user's, not ours)
        object.__setattr__(self, "model", model)
        self.spec, self.bound, self.built = spec, bound, set(built)
        self.tokenizer, self.sites = tokenizer, sites
        self.namespace = dict(namespace or {})
        self.history = [dict(r) for r in history]
        self.objective = loss
        self.settings = dict(settings or {})
        self.metrics = dict(metrics) if metrics is not None else self.final()

    # --- what was learned ----------------------------------------------------------------------

    @property
    def iia(self) -> float:
        return self.metrics["iia"]

    @property
    def loss(self) -> float:
        return self.metrics["loss"]

    @property
    def intervention(self) -> nn.Module:
        """The trained intervention, when there is one."""
        if len(self.interventions) != 1:
            raise NbveneError(
                f"this spec has {len(self.interventions)} trained interventions",
                hint="pick one: trained.interventions[0]",
            )
        return self.interventions[0]

    @property
    def basis(self) -> torch.Tensor:
        """The directions the intervention acts on: (width, k), one column each."""
        return self.intervention.basis

    @property
    def needs_source(self) -> bool:
        return getattr(self.intervention, "needs_source", True)

    def forward(self, base: torch.Tensor, source: torch.Tensor | None) -> torch.Tensor:
        return self.intervention(base, source)

    # --- measuring -------------------------------------------------------------------------------

    def evaluate(
        self, namespace: Mapping | None = None, *, batch_size: int = 256, loss=None
    ) -> dict:
        """IIA and mean loss of the spec on other examples: `namespace` gives the spec's
        `{base}`, `{source}` and `{label}` (and anything else it names).

        >>> trained.evaluate(namespace=dict(base=B2, source=S2, label=Y2))
        {'iia': 0.98, 'loss': 0.07}
        """
        objective = loss if loss is not None else self.objective
        names = dict(zip(self.names, self.interventions, strict=True))
        values = {**self.namespace, **dict(namespace or {}), **names}
        plan = plan_examples(self.bound, self.model, self.tokenizer, values, self.sites)
        check_trainable(plan, "evaluate")
        labels = labels_of(plan, values, self.tokenizer, objective is None)
        with holding(self.model, "evaluate"):
            forward = Forward(plan)
            return measure(forward, list(range(len(plan.base))), labels, objective, batch_size)

    def final(self) -> dict:
        """The scores at the end of training: the last epoch's held-out ones, or the loss of
        the last epoch."""
        if not self.history:
            return {"iia": math.nan, "loss": math.nan}
        last = self.history[-1]
        if "held_out_iia" in last:
            return {"iia": last["held_out_iia"], "loss": last["held_out_loss"]}
        return {"iia": last.get("iia", math.nan), "loss": last["loss"]}

    # --- files -----------------------------------------------------------------------------------

    def save(self, folder: str | Path) -> Path:
        """Write `config.json` and `interventions.safetensors` into `folder` (made if needed)."""
        folder = Path(folder)
        folder.mkdir(parents=True, exist_ok=True)
        tensors: dict[str, torch.Tensor] = {}
        entries = []
        for i, (name, module) in enumerate(zip(self.names, self.interventions, strict=True)):
            state = {k: v.detach().cpu().contiguous() for k, v in module.state_dict().items()}
            tensors.update({f"{i}.{k}": v for k, v in state.items()})
            stmt = _statement(self.bound, name)
            site = site_of(self.model, self.sites, stmt)
            trainable = isinstance(module, Trainable)
            entries.append(
                {
                    "index": i,
                    "name": name,
                    "line": stmt.line,
                    "statement": _written(self.spec, stmt.line),
                    "component": stmt.component,
                    "site": None if site is None else f"{site.module}.{site.io}",
                    "type": module.kind if trainable and name in self.built else "module",
                    "class": type(module).__qualname__,
                    "args": module.config() if trainable else None,
                    "width": getattr(module, "width", None),
                    "tensors": {
                        k: {"shape": list(v.shape), "dtype": str(v.dtype)[6:]}
                        for k, v in state.items()
                    },
                }
            )
        config = {
            "format": FORMAT,
            "format_version": FORMAT_VERSION,
            "nbvene": __version__,
            "torch": torch.__version__,
            "spec": self.spec.text,
            "sites": dict(self.sites) if self.sites else None,
            "model": _model_card(self.model),
            "interventions": entries,
            "metrics": _json_numbers(self.metrics),
            "history": [_json_numbers(r) for r in self.history],
            "train": _json_numbers(self.settings),
        }
        write_safetensors(folder / TENSORS, tensors, metadata={"format": "pt"})
        write_bytes(folder / CONFIG, (json.dumps(config, indent=2) + "\n").encode("utf-8"))
        return folder

    def push_to_hub(
        self,
        repo_id: str,
        *,
        subfolder: str | None = None,
        revision: str | None = None,
        private: bool | None = None,
        token: str | None = None,
    ) -> str:
        """Upload what `save` writes to the Hugging Face Hub repository `repo_id` (made if
        missing, with `huggingface_hub`); returns the `hf://` path `nv.load_interventions`
        reads it from.

        >>> trained.push_to_hub("me/adder-das")   # doctest: +SKIP
        'hf://me/adder-das'
        """
        import tempfile

        from huggingface_hub import HfApi

        api = HfApi(token=token)
        api.create_repo(repo_id, private=private, exist_ok=True)
        with tempfile.TemporaryDirectory() as folder:
            self.save(folder)
            api.upload_folder(
                repo_id=repo_id,
                folder_path=folder,
                path_in_repo=subfolder,
                revision=revision,
                commit_message=f"nbvene: {self!r}",
            )
        return (
            f"hf://{repo_id}"
            + (f"/{subfolder}" if subfolder else "")
            + (f"@{revision}" if revision else "")
        )

    def __repr__(self) -> str:
        lines = [_written(self.spec, _statement(self.bound, n).line) for n in self.names]
        what = "; ".join(lines) or "no intervention (the model was trained)"
        return f"Trained({what}: iia {self.iia:.3f}, loss {self.loss:.4g})"


def load_interventions(
    path: str | Path,
    *,
    model: nn.Module,
    tokenizer=None,
    namespace: Mapping | None = None,
    sites: Mapping[str, str] | None = None,
) -> Trained:
    """Read interventions that `Trained.save` wrote, onto `model` (checked to match).

    `path` is a folder, or `hf://owner/name[/subfolder][@revision]` for a folder on the
    Hugging Face Hub (downloaded with `huggingface_hub.snapshot_download`). Your own intervention
    modules (`via {mine}`) are not stored as code: pass fresh ones in `namespace`, and their
    weights are loaded into them.
    """
    folder = _local(path)
    where = "point at the folder that trained.save(...) wrote"
    if not folder.is_dir():
        raise bad(folder, "is not a folder" if folder.exists() else "does not exist", hint=where)
    config_path = folder / CONFIG
    if not config_path.exists():
        empty = "is an empty folder: it" if not any(folder.iterdir()) else ""
        raise bad(folder, f"{empty} has no {CONFIG}".strip(), hint=where)
    config = read_json(config_path, "the interventions' config")
    _check_config(config, config_path)
    tensors_path = folder / TENSORS
    declared, _ = read_header(tensors_path, "the interventions' tensors")
    _check_tensors(config, config_path, declared, tensors_path)
    namespace = dict(namespace or {})
    sites = sites if sites is not None else config.get("sites")
    try:
        spec = parse(config["spec"])
    except NbveneError as e:
        raise bad(config_path, f"field 'spec' does not parse: {e.message}") from None
    bound, _ = named_calls(spec)
    device = device_of(model)
    modules: dict[str, nn.Module] = {}
    built = set()
    for i, entry in enumerate(config["interventions"]):
        try:
            stmt = _statement(bound, entry["name"])
        except KeyError:
            raise bad(
                config_path,
                f"field 'interventions[{i}].name' is {entry['name']!r}, and the spec has no "
                f"via {{{entry['name']}}}",
            ) from None
        _check_site(model, sites, stmt, entry, config)
        if entry["type"] == "module":
            module = namespace.get(entry["name"])
            if not isinstance(module, nn.Module):
                raise NbveneError(
                    f"{{{entry['name']}}} is your own intervention ({entry['class']}): pass a new "
                    "one to load its weights into",
                    hint=f"nv.load_interventions(..., namespace={{'{entry['name']}': "
                    f"{entry['class']}(...)}})",
                )
        elif entry["type"] in CONSTRUCTORS:
            try:
                module = build(entry["type"], entry["args"] or {})
                module.build(entry["width"])
            except (NbveneError, TypeError, ValueError, IndexError, RuntimeError) as e:
                raise bad(
                    config_path,
                    f"field 'interventions[{i}].args' does not build {entry['type']} for width "
                    f"{entry['width']}: {getattr(e, 'message', e)}",
                    hint=getattr(e, "hint", None),
                ) from None
        else:
            raise NbveneError(
                f"unknown intervention type {entry['type']!r} in {config_path}",
                hint="it was saved by a newer nbvene; upgrade",
            )
        modules[entry["name"]] = module.to(device)
        if entry["type"] != "module":
            built.add(entry["name"])
    _load_tensors(tensors_path, declared, modules, config, device)
    for name, module in via_modules(bound, namespace).items():
        modules.setdefault(name, module)
    return Trained(
        spec=spec,
        bound=bound,
        modules=modules,
        built=built,
        model=model,
        tokenizer=tokenizer,
        sites=sites,
        namespace=namespace,
        history=config.get("history", ()),
        settings=config.get("train"),
        metrics={k: (math.nan if v is None else v) for k, v in config["metrics"].items()},
    )


def _load_tensors(file: Path, declared: dict, modules: dict, config: dict, device) -> None:
    tensors = read_tensors(file, declared)
    for entry in config["interventions"]:
        prefix = f"{entry['index']}."
        state = {k[len(prefix) :]: v for k, v in tensors.items() if k.startswith(prefix)}
        module = modules[entry["name"]]
        try:
            module.load_state_dict(state, strict=True)
        except RuntimeError as e:
            raise bad(
                file,
                f"the saved tensors of {entry['statement']!r} do not fit the intervention: "
                f"{str(e).splitlines()[0]}",
                hint="load it onto the model (and with the modules) it was trained with",
            ) from None
        module.to(device)


def _check_config(config: dict, path: Path) -> None:
    """Every field `load_interventions` reads, with its type, before anything is built."""
    if config.get("format") != FORMAT:
        raise bad(
            path,
            f"is not a saved nbvene intervention (format {config.get('format')!r:.40}, "
            f"expected {FORMAT!r})",
            hint="point at the folder that trained.save(...) wrote",
        )
    version = config.get("format_version")
    if not _whole(version) or not 1 <= version <= FORMAT_VERSION:
        raise bad(
            path,
            f"format_version {version!r:.40} is not one this nbvene reads (1..{FORMAT_VERSION})",
            hint="it was saved by a newer nbvene; upgrade" if _whole(version) else None,
        )
    _field(path, config, "spec", str, "the spec text")
    _field(path, config, "interventions", list, "a list")
    _field(path, config, "metrics", dict, "an object")
    for key in ("sites", "model", "train"):
        if config.get(key) is not None:
            _field(path, config, key, dict, "an object or null")
    if config.get("sites") and not all(
        isinstance(k, str) and isinstance(v, str) for k, v in config["sites"].items()
    ):
        raise bad(path, "field 'sites' should map component names to module paths")
    if not isinstance(config.get("history", []), list) or not all(
        isinstance(r, dict) for r in config.get("history", [])
    ):
        raise bad(path, "field 'history' should be a list of objects")
    for key, value in config["metrics"].items():
        if value is not None and not _number(value):
            raise bad(path, f"field 'metrics.{key}' should be a number, got {value!r:.40}")
    seen = set()
    for i, entry in enumerate(config["interventions"]):
        at = f"interventions[{i}]"
        if not isinstance(entry, dict):
            raise bad(path, f"field {at!r} should be an object")
        _field(path, entry, "index", int, "a whole number", at)
        _field(path, entry, "name", str, "a name", at)
        _field(path, entry, "statement", str, "the spec line", at)
        _field(path, entry, "type", str, "an intervention type", at)
        _field(path, entry, "tensors", dict, "an object", at)
        if entry["index"] in seen or entry["index"] < 0:
            raise bad(path, f"field '{at}.index' is {entry['index']}, not a new index")
        seen.add(entry["index"])
        if entry["type"] != "module":
            _field(path, entry, "width", int, "the units' width", at)
            if entry["width"] < 1:
                raise bad(path, f"field '{at}.width' is {entry['width']}")
            if entry.get("args") is not None:
                _field(path, entry, "args", dict, "an object", at)
        for name, about in entry["tensors"].items():
            shape = about.get("shape") if isinstance(about, dict) else None
            if not isinstance(shape, list) or not all(_whole(n) and n >= 0 for n in shape):
                raise bad(path, f"field '{at}.tensors.{name}.shape' should be a list of sizes")
            if not isinstance(about.get("dtype"), str):
                raise bad(path, f"field '{at}.tensors.{name}.dtype' should be a dtype name")


def _field(path: Path, record: dict, key: str, kind: type, what: str, at: str = "") -> None:
    name = f"{at}.{key}" if at else key
    if key not in record:
        raise bad(path, f"has no field {name!r}")
    value = record[key]
    if not isinstance(value, kind) or (kind is int and isinstance(value, bool)):
        raise bad(path, f"field {name!r} should be {what}, got {value!r:.40}")


def _whole(x) -> bool:
    return isinstance(x, int) and not isinstance(x, bool)


def _number(x) -> bool:
    return isinstance(x, int | float) and not isinstance(x, bool)


_DTYPE_NAMES = {str(dtype)[6:]: name for name, (dtype, _) in DTYPES.items()}


def _check_tensors(config: dict, path: Path, declared: dict, file: Path) -> None:
    """The tensors file holds exactly the tensors the config lists, with their shapes and
    floating dtypes; each intervention's width is the one its tensors have (so nothing larger
    than the files is ever built)."""
    listed = {}
    for i, entry in enumerate(config["interventions"]):
        at = f"interventions[{i}]"
        for name, about in entry["tensors"].items():
            key = f"{entry['index']}.{name}"
            listed[key] = (at, name, about)
        if entry["type"] != "module" and entry["tensors"]:
            widest = max((n for a in entry["tensors"].values() for n in a["shape"]), default=0)
            if entry["width"] != widest:
                raise bad(
                    path,
                    f"field '{at}.width' is {entry['width']}, and its tensors are at most "
                    f"{widest} wide",
                )
            for arg, value in (entry.get("args") or {}).items():
                if _whole(value) and value > entry["width"] and arg != "seed":
                    raise bad(
                        path,
                        f"field '{at}.args.{arg}' is {value}, more than the width {entry['width']}",
                    )
    for key in declared:
        if key not in listed:
            raise bad(file, f"holds tensor {key!r}, which {CONFIG} does not list")
    for key, (at, _name, about) in listed.items():
        if key not in declared:
            raise bad(file, f"has no tensor {key!r} ({CONFIG} lists it in {at}.tensors)")
        found = declared[key]
        if found.dtype not in FLOATS:
            raise bad(
                file, f"tensor {key!r} is {found.dtype}, and interventions are floating point"
            )
        if _DTYPE_NAMES.get(about["dtype"]) != found.dtype:
            raise bad(file, f"tensor {key!r} is {found.dtype}, and {CONFIG} says {about['dtype']}")
        if list(found.shape) != about["shape"]:
            raise bad(
                file,
                f"tensor {key!r} has shape {list(found.shape)}, and {CONFIG} says {about['shape']}",
            )


def _local(path: str | Path) -> Path:
    text = str(path)
    if not text.startswith("hf://"):
        return Path(path)
    repo, _, revision = text[len("hf://") :].partition("@")
    parts = repo.strip("/").split("/")
    if len(parts) < 2:
        raise NbveneError(f"{text!r} names no repository", hint="write hf://owner/name")
    from huggingface_hub import snapshot_download

    subfolder = "/".join(parts[2:])
    pattern = [f"{subfolder}/*"] if subfolder else None
    local = snapshot_download(
        "/".join(parts[:2]), revision=revision or None, allow_patterns=pattern
    )
    return Path(local) / subfolder if subfolder else Path(local)


def _statement(bound: Spec, name: str):
    for stmt in bound.interventions:
        if isinstance(stmt.via, Var) and stmt.via.name == name:
            return stmt
    raise KeyError(name)  # pragma: no cover - names come from the spec


def _written(spec: Spec, line: int) -> str:
    """The statement on a spec line as written, without its comment."""
    stmt = next(s for s in spec.interventions if s.line == line)
    return format_spec(Spec(interventions=(stmt,)))


def site_of(model: nn.Module, sites, stmt) -> Site | None:
    """The site a statement acts on, when its layer is written as a number (or not needed)."""
    sitemap = SiteMap(model, sites)
    component = sitemap.resolve(stmt.component)
    layer = stmt.selector("layer")
    if sitemap.layered(component) and not isinstance(layer, Index):
        return None
    value = layer.value % sitemap.n_layers if isinstance(layer, Index) else None
    return sitemap.site(component, value)


def _check_site(model: nn.Module, sites, stmt, entry: dict, config: dict) -> None:
    """The model must have the site, with units of the width the intervention was made for."""
    saved = (config.get("model") or {}).get("name")
    try:
        site = site_of(model, sites, stmt)
    except NbveneError as e:
        raise NbveneError(
            f"this model has no site for {entry['statement']!r} (trained on {saved!r}): "
            f"{e.message}",
            hint=e.hint,
        ) from None
    except (IndexError, AttributeError, ZeroDivisionError):
        raise NbveneError(
            f"this model has no site for {entry['statement']!r} (trained on {saved!r})"
        ) from None
    width = entry.get("width")
    found = site_width(model, site) if site is not None else None
    if found is None and site is not None and site.view.by_head and site.view.fused == 1:
        whole = site_width(model, replace(site, view=replace(site.view, by_head=False)))
        heads = site.view.heads
        found = whole // heads if whole and heads and whole % heads == 0 else None
    if width is not None and found is not None and found != width:
        raise NbveneError(
            f"{entry['statement']!r} was trained on units of width {width} (model {saved!r}), "
            f"and this model's {stmt.component} has {found}",
            hint="load it onto the model it was trained on, or one of the same shape",
        )


_RESIDUAL = {
    "block_input",
    "block_output",
    "resid_mid",
    "mlp_output",
    "mlp_input",
    "attention_output",
    "attention_input",
}


def site_width(model: nn.Module, site: Site) -> int | None:
    """The width of a whole-vector site's units, read from its module without running it (None
    when it cannot be told that way)."""
    view = site.view
    if view.by_head or view.fused > 1:
        return None
    if view.sliced and view.stop is not None:
        return view.stop - view.start
    if site.component in _RESIDUAL:
        config = getattr(model, "config", None)
        for name in ("hidden_size", "n_embd", "d_model"):
            if isinstance(getattr(config, name, None), int):
                return getattr(config, name)
        return None
    module = model.get_submodule(site.module)
    if site.io == "output":
        names = ("out_features", "embedding_dim", "out_channels", "num_features")
    else:
        names = ("in_features", "input_size", "in_channels", "num_features")
    for name in names:
        if isinstance(getattr(module, name, None), int):
            return getattr(module, name)
    if site.io == "output" and isinstance(getattr(module, "hidden_size", None), int):
        return module.hidden_size * (2 if getattr(module, "bidirectional", False) else 1)
    shape = getattr(module, "normalized_shape", None)
    if isinstance(shape, tuple) and shape:
        return shape[-1]
    return None


def _model_card(model: nn.Module) -> dict:
    config = getattr(model, "config", None)
    hidden = getattr(config, "hidden_size", None)
    return {
        "name": getattr(config, "_name_or_path", None) or type(model).__name__,
        "class": type(model).__name__,
        "model_type": getattr(config, "model_type", None),
        "hidden_size": hidden if isinstance(hidden, int) else None,
    }


def _json_numbers(record: Mapping) -> dict:
    """NaN is not JSON: it is written as null."""
    return {k: (None if isinstance(v, float) and math.isnan(v) else v) for k, v in record.items()}
