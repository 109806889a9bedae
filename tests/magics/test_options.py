"""The `%%intervene` options are written once (`magics/cell.py`): the parser, the magic's help
(`%%intervene?`), the reference's usage line and completion all come from them."""

from nbvene.magics.cell import FLAGS, PARSER, parse_line
from nbvene.magics.magic import Intervene
from nbvene.magics.reference import MAGIC

SWITCHES = ("--dry-run", "--remote", "--show-code", "--no-display", "--debug")


def test_the_help_and_the_usage_line_list_every_option():
    doc = Intervene.intervene.__doc__
    assert doc.startswith("::\n\n  %%intervene ")
    assert "Run the spec in the cell body" in doc
    words = " ".join(doc.split())
    for action in PARSER._actions:
        assert action.help.replace("%%", "%")[:20] in words
        if action.option_strings:
            assert action.option_strings[0] in MAGIC
    assert all(flag in doc for flag in FLAGS)
    assert MAGIC.startswith("%%intervene [NAME <<] [-t TOKENIZER]")


def test_every_long_option_is_also_a_key_value_word():
    for flag in FLAGS:
        if not flag.startswith("--") or flag in SWITCHES:
            continue
        key = flag[2:].replace("-", "_")
        value = "3" if key in ("max_batch", "max_cells") else "x"
        options, _ = parse_line(f"model {key}={value}")
        assert str(getattr(options, key)) == value
