"""The acceptance report rendered: report.json, report.md, report.html and a terminal summary.

The document itself is :class:`kabuild.compare.acceptance.Report` (built by reproduce, validated
when read back); this module only renders and stores it.  Markdown and HTML are fed from
the same list of facts (:mod:`kabuild.report.facts`), so they say the same things.
Links to diffoscope outputs are paths relative to the run directory, where the reports
are written.
"""

from __future__ import annotations

import html as _html
import textwrap
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import quote

from kabuild.compare import acceptance
from kabuild.compare.acceptance import Report
from kabuild.files import atomic_write
from kabuild.report.facts import (
    VARIATION_HEADER,
    Line,
    badge,
    code,
    duration,
    engine_words,
    package_facts,
    problems,
    run_facts,
    summary_rows,
    text,
    tone,
    variation_rows,
)

TEXT_WIDTH = 100


@dataclass(frozen=True)
class Format:
    """One output format of the acceptance report, declared once: `kabuild report --format`, the files
    of a run directory and the README all come from :data:`FORMATS`."""

    name: str
    file: str | None  # the file in every run directory; None: shown on the terminal only
    description: str
    render: Callable[[Report, Path], str]  # (report, its run directory) -> text


def written(run_dir: Path) -> dict[str, Path]:
    """The report files of a run directory, by format name."""
    return {f.name: Path(run_dir) / f.file for f in FORMATS.values() if f.file}


def render_all(report: Report, run_dir: Path) -> dict[str, str]:
    """Every format that has a file, rendered (not written)."""
    return {f.name: f.render(report, run_dir) for f in FORMATS.values() if f.file}


def write(run_dir: Path, report: Report) -> dict[str, Path]:
    """Write every format that has a file into ``run_dir`` (report.json last: its presence means the run
    was written completely); return their paths."""
    run_dir = Path(run_dir)
    # Render everything first: a renderer bug must not leave a half-updated set of reports.
    order = sorted((f for f in FORMATS.values() if f.file), key=lambda f: f.file == acceptance.FILENAME)
    rendered = render_all(report, run_dir)
    paths = written(run_dir)
    for f in order:
        # backslashreplace: a member name with undecodable bytes (a lone surrogate) cannot break the write.
        atomic_write(paths[f.name], rendered[f.name].encode("utf-8", "backslashreplace"))
    return paths


# --------------------------------------------------------------------------------------------
# Markdown


def _md_text(s: str, *, table: bool = False) -> str:
    s = " ".join(str(s).splitlines())
    for ch in "\\`*_[]<>#":
        s = s.replace(ch, "\\" + ch)
    s = s.replace("&", "&amp;")
    return s.replace("|", "\\|") if table else s


def _md_code(s: str, *, table: bool = False) -> str:
    s = " ".join(str(s).splitlines())
    if table:
        s = s.replace("|", "\\|")
    fence = "`"
    while fence in s:
        fence += "`"
    pad = " " if s.startswith("`") or s.endswith("`") else ""
    return f"{fence}{pad}{s}{pad}{fence}"


def _href(h: str) -> str:
    # ":" is quoted, so no value can become a javascript: or other scheme URL.
    return quote(str(h), safe="/._-~%")


MD_BADGE = {"ok": "✅", "bad": "❌", "na": "➖", "warn": "⚠️"}


def _md_line(line: Line, *, table: bool = False) -> str:
    out = []
    for seg in line:
        kind = seg[0]
        if kind == "t":
            out.append(_md_text(seg[1], table=table))
        elif kind == "c":
            out.append(_md_code(seg[1], table=table))
        elif kind == "b":
            out.append(f"**{_md_text(seg[1], table=table)}**")
        elif kind == "a":
            out.append(f"[{_md_text(seg[1], table=table)}]({_href(seg[2])})")
        elif kind == "badge":
            out.append(f"{MD_BADGE.get(seg[1], '')} **{_md_text(seg[2], table=table)}**")
    return "".join(out)


def _md_facts(facts: Sequence[tuple[str, Line]]) -> list[str]:
    lines = []
    for label, line in facts:
        if label:
            lines.append(f"- **{label}:** {_md_line(line)}")  # labels are ours, not data
        else:
            lines.append(f"  - {_md_line(line)}")
    return lines


def _subtitle(r: Report) -> Line:
    return [text("run "), code(r.run_id),
            text(f" · kabuild {r.kabuild_version} · {r.arch} ({r.build_mode}) · {duration(r.duration)}"
                 f" · exit code {r.exit_code}")]


def render_markdown(r: Report) -> str:
    verdict = str(r.verdict)
    out = [
        f"## {MD_BADGE[tone(verdict)]} kabuild acceptance: {_md_text(r.host)} — **{_md_text(verdict.upper())}**"
        + (f" — {_md_text(engine_words(r))}" if engine_words(r) else ""),
        "",
        _md_line(_subtitle(r)),
        "",
        "| package | build 1 | build 2 | reference | reproducible | parity | verdict |",
        "|---|---|---|---|---|---|---|",
    ]
    for row in summary_rows(r):
        cells = [
            _md_text(row["name"], table=True),
            *(_md_code(row[k], table=True) if row[k] != "—" else "—" for k in ("build1", "build2", "reference")),
            *(_md_line([badge(tone(row[k]), row[k])], table=True) for k in ("reproducible", "parity", "verdict")),
        ]
        out.append("| " + " | ".join(cells) + " |")
    if r.notes:
        out += ["", "**Notes**", ""] + [f"- {_md_text(n)}" for n in r.notes]
    out += ["", "### Run details", ""] + _md_facts(run_facts(r))
    rows = variation_rows(r)
    if rows:
        out += ["", "| " + " | ".join(VARIATION_HEADER) + " |", "|---|---|---|---|"]
        out += [f"| {_md_text(k, table=True)} | {_md_text(sets, table=True)} | {_md_code(a, table=True)} | "
                f"{_md_code(b, table=True)} |" for k, sets, a, b in rows]
    for p in r.packages:
        out += ["", f"### {_md_text(p.label)}", ""] + _md_facts(package_facts(p))
    return "\n".join(out) + "\n"


# --------------------------------------------------------------------------------------------
# HTML

_CSS = """
body{font:15px/1.45 system-ui,-apple-system,"Segoe UI",Roboto,sans-serif;margin:2rem auto;max-width:72rem;
padding:0 1rem;color:#1f2328;background:#fff}
h1{font-size:1.6rem;margin:0 0 .3rem}h2{font-size:1.25rem;margin:2rem 0 .6rem;border-bottom:1px solid #d0d7de;
padding-bottom:.3rem}
.sub{color:#59636e;margin:0 0 1rem}
table{border-collapse:collapse;margin:.5rem 0 1rem;width:100%}
th,td{border:1px solid #d0d7de;padding:.35rem .6rem;text-align:left;vertical-align:top}
th{background:#f6f8fa}
code{font:13px ui-monospace,SFMono-Regular,Menlo,Consolas,monospace;background:#f6f8fa;padding:.05rem .3rem;
border-radius:4px;word-break:break-all}
.badge{display:inline-block;border-radius:1rem;padding:.05rem .6rem;font-weight:600;font-size:.85em;color:#fff}
.big{font-size:1.1rem;padding:.15rem .9rem;vertical-align:middle}
.ok{background:#1a7f37}.bad{background:#cf222e}.na{background:#6e7781}.warn{background:#9a6700}
dl{display:grid;grid-template-columns:max-content 1fr;gap:.3rem 1rem;margin:.5rem 0}
dt{font-weight:600;color:#59636e}dd{margin:0}
ul.files{margin:.2rem 0;padding-left:1.2rem}
.notes li{margin:.2rem 0}
"""


def _h(s: Any) -> str:
    return _html.escape(str(s), quote=True)


def _html_line(line: Line) -> str:
    out = []
    for seg in line:
        kind = seg[0]
        if kind == "t":
            out.append(_h(seg[1]))
        elif kind == "c":
            out.append(f"<code>{_h(seg[1])}</code>")
        elif kind == "b":
            out.append(f"<strong>{_h(seg[1])}</strong>")
        elif kind == "a":
            out.append(f'<a href="{_h(_href(seg[2]))}">{_h(seg[1])}</a>')
        elif kind == "badge":
            out.append(f'<span class="badge {_h(seg[1])}">{_h(seg[2])}</span>')
    return "".join(out)


def _html_facts(facts: Sequence[tuple[str, Line]]) -> str:
    out = ["<dl>"]
    i = 0
    while i < len(facts):
        label, line = facts[i]
        subs = []
        i += 1
        while i < len(facts) and not facts[i][0]:
            subs.append(facts[i][1])
            i += 1
        out.append(f"<dt>{_h(label)}</dt><dd>{_html_line(line)}")
        if subs:
            out.append('<ul class="files">' + "".join(f"<li>{_html_line(s)}</li>" for s in subs) + "</ul>")
        out.append("</dd>")
    out.append("</dl>")
    return "\n".join(out)


def render_html(r: Report) -> str:
    verdict = str(r.verdict)
    title = f"kabuild acceptance: {r.host} — {verdict.upper()}" + (f" — {engine_words(r)}" if engine_words(r) else "")
    out = [
        "<!DOCTYPE html>",
        '<html lang="en"><head><meta charset="utf-8">',
        '<meta name="viewport" content="width=device-width, initial-scale=1">',
        f"<title>{_h(title)}</title>",
        f"<style>{_CSS}</style>",
        "</head><body>",
        f'<h1>kabuild acceptance: {_h(r.host)} <span class="badge big {tone(verdict)}">{_h(verdict.upper())}</span>'
        + (f' <span class="badge big warn">{_h(engine_words(r))}</span>' if engine_words(r) else "") + "</h1>",
        '<p class="sub">' + _html_line(_subtitle(r)) + "</p>",
        "<table><thead><tr><th>package</th><th>build 1</th><th>build 2</th><th>reference</th>"
        "<th>reproducible</th><th>parity</th><th>verdict</th></tr></thead><tbody>",
    ]
    for row in summary_rows(r):
        hashes = "".join(f"<td><code>{_h(row[k])}</code></td>" if row[k] != "—" else "<td>—</td>"
                         for k in ("build1", "build2", "reference"))
        badges = "".join(f'<td><span class="badge {tone(row[k])}">{_h(row[k])}</span></td>'
                         for k in ("reproducible", "parity", "verdict"))
        out.append(f"<tr><td>{_h(row['name'])}</td>{hashes}{badges}</tr>")
    out.append("</tbody></table>")
    if r.notes:
        out.append('<h2>Notes</h2><ul class="notes">' + "".join(f"<li>{_h(n)}</li>" for n in r.notes) + "</ul>")
    out += ["<h2>Run details</h2>", _html_facts(run_facts(r))]
    rows = variation_rows(r)
    if rows:
        out.append("<table><thead><tr>" + "".join(f"<th>{_h(h)}</th>" for h in VARIATION_HEADER)
                   + "</tr></thead><tbody>")
        out += [f"<tr><td>{_h(k)}</td><td>{_h(sets)}</td><td><code>{_h(a)}</code></td><td><code>{_h(b)}</code></td>"
                "</tr>" for k, sets, a, b in rows]
        out.append("</tbody></table>")
    for p in r.packages:
        out += [f"<h2>{_h(p.label)}</h2>", _html_facts(package_facts(p))]
    out.append("</body></html>")
    return "\n".join(out) + "\n"


# --------------------------------------------------------------------------------------------
# Terminal


def _clip(s: str, width: int) -> str:
    return s if len(s) <= width else s[: max(0, width - 1)] + "…"


def _printable(s: str) -> str:
    """No terminal escape sequence or line break from the data reaches the terminal."""
    return "".join(ch if ch.isprintable() else ch.encode("unicode_escape", "backslashreplace").decode("ascii")
                   for ch in s)


def _nodes_summary(r: Report) -> str:
    parts = []
    for label, n in (("build 1", r.build1_node), ("build 2", r.build2_node)):
        part = f"{label} on {n.node}"
        if n.fell_back:
            part += f" (fallback: {n.requested} did not answer)"
        parts.append(part)
    cpus = (r.control.get("cpus"), r.experiment.get("cpus"))
    if all(isinstance(c, int) for c in cpus):
        parts.append(f"CPUs {cpus[0]} / {cpus[1]}")
    if r.same_engine:
        parts.append("single-engine")
    return f"nodes: {', '.join(parts)} · {r.build_mode} build for {r.arch} on {r.node_arch}"


def render_text(r: Report, paths: dict[str, Path] | None = None) -> str:
    """A short terminal summary (≤ 100 columns); ``paths`` is what :func:`write` returned."""
    rows = summary_rows(r)
    for row in rows:
        row["name"] = _printable(row["name"])
    name_w = min(max([len("PACKAGE"), *(len(row["name"]) for row in rows)]), 40)
    words = engine_words(r)
    head = (f"kabuild {r.host}: {str(r.verdict).upper()} (exit {r.exit_code})" + (f" · {words}" if words else "")
            + f" · run {r.run_id}"
            f" · {duration(r.duration)}")
    out = [head, _nodes_summary(r), ""]
    fmt = f"{{:<{name_w}}}  {{:<12}}  {{:<6}}  {{:<16}}  {{}}"
    out.append(fmt.format("PACKAGE", "REPRODUCIBLE", "PARITY", "VERDICT", "BUILD 1 SHA256"))
    for row in rows:
        out.append(fmt.format(_clip(row["name"], name_w), row["reproducible"], row["parity"],
                              _clip(_printable(row["verdict"]), 16), _printable(row["build1"])))
    found = problems(r)
    if found:
        # Problem lines wrap rather than clip: the member names are the point of them.
        out += ["", "problems:"] + [line for p in found
                                    for line in textwrap.wrap(_printable(p), TEXT_WIDTH, initial_indent="  ",
                                                              subsequent_indent="      ", break_on_hyphens=False)]
    if paths:
        out += ["", "reports:"] + [f"  {p}" for p in paths.values()]
    return "\n".join(_clip(_printable(line), TEXT_WIDTH) for line in out) + "\n"


FORMATS: dict[str, Format] = {f.name: f for f in (
    Format("text", None, "a short terminal summary (the default)",
           lambda r, run_dir: render_text(r, written(run_dir))),
    Format("json", acceptance.FILENAME, "the versioned report document, for machines",
           lambda r, _d: acceptance.dumps(r)),
    Format("md", "report.md", "Markdown, for a merge request or a wiki", lambda r, _d: render_markdown(r)),
    Format("html", "report.html", "a self-contained HTML page with links to diffoscope's output",
           lambda r, _d: render_html(r)),
)}
