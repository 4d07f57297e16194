"""Parity and diffoscope-JSON parsing, without running diffoscope.

The JSON samples below are trimmed copies of what the real diffoscope 240 (Debian 12,
diffoscope-minimal) wrote for small .pkg.tar.zst archives made with bsdtar + zstd: only
the long unified diffs of non-"file list" nodes were shortened.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from kbhelpers import fake_diffoscope

from kabuild.compare import diffoscope as compare
from kabuild.compare.diffoscope import DiffResult, DiffStatus, differing_files, same
from kabuild.errors import ExitCode, ToolError
from kabuild.files import digest_bytes

# .PKGINFO, .BUILDINFO and one data file differ; .MTREE follows (it records their hashes).
PKG_TEXT_CHANGES = r"""
{"diffoscope-json-version": 1, "source1": "a.pkg.tar.zst", "source2": "b.pkg.tar.zst", "unified_diff": null,
 "details": [{"source1": "a.pkg.tar", "source2": "b.pkg.tar", "unified_diff": null, "details": [
  {"source1": "file list", "source2": "file list",
   "unified_diff": "@@ -1,8 +1,8 @@\n--rw-r--r--   0 root         (0) root         (0)      462 2026-11-22 01:21:30.000000 .MTREE\n+-rw-r--r--   0 root         (0) root         (0)      464 2026-11-22 01:21:30.000000 .MTREE\n -rw-r--r--   0 root         (0) root         (0)      110 2026-11-22 01:21:30.000000 .PKGINFO\n -rw-r--r--   0 root         (0) root         (0)       98 2026-11-22 01:21:30.000000 .BUILDINFO\n drwxr-xr-x   0 root         (0) root         (0)        0 2026-11-22 01:21:30.000000 usr/\n drwxr-xr-x   0 root         (0) root         (0)        0 2026-11-22 01:21:30.000000 usr/share/\n drwxr-xr-x   0 root         (0) root         (0)        0 2026-11-22 01:21:30.000000 usr/bin/\n -rwxr-xr-x   0 root         (0) root         (0)       21 2026-11-22 01:21:30.000000 usr/bin/kabuild-hello\n drwxr-xr-x   0 root         (0) root         (0)        0 2026-11-22 01:21:30.000000 usr/share/kabuild-hello/\n"},
  {"source1": ".MTREE", "source2": ".MTREE", "unified_diff": null, "details": [
    {"source1": ".MTREE-content", "source2": ".MTREE-content",
     "unified_diff": "@@ -1,11 +1,11 @@\n-./.BUILDINFO time=1795310490.582037431 size=98 md5digest=02a52ec14c310f6aeea784e458e7a1e4\n+./.BUILDINFO time=1795310490.706037429 size=98 md5digest=ca08f469dccef205dfea1888b9bc8cea\n"}]},
  {"source1": ".PKGINFO", "source2": ".PKGINFO", "unified_diff": "@@ -1,6 +1,6 @@\n-builddate = 1000\n+builddate = 2000\n"},
  {"source1": ".BUILDINFO", "source2": ".BUILDINFO", "unified_diff": "@@ -1,5 +1,5 @@\n-installed = gcc-12.2.0-14\n+installed = gcc-12.2.0-15\n"},
  {"source1": "usr/share/kabuild-hello/greeting.txt", "source2": "usr/share/kabuild-hello/greeting.txt",
   "unified_diff": "@@ -1 +1 @@\n-hello world\n+hello there\n"}]}]}
"""

# An ELF binary (readelf details), a symlink target, a mode change and an added file: the
# last two are visible only in the "file list".
PKG_ELF_SYMLINK_MODE = r"""
{"diffoscope-json-version": 1, "source1": "d.pkg.tar.zst", "source2": "e.pkg.tar.zst", "unified_diff": null,
 "details": [{"source1": "d.pkg.tar", "source2": "e.pkg.tar", "unified_diff": null, "details": [
  {"source1": "file list", "source2": "file list",
   "unified_diff": "@@ -1,9 +1,10 @@\n -rw-r--r--   0 root         (0) root         (0)       12 2026-11-22 01:21:36.000000 .PKGINFO\n drwxr-xr-x   0 root         (0) root         (0)        0 2026-11-22 01:21:36.000000 usr/\n drwxr-xr-x   0 root         (0) root         (0)        0 2026-11-22 01:21:36.000000 usr/bin/\n-lrwxrwxrwx   0 root         (0) root         (0)        0 2026-11-22 01:21:36.000000 usr/bin/bar -> foo\n+lrwxrwxrwx   0 root         (0) root         (0)        0 2026-11-22 01:21:36.000000 usr/bin/bar -> foo2\n -rwxr-xr-x   0 root         (0) root         (0)    15960 2026-11-22 01:21:36.000000 usr/bin/foo\n drwxr-xr-x   0 root         (0) root         (0)        0 2026-11-22 01:21:36.000000 usr/share/doc/\n--rw-r--r--   0 root         (0) root         (0)        5 2026-11-22 01:21:36.000000 usr/share/doc/README\n+-rw-r--r--   0 root         (0) root         (0)        5 2026-11-22 01:21:36.000000 usr/share/doc/NEW\n+-rw-------   0 root         (0) root         (0)        5 2026-11-22 01:21:36.000000 usr/share/doc/README\n"},
  {"source1": "usr/bin/bar", "source2": "usr/bin/bar", "comments": ["symlink"],
   "unified_diff": "@@ -1 +1 @@\n-destination: foo\n+destination: foo2\n"},
  {"source1": "usr/bin/foo", "source2": "usr/bin/foo",
   "comments": ["File has been modified after NT_GNU_BUILD_ID has been applied."], "unified_diff": null, "details": [
    {"source1": "readelf --wide --program-header {}", "source2": "readelf --wide --program-header {}",
     "unified_diff": "@@ -12,15 +12,15 @@\n-  GNU_EH_FRAME   0x002008 0x0000000000002008\n+  GNU_EH_FRAME   0x00200c 0x000000000000200c\n"},
    {"source1": "readelf --wide --sections {}", "source2": "readelf --wide --sections {}",
     "unified_diff": "@@ -15,16 +15,16 @@\n-  [17] .rodata           PROGBITS        0000000000002000 002000 000008\n"},
    {"source1": "readelf --wide --notes {}", "source2": "readelf --wide --notes {}",
     "unified_diff": "@@ -1,12 +1,12 @@\n-    Build ID: 673c21e9552a88b0e1d2bb1887a19be97418d8be\n+    Build ID: c04f3df354e16fa433f949e9e09f0da463ecd953\n"},
    {"source1": "readelf --wide --decompress --hex-dump=.rodata {}",
     "source2": "readelf --wide --decompress --hex-dump=.rodata {}",
     "unified_diff": "@@ -1,4 +1,4 @@\n-  0x00002000 01000200 6f6e6500                   ....one.\n+  0x00002000 01000200 74776f21 00                ....two!.\n"}]}]}]}
"""

# A .tar.gz and a .jar inside the package, and a gzipped man page.
PKG_NESTED = r"""
{"diffoscope-json-version": 1, "source1": "n1.pkg.tar.zst", "source2": "n2.pkg.tar.zst", "unified_diff": null,
 "details": [{"source1": "n1.pkg.tar", "source2": "n2.pkg.tar", "unified_diff": null, "details": [
  {"source1": "file list", "source2": "file list",
   "unified_diff": "@@ -1,9 +1,9 @@\n drwxr-xr-x   0 root         (0) root         (0)        0 2026-11-22 01:24:05.000000 usr/lib/\n--rw-r--r--   0 root         (0) root         (0)      166 2026-11-22 01:24:05.000000 usr/lib/bundle.tar.gz\n+-rw-r--r--   0 root         (0) root         (0)      167 2026-11-22 01:24:05.000000 usr/lib/bundle.tar.gz\n -rw-r--r--   0 root         (0) root         (0)      210 2026-11-22 01:24:05.000000 usr/lib/app.jar\n drwxr-xr-x   0 root         (0) root         (0)        0 2026-11-22 01:24:04.000000 usr/share/man/man1/\n--rw-r--r--   0 root         (0) root         (0)       30 2026-11-22 01:24:04.000000 usr/share/man/man1/foo.1.gz\n+-rw-r--r--   0 root         (0) root         (0)       32 2026-11-22 01:24:04.000000 usr/share/man/man1/foo.1.gz\n"},
  {"source1": "usr/lib/bundle.tar.gz", "source2": "usr/lib/bundle.tar.gz", "unified_diff": null, "details": [
    {"source1": "bundle.tar", "source2": "bundle.tar", "unified_diff": null, "details": [
      {"source1": "sub/data.txt", "source2": "sub/data.txt", "unified_diff": "@@ -1 +1 @@\n-a\n+b\n"}]}]},
  {"source1": "usr/lib/app.jar", "source2": "usr/lib/app.jar", "unified_diff": null, "details": [
    {"source1": "zipinfo -v {}", "source2": "zipinfo -v {}",
     "unified_diff": "@@ -26,15 +26,15 @@\n-  32-bit CRC value (hex):                         9b80d194\n+  32-bit CRC value (hex):                         b0ad8257\n"},
    {"source1": "z/m.txt", "source2": "z/m.txt", "unified_diff": "@@ -1 +1 @@\n-n1\n+n2\n"}]},
  {"source1": "usr/share/man/man1/foo.1.gz", "source2": "usr/share/man/man1/foo.1.gz", "unified_diff": null,
   "details": [{"source1": "foo.1", "source2": "foo.1", "unified_diff": "@@ -1 +1 @@\n-.TH FOO 1\n+.TH FOO 1 x\n"}]}]}]}
"""

# A truncated .zst: diffoscope cannot decompress it and falls back to a hexdump of the whole file.
PKG_CORRUPT = r"""
{"diffoscope-json-version": 1, "source1": "a.pkg.tar.zst", "source2": "trunc.pkg.tar.zst",
 "comments": ["Command `zstd -d --quiet --no-progress -c trunc.pkg.tar.zst` failed with exit code 1. (No output)"],
 "has_internal_linenos": true,
 "unified_diff": "@@ -25,34 +25,8 @@\n 00000180: baf3 18f6 b72d 6d78 5834 d03e 4613 4bc2  .....-mxX4.>F.K.\n"}
"""


def _tree(text: str) -> dict:
    return json.loads(text)


def _listing(*lines: str) -> dict:
    """A root with one top-level layer whose only detail is a "file list" diff."""
    return {"diffoscope-json-version": 1, "source1": "x.pkg.tar.zst", "source2": "y.pkg.tar.zst", "unified_diff": None,
            "details": [{"source1": "x.pkg.tar", "source2": "y.pkg.tar", "unified_diff": None,
                         "details": [{"source1": "file list", "source2": "file list",
                                      "unified_diff": "@@ -1,3 +1,3 @@\n" + "".join(f"{ln}\n" for ln in lines)}]}]}


E = "   0 root         (0) root         (0)"
T = "2026-11-22 01:21:36.000000"


# ------------------------------------------------------------------------------------------------


def test_same():
    a = digest_bytes(b"package")
    assert same(a, digest_bytes(b"package"))
    assert not same(a, digest_bytes(b"packagf"))
    assert not same(a, compare.Digest(a.sha256, a.b2sum, a.size + 1))
    assert not same(a, compare.Digest(a.sha256, "0" * 128, a.size))


def test_text_members_and_mtree_layer():
    assert differing_files(_tree(PKG_TEXT_CHANGES)) == (
        ".BUILDINFO", ".MTREE", ".PKGINFO", "usr/share/kabuild-hello/greeting.txt")


def test_elf_symlink_mode_and_added_file():
    files = differing_files(_tree(PKG_ELF_SYMLINK_MODE))
    assert files == ("usr/bin/bar", "usr/bin/foo", "usr/share/doc/NEW", "usr/share/doc/README")
    assert not any("readelf" in f or "{}" in f for f in files)


def test_nested_archives_report_leaf_most_members():
    assert differing_files(_tree(PKG_NESTED)) == (
        "usr/lib/app.jar!/z/m.txt", "usr/lib/bundle.tar.gz!/sub/data.txt", "usr/share/man/man1/foo.1.gz")


def test_corrupt_archive_names_no_inner_file():
    assert differing_files(_tree(PKG_CORRUPT)) == ()


def test_listing_reorder_only_is_not_a_file_change():
    tree = _listing(f"-drwxr-xr-x{E}        0 {T} usr/", f" -rw-r--r--{E}        5 {T} usr/a",
                    f"+drwxr-xr-x{E}        0 {T} usr/")
    assert differing_files(tree) == ()


def test_listing_mtime_change_and_directories():
    tree = _listing(f"-drwxr-xr-x{E}        0 {T} usr/share/",
                    f"+drwxr-xr-x{E}        0 2026-11-23 00:00:00.000000 usr/share/",
                    f"--rw-r--r--{E}        5 {T} usr/share/a b.txt",
                    f"+-rw-r--r--{E}        5 2026-11-23 00:00:00.000000 usr/share/a b.txt")
    assert differing_files(tree) == ("usr/share/", "usr/share/a b.txt")


def test_listing_without_owner_names_and_bare_names():
    # No uname/gname in the archive: diffoscope prints numeric ids; with
    # --exclude-directory-metadata=recursive it prints bare names.
    tree = _listing(f"--rw-r--r--   1        0        0       12 {T} .PKGINFO",
                    f"+-rw-r--r--   1     1000     1000       12 {T} .PKGINFO",
                    "-usr/bin/old", "+usr/bin/new")
    assert differing_files(tree) == (".PKGINFO", "usr/bin/new", "usr/bin/old")


def test_renamed_member_reports_both_names():
    tree = _tree(PKG_TEXT_CHANGES)
    inner = tree["details"][0]["details"]
    inner[:] = [{"source1": "usr/lib/libfoo.so.1", "source2": "usr/lib/libfoo.so.2",
                 "comments": ["Files similar despite different names (score: 12, lower is more similar)"],
                 "unified_diff": "@@ -1 +1 @@\n-a\n+b\n"}]
    assert differing_files(tree) == ("usr/lib/libfoo.so.1", "usr/lib/libfoo.so.2")


def test_plain_tar_inputs_and_non_archive_roots():
    # Two plain .tar inputs: the members hang directly off the root.
    tree = {"diffoscope-json-version": 1, "source1": "x.tar", "source2": "y.tar", "unified_diff": None,
            "details": [{"source1": "etc/conf", "source2": "etc/conf", "unified_diff": "@@ -1 +1 @@\n-a\n+b\n"}]}
    assert differing_files(tree) == ("etc/conf",)
    # Two ELF files compared directly: only commands, no inner file.
    tree = {"diffoscope-json-version": 1, "source1": "foo", "source2": "bar", "unified_diff": None,
            "details": [{"source1": "readelf --wide --symbols {}", "source2": "readelf --wide --symbols {}",
                         "unified_diff": "@@ -1 +1 @@\n-a\n+b\n"}]}
    assert differing_files(tree) == ()


def test_elf_section_children_are_not_files():
    tree = _tree(PKG_TEXT_CHANGES)
    inner = tree["details"][0]["details"]
    inner[:] = [{"source1": "usr/lib/libx.so", "source2": "usr/lib/libx.so", "unified_diff": None,
                 "details": [{"source1": ".text", "source2": ".text", "unified_diff": "@@ -1 +1 @@\n-a\n+b\n"},
                             {"source1": "objdump --line-numbers --disassemble --demangle --section=.text {}",
                              "source2": "objdump --line-numbers --disassemble --demangle --section=.text {}",
                              "unified_diff": "x"}]}]
    assert differing_files(tree) == ("usr/lib/libx.so",)


def test_undecodable_names_become_printable():
    tree = _listing(f"--rw-r--r--{E}        5 {T} usr/share/caf\udce9", f"+-rw-------{E}        5 {T} usr/share/caf\udce9")
    (name,) = differing_files(tree)
    assert name == "usr/share/caf\\xe9"
    name.encode("utf-8")  # no lone surrogate survives


@pytest.mark.parametrize("tree", [
    {}, {"details": None}, {"details": "x"}, {"details": [None, 1, "x", []]},
    {"diffoscope-json-version": 1, "details": [{"source1": None, "source2": None, "details": [{"source1": 3}]}]},
    {"diffoscope-json-version": 1, "details": [{"source1": "a.tar", "details": [{"source1": "file list",
                                                                                  "unified_diff": None}]}]},
])
def test_malformed_trees_do_not_crash(tree):
    assert isinstance(differing_files(tree), tuple)


def test_deep_nesting():
    node = {"source1": "leaf.txt", "source2": "leaf.txt", "unified_diff": "@@ -1 +1 @@\n-a\n+b\n"}
    for i in range(30):
        node = {"source1": f"l{i}.tar", "source2": f"l{i}.tar", "unified_diff": None, "details": [node]}
    tree = {"diffoscope-json-version": 1, "source1": "x.tar", "source2": "y.tar", "details": [node]}
    (name,) = differing_files(tree)
    assert name.startswith("l29.tar!/l28.tar!/") and name.endswith("!/l0.tar!/leaf.txt")


# ------------------------------------------------------------------------------------------------
# DiffResult, argv, and diffoscope() with a stand-in executable (the real one: tests/integration)


def test_as_dict_relative_paths(tmp_path):
    out = tmp_path / "diffoscope" / "pkg" / "build1-vs-build2"
    r = DiffResult(DiffStatus.DIFFERENT, ("usr/bin/foo",), html=str(out / "html" / "index.html"),
                   text=str(out / "diff.txt"), json=str(out / "diff.json"))
    d = r.relative_to(tmp_path).to_dict()
    assert d == {"status": "different", "files": ["usr/bin/foo"],
                 "html": "diffoscope/pkg/build1-vs-build2/html/index.html",
                 "text": "diffoscope/pkg/build1-vs-build2/diff.txt",
                 "json": "diffoscope/pkg/build1-vs-build2/diff.json", "error": None, "truncated": False,
                 "cut": []}
    assert r.to_dict()["html"] == str(out / "html" / "index.html")
    assert json.loads(json.dumps(d)) == d


def test_argv_carries_output_limits(tmp_path):
    argv = compare.diffoscope_argv("/usr/bin/diffoscope", "a", "b", tmp_path, max_report_size=1000, max_text=500)
    joined = " ".join(argv)
    for opt in ("--max-report-size 1000", "--max-text-report-size 500", "--max-diff-block-lines ",
                "--max-diff-block-lines-saved ", "--max-page-size 1000", "--jquery disable",
                f"--html-dir {tmp_path / 'html'}", f"--text {tmp_path / 'diff.txt'}", f"--json {tmp_path / 'diff.json'}"):
        assert opt in joined, opt
    assert argv[-2:] == ["a", "b"]
    assert "--max-page-size" not in compare.diffoscope_argv("d", "a", "b", tmp_path, max_report_size=0, max_text=0)



def _pkgs(tmp_path: Path) -> tuple[Path, Path]:
    (tmp_path / "build1").mkdir()
    (tmp_path / "build2").mkdir()
    a, b = tmp_path / "build1" / "x.pkg.tar.zst", tmp_path / "build2" / "x.pkg.tar.zst"
    a.write_bytes(b"a")
    b.write_bytes(b"b")
    return a, b


# The stand-in writes what it is told to and records its arguments and environment.
RECORDING = r"""
out=""; json=""; html=""
while [ $# -gt 2 ]; do
  case "$1" in --text) out="$2"; shift;; --json) json="$2"; shift;; --html-dir) html="$2"; shift;; esac; shift
done
printf '%s\n' "$PWD" "$1" "$2" "$TMPDIR" > "$(dirname "$json")/../../called"
"""


def test_exit_codes_map_to_statuses(tmp_path, monkeypatch):
    a, b = _pkgs(tmp_path)
    out = tmp_path / "diffoscope" / "x"
    fake_diffoscope(tmp_path, monkeypatch, "exit 0\n")
    assert compare.diffoscope(a, b, out) == DiffResult(DiffStatus.SAME)
    assert out.is_dir()

    fake_diffoscope(tmp_path, monkeypatch, "echo 'Traceback ...' >&2; echo 'KeyError: boom' >&2; exit 2\n")
    r = compare.diffoscope(a, b, out)
    assert r.status is DiffStatus.ERROR and r.error == "diffoscope failed (exit 2): KeyError: boom"
    assert "\n" not in r.error
    assert (out / "diffoscope.log").read_text().startswith("Traceback")

    fake_diffoscope(tmp_path, monkeypatch, "kill -9 $$\n")
    r = compare.diffoscope(a, b, out)
    assert r.status is DiffStatus.ERROR and "exit -9" in r.error


def test_different_parses_json_and_lands_atomically(tmp_path, monkeypatch):
    a, b = _pkgs(tmp_path)
    sample = tmp_path / "sample.json"
    sample.write_text(PKG_TEXT_CHANGES)
    fake_diffoscope(tmp_path, monkeypatch, RECORDING + f"""
mkdir -p "$html"; echo '<html>Max report size reached; 1/2 bytes</html>' > "$html/index.html"
echo diff > "$out"; cp {sample} "$json"; exit 1
""")
    out = tmp_path / "diffoscope" / "x"
    out.mkdir(parents=True)
    (out / "stale").write_text("from the previous run")
    r = compare.diffoscope(a, b, out)
    assert r.status is DiffStatus.DIFFERENT
    assert r.files == (".BUILDINFO", ".MTREE", ".PKGINFO", "usr/share/kabuild-hello/greeting.txt")
    assert r.html == str(out / "html" / "index.html") and r.text == str(out / "diff.txt")
    assert r.json == str(out / "diff.json")
    assert r.truncated, "the HTML limit marker sets truncated"
    assert not (out / "stale").exists(), "out_dir is replaced as a whole"
    assert sorted(p.name for p in out.parent.iterdir()) == ["x"], "no staging or old directory is left"
    cwd, arg1, arg2, tmpdir = (tmp_path / "called").read_text().splitlines()
    assert Path(cwd) == tmp_path and (arg1, arg2) == ("build1/x.pkg.tar.zst", "build2/x.pkg.tar.zst")
    assert Path(tmpdir).parent.parent == out.parent, "TMPDIR lives beside out_dir, inside its parent"


def test_timeout_is_an_error_not_an_exception(tmp_path, monkeypatch):
    a, b = _pkgs(tmp_path)
    fake_diffoscope(tmp_path, monkeypatch, "exec sleep 30\n")
    r = compare.diffoscope(a, b, tmp_path / "out", timeout=0.2)
    assert r.status is DiffStatus.ERROR and r.error == "diffoscope timed out after 0.2s"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["bin", "build1", "build2", "out"]


def test_missing_diffoscope_raises_tool_error_naming_the_package(tmp_path, monkeypatch):
    monkeypatch.setenv("PATH", str(tmp_path))
    monkeypatch.delenv("VIRTUAL_ENV", raising=False)
    monkeypatch.setattr("kabuild.tools.SYSTEM_PATH", str(tmp_path))
    a, b = _pkgs(tmp_path)
    with pytest.raises(ToolError) as e:
        compare.diffoscope(a, b, tmp_path / "out")
    assert "diffoscope-minimal" in str(e.value)
    assert e.value.exit_code == ExitCode.ENVIRONMENT == 5
    assert not (tmp_path / "out").exists()
