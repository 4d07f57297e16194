"""What ssh says on stderr becomes kabuild's one line, saying what to do (pure logic; the real sshd
cases are in tests/integration/test_remote_nodes.py)."""

from __future__ import annotations

from pathlib import Path

import pytest

from kabuild.build.transport import ssh_reason
from kabuild.config.nodes import SSH, Node, NodeKind


def _node(port: int | None = 2222, known: str | None = "/etc/kabuild/known_hosts") -> Node:
    ssh = SSH("boltzmann", "builder", port, None, Path(known) if known else None)
    return Node("boltzmann", "ssh://builder@boltzmann" + (f":{port}" if port else ""), NodeKind.SSH, ssh=ssh,
                connect_timeout=7)


@pytest.mark.parametrize("stderr, says", [
    ("No ED25519 host key is known for [boltzmann]:2222 and you have requested strict checking.\n"
     "Host key verification failed.\n",
     "the host key of [boltzmann]:2222 is not in /etc/kabuild/known_hosts (ssh never accepts an unknown key here); "
     "check the node's key fingerprint, then add it: ssh-keyscan -p 2222 boltzmann >> /etc/kabuild/known_hosts"),
    ("@@@@@@@\n@    WARNING: REMOTE HOST IDENTIFICATION HAS CHANGED!     @\n@@@@@@@\nHost key verification failed.\n",
     "the host key of boltzmann:2222 is not the one in /etc/kabuild/known_hosts (it changed"),
    ("ssh: connect to host boltzmann port 2222: Connection refused\n",
     "connection refused by boltzmann:2222 (no sshd listening on that port?)"),
    ("Connection timed out during banner exchange\nConnection to UNKNOWN port 65535 timed out\n",
     "ssh to boltzmann:2222 timed out after 7s (connect_timeout"),
    ("builder@boltzmann: Permission denied (publickey).\n",
     "permission denied: builder@boltzmann:2222 did not accept the key"),
    ("ssh: Could not resolve hostname boltzmann: Name or service not known\n", "unknown host name boltzmann"),
    ("bash: line 1: docker: command not found\n", "the docker CLI is not installed on boltzmann:2222"),
    ("Cannot connect to the Docker daemon at unix:///var/run/docker.sock. Is the docker daemon running?\n",
     "no Docker engine answers on boltzmann:2222 (ssh works, dockerd does not)"),
    ("Connection to boltzmann closed by remote host.\n", "the ssh connection to boltzmann:2222 was closed"),
    ("something else entirely\nand its last line\n", "and its last line"),
])
def test_ssh_stderr_becomes_one_line_that_says_what_to_do(stderr, says):
    line = ssh_reason(_node(), stderr)
    assert line is not None and says in line and "\n" not in line


def test_no_port_in_the_url_means_no_port_in_the_advice():
    line = ssh_reason(_node(port=None, known=None), "Host key verification failed.\n")
    assert line is not None and "ssh-keyscan boltzmann >> ~/.ssh/known_hosts" in line


def test_silence_is_not_a_reason():
    assert ssh_reason(_node(), "  \n") is None


def test_builds_from_different_image_ids_are_refused():
    """The comparison itself (the real engines always agree after shipping by ID; test_remote_nodes proves
    that): two engines whose tag names different images refuse the run, exit 3, one line."""
    from types import SimpleNamespace

    from kabuild.build.images import ImageInfo
    from kabuild.errors import RefusalError
    from kabuild.reproduce.pair import Pair, same_image

    def engine(name: str, image_id: str):
        images = SimpleNamespace(get=lambda tag: SimpleNamespace(id=image_id))
        return SimpleNamespace(name=name, client=SimpleNamespace(images=images))

    a, b = "sha256:" + "a" * 64, "sha256:" + "b" * 64
    info = ImageInfo("kabuild/debian-aarch64:0123456789abcdef", a, "c" * 64, "debian", "aarch64", ())
    ctx = SimpleNamespace(package=SimpleNamespace(name="kabuild-hello"))

    def pair(id1: str, id2: str) -> Pair:
        sel = lambda e: SimpleNamespace(engine=e)  # noqa: E731
        return Pair(sel(engine("local", id1)), sel(engine("boltzmann", id2)), [])

    same_image(ctx, info, pair(a, a))  # the same image: nothing to say
    with pytest.raises(RefusalError) as e:
        same_image(ctx, info, pair(a, b))
    assert e.value.exit_code == 3 and "\n" not in str(e.value)
    assert "would use different images (local: sha256:aaaaaaaaaaaa, boltzmann: sha256:bbbbbbbbbbbb)" in str(e.value)
