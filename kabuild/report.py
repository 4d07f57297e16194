"""The acceptance report: one JSON document rendered as report.json, report.md and report.html.

The reproduce step computes the document (a plain dict, see :data:`SCHEMA`); this module
only renders and stores it.  Every renderer tolerates ``null`` where a value is absent (a
failed build has no build 2, no reference, no differences).  All three renderers are fed
from the same intermediate list of facts, so Markdown and HTML say the same things.

Links to diffoscope outputs are taken as given by the document: paths relative to the run
directory (where the reports are written) stay relative links.
"""

from __future__ import annotations

import datetime as _dt
import html as _html
import json
import math
from pathlib import Path
from typing import Any, Iterable, Sequence
from urllib.parse import quote

from .errors import ConfigError
from .files import atomic_write

SCHEMA = 1
KIND = "kabuild-acceptance-report"
FILES = {"json": "report.json", "md": "report.md", "html": "report.html"}

MAX_FILES_SHOWN = 100  # differing files listed per comparison; the rest is in diffoscope's output
TEXT_WIDTH = 100

VERDICT_TEXT = {
    "accepted": "reproducible and bit-identical to the reference",
    "not-reproducible": "build 1 and build 2 differ",
    "parity-failed": "reproducible, but differs from the reference",
    "no-reference": "reproducible; no reference to compare with",
    "build-failed": "the build failed",
}

# --------------------------------------------------------------------------------------------
# Public API


def write(run_dir: Path, data: dict) -> dict[str, Path]:
    """Write report.md, report.html and report.json (last) into ``run_dir``; return their paths."""
    run_dir = Path(run_dir)
    doc = dict(data)
    doc.setdefault("schema", SCHEMA)
    # Render everything first: a renderer bug must not leave a half-updated set of reports.
    rendered = {
        "md": render_markdown(doc),
        "html": render_html(doc),
        "json": json.dumps(doc, sort_keys=True, indent=2, ensure_ascii=False, default=str) + "\n",
    }
    paths = {key: run_dir / name for key, name in FILES.items()}
    for key in ("md", "html", "json"):
        # backslashreplace: a file name with undecodable bytes (a lone surrogate) cannot
        # break the write, and in JSON "\udcff" reads back as the same string.
        atomic_write(paths[key], rendered[key].encode("utf-8", "backslashreplace"))
    return paths


def load(path: Path) -> dict:
    """Read a report.json written by :func:`write`; ConfigError if it is not one we can read."""
    path = Path(path)
    try:
        raw = path.read_bytes()
    except FileNotFoundError:
        raise ConfigError(f"report {path} does not exist", hint="run `kabuild reproduce` first") from None
    except IsADirectoryError:
        raise ConfigError(f"report {path} is a directory, not a report.json") from None
    except OSError as e:
        raise ConfigError(f"cannot read report {path}: {e.strerror or e}") from None
    try:
        data = json.loads(raw.decode("utf-8"))
    except UnicodeDecodeError:
        raise ConfigError(f"report {path} is not UTF-8 text") from None
    except json.JSONDecodeError as e:
        raise ConfigError(f"report {path} is not valid JSON (line {e.lineno}, column {e.colno}: {e.msg})") from None
    if not isinstance(data, dict):
        raise ConfigError(f"report {path} is not a JSON object")
    if data.get("schema") != SCHEMA:
        raise ConfigError(f"report {path} has schema {data.get('schema')!r}; this kabuild reads schema {SCHEMA}")
    if data.get("kind", KIND) != KIND:
        raise ConfigError(f"report {path} is a {data.get('kind')!r}, not a {KIND}")
    return data


# --------------------------------------------------------------------------------------------
# Small helpers over an untrusted, possibly sparse document


def _get(d: Any, *keys: str, default: Any = None) -> Any:
    for k in keys:
        if not isinstance(d, dict):
            return default
        d = d.get(k)
    return default if d is None else d


def _s(v: Any) -> str:
    if v is None:
        return "—"
    if isinstance(v, bool):
        return "yes" if v else "no"
    if isinstance(v, (dict, list)):
        return json.dumps(v, sort_keys=True, ensure_ascii=False, default=str)
    return str(v)


def _dict(v: Any) -> dict:
    return v if isinstance(v, dict) else {}


def _list(v: Any) -> list:
    return [x for x in v if x is not None] if isinstance(v, list) else []


def _short(h: Any) -> str:
    return str(h)[:12] if h else "—"


def _yn(v: Any) -> str:
    return "n/a" if v is None else ("yes" if v else "no")


def _duration(v: Any) -> str:
    if not isinstance(v, (int, float)) or isinstance(v, bool) or not math.isfinite(v):
        return "—"
    if v < 60:
        return f"{v:.1f} s"
    m, s = divmod(int(round(v)), 60)
    h, m = divmod(m, 60)
    return f"{v:.1f} s ({h} h {m} min {s} s)" if h else f"{v:.1f} s ({m} min {s} s)"


def _size(v: Any) -> str:
    if not isinstance(v, int) or isinstance(v, bool):
        return "—"
    return f"{v:,} bytes"


def _epoch(v: Any) -> str:
    if not isinstance(v, int) or isinstance(v, bool):
        return _s(v)
    try:
        when = _dt.datetime.fromtimestamp(v, _dt.timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")
    except (OverflowError, OSError, ValueError):
        return str(v)
    return f"{v} ({when})"


def _packages(data: dict) -> list[dict]:
    pkgs = data.get("packages")
    return [p for p in pkgs if isinstance(p, dict)] if isinstance(pkgs, list) else []


def _overall(data: dict) -> str:
    return str(data.get("verdict") or "unknown")


def _tone(word: Any) -> str:
    """Badge colour for a verdict or a yes/no value."""
    if word is True or word in ("accepted", "yes", "same"):
        return "ok"
    if word in (None, "n/a", "no-reference", "unknown"):
        return "na"
    return "bad"


# --------------------------------------------------------------------------------------------
# The facts, as lines of inline segments shared by the Markdown and HTML renderers.
#
# A segment is one of
#   ("t", text)            plain text
#   ("c", text)            code (hashes, paths, tags)
#   ("b", text)            emphasis
#   ("a", label, href)     a link (href relative to the run dir, or absolute)
#   ("badge", tone, text)  a verdict badge, tone in ok / bad / na / warn

Seg = tuple
Line = list  # of Seg


def _t(s: Any) -> Seg:
    return ("t", _s(s))


def _c(s: Any) -> Seg:
    return ("c", _s(s))


def _b(s: Any) -> Seg:
    return ("b", _s(s))


def _badge(tone: str, text: Any) -> Seg:
    return ("badge", tone, _s(text))


def _links(diff: dict) -> Line:
    out: Line = []
    for key, label in (("html", "diffoscope HTML"), ("text", "text"), ("json", "JSON")):
        href = diff.get(key)
        if href:
            if out:
                out.append(_t(" · "))
            out.append(("a", label, str(href)))
    return out


def _run_facts(data: dict) -> list[tuple[str, Line]]:
    facts: list[tuple[str, Line]] = []
    base = _dict(data.get("baseline"))
    if base:
        line: Line = [_b(f"{_s(base.get('name'))} {_s(base.get('version'))}")]
        if base.get("ref"):
            line += [_t(" (ref "), _c(base.get("ref")), _t(")")]
        facts.append(("Baseline", line))
    else:
        facts.append(("Baseline", [_t(None)]))
    lock = [_c(data.get("lock_hash"))]
    if data.get("lock_path"):
        lock += [_t(" in "), _c(data.get("lock_path"))]
    facts.append(("Lock hash", lock))
    facts.append(("SOURCE_DATE_EPOCH", [_t(_epoch(data.get("source_date_epoch")))]))

    image = _dict(data.get("image"))
    if image:
        line = [_c(image.get("tag"))]
        if image.get("id"):
            line += [_t(" id "), _c(image.get("id"))]
        line += [_t(" · recipe hash "), _c(image.get("recipe_hash"))]
        extra = [x for x in (image.get("flavor"), image.get("arch")) if x]
        if extra:
            line += [_t(" · " + " / ".join(map(str, extra)))]
        facts.append(("Build image", line))
    else:
        facts.append(("Build image", [_t(None)]))

    nodes = _dict(data.get("nodes"))
    for key, label in (("build1", "Build 1 node"), ("build2", "Build 2 node")):
        n = nodes.get(key) if isinstance(nodes, dict) else None
        if not isinstance(n, dict):
            facts.append((label, [_t(None)]))
            continue
        line = [_c(n.get("node"))]
        if n.get("requested") and n.get("requested") != n.get("node"):
            line += [_t(" (requested "), _c(n.get("requested")), _t(")")]
        if n.get("fell_back"):
            line += [_t(" "), _badge("warn", "fell back")]
            if n.get("reason"):
                line += [_t(": " + _s(n.get("reason")))]
        facts.append((label, line))
    if isinstance(nodes, dict) and nodes.get("same_engine"):
        facts.append(("Engines", [_badge("warn", "same engine"),
                                  _t(": both builds ran on the same Docker engine: the node variation was not exercised")]))
    elif isinstance(nodes, dict) and nodes.get("same_engine") is False:
        facts.append(("Engines", [_t("two different Docker engines")]))

    var = _dict(data.get("variations"))
    applied = _list(var.get("applied")) if isinstance(var, dict) else []
    facts.append(("Variations applied", [_t(", ".join(map(_s, applied)) if applied else "none")]))
    facts.append(("Duration", [_t(f"{_duration(data.get('duration'))} · started {_s(data.get('started_at'))}"
                                  f" · finished {_s(data.get('finished_at'))}")]))
    if data.get("answered_from"):
        facts.append(("Answered from", [_c(data.get("answered_from"))]))
    return facts


def _variation_rows(data: dict) -> list[tuple[str, str, str]]:
    var = _dict(data.get("variations"))
    if not isinstance(var, dict):
        return []
    control = var.get("control") if isinstance(var.get("control"), dict) else {}
    experiment = var.get("experiment") if isinstance(var.get("experiment"), dict) else {}
    keys = list(dict.fromkeys([*control, *experiment]))
    return [(str(k), _s(control.get(k)), _s(experiment.get(k))) for k in keys]


def _summary_rows(data: dict) -> list[dict[str, Any]]:
    rows = []
    for p in _packages(data):
        rows.append({
            "name": _s(p.get("name")),
            "build1": _short(_get(p, "build1", "sha256")),
            "build2": _short(_get(p, "build2", "sha256")),
            "reference": _short(_get(p, "reference", "sha256")),
            "reproducible": _yn(p.get("reproducible")),
            "parity": _yn(p.get("parity")),
            "verdict": _s(p.get("verdict") or "unknown"),
        })
    return rows


def _diff_facts(label: str, diff: Any) -> list[tuple[str, Line]]:
    if not isinstance(diff, dict):
        return []
    status = _s(diff.get("status"))
    line: Line = [_badge(_tone(status), status)]
    files = _list(diff.get("files"))
    if status == "different":
        line.append(_t(f" — {len(files)} differing file{'s' if len(files) != 1 else ''}" if files
                       else " — no inner file named (container bytes, member order or compression)"))
    if diff.get("truncated"):
        line += [_t(" "), _badge("warn", "truncated")]
    if diff.get("error"):
        line.append(_t(f" — {_s(diff.get('error'))}"))
    links = _links(diff)
    if links:
        line += [_t(" — "), *links]
    facts = [(label, line)]
    for f in files[:MAX_FILES_SHOWN]:
        facts.append(("", [_c(f)]))
    if len(files) > MAX_FILES_SHOWN:
        facts.append(("", [_t(f"… and {len(files) - MAX_FILES_SHOWN} more (see diffoscope)")]))
    return facts


def _build_line(b: Any, *, source: bool = False) -> Line:
    if not isinstance(b, dict):
        return [_t(None)]
    line: Line = [_c(b.get("sha256")), _t(f" · {_size(b.get('size'))}")]
    if b.get("b2sum"):
        line += [_t(" · b2sum "), _c(_short(b.get("b2sum")) + "…")]
    if not source:
        line.append(_t(f" · {_duration(b.get('duration'))}"))
        if b.get("log"):
            line += [_t(" · "), ("a", "log", str(b.get("log")))]
    elif b.get("source"):
        line += [_t(" · from "), _c(b.get("source"))]
    return line


def _package_facts(p: dict) -> list[tuple[str, Line]]:
    verdict = _s(p.get("verdict") or "unknown")
    facts: list[tuple[str, Line]] = [
        ("Verdict", [_badge(_tone(verdict), verdict)]
         + ([_t(" — " + VERDICT_TEXT[verdict])] if verdict in VERDICT_TEXT else [])),
        ("File", [_c(p.get("file"))]),
    ]
    if p.get("error"):
        facts.append(("Error", [_t(p.get("error"))]))
    facts.append(("Build 1", _build_line(p.get("build1"))))
    facts.append(("Build 2", _build_line(p.get("build2"))))
    facts.append(("Reference", _build_line(p.get("reference"), source=True)))
    facts.append(("Reproducible", [_badge(_tone(_yn(p.get("reproducible"))), _yn(p.get("reproducible")))]))
    facts.append(("Parity with reference", [_badge(_tone(_yn(p.get("parity"))), _yn(p.get("parity")))]))
    diffs = p.get("differences") if isinstance(p.get("differences"), dict) else {}
    facts += _diff_facts("Build 1 vs build 2", diffs.get("build1_vs_build2"))
    facts += _diff_facts("Build 1 vs reference", diffs.get("build1_vs_reference"))
    culprits = p.get("culprits")
    if isinstance(culprits, dict):
        names = _list(culprits.get("variations"))
        line: Line = [_b(", ".join(map(_s, names)) if names else "none identified")]
        tested = culprits.get("tested")
        if isinstance(tested, dict) and tested:
            line.append(_t(" (tested: " + ", ".join(f"{_s(k)} {_s(v)}" for k, v in tested.items()) + ")"))
        facts.append(("Culprit variations", line))
    tc = p.get("toolchain")
    if isinstance(tc, dict):
        m = tc.get("matches_reference")
        facts.append(("Toolchain matches reference", [_badge(_tone(_yn(m)), _yn(m))]))
        for change in _list(tc.get("changed")):
            facts.append(("", [_c(change)]))
    return facts


def _some(items: Sequence[Any], n: int = 5) -> str:
    return ", ".join(map(_s, items[:n])) + (f" (+{len(items) - n} more)" if len(items) > n else "")


def _problems(data: dict) -> list[str]:
    """One plain line per thing a reader must look at."""
    out = []
    for p in _packages(data):
        name = _s(p.get("name"))
        verdict = p.get("verdict")
        if verdict == "build-failed":
            out.append(f"{name}: build failed: {_s(p.get('error'))}")
        elif verdict == "not-reproducible":
            files = _list(_get(p, "differences", "build1_vs_build2", "files"))
            out.append(f"{name}: not reproducible" + (f": {len(files)} file(s) differ: {_some(files)}" if files else ""))
            culprits = _list(_get(p, "culprits", "variations"))
            if culprits:
                out.append(f"{name}: culprit: {_some(culprits)}")
        elif verdict == "parity-failed":
            files = _list(_get(p, "differences", "build1_vs_reference", "files"))
            out.append(f"{name}: differs from the reference" + (f": {_some(files)}" if files else ""))
        elif verdict == "no-reference":
            out.append(f"{name}: no reference to check parity against")
        elif verdict != "accepted":
            out.append(f"{name}: verdict {_s(verdict)}")
        changed = _list(_get(p, "toolchain", "changed"))
        if changed and verdict != "accepted":
            out.append(f"{name}: toolchain changed: {_some(changed, 3)}")
        diffs = p.get("differences")
        for key, diff in (diffs.items() if isinstance(diffs, dict) else ()):
            if isinstance(diff, dict) and diff.get("status") == "error":
                out.append(f"{name}: diffoscope {key.replace('_', ' ')}: {_s(diff.get('error'))}")
    for note in _list(data.get("notes")):
        out.append(f"note: {_s(note)}")
    return out


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


def _md_facts(facts: Iterable[tuple[str, Line]]) -> list[str]:
    lines = []
    for label, line in facts:
        if label:
            lines.append(f"- **{label}:** {_md_line(line)}")  # labels are ours, not data
        else:
            lines.append(f"  - {_md_line(line)}")
    return lines


def render_markdown(data: dict) -> str:
    host, verdict = _s(data.get("host")), _overall(data)
    tone = _tone(verdict)
    out = [
        f"## {MD_BADGE[tone if tone != 'na' else 'warn']} kabuild acceptance: {_md_text(host)} — "
        f"**{_md_text(verdict.upper())}**",
        "",
        _md_line([_t("run "), _c(data.get("run_id")), _t(f" · kabuild {_s(data.get('kabuild_version'))}"
                                                        f" · {_s(data.get('arch'))}"
                                                        f" · {_duration(data.get('duration'))}"
                                                        f" · exit code {_s(data.get('exit_code'))}")]),
        "",
        "| package | build 1 | build 2 | reference | reproducible | parity | verdict |",
        "|---|---|---|---|---|---|---|",
    ]
    for r in _summary_rows(data):
        cells = [
            _md_text(r["name"], table=True),
            *(_md_code(r[k], table=True) if r[k] != "—" else "—" for k in ("build1", "build2", "reference")),
            _md_line([_badge(_tone(r["reproducible"]), r["reproducible"])], table=True),
            _md_line([_badge(_tone(r["parity"]), r["parity"])], table=True),
            _md_line([_badge(_tone(r["verdict"]), r["verdict"])], table=True),
        ]
        out.append("| " + " | ".join(cells) + " |")
    if not _packages(data):
        out.append("| — | — | — | — | — | — | — |")
    notes = _list(data.get("notes"))
    if notes:
        out += ["", "**Notes**", ""] + [f"- {_md_text(_s(n))}" for n in notes]
    out += ["", "### Run details", ""] + _md_facts(_run_facts(data))
    rows = _variation_rows(data)
    if rows:
        out += ["", "| variation | build 1 (control) | build 2 (experiment) |", "|---|---|---|"]
        out += [f"| {_md_text(k, table=True)} | {_md_code(a, table=True)} | {_md_code(b, table=True)} |"
                for k, a, b in rows]
    for p in _packages(data):
        out += ["", f"### {_md_text(_s(p.get('name')))}", ""] + _md_facts(_package_facts(p))
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
    return _html.escape(_s(s), quote=True)


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


def render_html(data: dict) -> str:
    host, verdict = _s(data.get("host")), _overall(data)
    title = f"kabuild acceptance: {host} — {verdict.upper()}"
    out = [
        "<!DOCTYPE html>",
        '<html lang="en"><head><meta charset="utf-8">',
        '<meta name="viewport" content="width=device-width, initial-scale=1">',
        f"<title>{_h(title)}</title>",
        f"<style>{_CSS}</style>",
        "</head><body>",
        f'<h1>kabuild acceptance: {_h(host)} <span class="badge big {_tone(verdict)}">{_h(verdict.upper())}</span></h1>',
        '<p class="sub">' + _html_line([_t("run "), _c(data.get("run_id")),
                                        _t(f" · kabuild {_s(data.get('kabuild_version'))} · {_s(data.get('arch'))}"
                                           f" · {_duration(data.get('duration'))}"
                                           f" · exit code {_s(data.get('exit_code'))}")]) + "</p>",
        "<table><thead><tr><th>package</th><th>build 1</th><th>build 2</th><th>reference</th>"
        "<th>reproducible</th><th>parity</th><th>verdict</th></tr></thead><tbody>",
    ]
    for r in _summary_rows(data):
        hashes = "".join(f"<td><code>{_h(r[k])}</code></td>" if r[k] != "—" else "<td>—</td>"
                         for k in ("build1", "build2", "reference"))
        badges = "".join(f'<td><span class="badge {_tone(r[k])}">{_h(r[k])}</span></td>'
                         for k in ("reproducible", "parity", "verdict"))
        out.append(f"<tr><td>{_h(r['name'])}</td>{hashes}{badges}</tr>")
    if not _packages(data):
        out.append('<tr><td colspan="7">no packages</td></tr>')
    out.append("</tbody></table>")
    notes = _list(data.get("notes"))
    if notes:
        out.append('<h2>Notes</h2><ul class="notes">' + "".join(f"<li>{_h(n)}</li>" for n in notes) + "</ul>")
    out += ["<h2>Run details</h2>", _html_facts(_run_facts(data))]
    rows = _variation_rows(data)
    if rows:
        out.append("<table><thead><tr><th>variation</th><th>build 1 (control)</th><th>build 2 (experiment)</th>"
                   "</tr></thead><tbody>")
        out += [f"<tr><td>{_h(k)}</td><td><code>{_h(a)}</code></td><td><code>{_h(b)}</code></td></tr>"
                for k, a, b in rows]
        out.append("</tbody></table>")
    for p in _packages(data):
        out += [f"<h2>{_h(p.get('name'))}</h2>", _html_facts(_package_facts(p))]
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


def _nodes_summary(data: dict) -> str:
    nodes = _dict(data.get("nodes"))
    parts = []
    for key, label in (("build1", "build 1"), ("build2", "build 2")):
        n = _dict(nodes.get(key))
        if not n:
            continue
        part = f"{label} on {_s(n.get('node'))}"
        if n.get("fell_back"):
            part += f" (fell back from {_s(n.get('requested'))})"
        parts.append(part)
    if nodes.get("same_engine"):
        parts.append("same engine")
    return "nodes: " + ", ".join(parts) if parts else ""


def render_text(data: dict, paths: dict[str, Path] | None = None) -> str:
    """A short terminal summary (≤ 100 columns); ``paths`` is what :func:`write` returned."""
    rows = _summary_rows(data)
    for r in rows:
        r["name"] = _printable(r["name"])
    name_w = min(max([len("PACKAGE"), *(len(r["name"]) for r in rows)]), 40)
    head = (f"kabuild {_s(data.get('host'))}: {_overall(data).upper()} (exit {_s(data.get('exit_code'))})"
            f" · run {_s(data.get('run_id'))} · {_duration(data.get('duration'))}")
    out = [head]
    nodes = _nodes_summary(data)
    if nodes:
        out.append(nodes)
    out.append("")
    fmt = f"{{:<{name_w}}}  {{:<12}}  {{:<6}}  {{:<16}}  {{}}"
    out.append(fmt.format("PACKAGE", "REPRODUCIBLE", "PARITY", "VERDICT", "BUILD 1 SHA256"))
    for r in rows:
        out.append(fmt.format(_clip(r["name"], name_w), r["reproducible"], r["parity"],
                              _clip(_printable(r["verdict"]), 16), _printable(r["build1"])))
    if not rows:
        out.append("(no packages)")
    problems = _problems(data)
    if problems:
        out += ["", "problems:"] + ["  " + p for p in problems]
    if paths:
        out += ["", "reports:"] + [f"  {p}" for p in paths.values()]
    return "\n".join(_clip(_printable(line), TEXT_WIDTH) for line in out) + "\n"
