"""The run's diffoscopes (kabuild.compare.budget, diffoscope's slow commands): in parallel, within one
budget, with what was cut named.  A stand-in diffoscope (a shell script) plays the tool."""

from __future__ import annotations

from pathlib import Path

from kbhelpers import fake_diffoscope

from kabuild.compare import budget
from kabuild.compare import diffoscope as compare
from kabuild.compare.differences import DiffStatus


def _jobs(tmp_path: Path, n: int) -> list[budget.Job]:
    out = []
    for i in range(n):
        a, b = tmp_path / f"p{i}" / "1.pkg.tar.zst", tmp_path / f"p{i}" / "2.pkg.tar.zst"
        a.parent.mkdir(parents=True, exist_ok=True)
        a.write_bytes(b"a")
        b.write_bytes(b"b")
        out.append(budget.Job((f"p{i}", "build1_vs_build2"), a, b, None, tmp_path / f"d{i}", f"p{i}"))
    return out


# Each run waits (at most 5 s) until a second one has started: with one worker the first gives up.
TOGETHER = """
d={dir}; touch "$d/$$"; i=0
while [ "$(ls "$d" | wc -l)" -lt 2 ] && [ $i -lt 50 ]; do sleep 0.1; i=$((i+1)); done
[ "$(ls "$d" | wc -l)" -ge 2 ] && exit 0; echo 'alone' >&2; exit 3
"""


def test_the_diffoscopes_run_in_parallel(tmp_path, monkeypatch):
    seen = tmp_path / "started"
    seen.mkdir()
    fake_diffoscope(tmp_path, monkeypatch, TOGETHER.format(dir=seen))
    q = budget.Queue(jobs=_jobs(tmp_path, 2))
    done = q.run(60, 2, lambda _: None)
    assert {r.status for r in done.values()} == {DiffStatus.SAME}


def test_one_worker_runs_them_one_after_the_other(tmp_path, monkeypatch):
    # the same stand-in, one worker: the first run finds itself alone (so the test above can fail)
    seen = tmp_path / "started"
    seen.mkdir()
    fake_diffoscope(tmp_path, monkeypatch, TOGETHER.format(dir=seen))
    done = budget.Queue(jobs=_jobs(tmp_path, 2)).run(60, 1, lambda _: None)
    first = done[("p0", "build1_vs_build2")]
    assert first.status is DiffStatus.ERROR and "alone" in (first.error or "")


def test_the_budget_cuts_what_runs_and_what_did_not_start(tmp_path, monkeypatch):
    fake_diffoscope(tmp_path, monkeypatch, "exec sleep 30\n")
    lines: list[str] = []
    done = budget.Queue(jobs=_jobs(tmp_path, 3)).run(1.5, 2, lines.append)
    cut = [r for r in done.values() if r.error and r.error.startswith("cut by the run's diffoscope budget")]
    not_run = [r for r in done.values() if r.error and r.error.startswith("not run: the run's diffoscope budget")]
    assert len(cut) == 2 and len(not_run) == 1, done
    assert all("--diffoscope-budget" in (r.error or "") for r in done.values())
    assert "within 2 s" in lines[0] and "--full-diffoscope" in lines[0]


def test_slow_commands_are_excluded_and_what_was_cut_is_counted(tmp_path, monkeypatch):
    args = tmp_path / "args"
    fake_diffoscope(tmp_path, monkeypatch, f"""printf '%s\\n' "$@" > {args}
echo "2026-12-05 01:32:05 D: diffoscope.main: starting" >&2
for s in .text .init; do
  echo "2026-12-05 01:32:05 D: diffoscope.excludes: Excluding command 'objdump --disassemble --section=$s {{}}' as it matches pattern '^objdump .*--disassemble'" >&2
done
echo "2026-12-05 01:32:05 W: diffoscope.main: a warning that stays" >&2
exit 0
""")
    (job,) = _jobs(tmp_path, 1)
    r = compare.diffoscope(job.first, job.second, tmp_path / "out", full=False)
    given = args.read_text().splitlines()
    assert "--debug" in given and "^objdump .*--disassemble" in given and "^readelf .*--debug-dump" in given
    assert r.status is DiffStatus.SAME
    assert r.cut == ("disassembly: 2 command(s), e.g. objdump --disassemble --section=.text {}",)
    assert (tmp_path / "out" / "diffoscope.log").read_text() == \
        "2026-12-05 01:32:05 W: diffoscope.main: a warning that stays\n"
    compare.diffoscope(job.first, job.second, tmp_path / "out", full=True)
    given = args.read_text().splitlines()
    assert "--exclude-command" not in given and "--debug" not in given


def test_the_default_budget_is_a_tenth_of_one_build_less_what_explaining_cost_already():
    assert budget.default_budget(3600) == 360 and budget.default_budget(5) == budget.MIN_BUDGET
    assert budget.default_budget(3600, spent=20) == 340


def test_diffoscope_is_told_to_stop_going_deeper_before_the_budget_ends(tmp_path, monkeypatch):
    args = tmp_path / "args"
    fake_diffoscope(tmp_path, monkeypatch, RECORD_AND_STOP.format(args=args))
    (job,) = _jobs(tmp_path, 1)
    done = budget.Queue(jobs=[job]).run(20, 1, lambda _: None)
    given = args.read_text().splitlines()
    soft = float(given[given.index("--timeout") + 1])
    assert 1 <= soft < 20
    r = done[job.key]
    assert r.status is DiffStatus.DIFFERENT and r.truncated
    assert any(c.startswith("deeper comparisons: diffoscope stopped") for c in r.cut), r.cut


# records its arguments, then writes a text report that says diffoscope's own timeout stopped it
RECORD_AND_STOP = r"""printf '%s
' "$@" > {args}
out=""; while [ $# -gt 2 ]; do case "$1" in --text) out="$2"; shift;; esac; shift; done
printf 'Timeout exceeded; details may be incomplete.
' > "$out"; exit 1
"""


# text and JSON on the comparison, the HTML from the JSON in a second call (which may be slow)
TWO_STEPS = r"""out=""; json=""; html=""; load=""
for a in "$@"; do :; done
while [ $# -gt 0 ]; do
  case "$1" in --text) out="$2"; shift;; --json) json="$2"; shift;; --html-dir) html="$2"; shift;;
               --load-existing-diff) load="$2"; shift;; esac; shift
done
if [ -n "$load" ]; then {slow} mkdir -p "$html"; echo '<html>from json</html>' > "$html/index.html"; exit 1; fi
[ -z "$html" ] || {{ echo 'html asked for in the comparison' >&2; exit 2; }}
echo 'diff' > "$out"; echo '{{"source1": "a", "source2": "b"}}' > "$json"; exit 1
"""


def test_the_html_report_is_rendered_from_the_json_after_the_comparison(tmp_path, monkeypatch):
    fake_diffoscope(tmp_path, monkeypatch, TWO_STEPS.format(slow=""))
    (job,) = _jobs(tmp_path, 1)
    r = budget.Queue(jobs=[job]).run(30, 1, lambda _: None)[job.key]
    assert r.status is DiffStatus.DIFFERENT and r.text and r.json, r
    assert r.html is not None and Path(r.html).read_text().strip() == "<html>from json</html>"


def test_an_html_report_the_budget_cannot_pay_for_is_left_out_and_said(tmp_path, monkeypatch):
    fake_diffoscope(tmp_path, monkeypatch, TWO_STEPS.format(slow="exec sleep 30;"))
    (job,) = _jobs(tmp_path, 1)
    r = budget.Queue(jobs=[job]).run(2, 1, lambda _: None)[job.key]
    assert r.status is DiffStatus.DIFFERENT and r.text and r.html is None
    assert any(c.startswith("HTML report: not rendered within the run's diffoscope budget") for c in r.cut), r.cut
