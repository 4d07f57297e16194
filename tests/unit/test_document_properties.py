"""Property: random deletions and type changes in a document kabuild wrote never crash a reader.

A valid manifest.lock (with its ``build:`` block), report.json and reference.yaml are made by
the real writers (:mod:`kbworld`); hypothesis deletes keys and list items and replaces values
with values of other types, anywhere in the tree.  The readers (``read_lock``,
``acceptance.load``, ``references.read_doc``) either accept the result or refuse it with a
DocumentError (exit 3) — nothing else, so never exit 70.  A verb-level variant runs
``kabuild verify`` and ``kabuild report`` on damaged copies in-process.
"""

from __future__ import annotations

import json
import shutil
import tempfile
from pathlib import Path
from typing import Any

import pytest
import yaml
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from kbworld import LOCK, REFERENCE, REPORT, World, copy_world, make_world

from kabuild.cli import run_cli
from kabuild.compare import acceptance, references
from kabuild.config.yamlio import dump_yaml
from kabuild.errors import DocumentError, ExitCode
from kabuild.inputs.lock import read_lock

pytestmark = pytest.mark.skipif(shutil.which("patch") is None, reason="needs GNU patch on PATH (promote)")

EXAMPLES = 60  # per reader: modest, the whole module stays a few seconds
VERB_EXAMPLES = 15


@pytest.fixture(scope="module")
def template(tmp_path_factory) -> World:
    with pytest.MonkeyPatch.context() as mp:  # the autouse hermetic_env is function-scoped
        mp.setenv("KABUILD_CACHE", str(tmp_path_factory.mktemp("cache")))
        mp.delenv("KABUILD_ROOT", raising=False)
        return make_world(tmp_path_factory.mktemp("world") / "repo")


# --------------------------------------------------------------------------- mutations


def paths(data: Any, prefix: tuple = ()) -> list[tuple]:
    """Every key and index path in a document, the root included."""
    out = [prefix]
    if isinstance(data, dict):
        for k, v in data.items():
            out += paths(v, prefix + (k,))
    elif isinstance(data, list):
        for i, v in enumerate(data):
            out += paths(v, prefix + (i,))
    return out


scalars = st.one_of(st.none(), st.booleans(), st.integers(-2**70, 2**70), st.floats(allow_nan=True),
                    st.text(max_size=12), st.sampled_from(["", "0", "a" * 64, "../x", "accepted", "passed"]))
values = st.one_of(scalars, st.lists(scalars, max_size=3), st.dictionaries(st.text(max_size=5), scalars, max_size=3))
# (which path, delete it or replace it, the replacement)
mutations = st.lists(st.tuples(st.integers(0, 10**6), st.booleans(), values), min_size=1, max_size=4)


def mutate(data: Any, plan: list[tuple[int, bool, Any]]) -> Any:
    for pick, delete, value in plan:
        all_paths = paths(data)
        path = all_paths[pick % len(all_paths)]
        if not path:
            data = value  # the whole document replaced
            continue
        parent = data
        for step in path[:-1]:
            parent = parent[step]
        if delete:
            del parent[path[-1]]
        else:
            parent[path[-1]] = value
    return data


def reads_or_refuses(read) -> None:
    try:
        read()
    except DocumentError as e:
        assert e.exit_code == ExitCode.REFUSED
        assert "\n" not in str(e)
    # any other exception fails the property


# --------------------------------------------------------------------------- the readers


@settings(max_examples=EXAMPLES, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(plan=mutations)
def test_damaged_lock_is_read_or_refused(template, plan):
    data = mutate(yaml.safe_load((template.root / LOCK).read_text()), plan)
    with tempfile.TemporaryDirectory() as d:
        path = Path(d) / "manifest.lock"
        path.write_text(dump_yaml(data))
        reads_or_refuses(lambda: read_lock(path, "manifest.lock"))


@settings(max_examples=EXAMPLES, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(plan=mutations)
def test_damaged_report_is_read_or_refused(template, plan):
    data = mutate(json.loads((template.root / REPORT).read_text()), plan)
    with tempfile.TemporaryDirectory() as d:
        path = Path(d) / "report.json"
        path.write_text(json.dumps(data))
        reads_or_refuses(lambda: acceptance.load(path, "report.json"))


@settings(max_examples=EXAMPLES, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(plan=mutations)
def test_damaged_reference_is_read_or_refused(template, plan):
    data = mutate(yaml.safe_load((template.root / REFERENCE).read_text()), plan)
    with tempfile.TemporaryDirectory() as d:
        path = Path(d) / "reference.yaml"
        path.write_text(dump_yaml(data))
        reads_or_refuses(lambda: references.read_doc(path, "reference.yaml"))


def test_the_mutations_can_fail_the_property():
    """The check is not vacuous: a reader that raises anything but DocumentError fails it."""
    with pytest.raises(KeyError):
        reads_or_refuses(lambda: {}["x"])
    with pytest.raises(AssertionError):
        reads_or_refuses(lambda: (_ for _ in ()).throw(DocumentError("a\nb")))


# --------------------------------------------------------------------------- the verbs


def run_verb(root: Path, capsys, *argv: str) -> tuple[int, str]:
    capsys.readouterr()
    code = run_cli(["--root", str(root), *argv])
    return code, capsys.readouterr().err


@pytest.mark.parametrize("rel, argv, load, dump, codes", [
    (LOCK, ("verify", "demo"), yaml.safe_load, dump_yaml, {0, 3}),
    (REPORT, ("report", "demo"), json.loads, json.dumps, {0, 1, 3, 4}),
])
def test_damaged_document_never_crashes_a_verb(template, capsys, rel, argv, load, dump, codes):
    @settings(max_examples=VERB_EXAMPLES, deadline=None)
    @given(plan=mutations)
    def check(plan):
        with tempfile.TemporaryDirectory() as d:
            world = copy_world(template, Path(d) / "repo")
            path = world.root / rel
            path.write_text(dump(mutate(load(path.read_text()), plan)))
            code, err = run_verb(world.root, capsys, *argv)
            assert code in codes, err
            assert "Traceback" not in err and "internal error" not in err
            if code == 3:
                assert len(err.splitlines()) == 1, err

    check()
