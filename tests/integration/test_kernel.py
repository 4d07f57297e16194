"""A real Linux kernel through the whole chain (issue 8), on the real engines.

The kernel-demo host builds Linux 6.12.107 (Debian's orig tarball, fetched once into the
content-addressed source cache) with the shared linux-kabuild recipe, a real patch series
touching the tree and a small config (tinyconfig + fleet/kconfig/small.config), natively
on x86_64.  One promoted repository and one source cache serve the whole module.
"""

from __future__ import annotations

import json
import shutil
import subprocess
import tarfile
from pathlib import Path

import pytest
from itest import copy_real_repo, kabuild, leftovers
from publish_helpers import PacmanClient

pytestmark = [pytest.mark.docker, pytest.mark.slow, pytest.mark.kernel]

HOST = "kernel-demo"
NAIVE = "kernel-naive"
LONG = 3600


@pytest.fixture(scope="module")
def kroot(tmp_path_factory) -> Path:
    root = copy_real_repo(tmp_path_factory.mktemp("kernel"))
    fetched = kabuild(root, "fetch", HOST, timeout=LONG)  # once: the cache is content-addressed
    assert fetched.code == 0, fetched
    promoted = kabuild(root, "promote", HOST)
    assert promoted.code == 0 and "apply check: passed" in promoted.out, promoted
    return root


def _members(pkg: Path) -> dict[str, tarfile.TarInfo]:
    with subprocess.Popen(["zstd", "-dc", str(pkg)], stdout=subprocess.PIPE) as z:
        assert z.stdout is not None
        with tarfile.open(fileobj=z.stdout, mode="r|") as tf:
            return {m.name.removeprefix("./"): m for m in tf}


def test_kernel_reproduces_and_goes_through_the_whole_chain(kroot, tmp_path, engine, engine2):
    verify = kabuild(kroot, "verify", HOST)
    assert verify.code == 0, verify

    r = kabuild(kroot, "reproduce", HOST, "--json", timeout=LONG)
    assert r.code == 0, r
    data = json.loads(r.out)
    files = sorted(p["file"] for p in data["packages"])
    assert [f.split("-6.12.107")[0] for f in files] == ["linux-kernel-demo", "linux-kernel-demo-headers"], files
    for pkg in data["packages"]:
        assert pkg["reproducible"] is True and pkg["build1"]["sha256"] == pkg["build2"]["sha256"], pkg
    assert data["build_mode"]["mode"] == "native"
    # the control build used every CPU of its node, the experiment a different count
    control, experiment = data["variations"]["control"], data["variations"]["experiment"]
    assert control["cpus"] == engine.cpus and experiment["cpus"] != control["cpus"], data["variations"]

    # what the package holds: the boot image, the modules (the series' own module), the .config
    run_dir = kroot / "build" / HOST / "v6.12.107" / "runs" / "latest"
    kernel_pkg = next(run_dir.rglob("linux-kernel-demo-6.12.107-*-x86_64.pkg.tar.zst"))
    members = _members(kernel_pkg)
    release = next(n.split("/")[3] for n in members if n.startswith("usr/lib/modules/") and n.count("/") >= 4)
    assert release.startswith("6.12.107") and release.endswith("-kernel-demo"), release
    mod = f"usr/lib/modules/{release}"
    for name in (f"{mod}/vmlinuz", f"{mod}/config", f"{mod}/pkgbase", "boot/vmlinuz-linux-kernel-demo",
                 f"{mod}/kernel/drivers/misc/kabuild-demo.ko", f"{mod}/kernel/fs/binfmt_misc.ko"):
        assert name in members, (name, sorted(members)[:40])

    # the lock-pinned inputs, then a reference, then the gate publishes what was proven
    rec = kabuild(kroot, "reference", "record", HOST)
    assert rec.code == 0, rec
    again = kabuild(kroot, "reproduce", HOST, "--json", timeout=LONG)
    assert again.code == 0 and json.loads(again.out)["verdict"] == "accepted", again
    report = kabuild(kroot, "report", HOST, "--format", "json")
    assert report.code == 0, report
    assert sorted(p["file"] for p in json.loads(report.out)["packages"]) == files, report
    pub = kabuild(kroot, "publish", HOST, "--json")
    assert pub.code == 0, pub
    published = json.loads(pub.out)

    # a real pacman installs the signed packages; the headers' build link resolves once installed
    client = PacmanClient(tmp_path / "pacman", published["pacman_conf"], architecture="x86_64")
    try:
        client.trust(Path(published["key_file"]).read_bytes(), published["key"])
        res = client.pacman("-Syydd", "--noprogressbar", "linux-kernel-demo", "linux-kernel-demo-headers")
        assert res.ok, res.output
        src_link = client.root / "usr" / "src" / "linux-kernel-demo"
        assert src_link.is_symlink() and not Path(str(src_link.readlink())).is_absolute()
        assert (src_link / ".config").read_bytes() == (client.root / mod / "config").read_bytes()
        assert b"CONFIG_KABUILD_DEMO=m" in (client.root / mod / "config").read_bytes()
    finally:
        client.close()
    assert not leftovers(engine, HOST) and not leftovers(engine2, HOST)


def test_naive_kernel_recipe_without_kbuild_settings_is_caught(kroot, engine, engine2):
    # the same recipe with the KBUILD_BUILD_* lines left out, as a naive PKGBUILD would
    naive = kroot / "pkgs" / "linux-naive"
    naive.mkdir(parents=True)
    text = (kroot / "fleet/pkgbuilds/linux-kabuild/PKGBUILD").read_text()
    stripped = "".join(line for line in text.splitlines(keepends=True) if not line.startswith("export KBUILD_BUILD_"))
    assert stripped != text and "KBUILD_BUILD_TIMESTAMP=" not in stripped
    (naive / "PKGBUILD").write_text(stripped)
    manifest = (kroot / "fleet" / f"{HOST}.yaml").read_text()
    manifest = manifest.replace(f"host: {HOST}", f"host: {NAIVE}").replace(
        "name: linux-kernel-demo\n    pkgbuild: fleet/pkgbuilds/linux-kabuild",
        "name: linux-kernel-naive\n    pkgbuild: pkgs/linux-naive")
    manifest = manifest.replace(f"destination: build/{HOST}/repo", f"destination: build/{NAIVE}/repo")
    (kroot / "fleet" / f"{NAIVE}.yaml").write_text(manifest)
    shutil.copytree(kroot / "patches/board/kernel-demo", kroot / "patches/board/kernel-naive")
    (kroot / "fleet" / f"{NAIVE}.yaml").write_text(manifest.replace("series: kernel-demo", "series: kernel-naive"))
    assert kabuild(kroot, "promote", NAIVE).code == 0

    r = kabuild(kroot, "reproduce", NAIVE, "--json", timeout=LONG)
    assert r.code == 1, r
    data = json.loads(r.out)
    by_file = {p["file"].split("-6.12.107")[0]: p for p in data["packages"]}
    kernel = by_file["linux-kernel-naive"]
    assert kernel["reproducible"] is False and kernel["verdict"] == "not-reproducible"
    members = kernel["build1_vs_build2"]["members"]
    assert members["kind"] == "content", members
    # the culprits are named: the boot images carry the build's date, user and host
    assert any(m.endswith("/vmlinuz") for m in members["content"]), members
    assert "boot/vmlinuz-linux-kernel-naive" in members["content"], members
    headers = by_file["linux-kernel-naive-headers"]
    assert headers["reproducible"] is False
    hm = headers["build1_vs_build2"]["members"]["content"]
    assert any(m.endswith("/build/vmlinux") for m in hm) and any(m.endswith("generated/compile.h") for m in hm), hm
    assert "vmlinuz" in r.err or "vmlinuz" in (kroot / "build" / NAIVE / "v6.12.107" / "runs" / "latest" /
                                              "report.md").read_text()
    assert not leftovers(engine, NAIVE) and not leftovers(engine2, NAIVE)


def test_fresnels_own_recipe_cross_builds_small_on_this_machine(kroot, engine):
    """The aarch64 path without qemu, on the board's own manifest: `--cross` picks the node's
    image and the cross toolchain, `--kernel-config test` fresnel's small configuration."""
    import platform

    if platform.machine() != "x86_64":
        pytest.skip("the cross test builds aarch64 on an x86_64 node")
    refused = kabuild(kroot, "reproduce", "fresnel")
    assert refused.code == 2 and len(refused.err.strip().splitlines()) == 1, refused
    assert "--cross --kernel-config test" in refused.err and "Traceback" not in refused.err, refused
    assert kabuild(kroot, "promote", "fresnel").code == 0

    r = kabuild(kroot, "build", "fresnel", "--flavor", "debian", "--node", "local", "--cross",
                "--kernel-config", "test", timeout=LONG)
    assert r.code == 0, r
    assert "kabuild/debian-x86_64:" in r.err, r.err  # the node's image, not an aarch64 one under qemu
    out = kroot / "build" / "fresnel" / "v6.12.107" / "last-build"
    kernel_pkg = next(out.glob("linux-fresnel-6.12.107-*-aarch64.pkg.tar.zst"))
    assert next(out.glob("linux-fresnel-headers-6.12.107-*-aarch64.pkg.tar.zst"))
    members = _members(kernel_pkg)
    assert "boot/Image" in members
    with subprocess.Popen(["bsdtar", "-xOf", str(kernel_pkg), "boot/Image"], stdout=subprocess.PIPE) as p:
        assert p.stdout is not None
        head = p.stdout.read(64)
    assert head[0x38:0x3C] == b"ARM\x64", head  # the arm64 Image header magic
    config = next(n for n in members if n.startswith("usr/lib/modules/") and n.endswith("/config"))
    with subprocess.Popen(["bsdtar", "-xOf", str(kernel_pkg), config], stdout=subprocess.PIPE) as p:
        assert p.stdout is not None
        text = p.stdout.read().decode()
    assert "CONFIG_ARM64=y" in text and "CONFIG_MODULES=y" in text  # the test configuration, for arm64
    ko = next(n for n in members if n.endswith("/binfmt_misc.ko"))
    with subprocess.Popen(["bsdtar", "-xOf", str(kernel_pkg), ko], stdout=subprocess.PIPE) as p:
        assert p.stdout is not None
        elf = p.stdout.read(20)
    assert elf[:4] == b"\x7fELF" and int.from_bytes(elf[18:20], "little") == 183  # EM_AARCH64
    assert not leftovers(engine, "fresnel")
