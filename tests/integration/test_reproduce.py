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
from daemons import gpg_agents
from itest import copy_real_repo, kabuild, leftovers, make_repo, running_of
from publish_helpers import PacmanClient

pytestmark = [pytest.mark.docker, pytest.mark.slow]

# fixture -> (the file it leaks into, the variation(s) culprit finding must name)
LEAKS = {
    "hostname": ("leaky-hostname", "usr/share/leaky-hostname/hostname", {"hostname"}),
    "domain": ("leaky-domain", "usr/share/leaky-domain/domainname", {"domain"}),
    "timezone": ("leaky-timezone", "usr/share/leaky-timezone/built", {"timezone"}),
    "locale": ("leaky-locale", "usr/share/leaky-locale/weekday", {"locale"}),
    "user": ("leaky-user", "usr/share/leaky-user/user", {"user"}),
    # a different user also has a different home: both are named, correctly
    "home": ("leaky-home", "usr/share/leaky-home/home", {"home", "user"}),
    "cpus": ("leaky-cpus", "usr/share/leaky-cpus/cpus", {"cpus"}),
    "clock": ("leaky-clock", "usr/share/leaky-clock/year", {"clock"}),
    "env": ("leaky-env", "usr/share/leaky-env/noise", {"env"}),
}


@pytest.mark.parametrize("variation", sorted(LEAKS))
def test_each_variation_is_detected_and_named_as_culprit(tmp_path, engine, engine2, variation):
    fixture, leaked, culprits = LEAKS[variation]
    root = make_repo(tmp_path, "fx", [fixture], control="local", experiment="local-2")
    r = kabuild(root, "reproduce", "fx", "--find-culprit", "--json")
    assert r.code == 1, r
    data = json.loads(r.out)
    (pkg,) = data["packages"]
    assert pkg["reproducible"] is False and pkg["verdict"] == "not-reproducible"
    members = pkg["build1_vs_build2"]["members"]
    assert members["kind"] == "content" and leaked in members["content"], members
    diff = pkg["build1_vs_build2"]["diffoscope"]
    assert diff["status"] == "different" and leaked in diff["files"], diff["files"]
    assert set(pkg["culprits"]["variations"]) == culprits, pkg["culprits"]
    latest = root / "build" / "fx" / "v1.0" / "runs" / "latest"
    assert (latest / diff["html"]).is_file() and (latest / diff["text"]).is_file() and (latest / diff["json"]).is_file()
    assert leaked in (latest / "report.md").read_text()
    assert data["nodes"]["build1"]["node"] == "local" and data["nodes"]["build2"]["node"] == "local-2"
    assert not leftovers(engine) and not leftovers(engine2)


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


@pytest.mark.emulation
def test_demo_reproduces_with_parity_against_its_committed_reference(tmp_path, engine, engine2):
    root = copy_real_repo(tmp_path)
    assert (root / "references" / "demo" / "kabuild-hello" / "reference.yaml").is_file()
    assert kabuild(root, "promote", "demo").code == 0
    r = kabuild(root, "reproduce", "demo", "--json", timeout=3600)
    assert r.code == 0, r
    data = json.loads(r.out)
    (pkg,) = data["packages"]
    assert pkg["file"] == "kabuild-hello-1.0-1-aarch64.pkg.tar.zst"
    assert pkg["reproducible"] is True and pkg["parity"] is True and pkg["verdict"] == "accepted"
    assert data["nodes"]["build1"]["node"] == "local" and data["nodes"]["build2"]["node"] == "local-2"
    assert data["verdict"] == "accepted"

    # ... and what was proven is what gets signed, published, and installed by a real pacman.
    pub = kabuild(root, "publish", "demo", "--json")
    assert pub.code == 0, pub
    published = json.loads(pub.out)
    # signing started a gpg-agent in kabuild's own GnuPG home (the throwaway key's); publish stopped it
    home = (root / "build" / "demo" / "gnupg").resolve()
    assert (home / "pubring.kbx").is_file()
    assert not [pid for pid, h in gpg_agents() if h.resolve() == home]
    client = PacmanClient(tmp_path / "pacman", published["pacman_conf"], architecture="aarch64")
    try:
        client.trust(Path(published["key_file"]).read_bytes(), published["key"])
        res = client.sync_install("kabuild-hello")
        assert res.ok, res.output
        assert (client.root / "usr" / "bin" / "kabuild-hello").is_file()
        assert client.installed_version("kabuild-hello") == "1.0-1"
    finally:
        client.close()


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
