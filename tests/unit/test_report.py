"""The acceptance report: renderers state the facts, escape hostile values, and files land atomically."""

from __future__ import annotations

import copy
import json
import re
from html.parser import HTMLParser
from pathlib import Path

import pytest

from kabuild import report
from kabuild.errors import ConfigError, ExitCode

SHA1 = "a1" * 32
SHA2 = "b2" * 32
SHAR = "c3" * 32
B2 = "d4" * 64
LOCK = "e5" * 32


def _build(sha: str, n: int, name: str = "kabuild-hello") -> dict:
    return {"sha256": sha, "b2sum": B2, "size": 3289, "path": f"build{n}/{name}-1.0-1-aarch64.pkg.tar.zst",
            "duration": 80.1 if n == 1 else 79.4, "log": f"build{n}/{name}.log"}


def _diff(files: list[str], pair: str, name: str = "kabuild-hello") -> dict:
    base = f"diffoscope/{name}/{pair}"
    return {"status": "different", "files": files, "html": f"{base}/html/index.html", "text": f"{base}/diff.txt",
            "json": f"{base}/diff.json", "error": None, "truncated": False}


def _package(**over) -> dict:
    pkg = {
        "name": "kabuild-hello", "file": "kabuild-hello-1.0-1-aarch64.pkg.tar.zst",
        "build1": _build(SHA1, 1), "build2": _build(SHA1, 2),
        "reference": {"sha256": SHA1, "b2sum": B2, "size": 3289,
                      "source": "references/demo/kabuild-hello/reference.yaml"},
        "reproducible": True, "parity": True, "verdict": "accepted",
        "differences": {"build1_vs_build2": None, "build1_vs_reference": None},
        "toolchain": {"matches_reference": True, "changed": []},
        "culprits": None, "error": None,
    }
    pkg.update(over)
    return pkg


def _doc(packages: list[dict], **over) -> dict:
    doc = {
        "schema": 1, "kind": "kabuild-acceptance-report", "kabuild_version": "0.1.0",
        "host": "demo", "arch": "aarch64", "run_id": "20261122T011500Z-ab12cd34",
        "started_at": "2026-11-22T01:15:00+00:00", "finished_at": "2026-11-22T01:17:41+00:00", "duration": 161.2,
        "baseline": {"name": "kabuild-hello", "version": "1.0", "ref": "v1.0"}, "source_date_epoch": 1767225600,
        "lock_hash": LOCK, "lock_path": "build/demo/v1.0/manifest.lock",
        "image": {"tag": "kabuild/debian-aarch64:f57e9f6bce088478", "id": "sha256:" + "f6" * 32,
                  "recipe_hash": "9a" * 32, "flavor": "debian", "arch": "aarch64"},
        "nodes": {"build1": {"node": "local", "requested": "local", "fell_back": False, "reason": ""},
                  "build2": {"node": "remote-1", "requested": "remote-1", "fell_back": False, "reason": ""},
                  "same_engine": False},
        "variations": {"applied": ["hostname", "timezone", "umask"],
                       "control": {"hostname": "kabuild-a", "timezone": "UTC", "umask": "0022"},
                       "experiment": {"hostname": "kabuild-b", "timezone": "Pacific/Auckland", "umask": "0002"}},
        "answered_from": None,
        "packages": packages,
        "verdict": "accepted" if all(p.get("verdict") == "accepted" for p in packages) else "rejected",
        "notes": [],
    }
    doc["exit_code"] = 0 if doc["verdict"] == "accepted" else 1
    doc.update(over)
    return doc


ACCEPTED = _doc([_package()])

NOT_REPRODUCIBLE = _doc([_package(
    build2=_build(SHA2, 2), reproducible=False, parity=None, verdict="not-reproducible",
    differences={"build1_vs_build2": _diff([".BUILDINFO", "usr/bin/kabuild-hello", "usr/share/kabuild-hello/greeting.txt"],
                                           "build1-vs-build2"),
                 "build1_vs_reference": None},
    culprits={"variations": ["hostname"], "tested": {"hostname": "differs", "timezone": "same", "umask": "same"}},
)])

PARITY_FAILED = _doc([_package(
    reference={"sha256": SHAR, "b2sum": "77" * 64, "size": 3301, "source": "references/demo/kabuild-hello/reference.yaml"},
    parity=False, verdict="parity-failed",
    differences={"build1_vs_build2": None, "build1_vs_reference": _diff([".BUILDINFO"], "build1-vs-reference")},
    toolchain={"matches_reference": False, "changed": ["gcc-12 12.2.0-14 -> 12.2.0-15", "binutils 2.40-1 -> 2.40-2"]},
)])

BUILD_FAILED = _doc([_package(
    build2=None, reference=None, reproducible=None, parity=None, verdict="build-failed",
    differences=None, toolchain=None, culprits=None,
    error="makepkg failed (exit 4): ==> ERROR: A failure occurred in build().",
)], image=None, variations=None, nodes=None, duration=None, source_date_epoch=None)

FALLBACK = _doc([_package(reference=None, parity=None, verdict="no-reference")],
                nodes={"build1": {"node": "local", "requested": "local", "fell_back": False, "reason": ""},
                       "build2": {"node": "local", "requested": "local-2", "fell_back": True,
                                  "reason": "build node local-2 (tcp://10.0.0.2:2376) does not answer: timeout"},
                       "same_engine": True},
                notes=["node local-2 is down: build 2 ran on fallback local"])

ALL = {"accepted": ACCEPTED, "not-reproducible": NOT_REPRODUCIBLE, "parity-failed": PARITY_FAILED,
       "build-failed": BUILD_FAILED, "fallback": FALLBACK}
RENDERERS = {"md": report.render_markdown, "html": report.render_html, "text": report.render_text}


class _Checker(HTMLParser):
    """Balanced tags, no scripts, no external resources: what headless Chromium needs to render it alone."""

    VOID = {"meta", "link", "br", "hr", "img", "input", "wbr"}

    def __init__(self):
        super().__init__(convert_charrefs=True)
        self.stack: list[str] = []
        self.errors: list[str] = []
        self.text: list[str] = []
        self.hrefs: list[str] = []

    def handle_starttag(self, tag, attrs):
        if tag == "script":
            self.errors.append("script tag")
        for k, v in attrs:
            if k in ("src", "href") and v is not None:
                if k == "src" or re.match(r"^[a-z][a-z0-9+.-]*:", v, re.I):
                    self.errors.append(f"external or scheme URL {k}={v!r}")
                self.hrefs.append(v)
            if k.startswith("on"):
                self.errors.append(f"event handler {k}")
        if tag not in self.VOID:
            self.stack.append(tag)

    def handle_endtag(self, tag):
        if not self.stack or self.stack[-1] != tag:
            self.errors.append(f"unbalanced </{tag}> (open: {self.stack[-3:]})")
        else:
            self.stack.pop()

    def handle_data(self, data):
        self.text.append(data)


def _check_html(page: str) -> _Checker:
    assert page.startswith("<!DOCTYPE html>")
    c = _Checker()
    c.feed(page)
    c.close()
    assert not c.errors, c.errors
    assert c.stack == [], c.stack
    return c


# ------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("kind", sorted(RENDERERS))
@pytest.mark.parametrize("sample", sorted(ALL))
def test_every_renderer_handles_every_sample(kind, sample):
    data = copy.deepcopy(ALL[sample])
    out = RENDERERS[kind](data)
    assert isinstance(out, str) and out.endswith("\n")
    assert "demo" in out
    assert data == ALL[sample], "renderers must not modify the document"
    if kind == "html":
        _check_html(out)


@pytest.mark.parametrize("kind", ["md", "html"])
def test_accepted_facts(kind):
    out = RENDERERS[kind](ACCEPTED)
    assert "ACCEPTED" in out
    assert SHA1[:12] in out
    for fact in ("kabuild-hello", "v1.0", LOCK, "1767225600", "2026-01-01T00:00:00Z",
                 "kabuild/debian-aarch64:f57e9f6bce088478", "9a" * 32, "hostname", "timezone", "umask",
                 "Pacific/Auckland", "remote-1", "2 min 41 s", "80.1 s", "references/demo/kabuild-hello/reference.yaml",
                 "build1/kabuild-hello.log"):
        assert fact in out, fact
    assert "REJECTED" not in out


@pytest.mark.parametrize("kind", ["md", "html"])
def test_not_reproducible_names_files_culprits_and_links(kind):
    out = RENDERERS[kind](NOT_REPRODUCIBLE)
    assert "REJECTED" in out and "not-reproducible" in out
    assert SHA1[:12] in out and SHA2[:12] in out
    for f in (".BUILDINFO", "usr/bin/kabuild-hello", "usr/share/kabuild-hello/greeting.txt"):
        assert f in out, f
    assert "hostname" in out and "differs" in out
    assert "diffoscope/kabuild-hello/build1-vs-build2/html/index.html" in out
    assert "diffoscope/kabuild-hello/build1-vs-build2/diff.txt" in out


def test_markdown_summary_table_and_heading():
    md = report.render_markdown(NOT_REPRODUCIBLE)
    lines = md.splitlines()
    heading = lines[0]
    assert heading.startswith("#") and "demo" in heading and "REJECTED" in heading
    header = next(i for i, ln in enumerate(lines) if ln.startswith("| package |"))
    assert lines[header] == "| package | build 1 | build 2 | reference | reproducible | parity | verdict |"
    row = lines[header + 2]
    cells = [c.strip() for c in row.strip("|").split("|")]
    assert len(cells) == 7
    assert cells[0] == "kabuild-hello"
    assert cells[1] == f"`{SHA1[:12]}`" and cells[2] == f"`{SHA2[:12]}`" and cells[3] == f"`{SHA1[:12]}`"
    assert "no" in cells[4] and "n/a" in cells[5] and "not-reproducible" in cells[6]
    assert SHA1 not in row, "the table shows short hashes"


@pytest.mark.parametrize("kind", ["md", "html", "text"])
def test_parity_failed_shows_toolchain_changes(kind):
    out = RENDERERS[kind](PARITY_FAILED)
    assert "parity-failed" in out
    assert "gcc-12 12.2.0-14 -&gt; 12.2.0-15" in out if kind == "html" else "gcc-12 12.2.0-14 -> 12.2.0-15" in out
    if kind != "text":
        assert SHAR[:12] in out
        assert "binutils 2.40-1" in out
        assert "diffoscope/kabuild-hello/build1-vs-reference/html/index.html" in out


@pytest.mark.parametrize("kind", ["md", "html", "text"])
def test_build_failed_with_nulls(kind):
    out = RENDERERS[kind](BUILD_FAILED)
    assert "build-failed" in out
    assert "makepkg failed (exit 4)" in out
    assert SHA1[:12] in out


@pytest.mark.parametrize("kind", ["md", "html", "text"])
def test_fallback_and_same_engine_are_flagged(kind):
    out = RENDERERS[kind](FALLBACK)
    assert "node local-2 is down: build 2 ran on fallback local" in out
    assert "no-reference" in out
    assert "fell back" in out and "local-2" in out and "same engine" in out
    if kind != "text":
        assert "does not answer" in out


def test_html_escapes_hostile_values():
    evil = '<script>alert("x")</script>'
    data = copy.deepcopy(NOT_REPRODUCIBLE)
    data["host"] = evil
    data["notes"] = [evil]
    pkg = data["packages"][0]
    pkg["name"] = evil
    pkg["error"] = evil
    pkg["differences"]["build1_vs_build2"]["files"].append(f"usr/share/{evil}")
    pkg["differences"]["build1_vs_build2"]["html"] = 'javascript:alert(1)//"><script>'
    pkg["culprits"]["variations"].append(evil)
    data["variations"]["control"]["hostname"] = evil
    page = report.render_html(data)
    assert "<script" not in page.lower()
    assert "&lt;script&gt;" in page
    checker = _check_html(page)
    assert any(evil in t for t in checker.text), "the escaped value still reads as the original text"
    assert not any(h.lower().startswith("javascript:") for h in checker.hrefs)
    md = report.render_markdown(data)
    assert "](javascript:" not in md
    assert "<script>" not in re.sub(r"`+[^`]*`+", "", md), "hostile HTML outside code spans is escaped"


def test_html_is_self_contained_with_relative_links_and_badges():
    page = report.render_html(NOT_REPRODUCIBLE)
    checker = _check_html(page)
    assert "<style>" in page and "<link" not in page and "<script" not in page
    assert "diffoscope/kabuild-hello/build1-vs-build2/html/index.html" in checker.hrefs
    assert all(not h.startswith(("/", "http")) for h in checker.hrefs)
    assert 'class="badge big bad"' in page
    assert 'class="badge big ok"' in report.render_html(ACCEPTED)


def test_text_is_short_and_narrow():
    paths = {"json": Path("/runs/demo/report.json"), "md": Path("/runs/demo/report.md"),
             "html": Path("/runs/demo/report.html")}
    data = copy.deepcopy(NOT_REPRODUCIBLE)
    data["packages"][0]["differences"]["build1_vs_build2"]["files"] = [f"usr/lib/{'x' * 60}/{i}" for i in range(30)]
    data["notes"] = ["n" * 300]
    out = report.render_text(data, paths)
    lines = out.splitlines()
    assert all(len(ln) <= 100 for ln in lines), max(lines, key=len)
    assert len(lines) < 20
    assert "REJECTED" in lines[0] and "demo" in lines[0]
    row = next(ln for ln in lines if ln.startswith("kabuild-hello "))
    assert "no" in row and "n/a" in row and "not-reproducible" in row and SHA1[:12] in row
    assert any("culprit: hostname" in ln for ln in lines)
    for p in paths.values():
        assert str(p) in out


def test_text_neutralises_terminal_escapes():
    data = copy.deepcopy(NOT_REPRODUCIBLE)
    data["host"] = "demo\x1b]0;pwned\x07"
    data["packages"][0]["name"] = "kabuild\nhello"
    out = report.render_text(data)
    assert "\x1b" not in out and "\x07" not in out
    assert "kabuild\\nhello" in out
    assert all(ln.isprintable() for ln in out.splitlines())


def test_text_problem_lines():
    out = report.render_text(NOT_REPRODUCIBLE)
    assert "kabuild-hello: not reproducible: 3 file(s) differ: .BUILDINFO, usr/bin/kabuild-hello" in out
    assert "problems:" not in report.render_text(ACCEPTED)


def test_diffoscope_error_and_truncation_are_shown():
    data = copy.deepcopy(NOT_REPRODUCIBLE)
    d = data["packages"][0]["differences"]
    d["build1_vs_build2"]["truncated"] = True
    d["build1_vs_reference"] = {"status": "error", "files": [], "html": None, "text": None, "json": None,
                                "error": "diffoscope timed out after 600s", "truncated": False}
    for kind in ("md", "html", "text"):
        out = RENDERERS[kind](data)
        assert "diffoscope timed out after 600s" in out, kind
        if kind != "text":
            assert "truncated" in out, kind


def test_long_file_lists_are_capped():
    data = copy.deepcopy(NOT_REPRODUCIBLE)
    data["packages"][0]["differences"]["build1_vs_build2"]["files"] = [f"usr/share/f{i:04d}" for i in range(250)]
    for kind in ("md", "html"):
        out = RENDERERS[kind](data)
        assert "usr/share/f0000" in out and "usr/share/f0099" in out
        assert "usr/share/f0100" not in out
        assert "150 more" in out


def test_empty_and_sparse_documents_render():
    for data in ({"schema": 1}, {"schema": 1, "packages": None, "nodes": {}, "variations": {}},
                 {"schema": 1, "packages": [{}], "baseline": {}, "image": {}}):
        for kind, render in RENDERERS.items():
            out = render(data)
            if kind == "html":
                _check_html(out)


# ------------------------------------------------------------------------------------------------
# write() and load()


def test_write_creates_three_files_atomically(tmp_path):
    run_dir = tmp_path / "run"
    paths = report.write(run_dir, NOT_REPRODUCIBLE)
    assert set(paths) == {"json", "md", "html"}
    assert {p.name for p in paths.values()} == {"report.json", "report.md", "report.html"}
    assert sorted(p.name for p in run_dir.iterdir()) == ["report.html", "report.json", "report.md"], \
        "no temp files left behind"
    raw = paths["json"].read_text()
    assert raw.endswith("}\n") and raw == json.dumps(NOT_REPRODUCIBLE, sort_keys=True, indent=2,
                                                     ensure_ascii=False) + "\n"
    assert paths["md"].read_text() == report.render_markdown(NOT_REPRODUCIBLE)
    assert paths["html"].read_text() == report.render_html(NOT_REPRODUCIBLE)
    assert report.load(paths["json"]) == NOT_REPRODUCIBLE


def test_write_replaces_and_survives_odd_names(tmp_path):
    report.write(tmp_path, ACCEPTED)
    data = copy.deepcopy(NOT_REPRODUCIBLE)
    data["packages"][0]["differences"]["build1_vs_build2"]["files"].append("usr/share/caf\udce9")  # undecodable byte
    data["host"] = "démo"
    paths = report.write(tmp_path, data)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["report.html", "report.json", "report.md"]
    back = report.load(paths["json"])
    assert back["host"] == "démo"
    assert back["packages"][0]["differences"]["build1_vs_build2"]["files"][-1] == "usr/share/caf\udce9"
    assert "démo" in paths["html"].read_text()


def test_write_keeps_old_reports_when_rendering_fails(tmp_path, monkeypatch):
    report.write(tmp_path, ACCEPTED)
    before = {p.name: p.read_bytes() for p in tmp_path.iterdir()}

    def boom(data):
        raise RuntimeError("renderer bug")

    monkeypatch.setattr(report, "render_html", boom)
    with pytest.raises(RuntimeError):
        report.write(tmp_path, NOT_REPRODUCIBLE)
    assert {p.name: p.read_bytes() for p in tmp_path.iterdir()} == before


def _load_error(path: Path) -> ConfigError:
    with pytest.raises(ConfigError) as e:
        report.load(path)
    assert e.value.exit_code == ExitCode.CONFIG == 2
    assert str(path) in str(e.value)
    return e.value


def test_load_errors(tmp_path):
    assert "does not exist" in str(_load_error(tmp_path / "report.json"))
    assert "directory" in str(_load_error(tmp_path))
    bad = tmp_path / "bad.json"
    bad.write_text("{not json")
    assert "not valid JSON" in str(_load_error(bad))
    bad.write_bytes(b'{"schema": 1, "host": "\xff"}')
    assert "UTF-8" in str(_load_error(bad))
    bad.write_text("[1, 2]")
    assert "not a JSON object" in str(_load_error(bad))
    for schema in (None, 2, "1"):
        doc = dict(ACCEPTED, schema=schema)
        bad.write_text(json.dumps(doc))
        assert "schema" in str(_load_error(bad))
    bad.write_text(json.dumps(dict(ACCEPTED, kind="something-else")))
    assert "something-else" in str(_load_error(bad))
    del_schema = dict(ACCEPTED)
    del del_schema["schema"]
    bad.write_text(json.dumps(del_schema))
    _load_error(bad)


def test_schema_constant():
    assert report.SCHEMA == 1


# ------------------------------------------------------------------------------------------------
# Robustness: any JSON-shaped document renders (wrong types included), and HTML stays well-formed.

from hypothesis import HealthCheck, given, settings  # noqa: E402
from hypothesis import strategies as st  # noqa: E402

_scalars = st.none() | st.booleans() | st.integers(-2**40, 2**40) | st.floats(allow_nan=True) | st.text(max_size=12)
_json = st.recursive(_scalars, lambda inner: st.lists(inner, max_size=3)
                     | st.dictionaries(st.text(max_size=6), inner, max_size=3), max_leaves=12)
_keys = ["host", "verdict", "run_id", "duration", "baseline", "image", "nodes", "variations", "notes", "packages",
         "source_date_epoch", "exit_code", "answered_from", "lock_hash"]


def _mutations():
    pkg_keys = ["name", "build1", "build2", "reference", "reproducible", "parity", "verdict", "differences",
                "toolchain", "culprits", "error"]
    return st.tuples(st.dictionaries(st.sampled_from(_keys), _json, max_size=4),
                     st.dictionaries(st.sampled_from(pkg_keys), _json, max_size=4))


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(_mutations())
def test_renderers_survive_arbitrary_values(mut):
    top, pkg = mut
    data = copy.deepcopy(NOT_REPRODUCIBLE)
    data.update(top)
    if isinstance(data.get("packages"), list) and data["packages"] and isinstance(data["packages"][0], dict):
        data["packages"][0].update(pkg)
    for kind, render in RENDERERS.items():
        out = render(data)
        assert isinstance(out, str)
        if kind == "html":
            _check_html(out)
        if kind == "text":
            assert all(len(ln) <= 100 and ln.isprintable() for ln in out.splitlines()), out
