"""The acceptance report: renderers state the facts, escape hostile values, and files land atomically."""

from __future__ import annotations

import copy
import json
import re
from html.parser import HTMLParser
from pathlib import Path

import pytest
from reportdocs import (
    ACCEPTED,
    ALL,
    BUILD_FAILED,
    FALLBACK,
    LOCK,
    NOT_REPRODUCIBLE,
    PARITY_FAILED,
    SHA1,
    SHA2,
    SHAR,
    package,
)
from reportdocs import report as model

from kabuild.compare import acceptance
from kabuild.errors import DocumentError, ExitCode
from kabuild.report import render as report


def _render(kind, doc):
    r = model(doc)
    return report.render_text(r) if kind == "text" else RENDERERS[kind](r)


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
    out = _render(kind, ALL[sample])
    assert isinstance(out, str) and out.endswith("\n")
    assert "demo" in out
    if kind == "html":
        _check_html(out)


@pytest.mark.parametrize("sample", sorted(ALL))
def test_documents_round_trip(sample):
    r = model(ALL[sample])
    assert acceptance.from_dict(json.loads(acceptance.dumps(r))) == r
    assert r.to_dict() == ALL[sample]


@pytest.mark.parametrize("kind", ["md", "html"])
def test_accepted_facts(kind):
    out = _render(kind, ACCEPTED)
    assert "ACCEPTED" in out
    assert SHA1[:12] in out
    for fact in ("kabuild-hello", "v1.0", LOCK, "1767225600", "2026-01-01T00:00:00Z",
                 "kabuild/debian-aarch64:f57e9f6bce088478", "9a" * 32, "hostname", "timezone", "umask",
                 "Pacific/Auckland", "remote-1", "2 min 41 s", "80.1 s", "references/demo/kabuild-hello/reference.yaml",
                 "build1/kabuild-hello.log", "emulated", "with 2 of its 2 CPU(s)", "with 1 of its 2 CPU(s)"):
        assert fact in out, fact
    assert "REJECTED" not in out


@pytest.mark.parametrize("kind", ["md", "html"])
def test_not_reproducible_names_members_culprits_and_links(kind):
    out = _render(kind, NOT_REPRODUCIBLE)
    assert "REJECTED" in out and "not-reproducible" in out
    assert SHA1[:12] in out and SHA2[:12] in out
    for f in (".BUILDINFO", "usr/bin/kabuild-hello", "usr/share/kabuild-hello/greeting.txt"):
        assert f in out, f
    assert "3 member(s) differ" in out
    assert "hostname" in out and "differs" in out
    assert "diffoscope/kabuild-hello/build1-vs-build2/members/html/index.html" in out
    assert "diffoscope/kabuild-hello/build1-vs-build2/members/diff.txt" in out


def test_markdown_summary_table_and_heading():
    md = _render("md", NOT_REPRODUCIBLE)
    lines = md.splitlines()
    heading = lines[0]
    assert heading.startswith("#") and "demo" in heading and "REJECTED" in heading
    header = next(i for i, ln in enumerate(lines) if ln.startswith("| package |"))
    assert lines[header] == "| package | build 1 | build 2 | reference | reproducible | parity | verdict |"
    row = lines[header + 2]
    cells = [c.strip() for c in row.strip("|").split("|")]
    assert len(cells) == 7
    assert cells[0] == "kabuild-hello"
    assert cells[1] == f"`{SHA1[:12]}`" and cells[2] == f"`{SHA2[:12]}`" and cells[3] == "—"
    assert "no" in cells[4] and "n/a" in cells[5] and "not-reproducible" in cells[6]
    assert SHA1 not in row, "the table shows short hashes"


@pytest.mark.parametrize("kind", ["md", "html", "text"])
def test_parity_failed_shows_toolchain_changes(kind):
    out = _render(kind, PARITY_FAILED)
    assert "parity-failed" in out
    assert "gcc-12 12.2.0-14 -&gt; 12.2.0-15" in out if kind == "html" else "gcc-12 12.2.0-14 -> 12.2.0-15" in out
    if kind != "text":
        assert SHAR[:12] in out
        assert "binutils 2.40-1" in out
        assert "diffoscope/kabuild-hello/reference-vs-build1/members/html/index.html" in out


@pytest.mark.parametrize("kind", ["md", "html", "text"])
def test_build_failed(kind):
    out = _render(kind, BUILD_FAILED)
    assert "build-failed" in out
    assert "makepkg failed (exit 4)" in out
    assert SHA1[:12] in out


@pytest.mark.parametrize("kind", ["md", "html", "text"])
def test_fallback_and_single_engine_are_flagged(kind):
    out = _render(kind, FALLBACK)
    assert "node local-2 is down: build 2 ran on fallback local" in out
    assert "no-reference" in out
    assert "local-2" in out and "single-engine" in out
    # the headline says it in words, next to the verdict
    head = [line for line in out.splitlines() if "ACCEPTED" in line][0]
    assert "single-engine: both builds ran on local (local-2 did not answer)" in head, head
    if kind != "text":
        assert "fell back" in out and "does not answer" in out
    else:
        assert "build 2 on local (fallback: local-2 did not answer)" in out


def test_html_escapes_hostile_values():
    evil = '<script>alert("x")</script>'
    data = copy.deepcopy(NOT_REPRODUCIBLE)
    data["notes"] = [evil]
    pkg = data["packages"][0]
    pkg["error"] = evil
    pkg["build1_vs_build2"]["members"]["content"].append(f"usr/share/{evil}")
    pkg["build1_vs_build2"]["diffoscope"]["html"] = 'javascript:alert(1)//"><script>'
    pkg["culprits"]["variations"].append(evil)
    data["variations"]["control"]["hostname"] = evil
    page = _render("html", data)
    assert "<script" not in page.lower()
    assert "&lt;script&gt;" in page
    checker = _check_html(page)
    assert any(evil in t for t in checker.text), "the escaped value still reads as the original text"
    assert not any(h.lower().startswith("javascript:") for h in checker.hrefs)
    md = _render("md", data)
    assert "](javascript:" not in md
    assert "<script>" not in re.sub(r"`+[^`]*`+", "", md), "hostile HTML outside code spans is escaped"


def test_html_is_self_contained_with_relative_links_and_badges():
    page = _render("html", NOT_REPRODUCIBLE)
    checker = _check_html(page)
    assert "<style>" in page and "<link" not in page and "<script" not in page
    assert "diffoscope/kabuild-hello/build1-vs-build2/members/html/index.html" in checker.hrefs
    assert all(not h.startswith(("/", "http")) for h in checker.hrefs)
    assert 'class="badge big bad"' in page
    assert 'class="badge big ok"' in _render("html", ACCEPTED)


def test_text_is_short_and_narrow():
    paths = {"json": Path("/runs/demo/report.json"), "md": Path("/runs/demo/report.md"),
             "html": Path("/runs/demo/report.html")}
    data = copy.deepcopy(NOT_REPRODUCIBLE)
    data["packages"][0]["build1_vs_build2"]["members"]["content"] = [f"usr/lib/{'x' * 60}/{i}" for i in range(30)]
    data["notes"] = ["n" * 300]
    out = report.render_text(model(data), paths)
    lines = out.splitlines()
    assert all(len(ln) <= 100 for ln in lines), max(lines, key=len)
    assert len(lines) < 30  # the culprit lines (from evidence, rebuilt, unexplained) included
    assert "REJECTED" in lines[0] and "demo" in lines[0]
    assert "CPUs 2 / 1" in lines[1] and "emulated build for aarch64 on x86_64" in lines[1]
    row = next(ln for ln in lines if ln.startswith("kabuild-hello "))
    assert "no" in row and "n/a" in row and "not-reproducible" in row and SHA1[:12] in row
    assert any("culprit (rebuilt, 4 build(s)): hostname" in ln for ln in lines)
    assert any("culprit (from evidence, not rebuilt): hostname" in ln for ln in lines)
    for p in paths.values():
        assert str(p) in out


def test_text_neutralises_terminal_escapes():
    data = copy.deepcopy(NOT_REPRODUCIBLE)
    data["notes"] = ["demo\x1b]0;pwned\x07"]
    data["packages"][0]["build1_vs_build2"]["members"]["content"] = ["usr/bin/kabuild\nhello"]
    out = report.render_text(model(data))
    assert "\x1b" not in out and "\x07" not in out
    assert "kabuild\\nhello" in out
    assert all(ln.isprintable() for ln in out.splitlines())


def test_text_problem_lines_name_the_members():
    out = _render("text", NOT_REPRODUCIBLE)
    assert ("kabuild-hello: not reproducible: 3 member(s) differ: .BUILDINFO, usr/bin/kabuild-hello, "
            "usr/share/kabuild-hello/greeting.txt") in " ".join(out.split())
    assert "problems:" not in _render("text", ACCEPTED)


@pytest.mark.parametrize("kind, found, says", [
    ("order", {"order": [{"name": "usr/bin/a", "what": "entry 3 -> 4"}]}, "member order only, first at usr/bin/a entry 3 -> 4"),
    ("metadata", {"metadata": [{"name": "usr/bin/a", "what": "mode 0755 -> 0775"}]}, "member metadata only: usr/bin/a mode 0755 -> 0775"),
    ("compression", {}, "compression only"),
])
@pytest.mark.parametrize("renderer", ["md", "html", "text"])
def test_archive_differences_without_a_differing_member_are_named(kind, found, says, renderer):
    data = copy.deepcopy(NOT_REPRODUCIBLE)
    data["packages"][0]["build1_vs_build2"] = {"members": {
        "kind": kind, "content": [], "only_in_first": [], "only_in_second": [], "metadata": [], "order": [],
        "members": 12, "error": None, **found}, "diffoscope": None}
    out = _render(renderer, data)
    assert says.split(":")[0].split(",")[0] in out
    if renderer == "text":
        assert says in out
    assert "usr/bin/a" in out or kind == "compression"
    assert "no inner file named" not in out


def test_diffoscope_error_and_truncation_are_shown():
    data = copy.deepcopy(PARITY_FAILED)
    d = data["packages"][0]["build1_vs_reference"]
    d["diffoscope"] = {"status": "error", "files": [], "html": None, "text": None, "json": None,
                       "error": "diffoscope timed out after 600s", "truncated": True}
    for kind in ("md", "html", "text"):
        out = _render(kind, data)
        assert "diffoscope timed out after 600s" in out, kind
        if kind != "text":
            assert "truncated" in out, kind


def test_long_member_lists_are_capped():
    data = copy.deepcopy(NOT_REPRODUCIBLE)
    data["packages"][0]["build1_vs_build2"]["members"]["content"] = [f"usr/share/f{i:04d}" for i in range(250)]
    for kind in ("md", "html"):
        out = _render(kind, data)
        assert "usr/share/f0000" in out and "usr/share/f0099" in out
        assert "usr/share/f0100" not in out
        assert "150 more" in out


# ------------------------------------------------------------------------------------------------
# write() and load()


def test_write_creates_three_files_atomically(tmp_path):
    run_dir = tmp_path / "run"
    r = model(NOT_REPRODUCIBLE)
    paths = report.write(run_dir, r)
    assert set(paths) == {"json", "md", "html"}
    assert sorted(p.name for p in run_dir.iterdir()) == ["report.html", "report.json", "report.md"], \
        "no temp files left behind"
    raw = paths["json"].read_text()
    assert raw.endswith("}\n") and json.loads(raw) == NOT_REPRODUCIBLE
    assert paths["md"].read_text() == report.render_markdown(r)
    assert paths["html"].read_text() == report.render_html(r)
    assert acceptance.load(paths["json"]) == r


def test_write_survives_odd_member_names(tmp_path):
    data = copy.deepcopy(NOT_REPRODUCIBLE)
    data["packages"][0]["build1_vs_build2"]["members"]["content"].append("usr/share/caf\udce9")  # undecodable byte
    data["notes"] = ["démo"]
    paths = report.write(tmp_path, model(data))
    back = acceptance.load(paths["json"])
    assert back.notes == ("démo",)
    assert back.packages[0].build1_vs_build2.members.content[-1] == "usr/share/caf\udce9"
    assert "démo" in paths["html"].read_text()


def test_write_keeps_old_reports_when_rendering_fails(tmp_path, monkeypatch):
    report.write(tmp_path, model(ACCEPTED))
    before = {p.name: p.read_bytes() for p in tmp_path.iterdir()}

    def boom(data):
        raise RuntimeError("renderer bug")

    monkeypatch.setattr(report, "render_html", boom)
    with pytest.raises(RuntimeError):
        report.write(tmp_path, model(NOT_REPRODUCIBLE))
    assert {p.name: p.read_bytes() for p in tmp_path.iterdir()} == before


def _load_error(path: Path) -> DocumentError:
    with pytest.raises(DocumentError) as e:
        acceptance.load(path)
    assert e.value.exit_code == ExitCode.REFUSED == 3
    assert str(path) in str(e.value)
    assert "\n" not in str(e.value)
    return e.value


def test_load_errors(tmp_path):
    assert "file not found" in str(_load_error(tmp_path / "report.json"))
    assert "directory" in str(_load_error(tmp_path))
    bad = tmp_path / "bad.json"
    bad.write_text("{not json")
    assert "not valid JSON" in str(_load_error(bad))
    bad.write_bytes(b'{"schema": 2, "host": "\xff"}')
    assert "UTF-8" in str(_load_error(bad))
    bad.write_text("[1, 2]")
    assert "expected a mapping" in str(_load_error(bad))
    for schema in (None, 1, "2"):
        bad.write_text(json.dumps(dict(ACCEPTED, schema=schema)))
        assert "schema" in str(_load_error(bad))
    bad.write_text(json.dumps(dict(ACCEPTED, kind="something-else")))
    assert "something-else" in str(_load_error(bad))
    bad.write_text("{}")
    assert "schema: is required" in str(_load_error(bad))
    bad.write_text(json.dumps(dict(ACCEPTED, packages=[])))
    assert "packages: expected at least one package" in str(_load_error(bad))


@pytest.mark.parametrize("change, key", [
    (lambda d: d["packages"][0].update(verdict="build-failed"), "packages[0].verdict"),
    (lambda d: d.update(verdict="rejected"), "verdict"),
    (lambda d: d.update(exit_code=0, packages=[package(reproducible=False, verdict="not-reproducible",
                                                        build2=None)]), "packages[0].verdict"),
    (lambda d: d["packages"][0]["build1"].update(path="/etc/passwd"), "packages[0].build1.path"),
    (lambda d: d["packages"][0]["build1"].update(path="../x"), "packages[0].build1.path"),
    (lambda d: d["packages"][0].update(parity="yes"), "packages[0].parity"),
    (lambda d: d["build_mode"].update(mode="magic"), "build_mode.mode"),
    (lambda d: d["nodes"]["build1"].pop("node"), "nodes.build1.node"),
])
def test_contradictions_and_bad_values_are_located(change, key):
    data = copy.deepcopy(ACCEPTED)
    change(data)
    with pytest.raises(DocumentError) as e:
        acceptance.from_dict(data)
    assert f": {key}:" in str(e.value), str(e.value)


def test_schema_constant():
    assert acceptance.SCHEMA == 3


def test_split_packages_are_labelled_by_their_own_pkgname():
    import dataclasses

    from kabuild.compare.acceptance import PackageResult
    from kabuild.report.facts import summary_rows

    accepted = model(ALL["accepted"])
    base = accepted.packages[0]
    kernel = dataclasses.replace(base, name="linux-kernel-demo", file="linux-kernel-demo-6.12.107-1-x86_64.pkg.tar.zst")
    headers = dataclasses.replace(base, name="linux-kernel-demo",
                                  file="linux-kernel-demo-headers-6.12.107-1-x86_64.pkg.tar.zst")
    assert isinstance(kernel, PackageResult)
    assert [kernel.label, headers.label] == ["linux-kernel-demo", "linux-kernel-demo-headers"]
    rows = summary_rows(dataclasses.replace(accepted, packages=(kernel, headers)))
    assert [r["name"] for r in rows] == ["linux-kernel-demo", "linux-kernel-demo-headers"]
