"""Benchmark: the memory kabuild uses to read a damaged document, measured in a subprocess with
resource.getrusage (peak RSS of the process, less its peak before the verb started).

Each case writes one damaged document into a copy of the unit tests' world (tests/unit/kbworld.py:
a promoted demo host with a completed run and a reference) and runs the verb that reads it.  A
150 MB report.json was once read with 17 GB; over the size limit it is now refused unread, and a
document under the limit is parsed with a small multiple of its size.  Prints sizes, peaks and the
ratio; `make bench` runs it.  tests/unit/test_document_memory.py asserts the bounds.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import tempfile
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
for extra in (ROOT, ROOT / "tests" / "unit"):
    if str(extra) not in sys.path:
        sys.path.insert(0, str(extra))

import kbworld  # noqa: E402

from kabuild.compare.acceptance import SCHEMA  # noqa: E402
from kabuild.config.document import MAX_JSON_BYTES, MAX_JSON_CONTAINERS, MAX_JSON_VALUES  # noqa: E402
from kabuild.config.yamlio import MAX_BYTES as MAX_YAML_BYTES  # noqa: E402
from kabuild.config.yamlio import MAX_NODES  # noqa: E402

MB = 10**6
MIB = 2**20
# The verb runs in a fresh interpreter that reports its own peak before and after.  Linux carries a
# process's peak RSS across fork and exec, so it is started by a bare interpreter (SPAWN, a few MiB),
# not straight from this one: its figure is then its own.
SPAWN = ("import os, sys; pid = os.posix_spawn(sys.executable, [sys.executable, *sys.argv[1:]], os.environ); "
         "sys.exit(os.waitstatus_to_exitcode(os.waitpid(pid, 0)[1]))")
MEASURE = """\
import resource, sys
from kabuild.cli import run_cli
before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
code = run_cli(sys.argv[1:])
peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
print(f"KABUILD-MEMORY {before} {peak}", file=sys.stderr)
sys.exit(code)
"""


@dataclass(frozen=True)
class Measured:
    code: int
    error: str  # the verb's last stderr line
    size: int  # bytes of the damaged document
    before_kib: int  # peak RSS once kabuild was imported
    peak_kib: int  # peak RSS after the verb

    @property
    def used(self) -> int:
        """Bytes the verb added to the process's peak."""
        return max(0, self.peak_kib - self.before_kib) * 1024

    @property
    def ratio(self) -> float:
        return self.used / self.size if self.size else 0.0


def _fill(path: Path, head: str, item: str, tail: str, size: int) -> None:
    """``head`` + ``item`` repeated + ``tail``, ``size`` bytes in all, written in chunks."""
    count = max(0, (size - len(head) - len(tail)) // len(item))
    chunk = item * 65536
    with open(path, "w") as f:
        f.write(head)
        for _ in range(count // 65536):
            f.write(chunk)
        f.write(item * (count % 65536))
        f.write(tail)


MEMBER = '"usr/lib/modules/6.12.107-kb1/kernel/drivers/net/ethernet/x0123.ko.zst", '  # 76 bytes


def report_with_unknown_key(world: Path, size: int) -> Path:
    """The valid report plus a key it does not know, holding a long list of member paths: it parses,
    and the typed reader refuses it (the shape that once took 17 GB for 150 MB)."""
    path = world / kbworld.REPORT
    head = json.dumps(json.loads(path.read_text()))[:-1] + ', "colour": ['
    _fill(path, head, MEMBER, '"end"]}', size)
    return path


def report_truncated(world: Path, size: int) -> Path:
    """The same cut off before its end: a syntax error on the last line, after parsing everything before."""
    path = world / kbworld.REPORT
    head = json.dumps(json.loads(path.read_text()))[:-1] + ', "colour": ['
    _fill(path, head, MEMBER, "", size)
    return path


def report_of_short_strings(world: Path, size: int) -> Path:
    """The costliest text per value: a new two-character string every five bytes (~60 bytes each parsed)."""
    path = world / kbworld.REPORT
    _fill(path, f'{{"schema": {SCHEMA}, "colour": [', '"ab",', '"ab"]}', size)
    return path


def report_of_empty_lists(world: Path, size: int) -> Path:
    """The costliest text per byte for any JSON parser: an empty list every three bytes."""
    path = world / kbworld.REPORT
    _fill(path, f'{{"schema": {SCHEMA}, "colour": [', "[],", "[]]}", size)
    return path


def lock_with_long_list(world: Path, size: int) -> Path:
    """manifest.lock with a long YAML list of member paths under a key it does not know."""
    path = world / kbworld.LOCK
    _fill(path, path.read_text() + "colour:\n", "- " + MEMBER.strip(' ,"') + "\n", "", size)
    return path


def lock_of_empty_lists(world: Path, size: int) -> Path:
    """The costliest YAML per byte: an empty flow list every three bytes (~600 bytes each built)."""
    path = world / kbworld.LOCK
    _fill(path, path.read_text() + "colour: [", "[],", "]\n", size)
    return path


LIMIT = MAX_JSON_BYTES - 4096
CASES: list[tuple[str, Callable[[Path, int], Path], int, tuple[str, ...]]] = [
    ("report.json 150 MB (over the size limit)", report_with_unknown_key, 150 * MB, ("report", "demo")),
    ("report.json at the size limit, unknown key", report_with_unknown_key, LIMIT, ("report", "demo")),
    ("report.json at the size limit, truncated", report_truncated, LIMIT, ("report", "demo")),
    ("report.json at the value budget", report_of_short_strings, 5 * (MAX_JSON_VALUES - 100), ("report", "demo")),
    ("report.json at the object/array budget", report_of_empty_lists, 3 * (MAX_JSON_CONTAINERS - 100),
     ("report", "demo")),
    ("manifest.lock 150 MB (over the size limit)", lock_with_long_list, 150 * MB, ("verify", "demo")),
    ("manifest.lock at the size limit", lock_with_long_list, MAX_YAML_BYTES - 4096, ("verify", "demo")),
    ("manifest.lock at the value budget", lock_of_empty_lists, 3 * (MAX_NODES - 1000), ("verify", "demo")),
]


def measure(world: Path, argv: tuple[str, ...], size: int) -> Measured:
    """Run ``kabuild ARGV`` on ``world`` in a fresh interpreter; its peak RSS before and after the verb."""
    env = {**os.environ, "KABUILD_CACHE": str(world.parent / "cache")}
    env.pop("KABUILD_ROOT", None)
    r = subprocess.run([sys.executable, "-S", "-c", SPAWN, "-c", MEASURE, "--root", str(world), *argv],
                       capture_output=True, text=True, timeout=600, env=env, cwd=ROOT)
    marks = [line for line in r.stderr.splitlines() if line.startswith("KABUILD-MEMORY ")]
    if not marks:
        raise RuntimeError(f"the measuring process did not report its memory: {r.stderr[-2000:]}")
    before, peak = (int(x) for x in marks[0].split()[1:])
    lines = [line for line in r.stderr.splitlines() if not line.startswith("KABUILD-MEMORY ")]
    return Measured(r.returncode, lines[-1] if lines else "", size, before, peak)


def make_template(base: Path) -> kbworld.World:
    os.environ["KABUILD_CACHE"] = str(base / "cache")
    os.environ.pop("KABUILD_ROOT", None)
    return kbworld.make_world(base / "template")


def run_case(template: kbworld.World, base: Path, name: str, damage: Callable[[Path, int], Path], size: int,
             argv: tuple[str, ...]) -> Measured:
    world = kbworld.copy_world(template, base / name.replace(" ", "_").replace(",", ""))
    try:
        path = damage(world.root, size)
        return measure(world.root, argv, path.stat().st_size)
    finally:
        import shutil

        shutil.rmtree(world.root, ignore_errors=True)


def main() -> int:
    with tempfile.TemporaryDirectory(prefix="kabuild-docmem-") as tmp:
        base = Path(tmp)
        template = make_template(base)
        undamaged = measure(template.root, ("report", "demo"), (template.root / kbworld.REPORT).stat().st_size)
        print(f"document memory: peak RSS the verb added (limits: JSON {MAX_JSON_BYTES / MIB:.0f} MiB, "
              f"{MAX_JSON_VALUES} values, {MAX_JSON_CONTAINERS} objects/arrays; YAML {MAX_YAML_BYTES / MIB:.0f} MiB, "
              f"{MAX_NODES} values)")
        print(f"  {'case':42} {'size':>11}  exit  {'start':>9}  {'peak':>9}  {'added':>9}  added/size")
        for name, m in [("undamaged report.json", undamaged)] + [
                (name, run_case(template, base, name, damage, size, argv)) for name, damage, size, argv in CASES]:
            print(f"  {name:42} {m.size / MB:8.2f} MB  {m.code:4}  {m.before_kib / 1024:5.1f} MiB  "
                  f"{m.peak_kib / 1024:5.1f} MiB  {m.used / MIB:5.1f} MiB  {m.ratio:6.2f}   "
                  f"{m.error.split(': ', 3)[-1][:60] if m.code else ''}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
