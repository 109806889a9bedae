"""`%load_ext nbvene`, `%unload_ext`, `%reload_ext`: what is registered, and that exactly that
is removed again."""

from __future__ import annotations

import nbvene as nv
from nbvene.magics import Intervene


def registered(ip) -> dict:
    manager = ip.magics_manager
    return {
        "cell": "intervene" in manager.magics["cell"],
        "line": "nbvene" in manager.magics["line"],
        "configurable": sum(isinstance(c, Intervene) for c in ip.configurables),
        "matchers": sum(
            getattr(m, "matcher_identifier", None) == "nbvene" for m in ip.Completer.custom_matchers
        ),
        "registry": "Intervene" in manager.registry,
    }


LOADED = {"cell": True, "line": True, "configurable": 1, "matchers": 1, "registry": True}
UNLOADED = {"cell": False, "line": False, "configurable": 0, "matchers": 0, "registry": False}


def test_load_registers_the_magics_the_options_and_the_completer(shell):
    assert registered(shell) == LOADED
    assert "nbvene" in shell.extension_manager.loaded


def test_unload_removes_exactly_what_load_added(shell, cell):
    others = {k: set(v) for k, v in shell.magics_manager.magics.items()}
    matchers = [m for m in shell.Completer.custom_matchers if m is not _ours(shell)]
    assert cell("%unload_ext nbvene").error is None
    assert registered(shell) == UNLOADED
    for kind, magics in shell.magics_manager.magics.items():
        assert set(magics) == others[kind] - {"intervene", "nbvene"}
    assert shell.Completer.custom_matchers == matchers
    ran = cell("%%intervene model\nbase: 'x'")
    assert "Cell magic `%%intervene` not found" in ran.out + ran.err


def test_reload_leaves_one_of_each_and_works(shell, cell, patch_spec, expected):
    cell("%nbvene use model tok")
    assert cell("%reload_ext nbvene").error is None
    assert registered(shell) == LOADED
    ran = cell("%%intervene model\n" + patch_spec)
    assert ran.error is None and ran.value.values.tolist() == expected.values.tolist()


def test_loading_twice_by_hand_keeps_one_of_each(shell):
    nv.load_ipython_extension(shell)
    nv.load_ipython_extension(shell)
    assert registered(shell) == LOADED
    nv.unload_ipython_extension(shell)
    assert registered(shell) == UNLOADED
    nv.unload_ipython_extension(shell)  # unloading what is not there is harmless


def test_load_ext_twice_says_already_loaded(shell):
    assert shell.extension_manager.load_extension("nbvene") == "already loaded"
    assert registered(shell) == LOADED


def test_a_bad_ipython_config_value_leaves_the_defaults(shell, cell, capsys):
    shell.config.Intervene.max_batch = "many"  # what a mistyped %config leaves behind
    assert cell("%reload_ext nbvene").error is None
    magic = shell.magics_manager.registry["Intervene"]
    assert magic.max_batch == 64
    assert registered(shell) == LOADED


def _ours(ip):
    return next(
        (
            m
            for m in ip.Completer.custom_matchers
            if getattr(m, "matcher_identifier", "") == "nbvene"
        ),
        None,
    )
