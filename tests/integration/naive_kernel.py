"""A repository with the naive kernel host: the shared kernel recipe without its KBUILD_BUILD_* lines,
as a PKGBUILD written without them would be (for test_kernel_naive.py and tests/bench/explain_naive_kernel.py).
"""

from __future__ import annotations

import shutil
from pathlib import Path

from itest import copy_real_repo, kabuild

HOST = "kernel-demo"
NAIVE = "kernel-naive"
LONG = 3600


def naive_repo(base: Path) -> Path:
    """A private copy of the repository with the kernel-naive host, fetched and promoted."""
    root = copy_real_repo(base)
    fetched = kabuild(root, "fetch", HOST, timeout=LONG)  # once per machine: the cache is content-addressed
    assert fetched.code == 0, fetched
    naive = root / "pkgs" / "linux-naive"
    shutil.copytree(root / "fleet/pkgbuilds/linux-kabuild", naive)  # the recipe with its preset and hooks
    text = (naive / "PKGBUILD").read_text()
    stripped = "".join(line for line in text.splitlines(keepends=True) if not line.startswith("export KBUILD_BUILD_"))
    assert stripped != text and "KBUILD_BUILD_TIMESTAMP=" not in stripped
    (naive / "PKGBUILD").write_text(stripped)
    manifest = (root / "fleet" / f"{HOST}.yaml").read_text()
    for old, new in ((f"host: {HOST}", f"host: {NAIVE}"),
                     ("name: linux-kernel-demo\n    pkgbuild: fleet/pkgbuilds/linux-kabuild",
                      "name: linux-kernel-naive\n    pkgbuild: pkgs/linux-naive"),
                     (f"destination: build/{HOST}/repo", f"destination: build/{NAIVE}/repo"),
                     ("series: kernel-demo", "series: kernel-naive")):
        assert old in manifest, old
        manifest = manifest.replace(old, new)
    (root / "fleet" / f"{NAIVE}.yaml").write_text(manifest)
    shutil.copytree(root / "patches/board/kernel-demo", root / "patches/board/kernel-naive")
    promoted = kabuild(root, "promote", NAIVE)
    assert promoted.code == 0, promoted
    return root
