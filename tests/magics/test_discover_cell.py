"""`%%intervene` with a `discover:` spec: the cell binds the Circuit with `-o` and shows it, and
its mistakes are the short placed errors of every other cell."""

import nbvene as nv

CELL = """%%intervene model -o circ
base:     {clean}
source:   {corrupted}
discover: circuit by eap top=10
metric:   logit_diff({correct}, {wrong})"""


def names(shell):
    shell.user_ns.update(
        clean=["When Mary and John went out, John gave it to"],
        corrupted=["When Mary and John went out, Mary gave it to"],
        correct=" Mary",
        wrong=" John",
    )


def test_out_binds_the_circuit_and_shows_it(shell, cell):
    names(shell)
    ran = cell(CELL)
    assert ran.error is None, ran.out + ran.err
    circ = shell.user_ns["circ"]
    assert isinstance(circ, nv.Circuit) and len(circ.kept) == 10
    assert ran.value is circ  # shown as the cell's value
    assert circ.meta["cell"].startswith("%%intervene model -o circ\nbase:")
    again = cell("%%intervene model\n" + circ.spec).value
    assert again.kept == circ.kept and abs(again.faithfulness - circ.faithfulness) < 1e-5


def test_no_display_stores_only(shell, cell):
    names(shell)
    ran = cell(CELL.replace("-o circ", "-o circ --no-display"))
    assert ran.error is None and ran.value is None
    assert isinstance(shell.user_ns["circ"], nv.Circuit)


def test_a_mistake_is_a_short_placed_error(shell, cell):
    names(shell)
    ran = cell(CELL.replace("metric:", "patch: block_output layer=0\nmetric:"))
    assert "patch: has no place in a discover: spec" in ran.out + ran.err
    assert "Traceback" not in ran.out + ran.err
    ran = cell(CELL.replace("by eap top=10", "by eap top=10 tau=0.1"))
    assert "by eap takes no tau=" in ran.out + ran.err
