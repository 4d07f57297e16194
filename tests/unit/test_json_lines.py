"""report.json errors: a syntax error named by the standard parser's line and column, a wrong value by
its JSON path, a key given twice by its path; a document over the size limit refused unread."""

from __future__ import annotations

import pytest

from kabuild.config import document
from kabuild.config.document import read_json
from kabuild.errors import DocumentError

TEXT = """{
  "a": 1,
  "b": [
    {"x": "q\\"uo,{te"},
    {"y": {"z": [0, {"w": 1}]}}
  ],
  "c": {"d": {}},
  "e": [true, null, -1.5e3, "s"]
}
"""


def read(tmp_path, text: str | bytes, reader=lambda sec: sec.data):
    path = tmp_path / "r.json"
    path.write_bytes(text if isinstance(text, bytes) else text.encode())
    return read_json(path, "r.json", reader)


def test_a_wrong_value_is_named_by_its_json_path(tmp_path):
    def reader(sec):
        return sec.section("c").text("d")

    with pytest.raises(DocumentError, match=r"^r\.json: c\.d: expected a string, got a mapping$"):
        read(tmp_path, TEXT, reader)


def test_a_wrong_item_is_named_by_its_index(tmp_path):
    def reader(sec):
        return [s.integer("x") for s in sec.items("b")]

    with pytest.raises(DocumentError, match=r"^r\.json: b\[0\]\.x: expected an integer, got a string"):
        read(tmp_path, TEXT, reader)


def test_a_syntax_error_is_named_by_the_parsers_line_and_column(tmp_path):
    with pytest.raises(DocumentError, match=r"^r\.json:3: not valid JSON: Expecting value \(column 8\)$"):
        read(tmp_path, '{\n  "a": 1,\n  "b": ,\n}')


@pytest.mark.parametrize("text, where", [
    ('{"a": 1,\n "b": {},\n "a": 2}', "a"),
    ('{"b": [0, {"c": {"k": 1, "k": 2}}]}', r"b\[1\]\.c\.k"),
])
def test_a_key_given_twice_is_named_by_its_path(tmp_path, text, where):
    with pytest.raises(DocumentError, match=rf"^r\.json: {where}: the key is given twice in one JSON object"):
        read(tmp_path, text)


def test_a_raw_control_character_in_a_string_is_a_syntax_error_at_its_line(tmp_path):
    with pytest.raises(DocumentError, match=r"^r\.json:2: not valid JSON: Invalid control character \(column 9\)$"):
        read(tmp_path, '{\n "a": "x\x01y"}')


def test_a_document_over_the_limit_is_refused_unread(tmp_path, monkeypatch):
    monkeypatch.setattr(document, "MAX_JSON_BYTES", 64)
    with pytest.raises(DocumentError, match=r"^r\.json: 65 bytes is over the 64 bytes limit for this document"):
        read(tmp_path, '{"a": "' + "x" * 56 + '"}')
    assert read(tmp_path, '{"a": "' + "x" * 55 + '"}') == {"a": "x" * 55}


def test_the_fine_document_reads_as_plain_json(tmp_path):
    import json

    assert read(tmp_path, TEXT) == json.loads(TEXT)
