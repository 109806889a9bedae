"""Errors that teach: a bad spec prints the line, a caret under the bad token and a 'did you
mean' from the model's real sites, and no Python traceback; `%nbvene debug on` and `--debug`
show the traceback; errors from the model or the user's own code keep theirs."""

from __future__ import annotations

import copy

import pytest

import nbvene as nv

TRACEBACK_MARKS = ("Traceback", "---->", 'File "', "Cell In[")


def shown(out: str) -> list[str]:
    """The lines printed for an error."""
    return [line for line in out.splitlines() if line.strip()]


def caret_under(lines: list[str], token: str) -> bool:
    """Whether the caret line sits under the start of `token` on the line above it."""
    at = next(i for i, line in enumerate(lines) if line.strip() == "^")
    return lines[at].index("^") == lines[at - 1].index(token)


def no_traceback(out: str) -> bool:
    return not any(mark in out for mark in TRACEBACK_MARKS)


def test_unknown_component(cell, patch_spec):
    body = patch_spec.replace("patch:  block_output", "patch:  blok_output")
    ran = cell("%%intervene model\n" + body)
    assert isinstance(ran.error, nv.NbveneError)
    lines = shown(ran.out)
    assert lines == [
        "NbveneError: line 3: unknown component 'blok_output'",
        "    patch:  blok_output layer=* pos=-1",
        "            ^",
        "  hint: did you mean 'block_output' or 'mlp_output' or 'key_output'?",
    ]
    assert caret_under(lines, "blok_output") and no_traceback(ran.out)


def test_the_suggestion_comes_from_the_model_and_its_aliases(cell, patch_spec):
    body = patch_spec.replace("patch:  block_output", "patch:  resid_prex")
    lines = shown(cell("%%intervene model\n" + body).out)
    assert lines[-1] == "  hint: did you mean 'resid_pre' or 'resid_post' or 'resid_mid'?"
    body = patch_spec.replace("patch:  block_output", "patch:  head_atention_value_output")
    lines = shown(cell("%%intervene model\n" + body).out)
    assert lines[-1].startswith("  hint: did you mean 'head_attention_value_output'")


def test_unknown_statement_suggests_a_keyword(cell, patch_spec):
    ran = cell("%%intervene model\n" + patch_spec.replace("metric:", "metirc:"))
    lines = shown(ran.out)
    assert lines[0] == "NbveneError: line 4: unknown statement 'metirc'"
    assert lines[-1] == "  hint: did you mean 'metric'?"
    assert caret_under(lines, "metirc") and no_traceback(ran.out)


def test_an_error_after_a_name_capture_is_placed_on_the_line_as_written(cell, patch_spec):
    body = "trace << " + patch_spec.replace("base:", "bsae:")
    lines = shown(cell("%%intervene model\n" + body).out)
    assert lines[0] == "NbveneError: line 1: unknown statement 'bsae'"
    assert lines[1] == '    trace << bsae:   "The Colosseum is located in the city of"'
    assert caret_under(lines, "bsae")
    # on a line of its own, `NAME <<` moves no line number
    own = "trace <<\n" + patch_spec.replace("patch:  block_output", "patch:  blok_output")
    assert shown(cell("%%intervene model\n" + own).out)[0].startswith("NbveneError: line 4:")


def test_out_of_range_layer_from_the_model(cell, patch_spec):
    ran = cell("%%intervene model\n" + patch_spec.replace("layer=*", "layer=7"))
    lines = shown(ran.out)
    assert lines[0] == "NbveneError: line 3: layer 7 is out of range: the model has 2 layers (0..1)"
    assert caret_under(lines, "layer=") and lines[-1] == "  hint: use layer=0..1 or layer=*"


def test_an_undefined_variable(cell):
    ran = cell('%%intervene model\nbase: {nowhere}\nzero: mlp_output layer=0\nmetric: p(" Paris")')
    lines = shown(ran.out)
    assert lines[0] == "NbveneError: line 1: {nowhere} is not defined"
    assert caret_under(lines, "{nowhere}") and no_traceback(ran.out)


def test_line_errors(cell, patch_spec):
    cases = {
        "%%intervene nomodel": ("no variable 'nomodel' in the notebook", "did you mean 'model'?"),
        "%%intervene modle": ("no variable 'modle' in the notebook", "did you mean 'model'?"),
        "%%intervene tok": ("'tok' is a TokenizersBackend, not a model", "a torch.nn.Module"),
        "%%intervene model --dryrun": ("unknown option '--dryrun'", "did you mean '--dry-run'?"),
        "%%intervene model max_bach=2": ("unexpected 'max_bach=2'", "did you mean 'max_batch='"),
        "%%intervene model --max-batch two": ("invalid int value: 'two'", "%%intervene?"),
        "%%intervene model -o 2x": ("'2x' is not a variable name", None),
    }
    for line, (message, hint) in cases.items():
        ran = cell(line + "\n" + patch_spec)
        assert isinstance(ran.error, nv.NbveneError), line
        assert message in ran.out, (line, ran.out)
        assert hint is None or hint in ran.out, (line, ran.out)
        assert no_traceback(ran.out), line


def test_debug_shows_the_traceback(cell, patch_spec):
    body = patch_spec.replace("patch:  block_output", "patch:  blok_output")
    ran = cell("%%intervene model --debug\n" + body)
    assert "Traceback" in ran.out and "unknown component 'blok_output'" in ran.out
    assert no_traceback(cell("%%intervene model\n" + body).out)
    assert cell("%nbvene debug on").out.strip() == "debug on: spec errors show full tracebacks"
    assert "Traceback" in cell("%%intervene model\n" + body).out
    cell("%nbvene debug off")
    assert no_traceback(cell("%%intervene model\n" + body).out)


def test_errors_from_the_users_code_keep_their_traceback(shell, cell, patch_spec):
    def broken(base, source):
        raise ValueError("broken on purpose")

    shell.user_ns["broken"] = broken
    body = patch_spec.replace("pos=-1", "pos=-1 via {broken}")
    ran = cell("%%intervene model\n" + body)
    # placed on its spec line, the user's error chained: its traceback is shown
    assert isinstance(ran.error, nv.NbveneError) and "line 3: via: broken raised" in str(ran.error)
    assert isinstance(ran.error.__cause__, ValueError)
    assert "Traceback" in ran.out and "broken on purpose" in ran.out
    assert 'raise ValueError("broken on purpose")' in ran.out  # the user's own line


def test_errors_from_the_model_keep_their_traceback(shell, cell, patch_spec, tiny):
    def fail(module, args, output):
        raise RuntimeError("the model failed")

    broken = copy.deepcopy(tiny[0])
    broken.model.layers[1].mlp.register_forward_hook(fail)
    shell.user_ns["broken"] = broken
    ran = cell("%%intervene broken tok\n" + patch_spec)
    assert isinstance(ran.error, RuntimeError)
    assert "Traceback" in ran.out and 'raise RuntimeError("the model failed")' in ran.out


def test_line_magic_errors_are_short(cell):
    ran = cell("%nbvene sties")
    assert shown(ran.out) == [
        "NbveneError: %nbvene: unknown command 'sties'",
        "  hint: did you mean 'sites'?",
    ]
    assert "did you mean 'model'?" in cell("%nbvene use modle").out
    assert "debug is off" in cell("%nbvene debug maybe").out


@pytest.mark.parametrize("colors", ["linux", "nocolor"])
def test_colour_follows_the_shell(shell, capsys, patch_spec, colors):
    before = shell.colors
    shell.colors = colors
    try:
        shell.run_cell("%%intervene model\n" + patch_spec.replace("metric:", "metirc:"))
        out = capsys.readouterr().out
    finally:
        shell.colors = before
    assert ("\x1b[" in out) == (colors != "nocolor")
