"""The binding layer: one way to place an error on a spec line, plain data out, and the
names its data is held under."""

import ast
import pathlib
from dataclasses import fields

import pytest

import nbvene as nv
from nbvene.bind import Region, ValueKind, resolve
from nbvene.errors import UserCodeError, error_at
from nbvene.sites.map import IO
from nbvene.spec import parse

SPEC = parse('base: "a b c"\nsource: "a b d"\n  patch: block_output layer=0 pos=-1\nmetric: kl')
BIND = pathlib.Path(nv.__file__).parent / "bind"


def test_error_at_puts_the_caret_under_the_token_else_the_first_word():
    e = error_at(SPEC, "bad position", 3, hint="try pos=0", token="pos=")
    assert (e.line, e.text, e.hint) == (3, "  patch: block_output layer=0 pos=-1", "try pos=0")
    assert e.column == e.text.index("pos=")
    assert error_at(SPEC, "bad", 3).column == 2  # under "patch"
    assert error_at(SPEC, "bad", 3, token="absent").column == 2


def test_error_at_places_an_error_raised_without_a_line_and_keeps_a_placed_one():
    raised = UserCodeError("the width is wrong", hint="make it 16")
    placed = error_at(SPEC, raised, 3, token="via")
    assert type(placed) is UserCodeError
    assert (placed.message, placed.line, placed.hint) == ("the width is wrong", 3, "make it 16")
    assert error_at(SPEC, placed, 1) is placed
    assert str(placed).startswith("line 3: the width is wrong\n    ")


def test_nothing_is_attached_to_a_result_after_it_is_made():
    model, tok = nv.models.tiny("gpt2")
    res = nv.run(SPEC, model=model, tokenizer=tok)
    res._repr_mimebundle_()
    assert set(vars(res)) == {f.name for f in fields(res)}


def test_held_enums_compare_and_print_as_their_strings():
    model, tok = nv.models.tiny("gpt2")
    plan = resolve(SPEC, model, tok)
    (op,) = plan.ops
    assert op.value is ValueKind.RUN and op.value == "run" and f"{op.value}" == "run"
    site = plan.rows[0].units[0].site
    assert site.io is IO.OUTPUT and site.io == "output" and str(site.io) == "output"
    assert Region("prompt") is Region.PROMPT and f"pos={Region.PROMPT}" == "pos=prompt"


@pytest.mark.parametrize("path", sorted(BIND.glob("*.py")), ids=lambda p: p.name)
def test_the_binder_imports_no_engine_trainer_or_front_end(path):
    below = ("nbvene.bind", "nbvene.errors", "nbvene.interventions", "nbvene.sites", "nbvene.spec")
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.ImportFrom) and (node.module or "").startswith("nbvene"):
            assert node.module.startswith(below), f"{path.name} imports {node.module}"
        if isinstance(node, ast.Import):
            assert not any(a.name.startswith("nbvene") for a in node.names)
