"""Sites: components (`block_output`, `head_query_output`, `blocks.3.hook_resid_pre`, raw module
paths) bound to a model's modules, one adapter per architecture family."""

from nbvene.sites.families import FAMILIES, Family, family_of
from nbvene.sites.map import Site, SiteMap
from nbvene.sites.names import ALIASES, COMPONENTS, Component, component
from nbvene.sites.view import View

__all__ = [
    "ALIASES",
    "COMPONENTS",
    "FAMILIES",
    "Component",
    "Family",
    "Site",
    "SiteMap",
    "View",
    "component",
    "family_of",
]
