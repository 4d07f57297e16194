"""The one subprocess helper: a timeout stops the whole child process group, SIGTERM first."""

from __future__ import annotations

import os
import time

import pytest

from kabuild import process as run_mod
from kabuild.errors import ToolError
from kabuild.process import run


def test_a_timeout_lets_the_tool_clean_up_and_stops_its_children(tmp_path):
    # A shell script whose child (like mmdebstrap under mkrootfs.sh) has something to undo on SIGTERM.
    cleaned, pidfile = tmp_path / "cleaned", tmp_path / "child.pid"
    script = tmp_path / "tool.sh"
    script.write_text(f"""#!/bin/bash
bash -c 'trap "touch {cleaned}; exit 1" TERM; echo $$ > {pidfile}; while :; do sleep 0.1; done' &
wait
""")
    with pytest.raises(ToolError, match="timed out"):
        run(["bash", str(script)], timeout=1)
    assert cleaned.exists(), "the child got SIGTERM and could clean up"
    child = int(pidfile.read_text())
    for _ in range(50):
        if not os.path.exists(f"/proc/{child}"):
            break
        time.sleep(0.1)
    assert not os.path.exists(f"/proc/{child}"), "no child is left running"


def test_a_tool_that_ignores_sigterm_is_killed_after_the_grace(tmp_path, monkeypatch):
    monkeypatch.setattr(run_mod, "TERM_GRACE", 0.5)
    monkeypatch.setattr(run_mod._stop, "__defaults__", (0.5,))
    with pytest.raises(ToolError, match="timed out"):
        run(["bash", "-c", "trap '' TERM; while :; do sleep 0.1; done"], timeout=0.5)


def test_a_timeout_is_required():
    with pytest.raises(TypeError):
        run(["true"])  # type: ignore[call-arg]


def test_output_and_failures():
    assert run(["echo", "hi"], timeout=10).stdout == "hi\n"
    with pytest.raises(ToolError, match=r"failed \(exit 3\): boom"):
        run(["bash", "-c", "echo boom >&2; exit 3"], timeout=10)
    assert run(["cat"], input=b"x", timeout=10).stdout == "x"
    with pytest.raises(ToolError, match="not found"):
        run(["/nonexistent/tool"], timeout=10)
