"""`kabuild reproduce` with real engines, real makepkg and real diffoscope (issue: reproduce).

Fixture packages that are unreproducible on purpose, one per supported variation,
build for the machine's native architecture to keep the suite's time reasonable;
the demo host stays aarch64.
"""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

import pytest
import yaml
from itest import kabuild, leftovers, make_repo, running_of

pytestmark = [pytest.mark.docker, pytest.mark.slow]

# variation -> (the fixture that leaks it, the member it leaks into); the evidence names exactly it
LEAKS = {
    "hostname": ("leaky-hostname", "usr/share/leaky-hostname/hostname"),
    "domain": ("leaky-domain", "usr/share/leaky-domain/domainname"),
    "timezone": ("leaky-timezone", "usr/share/leaky-timezone/built"),
    "locale": ("leaky-locale", "usr/share/leaky-locale/weekday"),
    "user": ("leaky-user", "usr/share/leaky-user/user"),
    "home": ("leaky-home", "usr/share/leaky-home/home"),
    "cpus": ("leaky-cpus", "usr/share/leaky-cpus/cpus"),
    "clock": ("leaky-clock", "usr/share/leaky-clock/year"),
    "env": ("leaky-env", "usr/share/leaky-env/noise"),
}
MARK = "from evidence, not rebuilt"
RUNS = ("build", "fx", "v1.0", "runs", "latest")


def _only(data: dict) -> dict:
    (pkg,) = data["packages"]
    return pkg


@pytest.mark.parametrize("variation", sorted(LEAKS))
def test_each_variation_alone_is_detected_and_named_from_evidence(tmp_path, engine, engine2, variation):
    """One build pair per variation, that variation only: detected, the member named, and the variation
    named from the bytes without any rebuild."""
    fixture, leaked = LEAKS[variation]
    root = make_repo(tmp_path, "fx", [fixture], control="local", experiment="local-2")
    r = kabuild(root, "reproduce", "fx", f"--vary={variation}", "--json")
    assert r.code == 1, r
    data = json.loads(r.out)
    pkg = _only(data)
    assert pkg["reproducible"] is False and pkg["verdict"] == "not-reproducible"
    members = pkg["build1_vs_build2"]["members"]
    assert members["kind"] == "content" and leaked in members["content"], members
    diff = pkg["build1_vs_build2"]["diffoscope"]
    assert diff["status"] == "different" and leaked in diff["files"], diff["files"]
    explained = pkg["explanation"]
    assert explained["source"] == "evidence" and explained["marked"] == MARK, explained
    assert explained["variations"] == [variation], explained
    assert any(f["member"] == leaked and f["variations"] == [variation] for f in explained["findings"]), explained
    assert explained["unexplained"] == [] and pkg["culprits"] is None  # nothing was rebuilt
    latest = root.joinpath(*RUNS)
    assert (latest / diff["html"]).is_file() and (latest / diff["text"]).is_file() and (latest / diff["json"]).is_file()
    md = (latest / "report.md").read_text()
    assert leaked in md and MARK in md
    assert data["nodes"]["build1"]["node"] == "local" and data["nodes"]["build2"]["node"] == "local-2"
    assert not leftovers(engine) and not leftovers(engine2)


# One run of the default variation set over every fixture whose leak can be seen, the kernel-like
# one, one whose leak cannot be seen, and two that are reproducible: no --find-culprit.
DEFAULT_RUN = [fixture for fixture, _ in LEAKS.values()] + ["leaky-kversion", "leaky-hidden", "steady",
                                                           "locale-order"]


@pytest.fixture(scope="module")
def default_run(tmp_path_factory, engine, engine2):
    root = make_repo(tmp_path_factory.mktemp("default"), "fx", DEFAULT_RUN, control="local", experiment="local-2")
    # a budget of its own: the checks below read diffoscope's output for 12 packages, on a busy machine
    r = kabuild(root, "reproduce", "fx", "--json", "--diffoscope-budget=300")
    assert r.code == 1, r
    data = json.loads(r.out)
    return root, {p["name"]: p for p in data["packages"]}, data, r


@pytest.mark.parametrize("variation", sorted(LEAKS))
def test_the_default_set_names_each_visible_leak_from_evidence(default_run, variation):
    _root, pkgs, _data, _r = default_run
    fixture, leaked = LEAKS[variation]
    pkg = pkgs[fixture]
    assert pkg["verdict"] == "not-reproducible" and pkg["culprits"] is None
    explained = pkg["explanation"]
    # all ten variations applied to build 2, and the bytes name the one that leaked, and only it
    assert explained["variations"] == [variation], explained
    assert explained["unexplained"] == [], explained
    assert any(f["member"] == leaked for f in explained["findings"] if f["variations"] == [variation])


def test_a_kernel_like_version_string_names_user_hostname_and_clock_with_the_kbuild_hint(default_run):
    root, pkgs, _data, r = default_run
    explained = pkgs["leaky-kversion"]["explanation"]
    assert {"user", "hostname", "clock"} <= set(explained["variations"]), explained
    assert set(explained["variations"]) <= {"user", "hostname", "clock", "timezone"}, explained
    assert explained["own_time"] is True and explained["unexplained"] == []
    compile_h = "usr/lib/modules/6.12.0-kabuild/build/include/generated/compile.h"
    named = {v for f in explained["findings"] if f["member"] == compile_h for v in f["variations"]}
    assert {"user", "hostname", "clock"} <= named
    (kernel,) = [h for h in explained["hints"] if h["cause"] == "kernel version string"]
    assert "KBUILD_BUILD_USER" in kernel["hint"] and "KBUILD_BUILD_TIMESTAMP" in kernel["hint"]
    assert "kabuild-experiment" in kernel["evidence"] or "kabuild-alt" in kernel["evidence"]
    # the terminal summary says it too, and what diffoscope left out of the binary
    text = kabuild(root, "report", "fx").out
    assert f"leaky-kversion: culprit ({MARK})" in " ".join(text.split())
    cut = pkgs["leaky-kversion"]["build1_vs_build2"]["diffoscope"]["cut"]
    assert any(c.startswith("disassembly: ") for c in cut), cut


def test_a_leak_no_value_shows_is_listed_unexplained(default_run):
    root, pkgs, _data, _r = default_run
    explained = pkgs["leaky-hidden"]["explanation"]
    assert explained["variations"] == [] and explained["unexplained"] == ["usr/share/leaky-hidden/id"], explained
    assert "leaky-hidden: unexplained: usr/share/leaky-hidden/id" in " ".join(kabuild(root, "report", "fx").out.split())


def test_the_reports_mark_evidence_and_show_what_each_variation_sets_and_the_time_by_phase(default_run):
    root, pkgs, data, _r = default_run
    assert pkgs["steady"]["reproducible"] is True and pkgs["locale-order"]["reproducible"] is True
    latest = root.joinpath(*RUNS)
    for name in ("report.md", "report.html"):
        out = (latest / name).read_text()
        assert MARK in out and "LANG only" in out, name
    changes = {c["name"]: c for c in data["variations"]["changes"]}
    assert list(changes) == data["variations"]["applied"]
    assert changes["locale"]["sets"].startswith("LANG only") and changes["locale"]["experiment"] == "de_DE.UTF-8"
    phases = [t["phase"] for t in data["timings"]]
    for phase in ("image and dependency layer", "builds (wall clock)", "build 1 steady", "build 2 steady",
                  "member hashing", "evidence", "diffoscope", "reports"):
        assert phase in phases, phases


@pytest.fixture(scope="module")
def culprit_run(tmp_path_factory, engine, engine2):
    """The one real culprit search: a leak no value shows, one the evidence explains, one that differs
    on every build."""
    root = make_repo(tmp_path_factory.mktemp("culprit"), "fx", ["leaky-hidden", "leaky-env", "unsteady"],
                     control="local", experiment="local-2")
    r = kabuild(root, "reproduce", "fx", "--find-culprit", "--json")
    assert r.code == 1, r
    return root, {p["name"]: p for p in json.loads(r.out)["packages"]}, r


def test_find_culprit_rebuilds_only_for_what_the_evidence_left_unexplained(culprit_run, engine, engine2):
    _root, pkgs, r = culprit_run
    hidden = pkgs["leaky-hidden"]["culprits"]
    assert hidden["variations"] == ["hostname"] and hidden["nondeterministic"] is False, hidden
    assert hidden["tested"][0] == {"varied": "none", "result": "same"}, hidden  # the null hypothesis first
    # today's search cost one build per variation (ten); halving costs fewer, the null included
    assert hidden["builds"] == len(hidden["tested"]) < 10, hidden
    env = pkgs["leaky-env"]["culprits"]
    assert env["from_evidence"] == ["env"] and env["variations"] == [] and env["builds"] == 1, env
    assert "every difference is explained from evidence" in r.err
    assert not leftovers(engine) and not leftovers(engine2)


def test_a_build_that_differs_by_itself_is_not_blamed_on_any_variation(culprit_run):
    root, pkgs, _r = culprit_run
    c = pkgs["unsteady"]["culprits"]
    assert c["nondeterministic"] is True and c["variations"] == [] and c["builds"] == 1, c
    assert c["tested"] == [{"varied": "none", "result": "differs"}]
    evidence = c["evidence"]
    assert evidence["own_time"] is True and evidence["variations"] == [], evidence
    assert any(f["member"] == "usr/share/unsteady/now" and f["own_time"] for f in evidence["findings"]), evidence
    text = " ".join(kabuild(root, "report", "fx").out.split())
    assert "unsteady: not deterministic by itself" in text and "no variation is blamed" in text


def test_lc_all_catches_locale_sorted_member_names_and_names_the_cause(tmp_path, engine, engine2):
    """Reproducible under the default set (default_run); with LC_ALL set in build 2 the members of
    pt/ and pt_BR/ come out in another order, and the member-order hint is given with its evidence."""
    root = make_repo(tmp_path, "fx", ["locale-order"], control="local", experiment="local-2")
    r = kabuild(root, "reproduce", "fx", "--vary=+lc_all", "--json")
    assert r.code == 1, r
    pkg = _only(json.loads(r.out))
    assert pkg["build1_vs_build2"]["members"]["kind"] == "order", pkg["build1_vs_build2"]
    explained = pkg["explanation"]
    assert explained["variations"] == ["lc_all"] and explained["unexplained"] == [], explained
    order = next(f for f in explained["findings"] if f["kind"] == "order")
    assert "pt" in order["build1"] and "pt_BR" in order["build1"]
    (hint,) = explained["hints"]
    assert hint["cause"] == "member order" and "LC_COLLATE=C" in hint["hint"] and "LC_ALL" in hint["hint"]


def test_reproducible_package_references_parity_and_answer_from_record(tmp_path, engine, engine2):
    root = make_repo(tmp_path, "fx", ["steady"], control="local", experiment="local-2")
    first = kabuild(root, "reproduce", "fx", "--json")
    assert first.code == 0, first
    data = json.loads(first.out)
    (pkg,) = data["packages"]
    assert pkg["reproducible"] is True and pkg["parity"] is None and pkg["verdict"] == "no-reference"
    assert pkg["build1"]["sha256"] == pkg["build2"]["sha256"]
    assert data["variations"]["applied"] == ["hostname", "domain", "timezone", "locale", "umask", "user", "home",
                                             "cpus", "clock", "env"]
    assert data["variations"]["control"]["build_path"] == data["variations"]["experiment"]["build_path"] == "/build"

    rec = kabuild(root, "reference", "record", "fx")
    assert rec.code == 0, rec
    ref_yaml = root / "references" / "fx" / "steady" / "reference.yaml"
    ref = yaml.safe_load(ref_yaml.read_text())
    assert ref["artifacts"][0]["sha256"] == pkg["build1"]["sha256"]
    assert ref["toolchain"] and ref["image"]["recipe_hash"] == data["image"]["recipe_hash"]
    assert (ref_yaml.parent / f"{pkg['file']}.BUILDINFO").read_text().startswith("format = ")

    again = kabuild(root, "reproduce", "fx", "--json")
    assert again.code == 0, again
    assert "answering from its builds" in again.err
    second = json.loads(again.out)
    assert second["answered_from"] == data["run_id"]
    assert second["packages"][0]["parity"] is True and second["packages"][0]["verdict"] == "accepted"

    # A tampered reference hash is not evidence: exit 3 naming the file and the key, never a verdict.
    good = ref_yaml.read_bytes()
    ref["artifacts"][0]["sha256"] = "0" * 64
    ref_yaml.write_text(yaml.safe_dump(ref))
    tampered = kabuild(root, "reproduce", "fx", "--json")
    assert tampered.code == 3, tampered
    assert "references/fx/steady/reference.yaml: artifacts[0].sha256: records " + "0" * 64 in tampered.err
    ref_yaml.write_bytes(good)

    # Another recipe making the same file: rebuilt without --rebuild, parity fails (exit 1) and the
    # report names both hashes.
    recipe = root / "pkgs" / "steady" / "PKGBUILD"
    recipe.write_text(recipe.read_text().replace("steady as she goes", "steady as she went"))
    assert kabuild(root, "promote", "fx").code == 0
    bad = kabuild(root, "reproduce", "fx", "--json")
    assert bad.code == 1, bad
    assert "answering from its builds" not in bad.err
    pkg = json.loads(bad.out)["packages"][0]
    assert pkg["reproducible"] is True and pkg["parity"] is False and pkg["verdict"] == "parity-failed"
    shown = kabuild(root, "report", "fx")
    assert shown.code == 1 and "parity-failed" in shown.out
    named = " ".join(shown.out.split())
    assert f"reference sha256 {ref['artifacts'][0]['sha256'][:12]}" not in named  # the tampered value is gone
    assert f"reference sha256 {yaml.safe_load(good)['artifacts'][0]['sha256']}" in named
    assert f"build 1 sha256 {pkg['build1']['sha256']}" in named

    rebuilt = kabuild(root, "reproduce", "fx", "--rebuild", "--json")
    assert rebuilt.code == 1, rebuilt
    assert json.loads(rebuilt.out)["answered_from"] is None


def test_the_control_build_uses_every_cpu_of_its_node(tmp_path, engine, engine2):
    """Build 1 is never starved: every CPU of its node; build 2 gets a different count."""
    root = make_repo(tmp_path, "fx", ["leaky-cpus"], control="local", experiment="local-2")
    r = kabuild(root, "reproduce", "fx", "--vary=cpus", "--json")
    assert r.code == 1, r
    data = json.loads(r.out)
    run_dir = root / "build" / "fx" / "v1.0" / "runs" / data["run_id"]
    (pkg,) = data["packages"]
    seen = {}
    for n in ("build1", "build2"):
        seen[n] = int(subprocess.run(["bsdtar", "-xOf", str(run_dir / pkg[n]["path"]), "usr/share/leaky-cpus/cpus"],
                                     capture_output=True, text=True, check=True).stdout)
    assert engine.cpus >= 2, "this test needs a node with at least two CPUs"
    assert seen["build1"] == engine.cpus == data["nodes"]["build1"]["cpus"] == data["variations"]["control"]["cpus"]
    assert seen["build2"] == data["variations"]["experiment"]["cpus"] == max(1, engine2.cpus // 2)
    assert seen["build1"] != seen["build2"]
    assert f"CPUs {engine.cpus} / {seen['build2']}" in kabuild(root, "report", "fx").out
    # --vary cpus=N gives the experiment exactly N
    again = json.loads(kabuild(root, "reproduce", "fx", "--vary=cpus=2", "--json").out)
    assert again["variations"]["experiment"]["cpus"] == 2 and again["variations"]["control"]["cpus"] == engine.cpus


def test_reference_record_refuses_an_unreproducible_run(tmp_path, engine):
    root = make_repo(tmp_path, "fx", ["leaky-env"], control="local", experiment="local")
    assert kabuild(root, "reproduce", "fx", "--vary=env").code == 1
    r = kabuild(root, "reference", "record", "fx")
    assert r.code == 3, r
    assert "not reproducible" in r.err
    assert not (root / "references" / "fx").exists()


def test_down_experiment_node_uses_the_fallback_and_the_report_says_so(tmp_path, engine, engine2):
    """The fallback is a real, different engine (local-2): build 2 runs there, and the headline says so."""
    root = make_repo(tmp_path, "fx", ["steady"], control="local", experiment="dead", fallback="local-2")
    r = kabuild(root, "reproduce", "fx", "--vary=hostname", "--json")
    assert r.code == 0, r
    data = json.loads(r.out)
    assert data["nodes"]["build1"]["node"] == "local"
    assert data["nodes"]["build2"] == {**data["nodes"]["build2"], "node": "local-2", "requested": "dead",
                                       "fell_back": True}
    assert "does not answer: no socket at /run/kabuild-no-such-engine.sock" in data["nodes"]["build2"]["reason"]
    assert data["nodes"]["same_engine"] is False
    assert any("dead is down: build 2 ran on local-2" in n for n in data["notes"])
    assert "node dead is down: build 2 ran on local-2" in r.err  # said while it happens, too
    report_md = (root / "build" / "fx" / "v1.0" / "runs" / "latest" / "report.md").read_text()
    assert "build 2 ran on fallback local-2 (dead did not answer)" in report_md.splitlines()[0]
    shown = kabuild(root, "report", "fx").out.splitlines()
    assert "ACCEPTED" in shown[0] and "build 2 ran on fallback local-2 (dead did not answer)" in shown[0], shown
    assert "build 2 on local-2 (fallback: dead did not answer)" in shown[1], shown
    assert not leftovers(engine) and not leftovers(engine2)


def test_only_the_control_engine_left_is_single_engine_and_the_gate_refuses_it(tmp_path, engine):
    root = make_repo(tmp_path, "fx", ["steady"], control="local", experiment="dead", fallback="local")
    with open(root / "fleet" / "fx.yaml", "a") as f:
        f.write("publish:\n  repository: fx\n  key: throwaway\n  destination: build/fx/repo\n")
    assert kabuild(root, "promote", "fx").code == 0
    r = kabuild(root, "reproduce", "fx", "--vary=hostname", "--json")
    assert r.code == 0, r
    data = json.loads(r.out)
    assert data["nodes"]["same_engine"] is True and data["nodes"]["build2"]["fell_back"] is True
    assert "single-engine: both builds ran on local (dead did not answer)" in kabuild(root, "report", "fx").out
    assert kabuild(root, "reference", "record", "fx").code == 0
    assert kabuild(root, "reproduce", "fx", "--vary=hostname").code == 0  # answered, now with parity
    refused = kabuild(root, "publish", "fx")
    assert refused.code == 3, refused
    assert "publish refused: report: single-engine run: both builds ran on local because dead did not answer" \
        in refused.err  # the one reason left: everything else was proven
    assert "build.single_engine: allowed" in refused.err
    assert not (root / "build" / "fx" / "repo").exists()
    # an owner with one build host opts in: the same proof is then published
    manifest = root / "fleet" / "fx.yaml"
    manifest.write_text(manifest.read_text().replace("  timeout: 600\n", "  timeout: 600\n  single_engine: allowed\n"))
    assert kabuild(root, "promote", "fx").code == 0
    again = kabuild(root, "reproduce", "fx", "--vary=hostname")
    assert again.code == 0, again
    published = kabuild(root, "publish", "fx")
    assert published.code == 0, published
    assert (root / "build" / "fx" / "repo").is_dir()


def test_failed_build_in_reproduce_exits_4_with_a_report(tmp_path, engine):
    root = make_repo(tmp_path, "fx", ["fails"], control="local", experiment="local")
    r = kabuild(root, "reproduce", "fx", "--json")
    assert r.code == 4, r
    data = json.loads(r.out)
    assert data["packages"][0]["verdict"] == "build-failed"
    assert "failing on purpose" in data["packages"][0]["error"]
    # the log the error names is where it is once the run is complete, not in runs/.<id>.partial/
    log = Path(data["packages"][0]["error"].split("full log: ", 1)[1].split(";", 1)[0].strip())
    assert log.is_file() and log.parent.parent.name == data["run_id"], log
    assert ".partial" not in data["packages"][0]["error"]
    assert not leftovers(engine)


def test_bad_vary_is_a_usage_error(tmp_path):
    root = make_repo(tmp_path, "fx", ["steady"])
    r = kabuild(root, "reproduce", "fx", "--vary=+nosuch")
    assert r.code == 2 and "unknown variation 'nosuch'" in r.err


# The demo (aarch64 under emulation) with parity against its committed reference, published and installed
# by pacman: test_remote_nodes.py, on two remote nodes (one emulated reproduce for the whole suite).


def test_publish_refuses_what_was_not_proven(tmp_path, engine):
    root = make_repo(tmp_path, "fx", ["leaky-env"], control="local", experiment="local")
    with open(root / "fleet" / "fx.yaml", "a") as f:
        f.write("publish:\n  repository: fx\n  key: throwaway\n  destination: build/fx/repo\n")
    assert kabuild(root, "promote", "fx").code == 0
    no_run = kabuild(root, "publish", "fx")
    assert no_run.code == 3 and "run `kabuild reproduce fx` first" in no_run.err, no_run
    assert kabuild(root, "reproduce", "fx", "--vary=env").code == 1
    r = kabuild(root, "publish", "fx")
    assert r.code == 3, r
    assert "leaky-env" in r.err and "not reproducible" in r.err.lower()
    assert not (root / "build" / "fx" / "repo").exists()


def test_ctrl_c_during_two_node_builds_removes_both_containers(tmp_path, engine, engine2):
    import signal
    import subprocess
    import sys
    import time

    root = make_repo(tmp_path, "fx", ["sleeper"], control="local", experiment="local-2", timeout=600)
    proc = subprocess.Popen([sys.executable, "-m", "kabuild", "--root", str(root), "reproduce", "fx"],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        for _ in range(600):  # bounded wait until both builds run
            if running_of(engine, proc.pid) and running_of(engine2, proc.pid):
                break
            time.sleep(0.2)
        else:
            pytest.fail("the two build containers never started")
        proc.send_signal(signal.SIGINT)
        _out, err = proc.communicate(timeout=120)  # far less than the sleeper's 600 s
    finally:
        if proc.poll() is None:
            proc.kill()
    assert proc.returncode == 130, err
    assert not leftovers(engine) and not leftovers(engine2)
    runs = root / "build" / "fx" / "v1.0" / "runs"
    kept = [p.name for p in runs.iterdir() if p.name.endswith(".incomplete")]
    assert kept, "the interrupted run's logs are kept under a name that says it did not finish"
    assert not (runs / "latest").exists()
