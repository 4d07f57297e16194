"""A real Linux kernel through the whole chain, on the real engines: ONE parallel reproduce.

fresnel's own recipe (the shared linux-kabuild PKGBUILD) and its own test configuration, cross-built
for aarch64 on this x86_64 machine (`--cross --kernel-config test`: tinyconfig + small.config and one
device tree), from Debian's Linux 6.12.107 tarball (fetched once into the content-addressed source
cache).  The copy of fresnel's manifest differs from fleet/fresnel.yaml only in what this machine
needs: the debian flavor, the two local engines (so the two builds run at the same time), a publish
section, and the kernel-demo patch series standing in for the board's own (fresnel's includes are
empty until its series are imported), so a real patch is applied and its module built.

That one reproduce carries the chain (reference, an answer from the recorded run, publish, a real
pacman) and the board: the published package is installed by `kabuild install` on the aarch64 board
stand-in, whose pacman runs the package's hooks.
"""

from __future__ import annotations

import json
import platform
import re
import subprocess
import tarfile
import uuid
from pathlib import Path

import pytest
from boardsim import BoardSim, free_port
from itest import copy_real_repo, kabuild, leftovers
from publish_helpers import PacmanClient

from kabuild.install.bootloader import parse

pytestmark = [pytest.mark.docker, pytest.mark.slow, pytest.mark.kernel]

HOST = "fresnel"
DTB = "arm/foundation-v8.dtb"  # fleet/fresnel.yaml's kernel.test.dtbs
FLAGS = ("--flavor", "debian", "--cross", "--kernel-config", "test")
LONG = 3600


def _members(pkg: Path) -> dict[str, tarfile.TarInfo]:
    with subprocess.Popen(["zstd", "-dc", str(pkg)], stdout=subprocess.PIPE) as z:
        assert z.stdout is not None
        with tarfile.open(fileobj=z.stdout, mode="r|") as tf:
            return {m.name.removeprefix("./"): m for m in tf}


def _read(pkg: Path, member: str, size: int = -1) -> bytes:
    # stderr: bsdtar complains about the pipe closed after ``size`` bytes
    with subprocess.Popen(["bsdtar", "-xOf", str(pkg), member], stdout=subprocess.PIPE,
                          stderr=subprocess.DEVNULL) as p:
        assert p.stdout is not None
        data = p.stdout.read(size)
        p.stdout.close()
    return data


@pytest.fixture(scope="module")
def kroot(tmp_path_factory) -> Path:
    if platform.machine() != "x86_64":
        pytest.skip("the cross build makes aarch64 packages on an x86_64 node")
    root = copy_real_repo(tmp_path_factory.mktemp("kernel"))
    # as written, fresnel cannot be built here: one line names what is missing and the flags to use
    refused = kabuild(root, "reproduce", HOST)
    assert refused.code == 2 and len(refused.err.strip().splitlines()) == 1, refused
    assert "--cross --kernel-config test" in refused.err and "Traceback" not in refused.err, refused
    manifest = root / "fleet" / f"{HOST}.yaml"
    text = manifest.read_text()
    for old, new in (("includes: []", "includes:\n  - {scope: board, series: kernel-demo}"),
                     ("    control: boltzmann\n    experiment: fermi\n", "    control: local\n    experiment: local-2\n")):
        assert old in text, old
        text = text.replace(old, new)
    manifest.write_text(text + f"publish:\n  repository: kabuild-{HOST}\n  key: throwaway\n"
                               f"  destination: build/{HOST}/repo\n  keep: 3\n")
    fetched = kabuild(root, "fetch", HOST, timeout=LONG)  # once: the cache is content-addressed
    assert fetched.code == 0, fetched
    promoted = kabuild(root, "promote", HOST)
    assert promoted.code == 0 and "apply check: passed" in promoted.out, promoted
    yield root
    # the throwaway signing key's home: no gpg-agent outlives the module
    subprocess.run(["gpgconf", "--homedir", str(root / "build" / HOST / "gnupg"), "--kill", "all"],
                   capture_output=True, check=False)


@pytest.fixture(scope="module")
def reproduced(kroot, engine, engine2):
    r = kabuild(kroot, "reproduce", HOST, *FLAGS, "--json", timeout=LONG)
    assert r.code == 0, r
    assert not leftovers(engine, HOST) and not leftovers(engine2, HOST)
    run_dir = kroot / "build" / HOST / "v6.12.107" / "runs" / "latest"
    kernel_pkg = next(run_dir.rglob(f"build1/linux-{HOST}-6.12.107-*-aarch64.pkg.tar.zst"))
    return json.loads(r.out), kernel_pkg


def test_fresnels_recipe_cross_builds_a_bootable_package_twice_byte_identical(reproduced, engine):
    data, pkg = reproduced
    files = sorted(p["file"] for p in data["packages"])
    assert [f.split("-6.12.107")[0] for f in files] == [f"linux-{HOST}", f"linux-{HOST}-headers"], files
    assert all(f.endswith("-aarch64.pkg.tar.zst") for f in files), files
    for p in data["packages"]:
        assert p["reproducible"] is True and p["build1"]["sha256"] == p["build2"]["sha256"], p
    assert data["build_mode"]["mode"] == "cross"
    # the control build used every CPU of its node, the experiment a different count
    control, experiment = data["variations"]["control"], data["variations"]["experiment"]
    assert control["cpus"] == engine.cpus and experiment["cpus"] != control["cpus"], data["variations"]

    members = _members(pkg)
    release = next(n.split("/")[3] for n in members if n.startswith("usr/lib/modules/") and n.count("/") >= 4)
    assert release == f"6.12.107-1-{HOST}", release
    mod = f"usr/lib/modules/{release}"
    # the kernel: an arm64 Image where Arch Linux ARM boards boot from it, and nothing for mkinitcpio's own hook
    assert _read(pkg, "boot/Image", 64)[0x38:0x3C] == b"ARM\x64"
    assert f"{mod}/vmlinuz" not in members
    # exactly the listed device tree, with overlay symbols (DTC_FLAGS=-@)
    assert sorted(n for n in members if n.startswith("boot/dtbs/") and n.endswith(".dtb")) == [f"boot/dtbs/{DTB}"]
    assert _read(pkg, f"boot/dtbs/{DTB}", 4) == b"\xd0\x0d\xfe\xed" and b"__symbols__" in _read(pkg, f"boot/dtbs/{DTB}")
    # the preset (a backup file) and the hooks that make and remove the initramfs
    preset = _read(pkg, f"etc/mkinitcpio.d/linux-{HOST}.preset").decode()
    assert f'ALL_kver="{release}"' in preset and f'default_image="/boot/initramfs-linux-{HOST}.img"' in preset
    hooks = {n.rsplit("/", 1)[1]: _read(pkg, n).decode() for n in members if n.startswith("usr/share/libalpm/hooks/")}
    assert sorted(hooks) == [f"60-linux-{HOST}-remove.hook", f"60-linux-{HOST}.hook", f"90-linux-{HOST}.hook"]
    assert f"Exec = /usr/bin/mkinitcpio -p linux-{HOST}" in hooks[f"90-linux-{HOST}.hook"]
    assert f"Exec = /usr/bin/depmod {release}" in hooks[f"60-linux-{HOST}.hook"]
    pkginfo = _read(pkg, ".PKGINFO").decode()
    assert f"backup = etc/mkinitcpio.d/linux-{HOST}.preset" in pkginfo
    assert {"coreutils", "kmod", "mkinitcpio"} <= set(re.findall(r"^depend = (\S+)", pkginfo, re.M)), pkginfo
    # the modules, for aarch64: an upstream one and the series' own, and their index (depmod) in the package
    for name in ("kernel/fs/binfmt_misc.ko", "kernel/drivers/misc/kabuild-demo.ko", "modules.dep", "modules.dep.bin"):
        assert f"{mod}/{name}" in members, name
    elf = _read(pkg, f"{mod}/kernel/fs/binfmt_misc.ko", 20)
    assert elf[:4] == b"\x7fELF" and int.from_bytes(elf[18:20], "little") == 183  # EM_AARCH64
    config = _read(pkg, f"{mod}/config").decode()
    assert "CONFIG_ARM64=y" in config and "CONFIG_MODULES=y" in config and "CONFIG_KABUILD_DEMO=m" in config


@pytest.fixture(scope="module")
def published(kroot, reproduced):
    rec = kabuild(kroot, "reference", "record", HOST)
    assert rec.code == 0, rec
    again = kabuild(kroot, "reproduce", HOST, *FLAGS, "--json", timeout=LONG)
    assert again.code == 0, again
    assert "answering from its builds without building" in again.err, again.err
    report = json.loads(again.out)
    assert report["verdict"] == "accepted" and report["answered_from"], report
    pub = kabuild(kroot, "publish", HOST, "--json")
    assert pub.code == 0, pub
    return json.loads(pub.out)


def test_the_chain_publishes_what_was_proven_and_pacman_installs_it(kroot, reproduced, published, tmp_path):
    data, _ = reproduced
    report = kabuild(kroot, "report", HOST, "--format", "json")
    assert report.code == 0, report
    assert sorted(p["file"] for p in json.loads(report.out)["packages"]) == sorted(p["file"] for p in data["packages"])
    # a real pacman installs the signed packages; the headers' build link resolves once installed
    client = PacmanClient(tmp_path / "pacman", published["pacman_conf"], architecture="aarch64")
    try:
        client.trust(Path(published["key_file"]).read_bytes(), published["key"])
        res = client.pacman("-Syydd", "--noprogressbar", f"linux-{HOST}", f"linux-{HOST}-headers")
        assert res.ok, res.output
        mod = client.root / "usr" / "lib" / "modules" / f"6.12.107-1-{HOST}"
        src_link = client.root / "usr" / "src" / f"linux-{HOST}"
        assert src_link.is_symlink() and not Path(str(src_link.readlink())).is_absolute()
        assert (src_link / ".config").read_bytes() == (mod / "config").read_bytes()
    finally:
        client.close()


@pytest.mark.install
def test_the_published_kernel_boots_on_an_aarch64_board_stand_in(kroot, published, engine, tmp_path):
    """pacman -U on the board runs the package's hooks (depmod, the mkinitcpio stand-in); the entry kabuild
    writes names the Image, the initramfs the hook made and the device trees; the board's firmware boots it."""
    board = BoardSim(engine.client, f"kbfresnel-{uuid.uuid4().hex[:8]}", tmp_path / "board", free_port())
    try:
        board.factory_reset(arch="aarch64")
        manifest = kroot / "fleet" / f"{HOST}.yaml"
        text = manifest.read_text()
        own = f"install:\n  ssh: {HOST}\n  boot: extlinux\n"
        assert own in text
        manifest.write_text(text.replace(own, board.install_block()))
        r = kabuild(kroot, "install", HOST, "--yes", timeout=600)
        assert r.code == 0, r
        release = f"6.12.107-1-{HOST}"
        assert board.release() == release  # the firmware read it from the real Image's banner
        for hook in (f"Updating linux-{HOST} module dependencies...", f"Updating linux-{HOST} initcpios..."):
            assert re.search(rf"pacman: \(\d/\d\) {re.escape(hook)}", r.err), (hook, r.err)
        conf = (board.boot / "extlinux" / "extlinux.conf").read_text()
        entry = parse(conf).entry("kabuild")
        assert entry is not None, conf
        initrd = f"/initramfs-linux-{HOST}.img"
        assert (entry.get("KERNEL"), entry.get("INITRD"), entry.get("FDTDIR")) == ("/Image", initrd, "/dtbs"), conf
        assert (board.boot / "dtbs" / DTB).is_file()
        made = (board.boot / initrd.lstrip("/")).read_text()
        assert f"kver={release}" in made and "module=./kernel/drivers/misc/kabuild-demo.ko" in made, made
        assert board.exec(f"test -s /usr/lib/modules/{release}/modules.dep")[0] == 0
        print(f"\n--- /boot/extlinux/extlinux.conf on the board after `kabuild install {HOST}`\n{conf}")
    finally:
        board.close()
