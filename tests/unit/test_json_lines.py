"""report.json errors name their line: objects and arrays read back with the lines of their keys and items."""

from __future__ import annotations

import json

import pytest

from kabuild.config.document import dict_section, loads_located, read_json
from kabuild.errors import DocumentError

TEXT = """{
  "a": 1,
  "b": [
    {"x": "q\\"uo,{te"},
    2
  ],
  "c": {"d": {}},
  "e": [true, null, -1.5e3, "s"]
}
"""


def test_keys_and_items_keep_their_lines():
    data = loads_located(TEXT, "t.json")
    assert data == json.loads(TEXT)
    assert (data.line, data.key_lines) == (1, {"a": 2, "b": 3, "c": 7, "e": 8})
    assert (data["b"].line, data["b"].item_lines) == (3, [4, 5])
    assert data["b"][0].key_lines == {"x": 4}
    assert data["e"].item_lines == [8, 8, 8, 8]


def test_a_located_error_names_the_line_of_the_key():
    data = loads_located(TEXT, "t.json")
    with pytest.raises(DocumentError, match=r"^t\.json:7: c\.d: expected a string, got a mapping$"):
        dict_section(data, "t.json").section("c").text("d")


def test_a_duplicate_key_is_refused_at_its_line():
    with pytest.raises(DocumentError, match=r"^t\.json:3: duplicate key 'a' in one JSON object$"):
        loads_located('{"a": 1,\n "b": {},\n "a": 2}', "t.json")


def test_read_json_reads_again_with_lines_only_when_the_document_is_damaged(tmp_path):
    path = tmp_path / "r.json"
    path.write_text(TEXT)
    seen = []

    def reader(sec):
        seen.append(hasattr(sec.data, "key_lines"))
        return sec.integer("a", maximum=0)

    with pytest.raises(DocumentError, match=r"^r\.json:2: a: expected an integer <= 0, got 1$"):
        read_json(path, "r.json", reader)
    assert seen == [False, True]
    assert read_json(path, "r.json", lambda sec: sec.integer("a")) == 1
