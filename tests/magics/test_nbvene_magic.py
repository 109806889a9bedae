"""`%nbvene use | sites | config | debug | help`, `%config Intervene.*`, and the defaults from
`[tool.nbvene]` in a pyproject.toml."""

from __future__ import annotations

import textwrap

import pytest
from IPython.core.formatters import DisplayFormatter

from nbvene.magics import Intervene
from nbvene.magics.defaults import Defaults
from nbvene.magics.reference import SiteTable
from nbvene.spec import KEYWORDS


def test_use(cell, intervene):
    assert cell("%nbvene use").out.strip() == "model: (none), tokenizer: (none)"
    ran = cell("%nbvene use model")  # the only tokenizer is found
    assert (
        ran.out.strip()
        == "%%intervene uses model (LlamaForCausalLM, llama, 2 layers) with tokenizer tok"
    )
    assert (intervene.model, intervene.tokenizer) == ("model", "tok")
    assert "no variable 'tokk'" in cell("%nbvene use model tokk").out
    assert (intervene.model, intervene.tokenizer) == ("model", "tok")  # unchanged by an error


def test_use_is_the_same_as_config(cell, intervene, patch_spec, expected):
    cell('%config Intervene.model = "model"')
    cell('%config Intervene.tokenizer = "tok"')
    cell("import copy; tok2 = copy.deepcopy(tok)")  # two tokenizers: none would be guessed
    ran = cell("%%intervene\n" + patch_spec)
    assert ran.error is None and ran.value.values.tolist() == expected.values.tolist()


def test_sites_is_a_table_of_the_models_components(shell, cell):
    ran = cell("%nbvene sites")
    table = ran.value
    assert isinstance(table, SiteTable)
    assert table.title == (
        "model: LlamaForCausalLM, family llama, 2 layers, hidden 64, 4 heads (2 key/value) of 16"
    )
    rows = {r.component: r for r in table.rows}
    assert rows["block_output"].module == "model.layers.{layer}"
    assert rows["block_output"].aliases == ("resid_post",) and rows["block_output"].units == "64"
    assert rows["head_query_output"].units == "4 × 16"
    assert rows["head_key_output"].units == "2 × 16"  # grouped-query attention
    assert rows["mlp_activation"].module == "model.layers.{layer}.mlp.down_proj"
    assert rows["mlp_activation"].io == "input" and rows["mlp_activation"].units == "128"
    assert rows["resid_mid"].io == "output + block input"
    data, _ = DisplayFormatter().format(table)
    assert "<table>" in data["text/html"] and "head_query_output" in data["text/plain"]


def test_sites_of_a_gpt2_splits_its_fused_projection(shell, cell):
    import nbvene as nv

    shell.user_ns["gpt2"], _ = nv.models.tiny("gpt2")
    rows = {r.component: r for r in cell("%nbvene sites gpt2").value.rows}
    assert rows["query_output"].module == "transformer.h.{layer}.attn.c_attn"
    assert rows["query_output"].units == "64" and rows["head_value_output"].units == "4 × 16"
    assert rows["mlp_activation"].units == "128"  # c_proj's input: n_inner


def test_help(cell):
    text = cell("%nbvene help").out
    for keyword in KEYWORDS:
        assert f"  {keyword}:" in text
    assert "restore: block_output layer=* pos=*" in text and "%%intervene" in text
    one = cell("%nbvene help corrupt:").out
    assert one.startswith("corrupt: ROME") and 'noise 3σ on "The Eiffel Tower"' in one
    assert "did you mean 'patch'?" in cell("%nbvene help pach").out
    assert cell("%nbvene").out == text  # a bare %nbvene is help


def test_config_lists_the_options(cell):
    text = cell("%nbvene config").out
    for name in ("max_batch", "max_memory", "device", "display", "debug", "model", "tokenizer"):
        assert f"  {name} " in text
    assert text.strip().endswith("no [tool.nbvene] in a pyproject.toml")


def test_config_magic_sets_an_option(shell, cell, intervene, patch_spec):
    assert "Intervene" in cell("%config").out
    cell("%config Intervene.max_batch = 8")
    assert intervene.max_batch == 8
    assert "of up to 8 patched rows" in cell("%%intervene model --dry-run\n" + patch_spec).out
    assert (
        "of up to 3 patched rows"
        in cell("%%intervene model --dry-run --max-batch 3\n" + patch_spec).out
    )
    assert "Intervene.max_batch" in cell("%config Intervene").out


def test_config_max_batch_below_one_is_refused_at_run_time(cell, patch_spec):
    cell("%config Intervene.max_batch = 0")
    assert "max_batch must be at least 1" in cell("%%intervene model\n" + patch_spec).out


# --- [tool.nbvene] ------------------------------------------------------------------------------


PYPROJECT = """
[project]
name = "my-study"

[tool.nbvene]
max_batch = 16
max-memory = "2GB"
display = false
max_bach = 3
"""


def test_defaults_come_from_the_nearest_pyproject_upwards(tmp_path):
    (tmp_path / "pyproject.toml").write_text(PYPROJECT)
    (tmp_path / "notebooks" / "deep").mkdir(parents=True)
    (tmp_path / "notebooks" / "pyproject.toml").write_text("[project]\nname = 'no-table'\n")
    found = Defaults.find(tmp_path / "notebooks" / "deep")
    assert found.path == tmp_path / "pyproject.toml"
    assert found.values["max_batch"] == 16
    assert Defaults.find(tmp_path.parent / "elsewhere-without-one").path is None


def test_pyproject_defaults_apply_when_the_extension_loads(
    shell, cell, tmp_path, monkeypatch, capsys
):
    (tmp_path / "pyproject.toml").write_text(textwrap.dedent(PYPROJECT))
    monkeypatch.chdir(tmp_path)
    shell.config.Intervene.display = True  # the IPython config wins over the pyproject
    cell("%reload_ext nbvene")
    magic = shell.magics_manager.registry["Intervene"]
    assert (magic.max_batch, magic.max_memory, magic.display) == (16, "2GB", True)
    shown = cell("%nbvene config").out
    assert f"defaults from {tmp_path / 'pyproject.toml'}" in shown
    assert "[tool.nbvene]" in next(x for x in shown.splitlines() if "max_batch" in x)


def test_pyproject_mistakes_are_named_not_fatal(tmp_path, shell, capsys):
    (tmp_path / "pyproject.toml").write_text(PYPROJECT + "device = 3\n")
    magic = Intervene(shell=shell, defaults=Defaults.find(tmp_path))
    shell.configurables.remove(magic)  # it was never registered
    assert magic.max_batch == 16 and magic.device is None
    err = capsys.readouterr().err
    assert "[tool.nbvene] has no option 'max_bach'; did you mean 'max_batch'?" in err
    assert "[tool.nbvene] device = 3 is not used" in err


def test_a_broken_pyproject_is_skipped(tmp_path, capsys):
    (tmp_path / "pyproject.toml").write_text("[tool.nbvene\n")
    assert Defaults.find(tmp_path).path is None
    assert "not read" in capsys.readouterr().err


@pytest.mark.parametrize("value", ["on", "off"])
def test_debug_command(cell, intervene, value):
    cell(f"%nbvene debug {value}")
    assert intervene.debug is (value == "on")
