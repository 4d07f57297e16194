"""The one registry of external tools (kabuild.tools): complete, installed by host-setup.sh, and read by
the pre-flight check, which names a missing tool before any container starts."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
from test_bad_inputs import kabuild, template, world  # noqa: F401  (fixtures)

from kabuild import tools
from kabuild.errors import ExitCode, ToolError

REPO_ROOT = Path(__file__).resolve().parents[2]


def _used_tools() -> set[str]:
    names = set()
    for path in (REPO_ROOT / "kabuild").rglob("*.py"):
        names |= set(re.findall(r'tools\.find\("([\w-]+)"\)', path.read_text()))
    return names


def _host_packages() -> set[str]:
    text = (REPO_ROOT / "containers" / "host-setup.sh").read_text()
    block = text.split("HOST_PACKAGES=(", 1)[1].split("\n)", 1)[0]
    return {line.split("#")[0].strip() for line in block.splitlines() if line.split("#")[0].strip()}


def test_every_tool_kabuild_runs_is_declared_and_every_declared_one_is_used():
    used = _used_tools()
    assert used, "the scan found no tools.find call: the test would pass vacuously"
    assert used <= set(tools.TOOLS), used - set(tools.TOOLS)
    assert set(tools.TOOLS) <= used, set(tools.TOOLS) - used


def test_host_setup_installs_the_package_of_every_tool():
    assert {t.package for t in tools.TOOLS.values()} <= _host_packages()


def test_require_names_every_missing_tool_with_its_package(tmp_path, monkeypatch):
    monkeypatch.setenv("PATH", str(tmp_path))
    monkeypatch.delenv("VIRTUAL_ENV", raising=False)
    monkeypatch.setattr(tools, "SYSTEM_PATH", str(tmp_path))
    for name in ("zstd", "bsdtar", "bash", "env", "setpriv", "unshare"):  # present: only diffoscope is missing
        exe = tmp_path / name
        exe.write_text("#!/bin/sh\n")
        exe.chmod(0o755)
    with pytest.raises(ToolError) as e:
        tools.require("reproduce")
    assert e.value.exit_code == ExitCode.ENVIRONMENT
    assert "diffoscope (Debian package diffoscope-minimal" in str(e.value)
    assert "zstd (" not in str(e.value) and "apt-get install diffoscope-minimal" in str(e.value)


def test_a_missing_tool_is_named_by_the_preflight_before_any_container(world, capsys, tmp_path, monkeypatch):  # noqa: F811
    """`reproduce --rebuild` would connect to the engine next (the world fixture turns that into a
    test failure, exit 70): the pre-flight check stops it first, naming diffoscope and zstd."""
    empty = tmp_path / "no-tools"
    empty.mkdir()
    monkeypatch.setenv("PATH", str(empty))
    monkeypatch.delenv("VIRTUAL_ENV", raising=False)
    monkeypatch.setattr(tools, "SYSTEM_PATH", str(empty))
    code, _out, err = kabuild(world.root, capsys, "reproduce", "demo", "--rebuild")
    assert code == ExitCode.ENVIRONMENT, err
    assert len(err.splitlines()) == 1 and "Traceback" not in err
    assert "missing tool(s) for reproduce" in err and "diffoscope-minimal" in err and "zstd (Debian package zstd" in err
