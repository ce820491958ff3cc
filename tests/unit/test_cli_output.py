"""`-o yaml` without a YAML library in the client: whatever JSON-shaped data
the CLI prints, PyYAML (a YAML 1.1 reader, the strictest about plain
scalars) reads back the same values."""

from __future__ import annotations

from typing import Any

import yaml
from hypothesis import given, settings
from hypothesis import strategies as st

from modelplane.cli import yamlout

JSON_DATA = st.recursive(
    st.none() | st.booleans() | st.integers(min_value=-(2**63), max_value=2**64) | st.floats(allow_nan=False)
    | st.text(),
    lambda children: st.lists(children, max_size=4) | st.dictionaries(st.text(), children, max_size=4),
    max_leaves=25)


@settings(max_examples=500)
@given(JSON_DATA)
def test_any_json_shaped_value_reads_back_the_same(data: Any) -> None:
    assert yaml.safe_load(yamlout.dump(data)) == data


def test_strings_yaml_would_read_as_something_else_are_quoted() -> None:
    tricky = ["yes", "No", "on", "OFF", "y", "null", "~", "true", "1e5", "0x1F", "1:20", "2024-01-01", "", " x",
              "x: y", "- a", "#c", "a #b", "[1]", "{a}", "*ref", "&anchor", "!tag", "|", ">", "'q'", '"q"',
              "multi\nline", "tab\there", "\x7f", "\u2028", "ümlaut", "emoji 😀", "%YAML", "@at", "`tick`"]
    text = yamlout.dump({"values": tricky})
    assert yaml.safe_load(text) == {"values": tricky}
    for plain in ("openai", "PROVIDER_TYPE_OPENAI", "gpt-5.3-codex", "a/b", "_x"):
        assert yamlout.scalar(plain) == plain  # readable where it is safe


def test_block_style_as_people_read_it() -> None:
    assert yamlout.dump({"name": "gpt-5", "options": {"temperature": 1e-07}, "tags": ["a", "b"], "empty": [],
                         "none": {}, "trace": [{"layer": "default", "outcome": "chosen"}]}) == (
        "name: gpt-5\n"
        "options:\n"
        "  temperature: 1.0e-07\n"
        "tags:\n"
        "- a\n"
        "- b\n"
        "empty: []\n"
        "none: {}\n"
        "trace:\n"
        "- layer: default\n"
        "  outcome: chosen")
    assert yamlout.dump([]) == "[]" and yamlout.dump({}) == "{}" and yamlout.dump("x") == "x"
