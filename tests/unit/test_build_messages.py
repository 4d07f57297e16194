"""The build container's own exit codes get their own messages (no engine: run_container is replaced).

The entry script (containers/common/kabuild-build) exits 100 when its contract with kabuild is
broken before makepkg runs, 101 when makepkg succeeded but wrote no package; any other code is
makepkg's.  kabuild names each one for what it is.
"""

from __future__ import annotations

import re
from pathlib import Path
from types import SimpleNamespace

import pytest

from kabuild.build import makepkg
from kabuild.build.containers import Outcome
from kabuild.build.spec import BuildSpec, Context, StagedFile
from kabuild.config.manifest import Arch, Package
from kabuild.errors import BuildError, ExitCode

ENTRY_SCRIPT = Path(__file__).resolve().parents[2] / "containers" / "common" / "kabuild-build"


def test_the_codes_are_the_entry_scripts_own():
    text = ENTRY_SCRIPT.read_text()
    assert re.search(rf"\bE_CONTRACT={makepkg.ENTRY_CONTRACT_ERROR}\b", text)
    assert re.search(rf"\bE_NOOUTPUT={makepkg.ENTRY_NO_PACKAGE}\b", text)
    assert 'mark "failed contract: $*"' in text  # the marker run_build reads the reason from


def run_with(monkeypatch, tmp_path: Path, code: int, lines: list[str]) -> BuildError:
    def fake_run_container(engine, config, *, on_line, **_kw):
        for line in lines:
            on_line(line)
        return Outcome(exit_code=code, duration=1.0, timed_out=False)

    monkeypatch.setattr(makepkg, "run_container", fake_run_container)
    pkgbuild = tmp_path / "PKGBUILD"
    pkgbuild.write_text("pkgname=x\n")
    ctx = Context(Package("x", tmp_path, "x", None), (StagedFile("PKGBUILD", pkgbuild),))
    spec = BuildSpec(host="h", package="x", arch=Arch.X86_64, image="kabuild/debian-x86_64:0123", source_date_epoch=1767225600,
                     timeout=60)
    engine = SimpleNamespace(name="local")
    with pytest.raises(BuildError) as excinfo:
        makepkg.run_build(engine, None, spec, ctx, tmp_path / "out", "build1", lambda _m: None)  # type: ignore[arg-type]
    assert excinfo.value.exit_code == ExitCode.BUILD_FAILED
    assert "\n" not in str(excinfo.value)
    return excinfo.value


def test_contract_error_is_named_with_the_scripts_reason(monkeypatch, tmp_path):
    e = run_with(monkeypatch, tmp_path, 100, [
        "==> kabuild: start",
        "kabuild-build: error: SOURCE_DATE_EPOCH must be a decimal number of seconds, got 'x'",
        "==> kabuild: failed contract: SOURCE_DATE_EPOCH must be a decimal number of seconds, got 'x'",
    ])
    assert str(e).startswith("build1: the build container of x on local refused to start makepkg "
                             "(kabuild-build contract error, exit 100): SOURCE_DATE_EPOCH must be a decimal number "
                             "of seconds, got 'x'; kabuild and image kabuild/debian-x86_64:0123 disagree")
    assert "makepkg of x failed" not in str(e)


def test_no_package_is_named_as_such(monkeypatch, tmp_path):
    e = run_with(monkeypatch, tmp_path, 101, ["==> kabuild: collect", "==> kabuild: failed no package in /build/out"])
    assert str(e).startswith("build1: makepkg of x on local succeeded but wrote no package file (kabuild-build exit 101")


def test_a_makepkg_failure_stays_a_makepkg_failure(monkeypatch, tmp_path):
    e = run_with(monkeypatch, tmp_path, 4, ["==> ERROR: A failure occurred in build().", "==> kabuild: failed makepkg exit 4"])
    assert str(e).startswith("build1: makepkg of x failed on local (exit 4): ==> ERROR: A failure occurred in build().")


def test_a_makepkg_failure_shows_the_builds_own_last_lines_not_the_entry_scripts_markers(monkeypatch, tmp_path):
    # stdout and stderr interleave: the PKGBUILD's own words may sit above makepkg's ERROR lines
    e = run_with(monkeypatch, tmp_path, 4, [
        "==> Starting package()...", "==> ERROR: A failure occurred in package().", "    Aborting...",
        "kabuild-fixture: failing on purpose", "==> kabuild: collect", "==> kabuild: failed makepkg exit 4",
        "==> kabuild: exit 4",
    ])
    assert "kabuild-fixture: failing on purpose" in str(e)
    assert "==> kabuild:" not in str(e)


class _Refusing:
    """An engine whose test container fails the way ``error`` says."""

    def __init__(self, error: Exception):
        self.name, self.arch = "far", "x86_64"
        self.client = SimpleNamespace(containers=SimpleNamespace(run=self._run))
        self._error = error

    def _run(self, *_a, **_kw):
        raise self._error


def _emulation_error(error: Exception) -> str:
    from kabuild.build import images
    from kabuild.errors import ToolError

    info = SimpleNamespace(tag="kabuild/debian-aarch64:0123")
    with pytest.raises(ToolError) as excinfo:
        images.check_emulation(_Refusing(error), info, Arch.AARCH64)  # type: ignore[arg-type]
    return str(excinfo.value)


def test_an_exec_format_error_is_missing_emulation():
    import docker.errors

    msg = _emulation_error(docker.errors.APIError("500 Server Error: failed to create shim: OCI runtime create "
                                                  "failed: exec format error: unknown"))
    assert "node far is x86_64 and cannot run aarch64 containers" in msg
    assert "update-binfmts --enable qemu-aarch64" in msg


def test_an_engine_that_fails_otherwise_is_not_blamed_on_emulation():
    import docker.errors

    msg = _emulation_error(docker.errors.APIError("500 Server Error: Internal Server Error (\"failed to mount "
                                                  "overlay: device or resource busy\")"))
    assert "cannot run aarch64" not in msg and "binfmt" not in msg
    assert msg.startswith("node far: a test container of kabuild/debian-aarch64:0123 did not run: ")
    assert "device or resource busy" in msg
