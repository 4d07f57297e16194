"""The one subprocess helper: a timeout stops the whole child process group, SIGTERM first."""

from __future__ import annotations

import os
import time

import pytest

from kabuild import process as run_mod
from kabuild.errors import ToolError, ToolFailed
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


def _gone(pid: int) -> bool:
    for _ in range(50):
        if not os.path.exists(f"/proc/{pid}") or open(f"/proc/{pid}/stat").read().split()[2] == "Z":
            return True
        time.sleep(0.1)
    return False


def test_a_tool_that_ignores_sigterm_is_killed_with_its_whole_group_after_the_grace(tmp_path, monkeypatch):
    """SIGTERM first (both processes see it and ignore it), then SIGKILL to the whole process group:
    the tool's own child, which ignores SIGTERM too, is gone as well."""
    monkeypatch.setattr(run_mod, "TERM_GRACE", 0.5)
    pids, termed = tmp_path / "pids", tmp_path / "termed"
    script = f"""trap 'echo parent >> {termed}' TERM
bash -c 'trap "echo child >> {termed}" TERM; echo $$ >> {pids}; while :; do sleep 0.1; done' &
echo $$ >> {pids}
while :; do sleep 0.1; done"""
    with pytest.raises(ToolFailed) as e:
        run(["bash", "-c", script], timeout=1)
    assert e.value.timed_out and e.value.returncode is None and e.value.timeout == 1
    assert sorted(termed.read_text().split()) == ["child", "parent"], "SIGTERM reached the whole group first"
    for pid in map(int, pids.read_text().split()):
        assert _gone(pid), f"process {pid} of the tool's group is still running after the grace"


def test_a_failed_tool_keeps_its_command_exit_code_and_stderr_tail():
    with pytest.raises(ToolFailed) as e:
        run(["bash", "-c", "for i in $(seq 1 30); do echo line$i >&2; done; exit 7"], timeout=10)
    assert e.value.argv == ("bash", "-c", "for i in $(seq 1 30); do echo line$i >&2; done; exit 7")
    assert e.value.returncode == 7 and not e.value.timed_out
    assert e.value.stderr_tail == tuple(f"line{i}" for i in range(11, 31))
    assert str(e.value) == "bash failed (exit 7): line30"


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


def test_ctrl_c_that_a_worker_thread_takes_still_interrupts_the_main_threads_wait():
    """The kernel may hand SIGINT to any thread: the main thread waiting for the builds must still
    raise KeyboardInterrupt promptly (an untimed wait slept until the work ended)."""
    import signal
    import threading
    from concurrent.futures import ThreadPoolExecutor

    from kabuild.process import wait_futures

    release = threading.Event()
    worker: list[int] = []

    def work():
        worker.append(threading.get_ident())
        return release.wait(20)  # stands for a build: ends only when released

    with ThreadPoolExecutor(max_workers=1) as pool:
        future = pool.submit(work)
        while not worker:
            time.sleep(0.01)
        threading.Timer(0.2, signal.pthread_kill, (worker[0], signal.SIGINT)).start()
        backstop = threading.Timer(10, release.set)  # without the fix: the wait returns, no interrupt
        backstop.start()
        try:
            with pytest.raises(KeyboardInterrupt):
                wait_futures([future])
            assert not release.is_set(), "interrupted only when the work ended"
        finally:
            backstop.cancel()
            release.set()

