"""Helpers shared by the unit tests: a known-good manifest and writers for manifests and series.

Tests take ``TESTBOARD`` (valid) and break it one line at a time with :func:`edit`;
:func:`line_of` finds the line a located error message must name.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from kabuild.config import manifest as fleet
from kabuild.errors import ExitCode, ManifestError

DEMO_TARBALL = "fleet/sources/kabuild-hello-1.0.tar.gz"
DEMO_TARBALL_SHA256 = "4b6efb132d7cced2508f372ce6aab1e6dc1b58a1c50923326839c5a5f565299e"
DEMO_TARBALL_B2SUM = (
    "b8cfd51bbaa08b976b93ba1bacf6659ecb9cd5af5bb0d4fdcfa95e403f1503db"
    "1a232146b4a7b351a5ba4f5b6d759bb5c31418b1ad361b6179b8bfe4be001f8a"
)

HOST = "testboard"

# A complete, valid manifest using the demo series, nodes and PKGBUILD.
# Every optional section is present so that each one can be broken.
TESTBOARD = f"""\
# a test board
schema: 1
host: testboard
arch: aarch64
description: a board for the unit tests
baseline:
  name: kabuild-hello
  version: "1.0"
  ref: v1.0
  source_date_epoch: 1767225600
  sources:
    - url: {DEMO_TARBALL}
      sha256: {DEMO_TARBALL_SHA256}
      b2sum: {DEMO_TARBALL_B2SUM}
includes:
  - scope: soc
    series: demo-soc
  - scope: driver
    series: demo-led
  - scope: board
    series: demo-board
apply_order: [soc, driver, board]
packages:
  - name: kabuild-hello
    pkgbuild: fleet/pkgbuilds/kabuild-hello
    patch: demo-v1.0-cumulative.patch
build:
  flavor: debian
  nodes:
    control: local
    experiment: local-2
    fallback: local
  timeout: 1800
publish:
  repository: kabuild-test
  key: throwaway
  destination: build/testboard/repo
  keep: 3
install:
  ssh: root@testboard
  boot: extlinux
"""


def edit(text: str, old: str, new: str) -> str:
    """Replace exactly one occurrence of ``old``; fail loudly if it is not there."""
    assert text.count(old) == 1, f"expected exactly one {old!r} in the text"
    return text.replace(old, new)


def line_of(text: str, needle: str) -> int:
    """1-based number of the first line of ``text`` that contains ``needle`` (``^x``: starts with x)."""
    for number, line in enumerate(text.splitlines(), 1):
        if line.startswith(needle[1:]) if needle.startswith("^") else needle in line:
            return number
    raise AssertionError(f"{needle!r} not found")


def drop(text: str, prefix: str) -> str:
    """Remove the one line starting with ``prefix`` and every more-indented line below it."""
    lines = text.splitlines(keepends=True)
    starts = [i for i, line in enumerate(lines) if line.startswith(prefix)]
    assert len(starts) == 1, f"expected exactly one line starting with {prefix!r}"
    start = end = starts[0]
    indent = len(prefix) - len(prefix.lstrip())
    end += 1
    while end < len(lines) and len(lines[end]) - len(lines[end].lstrip()) > indent and lines[end].strip():
        end += 1
    return "".join(lines[:start] + lines[end:])


def insert_after(text: str, anchor: str, new_lines: str) -> str:
    """Insert ``new_lines`` (ending in a newline) after the one line containing ``anchor``."""
    lines = text.splitlines(keepends=True)
    hits = [i for i, line in enumerate(lines) if anchor in line]
    assert len(hits) == 1, f"expected exactly one line containing {anchor!r}"
    return "".join(lines[: hits[0] + 1]) + new_lines + "".join(lines[hits[0] + 1:])


def write_manifest(root: Path, text: str = TESTBOARD, host: str = HOST) -> Path:
    path = root / "fleet" / f"{host}.yaml"
    path.write_text(text, encoding="utf-8")
    return path


def diff(tag: str, *, final_newline: bool = True, eol: str = "\n") -> str:
    """A minimal unified diff that changes one line of file ``tag`` (a patch read_series accepts)."""
    text = eol.join([f"--- a/{tag}", f"+++ b/{tag}", "@@ -1 +1 @@", "-old", f"+{tag}"])
    return text + (eol if final_newline else "")


def write_series(root: Path, scope: str, series: str, patches: dict[str, bytes | str],
                 series_text: str | None = None) -> Path:
    """Create patches/<scope>/<series>/ with the given patch files and a series listing them."""
    d = root / "patches" / scope / series
    d.mkdir(parents=True, exist_ok=True)
    for name, data in patches.items():
        (d / name).write_bytes(data.encode() if isinstance(data, str) else data)
    if series_text is None:
        series_text = "".join(f"{name}\n" for name in patches)
    (d / "series").write_text(series_text, encoding="utf-8")
    return d


def load(root: Path, host: str = HOST):
    """Load a manifest the way the CLI does (nodes first); returns the Manifest."""
    return fleet.load(root, host)[0]


def manifest_error(root: Path, text: str, host: str = HOST) -> str:
    """Write ``text`` as fleet/<host>.yaml, load it, and return the ManifestError message."""
    write_manifest(root, text, host)
    with pytest.raises(ManifestError) as excinfo:
        load(root, host)
    assert excinfo.value.exit_code == ExitCode.CONFIG == 2
    message = str(excinfo.value)
    assert "\n" not in message
    return message


DEMO_INCLUDES = [("soc", "demo-soc"), ("driver", "demo-led"), ("board", "demo-board")]


def with_includes(includes: list[tuple[str, str]], apply_order: list[str], text: str = TESTBOARD) -> str:
    """``text`` with its includes and apply_order replaced (flow style, one include per line)."""
    block = "".join(f"  - {{scope: {scope}, series: {series}}}\n" for scope, series in includes)
    text = drop(text, "includes:")
    text = drop(text, "apply_order:")
    new = f"includes:{' []' if not includes else ''}\n{block}apply_order: [{', '.join(apply_order)}]\n"
    return edit(text, "packages:\n", new + "packages:\n")


def fake_diffoscope(tmp_path: Path, monkeypatch, script: str) -> Path:
    """A stand-in diffoscope (a shell script running ``script``) that kabuild's tool lookup finds."""
    import stat

    from kabuild import tools

    exe = tmp_path / "bin" / "diffoscope"
    exe.parent.mkdir(exist_ok=True)
    exe.write_text("#!/bin/sh\n" + script)
    exe.chmod(exe.stat().st_mode | stat.S_IXUSR)
    real_find = tools.find
    monkeypatch.setattr(tools, "find", lambda name: str(exe) if name == "diffoscope" else real_find(name))
    return exe
