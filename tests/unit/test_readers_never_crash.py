"""Property: random bytes, control characters included, fed to every document kabuild reads, never
crash it: the verb ends with a documented exit code and one line, never exit 70 or a traceback.

Three kinds of damage, each on every document (the demo manifest, fleet/nodes.yaml, manifest.lock,
report.json, reference.yaml, the install journal), made valid first by the real writers
(:mod:`kbworld`):

- random bytes instead of the file;
- the valid file with a few bytes replaced or inserted at random places, drawn mostly from the
  control characters (the text stays nearly valid, so the damage reaches the typed readers);
- the valid file with one string value replaced by random text (control characters, line and
  paragraph separators, NUL), written back by the real YAML/JSON writer, which escapes them: the
  file parses and the value itself reaches the checks.

The manifest, nodes, lock, report and reference go through the CLI verb that reads them
(in-process, no Docker); the journal, read only once a package is verified for a board, goes
through its reader and the CLI's own error mapping (:func:`kabuild.cli.exit_for`).
"""

from __future__ import annotations

import json
import re
import shutil
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
import yaml
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from kbworld import LOCK, REFERENCE, REPORT, World, copy_world, make_world

from kabuild.cli import exit_for, run_cli
from kabuild.config.yamlio import dump_yaml
from kabuild.errors import ExitCode
from kabuild.install.journal import JOURNAL_SCHEMA, read_journal

pytestmark = pytest.mark.skipif(shutil.which("patch") is None, reason="needs GNU patch on PATH (promote)")

EXAMPLES = 40  # per document and kind of damage: the module stays well under a minute
JOURNAL = "build/demo/install/journal.yaml"
MANIFEST = "fleet/demo.yaml"
NODES = "fleet/nodes.yaml"

# the verb that reads each document first, and the exit codes its damage may give: 2 for what people
# write, 3 for what kabuild wrote (and for a manifest edit that still parses: the lock is then stale)
DOCUMENTS: dict[str, tuple[tuple[str, ...], set[int]]] = {
    MANIFEST: (("verify", "demo"), {2, 3}),
    NODES: (("status", "demo"), {2}),
    LOCK: (("verify", "demo"), {3}),
    REPORT: (("report", "demo"), {3}),
    REFERENCE: (("reproduce", "demo"), {3}),
    JOURNAL: ((), {3}),
}

SHA = "ab" * 32
JOURNAL_DOC = {
    "schema": JOURNAL_SCHEMA, "id": "20261122T011500Z-ab12cd34", "started": "2026-11-22T01:15:00+00:00",
    "step": "installed", "release": "6.1.1-kb1", "replaced_release": "6.0.0-factory", "backup": "/tmp/backup",
    "why": None,
    "packages": [{"name": "kabuild-hello", "version": "1.0-2", "file": "kabuild-hello-1.0-2-aarch64.pkg.tar.zst",
                  "sha256": SHA}],
    "replaced": [{"name": "kabuild-hello", "version": "1.0-1", "file": "kabuild-hello-1.0-1-aarch64.pkg.tar.zst",
                  "sha256": SHA}],
}

CONTROLS = [chr(c) for c in [*range(0x20), *range(0x7F, 0xA0)]] + ["\u2028", "\u2029", "\ufeff", "\ufffe"]
control_bytes = st.one_of(st.sampled_from([c.encode("utf-8") for c in CONTROLS]), st.binary(min_size=1, max_size=3))
nasty_text = st.text(alphabet=st.one_of(st.sampled_from(CONTROLS), st.characters()), max_size=40)


@pytest.fixture(scope="module")
def world(tmp_path_factory) -> World:
    with pytest.MonkeyPatch.context() as mp:  # the autouse hermetic_env is function-scoped
        mp.setenv("KABUILD_CACHE", str(tmp_path_factory.mktemp("cache")))
        mp.delenv("KABUILD_ROOT", raising=False)
        template = make_world(tmp_path_factory.mktemp("world") / "template")
    w = copy_world(template, tmp_path_factory.mktemp("fuzz") / "repo")
    journal = w.path(JOURNAL)
    journal.parent.mkdir(parents=True, exist_ok=True)
    journal.write_text(dump_yaml(JOURNAL_DOC))
    return w


@pytest.fixture(autouse=True)
def no_engine(monkeypatch):
    def refuse(node, timeout):
        raise AssertionError(f"a unit test reached the Docker engine of node {node.name}")

    monkeypatch.setattr("kabuild.build.engines._client", refuse)


def check(world: World, capsys, rel: str, data: bytes) -> None:
    """Write ``data`` as ``rel``, read it the way kabuild does, put the valid file back."""
    path = world.path(rel)
    good = path.read_bytes()
    path.write_bytes(data)
    try:
        argv, damaged = DOCUMENTS[rel]
        capsys.readouterr()
        if argv:
            code = run_cli(["--root", str(world.root), *argv])
        else:
            code = _read_journal(path)
        out, err = capsys.readouterr()
    finally:
        path.write_bytes(good)
    assert "Traceback" not in err and "internal error" not in err, err
    assert code not in (ExitCode.INTERNAL, 1), (code, err)
    if code != 0:  # refused: the documented exit code and one error line (after progress lines, if any)
        lines = err.splitlines()
        assert code in damaged, (code, err)
        assert lines and lines[-1].startswith("kabuild: error: "), err
        assert all(line.startswith("kabuild: ") and "error" not in line.split(":")[1] for line in lines[:-1]), err
        assert re.search(re.escape(rel) + r"|manifest\.lock is stale|demo: ", lines[-1]), err


def _read_journal(path: Path) -> int:
    try:
        read_journal(path, JOURNAL)
    except Exception as e:
        return exit_for(e)
    return 0


PROPERTY = settings(max_examples=EXAMPLES, deadline=None, derandomize=True,
                    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow])


@pytest.mark.parametrize("rel", list(DOCUMENTS))
@PROPERTY
@given(data=st.binary(max_size=300))
def test_random_bytes(world, capsys, rel, data):
    check(world, capsys, rel, data)


@pytest.mark.parametrize("rel", list(DOCUMENTS))
@PROPERTY
@given(edits=st.lists(st.tuples(st.floats(0, 1), st.booleans(), control_bytes), min_size=1, max_size=4))
def test_bytes_changed_in_the_valid_file(world, capsys, rel, edits):
    data = bytearray(world.path(rel).read_bytes())
    for where, insert, new in edits:
        at = int(where * (len(data) - 1))
        data[at:at if insert else at + len(new)] = new
    check(world, capsys, rel, bytes(data))


def _strings(data: Any, prefix: tuple = ()) -> list[tuple]:
    out: list[tuple] = []
    items = data.items() if isinstance(data, dict) else enumerate(data) if isinstance(data, list) else []
    for k, v in items:
        if isinstance(v, str):
            out.append(prefix + (k,))
        out += _strings(v, prefix + (k,))
    return out


def _set(data: Any, path: tuple, value: Any) -> None:
    for k in path[:-1]:
        data = data[k]
    data[path[-1]] = value


@pytest.mark.parametrize("rel", list(DOCUMENTS))
@PROPERTY
@given(choice=st.integers(min_value=0), text=nasty_text)
def test_a_value_replaced_by_random_text(world, capsys, rel, choice, text):
    raw = world.path(rel).read_text()
    is_json = rel.endswith(".json")
    loads: Callable[[str], Any] = json.loads if is_json else yaml.safe_load
    doc = loads(raw)
    paths = _strings(doc)
    _set(doc, paths[choice % len(paths)], text)
    out = json.dumps(doc, indent=2) if is_json else dump_yaml(doc)
    check(world, capsys, rel, out.encode("utf-8", "surrogatepass"))
