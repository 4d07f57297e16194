"""Reading a damaged document costs a bounded amount of memory (the 150 MB report.json that once took
17 GB): each case writes the document into a copy of the unit world and runs the verb in a subprocess
that reports its own peak RSS (resource.getrusage), before and after the verb.  Memory is asserted,
never time; `make bench` prints the same figures (tests/bench/document_memory.py).
"""

from __future__ import annotations

import re
import shutil
import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "bench"))

import document_memory as dm  # noqa: E402
from kbworld import LOCK, REPORT  # noqa: E402

pytestmark = pytest.mark.skipif(shutil.which("patch") is None, reason="needs GNU patch on PATH (promote)")

MIB = 2**20


@pytest.fixture(scope="module")
def template(tmp_path_factory):
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("KABUILD_CACHE", str(tmp_path_factory.mktemp("cache")))
        mp.delenv("KABUILD_ROOT", raising=False)
        return dm.kbworld.make_world(tmp_path_factory.mktemp("world") / "repo")


def measured(template, tmp_path, damage, size, argv) -> dm.Measured:
    m = dm.run_case(template, tmp_path, "case", damage, size, argv)
    print(f"{damage.__name__}: {m.size / 1e6:.1f} MB, exit {m.code}, peak {m.peak_kib / 1024:.1f} MiB, "
          f"added {m.used / MIB:.1f} MiB ({m.ratio:.2f} x its size)")
    return m


def test_a_150_mb_damaged_report_is_refused_unread(template, tmp_path):
    m = measured(template, tmp_path, dm.report_with_unknown_key, 150 * dm.MB, ("report", "demo"))
    assert m.code == 3
    assert m.error == (f"kabuild: error: {REPORT}: 143.1 MiB is over the 16.0 MiB limit for this document; refusing "
                       "to read it (damaged, or not what kabuild wrote)")
    assert m.used <= 16 * MIB, m


def test_a_150_mb_damaged_lock_is_refused_unread(template, tmp_path):
    m = measured(template, tmp_path, dm.lock_with_long_list, 150 * dm.MB, ("verify", "demo"))
    assert m.code == 3 and m.error.startswith(f"kabuild: error: {LOCK}: 143.1 MiB is over the 4.0 MiB limit"), m
    assert m.used <= 16 * MIB, m


def test_a_damaged_report_at_the_size_limit_is_read_with_a_small_multiple_of_its_size(template, tmp_path):
    m = measured(template, tmp_path, dm.report_with_unknown_key, dm.LIMIT, ("report", "demo"))
    assert m.code == 3 and m.error.startswith(f"kabuild: error: {REPORT}: colour: unknown key"), m
    assert m.used <= 4 * m.size, m


def test_a_damaged_lock_at_the_size_limit_is_read_with_a_small_multiple_of_its_size(template, tmp_path):
    m = measured(template, tmp_path, dm.lock_with_long_list, dm.MAX_YAML_BYTES - 4096, ("verify", "demo"))
    assert m.code == 3 and re.match(rf"kabuild: error: {re.escape(LOCK)}:\d+: colour: unknown key", m.error), m
    assert m.used <= 12 * m.size, m


@pytest.mark.parametrize("damage, size, argv, says", [
    (dm.report_of_short_strings, 5 * (dm.MAX_JSON_VALUES - 100), ("report", "demo"), "kind: is required"),
    (dm.report_of_short_strings, 5 * (dm.MAX_JSON_VALUES + 100), ("report", "demo"), "more than 1000000 values"),
    (dm.report_of_empty_lists, 3 * (dm.MAX_JSON_CONTAINERS + 100), ("report", "demo"),
     "more than 100000 objects and arrays"),
    (dm.lock_of_empty_lists, 3 * (dm.MAX_NODES - 1000), ("verify", "demo"), "colour: unknown key"),
    (dm.lock_of_empty_lists, 3 * (dm.MAX_NODES + 5000), ("verify", "demo"), "more than 100000 values"),
])
def test_the_costliest_values_are_bounded_by_the_value_budgets(template, tmp_path, damage, size, argv, says):
    m = measured(template, tmp_path, damage, size, argv)
    assert m.code == 3 and says in m.error, m
    assert m.used <= 128 * MIB, m
