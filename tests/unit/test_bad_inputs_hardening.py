"""The bad-input table, continued: control characters, documents over their limits, the inputs that
used to pass silently, the power-cycle hook and the install journal.

Same rules as tests/unit/test_bad_inputs.py, whose helpers and world it uses: each case is one damaged
input and one verb, run in-process; it asserts the documented exit code, exactly one line on stderr
naming the file (and the line where the file has lines), and no traceback.  The install journal is
read only once a package is verified for a board, so its rows go through its reader and the CLI's own
error mapping (:func:`kabuild.cli.exit_for`) instead of a verb.
"""

from __future__ import annotations

import os
import re
import shutil
from collections.abc import Callable
from pathlib import Path

import pytest
from kbworld import LOCK, REFERENCE, REPORT
from test_bad_inputs import (  # noqa: F401  (template and world are fixtures this module uses)
    DEMO,
    MANIFEST,
    NODES,
    NODES_TEXT,
    Case,
    check_case,
    esc,
    json_edit,
    kabuild,
    line_at,
    setitem,
    template,
    world,
    write_text,
    yaml_edit,
)

from kabuild.cli import exit_for
from kabuild.config.yamlio import dump_yaml
from kabuild.install.journal import JOURNAL_SCHEMA, read_journal

pytestmark = pytest.mark.skipif(shutil.which("patch") is None, reason="needs GNU patch on PATH (promote)")

VERIFY = ("verify", "demo")


def manifest(cid: str, old: str, new: str, key: str, says: str, *, offset: int = 0) -> Case:
    """``old`` replaced by ``new`` in the demo manifest; the error names ``key`` at the line of ``old``."""
    assert DEMO.count(old) == 1, old
    return Case(f"manifest-{cid}", write_text(MANIFEST, DEMO.replace(old, new)), VERIFY, 2,
                rf"{esc(MANIFEST)}:{line_at(DEMO, old, offset)}: {esc(key)}: {says}")


def nodes(cid: str, old: str, new: str, key: str, says: str) -> Case:
    assert NODES_TEXT.count(old) == 1, old
    return Case(f"nodes-{cid}", write_text(NODES, NODES_TEXT.replace(old, new)), ("status", "demo"), 2,
                rf"{esc(NODES)}:{line_at(NODES_TEXT, old)}: {esc(key)}: {says}")


def append(rel: str, text: str | bytes) -> Callable[[Path], None]:
    def damage(root: Path) -> None:
        with open(root / rel, "ab") as f:
            f.write(text if isinstance(text, bytes) else text.encode("utf-8"))
    return damage


def lines_in(root: Path, rel: str) -> int:
    return (root / rel).read_text().count("\n")


CONTROL = "a control character"

CASES: list[Case] = [
    # ---------------------------------------------------------------- control characters in the text
    Case("manifest-raw-control-character", write_text(MANIFEST, DEMO.replace("(runs on one laptop", "(runs\x01on one laptop")),
         VERIFY, 2, rf"{esc(MANIFEST)}:7: invalid YAML: {CONTROL} \(U\+0001\) in the text"),
    Case("manifest-escape-sequence-in-a-comment", write_text(MANIFEST, DEMO.replace("# a tiny C", "# \x1b[31ma tiny C")),
         VERIFY, 2, rf"{esc(MANIFEST)}:3: invalid YAML: {CONTROL} \(U\+001B\)"),
    Case("manifest-delete-character", write_text(MANIFEST, DEMO.replace("keep: 3", "keep: 3\x7f")),
         VERIFY, 2, rf"{esc(MANIFEST)}:37: invalid YAML: {CONTROL} \(U\+007F\)"),
    Case("manifest-non-character", write_text(MANIFEST, DEMO.replace("flavor: debian", "flavor: debian\ufffe")),
         VERIFY, 2, rf"{esc(MANIFEST)}:27: invalid YAML: an unprintable character \(U\+FFFE\)"),
    Case("nodes-raw-control-character", write_text(NODES, NODES_TEXT.replace("  fermi:", "  fermi:\x07")),
         ("status", "demo"), 2, rf"{esc(NODES)}:{line_at(NODES_TEXT, '  fermi:')}: invalid YAML: {CONTROL} \(U\+0007\)"),
    Case("lock-raw-control-character-verify", append(LOCK, "# \x01\n"), VERIFY, 3,
         rf"{esc(LOCK)}:\d+: invalid YAML: {CONTROL} \(U\+0001\)"),
    Case("lock-raw-control-character-build", append(LOCK, "# \x01\n"), ("build", "demo"), 3,
         rf"{esc(LOCK)}:\d+: invalid YAML: {CONTROL} \(U\+0001\)"),
    Case("reference-raw-control-character", append(REFERENCE, "# \x1b\n"), ("reproduce", "demo"), 3,
         rf"{esc(REFERENCE)}:\d+: invalid YAML: {CONTROL} \(U\+001B\)"),
    Case("report-raw-control-character", lambda root: (root / REPORT).write_text(
         (root / REPORT).read_text().replace('"host": "demo"', '"host": "de\x01mo"')), ("report", "demo"), 3,
         rf"{esc(REPORT)}:\d+: not valid JSON: Invalid control character \(column \d+\)"),
    # ---------------------------------------------------------------- control characters in a value
    manifest("escaped-escape-in-description", "description: self-contained demo board (runs on one laptop, no network)",
             'description: "self-contained \\e[2J demo board"', "description", r"expected a string, got .*U\+001B"),
    manifest("nul-in-pkgbuild-path", "pkgbuild: fleet/pkgbuilds/kabuild-hello",
             'pkgbuild: "fleet/pkgbuilds/kabuild-hello\\0"', "packages[0].pkgbuild",
             r"expected the path of the PKGBUILD directory, got .*which holds a control character \(U\+0000\)"),
    manifest("newline-escape-in-url", "url: fleet/sources/kabuild-hello-1.0.tar.gz",
             'url: "fleet/sources/kabuild-hello-1.0.tar.gz\\r"', "baseline.sources[0].url", r".*U\+000D"),
    Case("report-nul-in-a-path", json_edit(REPORT, setitem("packages.0.build1.path", "build1/x\u0000y.pkg.tar.zst")),
         ("report", "demo"), 3, rf"{esc(REPORT)}: packages\[0\]\.build1\.path: .*control character \(U\+0000\)"),
    Case("reference-escape-in-the-host", yaml_edit(REFERENCE, setitem("host", "de\x1bmo")), ("reproduce", "demo"), 3,
         rf"{esc(REFERENCE)}:\d+: host: expected a host name, got 'de\\x1bmo', which holds a control character"),
    # ---------------------------------------------------------------- size and value limits
    Case("manifest-over-the-size-limit", append(MANIFEST, "#" * (5 << 20) + "\n"), VERIFY, 2,
         rf"{esc(MANIFEST)}: 5\.0 MiB is over the 4\.0 MiB limit for this document"),
    Case("lock-over-the-size-limit", append(LOCK, "#" * (5 << 20) + "\n"), VERIFY, 3,
         rf"{esc(LOCK)}: 5\.0 MiB is over the 4\.0 MiB limit for this document"),
    Case("report-over-the-size-limit", lambda root: (root / REPORT).write_text(
         (root / REPORT).read_text()[:-2] + ', "colour": "' + "x" * (17 << 20) + '"}'), ("report", "demo"), 3,
         rf"{esc(REPORT)}: 17\.0 MiB is over the 16\.0 MiB limit for this document"),
    Case("lock-too-many-values", append(LOCK, "colour: [" + "[]," * 101_000 + "]\n"), VERIFY, 3,
         rf"{esc(LOCK)}:\d+: more than 100000 values in one document"),
    Case("report-too-many-arrays", lambda root: (root / REPORT).write_text(
         (root / REPORT).read_text()[:-2] + ', "colour": [' + "[]," * 101_000 + "[]]}"), ("report", "demo"), 3,
         rf"{esc(REPORT)}: more than 100000 objects and arrays in one document"),
    # ---------------------------------------------------------------- inputs that used to pass silently
    manifest("url-a-number", "url: fleet/sources/kabuild-hello-1.0.tar.gz", "url: 42", "baseline.sources[0].url",
             r".*got 42, which YAML reads as a number \(quote it"),
    manifest("destination-a-number", "destination: build/demo/repo", "destination: 0", "publish.destination",
             r"expected a directory or ssh://host/path, got 0, which YAML reads as a number"),
    manifest("pkgbuild-a-number", "pkgbuild: fleet/pkgbuilds/kabuild-hello", "pkgbuild: 7", "packages[0].pkgbuild",
             r".*got 7, which YAML reads as a number"),
    manifest("known-hosts-a-number", "known_hosts: build/demo/board/known_hosts", "known_hosts: 1",
             "install.known_hosts", r"expected a file path, got 1, which YAML reads as a number"),
    manifest("sha256-empty", "      sha256: 4b6e", "      sha256:\n      x: 4b6e", "baseline.sources[0].sha256",
             r"is empty: give it a value, or leave the key out"),
    manifest("fallback-empty", "    fallback: local", "    fallback:", "build.nodes.fallback", r"is empty"),
    manifest("backup-one-slash", "  heartbeat_timeout: 60", "  heartbeat_timeout: 60\n  backup: ssh:/host/path",
             "install.backup", r"'ssh:/host/path' looks like a URL with a slash missing", offset=1),
    manifest("destination-one-slash", "destination: build/demo/repo", "destination: ssh:/srv/repo",
             "publish.destination", r"'ssh:/srv/repo' looks like a URL with a slash missing"),
    manifest("destination-host-an-option", "destination: build/demo/repo",
             "destination: ssh://-oProxyCommand=touch%20x/srv/repo", "publish.destination",
             r".*'-oProxyCommand=touch%20x' is not a host name"),
    manifest("destination-user-an-option", "destination: build/demo/repo",
             "destination: ssh://-oProxyCommand=x@repo.example.org/srv/repo", "publish.destination",
             r".*'-oProxyCommand=x' is not a user name"),
    manifest("backup-host-an-option", "  heartbeat_timeout: 60",
             "  heartbeat_timeout: 60\n  backup: ssh://-oProxyCommand=x/srv/backups", "install.backup",
             r".*'-oProxyCommand=x' is not a host name", offset=1),
    manifest("install-ssh-host-an-option", "ssh: root@127.0.0.1", "ssh: root@-oProxyCommand", "install.ssh",
             r"expected an ssh target"),
    nodes("ssh-host-an-option", "url: ssh://fermi", "url: ssh://-oProxyCommand=x", "nodes.fermi.url",
          r".*'-oProxyCommand=x' is not a host name"),
    nodes("two-names-one-socket", "url: unix:///run/kabuild-docker2.sock", "url: unix:///run/docker.sock",
          "nodes.local-2.url", r"'unix:///run/docker\.sock' is the same engine as node 'local'"),
    nodes("two-names-one-ssh-host", "url: ssh://fermi", "url: ssh://builder@BOLTZMANN:22", "nodes.fermi.url",
          r"'ssh://builder@BOLTZMANN:22' is the same engine as node 'boltzmann'"),
    Case("host-name-too-long", lambda root: None, ("status", "h" * 300), 2,
         r"invalid host name 'h+'… \(300 characters\): expected .*at most 100 characters"),
    manifest("ref-too-long", "ref: v1.0", "ref: v" + "1" * 300, "baseline.ref",
             r"expected a ref usable as a directory name, got 'v1+'… \(301 characters\)"),
    manifest("package-name-too-long", "  - name: kabuild-hello", "  - name: kabuild-" + "x" * 300, "packages[0].name",
             r"expected a pacman package name, got 'kabuild-x+'… \(308 characters\)"),
    manifest("destination-port-0", "destination: build/demo/repo", "destination: ssh://repo.example.org:0/srv/repo",
             "publish.destination", r"not a valid URL: .* \(port 0\)"),
    nodes("ssh-port-0", "url: ssh://fermi", "url: ssh://fermi:0", "nodes.fermi.url", r"not a valid URL: .* \(port 0\)"),
    Case("nodes-a-fifo", lambda root: ((root / NODES).unlink(), os.mkfifo(root / NODES)), ("status", "demo"), 2,
         rf"{esc(NODES)}: not a regular file"),
    Case("lock-a-fifo", lambda root: ((root / LOCK).unlink(), os.mkfifo(root / LOCK)), VERIFY, 3,
         rf"{esc(LOCK)}: not a regular file"),
    Case("flag-node-empty", lambda root: None, ("build", "demo", "--node", ""), 2,
         r"Invalid value for '--node': an empty value; leave the option out instead"),
    Case("flag-install-version-blank", lambda root: None, ("install", "demo", "--version", " ", "--dry-run"), 2,
         r"Invalid value for '--version': an empty value"),
    # ---------------------------------------------------------------- the power-cycle hook, at load time
    manifest("power-cycle-not-on-path", "power_cycle: [docker,", "power_cycle: [kabuild-no-such-plug,",
             "install.power_cycle", r"the hook's program 'kabuild-no-such-plug' is not found on PATH"),
    manifest("power-cycle-missing-file", "power_cycle: [docker,", "power_cycle: [fleet/plug,",
             "install.power_cycle", r"the hook's program /.*/fleet/plug does not exist"),
    Case("manifest-power-cycle-not-executable",
         lambda root: ((root / "fleet/plug").write_text("#!/bin/sh\n"),
                       (root / MANIFEST).write_text(DEMO.replace("power_cycle: [docker,", "power_cycle: [fleet/plug,"))),
         VERIFY, 2, rf"{esc(MANIFEST)}:46: install\.power_cycle: the hook's program /.*/fleet/plug is not executable"),
    manifest("power-cycle-nul", "power_cycle: [docker,", 'power_cycle: ["dock\\0er",', "install.power_cycle",
             r"item 0: expected a command argument, got 'dock\\x00er', which holds a control character"),
]


def test_the_table_has_its_rows_and_ids_are_unique():
    assert len(CASES) >= 30
    assert len({c.id for c in CASES}) == len(CASES)


@pytest.mark.parametrize("case", CASES, ids=[c.id for c in CASES])
def test_bad_input_is_one_located_line(world, capsys, case):  # noqa: F811  (the imported fixture)
    check_case(world, capsys, case)


# --------------------------------------------------------------------------- the install journal

JOURNAL = "build/demo/install/journal.yaml"
SHA = "ab" * 32
GOOD = {
    "schema": JOURNAL_SCHEMA, "id": "20261122T011500Z-ab12cd34", "started": "2026-11-22T01:15:00+00:00",
    "step": "installed", "release": "6.1.1-kb1", "replaced_release": "6.0.0-factory", "backup": "/srv/backups/demo/1.0-1",
    "why": None,
    "packages": [{"name": "kabuild-hello", "version": "1.0-2", "file": "kabuild-hello-1.0-2-aarch64.pkg.tar.zst",
                  "sha256": SHA}],
    "replaced": [{"name": "kabuild-hello", "version": "1.0-1", "file": "kabuild-hello-1.0-1-aarch64.pkg.tar.zst",
                  "sha256": SHA}],
}


def journal_with(**changes) -> str:
    return dump_yaml({**GOOD, **changes})


def pkg(**changes) -> list[dict]:
    return [{**GOOD["packages"][0], **changes}]


JOURNAL_CASES = [
    ("after-the-backup-without-one", journal_with(step="rebooting", backup=None),
     r"backup: step rebooting comes after the backup, but the journal names no backup directory"),
    ("rolling-back-without-a-reason", journal_with(step="rolling-back"), r"why: a rollback is recorded without its reason"),
    ("backup-relative", journal_with(backup="build/backups"), r"backup: expected the backup directory \(an absolute path\)"),
    ("version-without-pkgrel", journal_with(packages=pkg(version="1.0")), r"packages\[0\]\.version: expected \[epoch:\]pkgver-pkgrel"),
    ("release-a-command", journal_with(release="$(reboot)"), r"release: expected a kernel release \(uname -r\)"),
    ("replaced-another-package", journal_with(replaced=[{**GOOD["replaced"][0], "name": "other"}]),
     r"replaced: item 0: other is not one of the packages being installed"),
    ("no-packages", journal_with(packages=[]), r"packages: expected at least one package being installed"),
    ("package-twice", journal_with(packages=pkg() + pkg()), r"packages: a package is listed twice"),
    ("started-not-a-time", journal_with(started="yesterday"), r"started: expected a UTC timestamp"),
    ("step-unknown", journal_with(step="done"), r"step: expected one of locking, backing-up"),
    ("raw-control-character", journal_with() + "# \x01\n", rf"invalid YAML: {CONTROL} \(U\+0001\)"),
    ("over-the-size-limit", journal_with() + "#" * (5 << 20) + "\n", r"5\.0 MiB is over the 4\.0 MiB limit"),
]


def test_the_good_journal_reads(tmp_path):
    path = tmp_path / "journal.yaml"
    path.write_text(journal_with())
    journal = read_journal(path, JOURNAL)
    assert journal is not None and journal.step.value == "installed" and journal.replaced[0].version == "1.0-1"


@pytest.mark.parametrize("text, says", [c[1:] for c in JOURNAL_CASES], ids=[c[0] for c in JOURNAL_CASES])
def test_a_damaged_journal_is_one_located_line(tmp_path, capsys, text, says):
    path = tmp_path / "journal.yaml"
    path.write_text(text)
    capsys.readouterr()
    try:
        read_journal(path, JOURNAL)
        code = 0
    except Exception as e:
        code = exit_for(e)
    err = capsys.readouterr().err
    assert code == 3, err
    assert "Traceback" not in err and len(err.splitlines()) == 1, err
    assert re.match(rf"kabuild: error: {esc(JOURNAL)}(:\d+)?: {says}", err), err


def test_promote_replaces_a_lock_with_a_control_character(world, capsys):  # noqa: F811  (the imported fixture)
    append(LOCK, "# \x01\n")(world.root)
    code, _out, err = kabuild(world.root, capsys, "verify", "demo")
    assert code == 3 and "invalid YAML: a control character (U+0001)" in err, err
    code, _out, err = kabuild(world.root, capsys, "promote", "demo")
    assert code == 0, err
    code, _out, err = kabuild(world.root, capsys, "verify", "demo")
    assert code == 0, err
