"""Path patching (Wang et al. 2022, IOI) in one call: the effect of sender heads on the output
that flows through the receivers' inputs only, written as a multi-source spec."""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence

from torch import nn

from nbvene.api import run
from nbvene.engine.lock import runs_model
from nbvene.errors import NbveneError
from nbvene.results import Result
from nbvene.sites import SiteMap


@runs_model
def path_patch(
    base,
    source,
    *,
    senders: str,
    receivers: str | Sequence[str],
    metric: str,
    model: nn.Module,
    tokenizer=None,
    namespace: Mapping | None = None,
    freeze: Sequence[str] = ("z",),
    sites: Mapping[str, str] | SiteMap | None = None,
    max_batch: int = 64,
    progress: Callable[[int, int], None] | None = None,
) -> Result:
    """Patch the senders from the source run into a run of the base in which every other head
    is frozen at its base value; record the receivers' inputs there; run the base with only
    those inputs patched, and measure.

    >>> res = nv.path_patch(
    ...     "When John and Mary went to the store, John gave a bottle to",
    ...     "When John and Mary went to the store, Mary gave a bottle to",
    ...     senders="z layer=* head=*",           # swept: one cell per sender head
    ...     receivers="q layer=9 head=[6, 9] pos=-1",
    ...     metric='logit_diff(" Mary", " John")', model=model, tokenizer=tok)

    `base` and `source` are what a spec's `base:` and `source:` take (text, a list, token ids).
    `senders` and `receivers` are statement bodies: a component and its selectors, as after
    `patch:`; `receivers` may be a list (e.g. the `q`, `k` and `v` of a head). `metric` is a
    `metric:` value. `freeze` names the components held at their base values in the path run
    (the heads' outputs, `z`; add `mlp_output` to freeze the MLPs too). The result's spec is
    the multi-source spec that was run (`print(res.spec)`), to copy into an `%%intervene` cell.
    """
    receivers = [receivers] if isinstance(receivers, str) else list(receivers)
    if not receivers:
        raise NbveneError("path_patch needs at least one receiver", hint='receivers="q layer=9"')
    for what, body in [("senders", senders), *(("receivers", r) for r in receivers)]:
        if any(word in body.split() for word in ("from", "into")) or ":" in body.split("#")[0]:
            raise NbveneError(
                f"{what}={body!r} is a statement body: a component and its selectors",
                hint='write e.g. senders="z layer=* head=*"; path_patch adds from and into',
            )
    site_map = sites if isinstance(sites, SiteMap) else SiteMap(model, sites)
    if site_map.n_layers is None:
        raise NbveneError(
            "path_patch freezes every layer's heads, and this model has no layers nbvene knows",
            hint="pass sites= with the layer components, or write the multi-source spec by hand",
        )
    lines = [
        "base: {base}",
        "source corrupt: {source}",
        "source clean: {base}",
        "source path: {base}",
        *(
            f"patch: {component} layer={layer} from clean into path  # frozen"
            for component in freeze
            for layer in range(site_map.n_layers)
        ),
        f"patch: {senders} from corrupt into path  # senders",
        *(f"patch: {r} from path  # receivers" for r in receivers),
        f"metric: {metric}",
    ]
    if not freeze:  # nothing reads the clean run then
        lines.remove("source clean: {base}")
    values = {**dict(namespace or {}), "base": base, "source": source}
    return run(
        "\n".join(lines),
        model=model,
        tokenizer=tokenizer,
        namespace=values,
        sites=site_map,
        max_batch=max_batch,
        progress=progress,
    )
