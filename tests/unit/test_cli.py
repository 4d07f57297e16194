"""The command line: exit codes, one-line errors, and the promote → verify → status flow on the demo host."""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

import pytest
from kbhelpers import edit

from kabuild.cli import main, run_cli
from kabuild.files import digest_file

DEMO_OUT = Path("build/demo/v1.0")
PKGBUILD_COPY = Path("fleet/pkgbuilds/kabuild-hello/demo-v1.0-cumulative.patch")
SOC_PATCH = Path("patches/soc/demo-soc/0001-hello-name-the-soc.patch")
VERBS = ["promote", "fetch", "verify", "status", "build", "reproduce", "report", "publish", "install"]


@dataclass
class Result:
    code: int
    out: str
    err: str

    @property
    def err_lines(self) -> list[str]:
        return self.err.splitlines()

    def json(self):
        return json.loads(self.out)


@pytest.fixture
def kabuild(repo, capsys):
    """Run the CLI in-process against the repo copy; returns a Result."""
    def call(*args: str, root: Path | None = repo) -> Result:
        capsys.readouterr()  # start from clean buffers
        argv = (["--root", str(root)] if root is not None else []) + list(args)
        code = run_cli(argv)
        out, err = capsys.readouterr()
        return Result(code, out, err)
    return call


@pytest.fixture
def promoted(kabuild):
    """The demo host promoted once (needs GNU patch for the apply check)."""
    if shutil.which("patch") is None:
        pytest.skip("needs GNU patch on PATH")
    result = kabuild("promote", "demo")
    assert result.code == 0, result.err
    return result


def assert_one_line_error(result: Result, code: int, pattern: str) -> str:
    assert result.code == code, (result.out, result.err)
    assert len(result.err_lines) == 1, result.err
    assert "Traceback" not in result.err
    line = result.err_lines[0]
    assert re.fullmatch(pattern, line), line
    return line


# --------------------------------------------------------------------------- promote


def test_promote_prints_the_digests_and_writes_patch_and_lock(promoted, repo):
    assert promoted.out.startswith("promoted demo: 4 patch(es) from 3 series -> ")
    assert "apply check: passed (applies with -p1 to kabuild-hello-1.0.tar.gz)" in promoted.out
    assert (repo / DEMO_OUT / "manifest.lock").is_file()
    assert digest_file(repo / DEMO_OUT / "demo-v1.0-cumulative.patch") == digest_file(repo / PKGBUILD_COPY)


def b2sum_line(out: str) -> str:
    return re.search(r"^  b2sum  ([0-9a-f]{128})$", out, re.M).group(1)


def test_promote_twice_gives_the_same_b2sum(promoted, kabuild, repo):
    again = kabuild("promote", "demo")
    assert again.code == 0
    assert b2sum_line(again.out) == b2sum_line(promoted.out) == digest_file(repo / PKGBUILD_COPY).b2sum


def test_promote_json_twice_gives_the_same_digests_and_lock(promoted, kabuild, repo):
    lock_bytes = (repo / DEMO_OUT / "manifest.lock").read_bytes()
    first, second = kabuild("promote", "demo", "--json"), kabuild("promote", "demo", "--json")
    assert first.code == second.code == 0
    a, b = first.json(), second.json()
    assert a == b
    assert a["b2sum"] == b2sum_line(promoted.out)
    assert a["sha256"] == digest_file(repo / PKGBUILD_COPY).sha256
    assert a["apply_check"]["status"] == "passed"
    assert a["patches"][0] == "patches/soc/demo-soc/0001-hello-name-the-soc.patch"
    assert (repo / DEMO_OUT / "manifest.lock").read_bytes() == lock_bytes


def break_soc_patch(repo: Path) -> None:
    if shutil.which("patch") is None:
        pytest.skip("needs GNU patch on PATH")
    (repo / SOC_PATCH).write_text("--- a/hello.c\n+++ b/hello.c\n@@ -1 +1 @@\n-no such line\n+x\n")


def test_promote_refuses_a_cumulative_patch_that_does_not_apply(kabuild, repo):
    break_soc_patch(repo)
    result = kabuild("promote", "demo")
    assert_one_line_error(result, 3, r"kabuild: error: \S+ does not apply to kabuild-hello-1\.0\.tar\.gz: .*")
    assert not (repo / DEMO_OUT).exists() or sorted(p.name for p in (repo / DEMO_OUT).iterdir()) == []


def test_promote_apply_failure_names_the_cumulative_patch(kabuild, repo):
    break_soc_patch(repo)
    result = kabuild("promote", "demo")
    assert result.err.startswith("kabuild: error: demo-v1.0-cumulative.patch does not apply to ")


def test_promote_refuses_a_baseline_with_the_wrong_checksum(kabuild, repo):
    manifest = repo / "fleet/demo.yaml"
    manifest.write_text(edit(manifest.read_text(), "sha256: 4b6efb", "sha256: 0b6efb"))
    assert_one_line_error(kabuild("promote", "demo"), 3, r"kabuild: error: .*kabuild-hello-1\.0\.tar\.gz: "
                                                         r"sha256 mismatch: expected 0b6efb\w+, got 4b6efb\w+")


def test_fetch_of_the_demo_baseline_verifies_the_local_tarball(kabuild, repo):
    result = kabuild("fetch", "demo")
    assert result.code == 0
    assert result.out.startswith("kabuild-hello-1.0.tar.gz: verified (")


# --------------------------------------------------------------------------- verify


def test_verify_after_promote_is_ok(promoted, kabuild, repo):
    result = kabuild("verify", "demo")
    assert result.code == 0, result.err
    sha = digest_file(repo / PKGBUILD_COPY).sha256
    assert result.out.startswith(f"verified demo: manifest.lock fresh, 1 PKGBUILD patch copy(ies) match sha256 {sha}")


def test_verify_json_after_promote(promoted, kabuild):
    data = kabuild("verify", "demo", "--json").json()
    assert data["state"] == "fresh"
    assert data["drift"] == [] and data["unchecked"] == []


def test_verify_refuses_drift_with_one_line_naming_the_file_and_both_hashes(promoted, kabuild, repo):
    copy = repo / PKGBUILD_COPY
    expected = digest_file(copy).sha256
    copy.write_bytes(copy.read_bytes() + b"# edited by hand\n")
    actual = digest_file(copy).sha256
    line = assert_one_line_error(kabuild("verify", "demo"), 3, r"kabuild: error: demo: PKGBUILD patch drift: .*")
    assert f"{copy}: expected sha256 {expected}, got {actual}" in line


def test_verify_refuses_a_missing_lock(kabuild):
    assert_one_line_error(kabuild("verify", "demo"), 3,
                          r"kabuild: error: demo: manifest\.lock is missing; run `kabuild promote demo` first")


def test_verify_refuses_a_stale_lock(promoted, kabuild, repo):
    (repo / SOC_PATCH).write_bytes((repo / SOC_PATCH).read_bytes() + b"\n")
    line = assert_one_line_error(kabuild("verify", "demo"), 3, r"kabuild: error: demo: manifest\.lock is stale .*")
    assert str(SOC_PATCH) in line


# --------------------------------------------------------------------------- configuration errors


def test_unknown_host_is_one_line_exit_2(kabuild):
    assert_one_line_error(kabuild("verify", "nohost"), 2,
                          r"kabuild: error: unknown host 'nohost': fleet/nohost\.yaml does not exist "
                          r"\(known hosts: .*demo.*\)")


def test_broken_manifest_is_one_line_exit_2(kabuild, repo):
    manifest = repo / "fleet/demo.yaml"
    manifest.write_text(edit(manifest.read_text(), "source_date_epoch: 1767225600", "source_date_epoch: now"))
    assert_one_line_error(kabuild("status", "demo"), 2,
                          r"kabuild: error: fleet/demo\.yaml:\d+: baseline\.source_date_epoch: "
                          r"expected a fixed integer .*, got a string 'now'")


def test_series_file_that_is_not_utf8_is_one_line_exit_2(kabuild, repo):
    (repo / "patches/soc/demo-soc/series").write_bytes(b"# caf\xe9\n0001-hello-name-the-soc.patch\n")
    assert_one_line_error(kabuild("promote", "demo"), 2, r"kabuild: error: patches/soc/demo-soc/series.*")


@pytest.mark.parametrize("argv", [("--debug", "status", "nohost"), ("status", "nohost", "--debug"),
                                  ("status", "--debug", "nohost")])
def test_debug_shows_the_traceback_before_or_after_the_verb(kabuild, argv):
    result = kabuild(*argv)
    assert result.code == 2
    assert "Traceback (most recent call last)" in result.err
    assert "ManifestError" in result.err
    assert result.err_lines[-1].startswith("kabuild: error: unknown host 'nohost'")


def test_debug_after_a_double_dash_is_an_argument_not_the_flag(kabuild):
    result = kabuild("status", "--", "--debug")
    assert result.code == 2 and "Traceback" not in result.err


def test_help_lists_the_verbs(kabuild):
    result = kabuild("--help", root=None)
    assert result.code == 0
    commands = result.out.split("Commands:", 1)[1]
    listed = {line.split()[0] for line in commands.splitlines() if line.strip()}
    assert set(VERBS) <= listed
    assert listed == set(main.commands)


def test_version(kabuild):
    result = kabuild("--version", root=None)
    assert result.code == 0
    assert result.out.strip() == "kabuild, version 0.1.0"


def test_missing_argument_is_a_usage_error(kabuild):
    result = kabuild("verify")
    assert result.code == 2
    assert "Missing argument 'HOST'" in result.err
    assert "Traceback" not in result.err


def test_unknown_verb_is_a_usage_error(kabuild):
    result = kabuild("frobnicate", "demo")
    assert result.code == 2
    assert "No such command 'frobnicate'" in result.err


def test_unknown_option_is_a_usage_error(kabuild):
    result = kabuild("status", "demo", "--colour")
    assert result.code == 2
    assert "No such option" in result.err


def test_root_without_fleet_is_a_configuration_error(kabuild, tmp_path):
    assert_one_line_error(kabuild("status", "demo", root=tmp_path), 2,
                          rf"kabuild: error: --root {re.escape(str(tmp_path))}: no fleet/ directory there")


def test_outside_a_repository_without_root_is_a_configuration_error(kabuild, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    assert_one_line_error(kabuild("status", "demo", root=None), 2,
                          r"kabuild: error: not inside a kabuild repository .*")


def test_root_is_found_above_the_current_directory(kabuild, repo, monkeypatch):
    monkeypatch.chdir(repo / "patches" / "soc")
    result = kabuild("status", "demo", "--json", root=None)
    assert result.code == 0
    assert result.json()["lock"]["path"] == str(repo / DEMO_OUT / "manifest.lock")


def test_root_from_the_environment(kabuild, repo, monkeypatch, tmp_path):
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("KABUILD_ROOT", str(repo))
    assert kabuild("status", "demo", root=None).code == 0


# --------------------------------------------------------------------------- status


def test_status_json_lock_missing(kabuild):
    result = kabuild("status", "demo", "--json")
    assert result.code == 0
    data = result.json()
    assert data["host"] == "demo" and data["arch"] == "aarch64"
    assert data["includes"] == ["soc/demo-soc", "driver/demo-led", "board/demo-board"]
    assert data["lock"]["state"] == "missing"
    assert data["lock"]["sha256"] is None


def test_status_json_lock_fresh(promoted, kabuild, repo):
    data = kabuild("status", "demo", "--json").json()
    assert data["lock"]["state"] == "fresh"
    assert data["lock"]["reasons"] == []
    assert data["lock"]["sha256"] == digest_file(repo / PKGBUILD_COPY).sha256
    assert data["lock"]["drift"] == []


def test_status_json_lock_stale(promoted, kabuild, repo):
    (repo / DEMO_OUT / "demo-v1.0-cumulative.patch").unlink()
    data = kabuild("status", "demo", "--json").json()
    assert data["lock"]["state"] == "stale"
    assert data["lock"]["reasons"] == ["demo-v1.0-cumulative.patch: cumulative patch missing"]


def test_status_json_reports_drift(promoted, kabuild, repo):
    (repo / PKGBUILD_COPY).unlink()
    drift = kabuild("status", "demo", "--json").json()["lock"]["drift"]
    assert [(d["package"], d["actual"]) for d in drift] == [("kabuild-hello", None)]


def test_status_text(promoted, kabuild):
    result = kabuild("status", "demo")
    assert result.code == 0
    assert result.out.startswith("demo (aarch64) ")
    assert re.search(r"^  lock       fresh \(", result.out, re.M)
    assert re.search(r"^  drift      none$", result.out, re.M)


# --------------------------------------------------------------------------- the real console script


def console_commands() -> list[list[str]]:
    commands = [[sys.executable, "-m", "kabuild"]]
    script = Path(sys.executable).parent / "kabuild"
    if script.is_file():
        commands.append([str(script)])
    return commands


@pytest.mark.parametrize("command", console_commands(), ids=lambda c: Path(c[-1]).name)
def test_console_script_unknown_host_exits_2_with_one_line(repo, command):
    env = {k: v for k, v in os.environ.items() if k != "KABUILD_ROOT"}
    proc = subprocess.run([*command, "--root", str(repo), "status", "nohost"],
                          capture_output=True, text=True, env=env, timeout=60)
    assert proc.returncode == 2
    assert proc.stdout == ""
    assert len(proc.stderr.splitlines()) == 1, proc.stderr
    assert proc.stderr.startswith("kabuild: error: unknown host 'nohost'")
