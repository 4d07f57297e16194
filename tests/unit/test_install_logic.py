"""`kabuild install`, the pure parts: the extlinux transform, the install record in the lock, the
journal, and the manifest's install: keys."""

from __future__ import annotations

import pytest
from kbhelpers import TESTBOARD, edit, load, manifest_error, write_manifest
from test_lock import promote_and_lock

from kabuild.config.install import BootMethod
from kabuild.config.yamlio import load_yaml, write_yaml
from kabuild.errors import ConfigError, DocumentError, ExitCode, RefusalError
from kabuild.inputs.lock import read_lock, with_install
from kabuild.inputs.records import InstalledPackage, InstallRecord
from kabuild.install import bootloader
from kabuild.install.bootloader import FALLBACK_LABEL, NEW_LABEL, NewKernel, parse, with_new_kernel
from kabuild.install.journal import Journal, Step, read_journal, write_journal

FACTORY = """\
# vendor config
DEFAULT arch
TIMEOUT 30
MENU TITLE boot menu

LABEL arch
    MENU LABEL Arch Linux ARM
    KERNEL /Image
    INITRD /initramfs-linux.img
    FDT /dtbs/rockchip/rk3399-board.dtb
    APPEND root=/dev/mmcblk0p2 rw console=ttyS2,1500000

LABEL rescue
    LINUX /rescue/Image
    APPEND root=/dev/mmcblk0p3
"""
NEW = NewKernel(release="6.12.107-1-fresnel", kernel="/Image", initrd="/initramfs-linux.img", fdtdir="/dtbs",
                dtbs=("/dtbs/rockchip/rk3399-board.dtb", "/dtbs/rockchip/rk3399-other.dtb"))


def test_new_kernel_is_the_default_and_the_previous_one_the_fallback():
    conf = parse(with_new_kernel(FACTORY, NEW))
    assert conf.default == NEW_LABEL
    assert [e.label for e in conf.entries] == [NEW_LABEL, FALLBACK_LABEL, "rescue"]
    new, fallback, rescue = conf.entries
    assert new.get("KERNEL") == "/Image" and new.get("INITRD") == "/initramfs-linux.img"
    assert new.get("FDT") == "/dtbs/rockchip/rk3399-board.dtb"  # the board's device tree, from the new /dtbs
    assert new.get("APPEND") == "root=/dev/mmcblk0p2 rw console=ttyS2,1500000"
    assert fallback.files() == ("/kabuild-fallback/Image", "/kabuild-fallback/initramfs-linux.img",
                                "/kabuild-fallback/dtbs/rockchip/rk3399-board.dtb")
    assert fallback.get("APPEND") == new.get("APPEND")
    assert rescue == parse(FACTORY).entry("rescue")
    assert "TIMEOUT 30" in with_new_kernel(FACTORY, NEW) and "# vendor config" in with_new_kernel(FACTORY, NEW)
    assert "\n\n\n" not in with_new_kernel(FACTORY, NEW)  # one blank line between the head and each entry


def test_the_fallback_entry_points_at_the_files_the_previous_entry_booted():
    old = parse(FACTORY).entry("arch")
    assert old is not None
    assert old.files() == ("/Image", "/initramfs-linux.img", "/dtbs/rockchip/rk3399-board.dtb")


def test_a_second_install_replaces_the_old_fallback_with_the_previous_kabuild_entry():
    once = with_new_kernel(FACTORY, NEW)
    twice = parse(with_new_kernel(once, NewKernel("6.12.108-1", "/Image", "/initramfs-linux.img", "/dtbs")))
    assert [e.label for e in twice.entries] == [NEW_LABEL, FALLBACK_LABEL, "rescue"]
    fallback = twice.entry(FALLBACK_LABEL)
    assert fallback is not None and fallback.get("KERNEL") == "/kabuild-fallback/Image"
    assert "Linux 6.12.107-1-fresnel" not in str(twice.entry(NEW_LABEL))


def test_initrd_given_on_the_append_line_follows_the_new_package():
    text = "DEFAULT a\nLABEL a\n  KERNEL /vmlinuz-old\n  APPEND initrd=/initrd-old.img root=/dev/sda2\n"
    conf = parse(with_new_kernel(text, NewKernel("6.1", "/vmlinuz-linux", "/initramfs-linux.img", None)))
    new, fallback = conf.entries
    assert new.get("APPEND") == "initrd=/initramfs-linux.img root=/dev/sda2"
    assert new.get("KERNEL") == "/vmlinuz-linux"
    assert fallback.get("APPEND") == "initrd=/kabuild-fallback/initrd-old.img root=/dev/sda2"
    assert fallback.files() == ("/kabuild-fallback/vmlinuz-old", "/kabuild-fallback/initrd-old.img")


def test_missing_lines_are_added_for_what_the_new_package_carries():
    text = "DEFAULT a\nLABEL a\n  LINUX /zImage\n"
    new = parse(with_new_kernel(text, NEW)).entries[0]
    assert new.get("LINUX") == "/Image" and new.get("INITRD") == "/initramfs-linux.img" and new.get("FDTDIR") == "/dtbs"


def test_without_a_default_entry_or_while_on_the_fallback_the_transform_refuses():
    with pytest.raises(RefusalError, match="no default boot entry"):
        with_new_kernel("DEFAULT nothere\nLABEL a\n  KERNEL /Image\n", NEW)
    with pytest.raises(RefusalError, match="no KERNEL line"):
        with_new_kernel("DEFAULT a\nLABEL a\n  APPEND x\n", NEW)
    on_fallback = with_new_kernel(FACTORY, NEW).replace(f"DEFAULT {NEW_LABEL}", f"DEFAULT {FALLBACK_LABEL}")
    with pytest.raises(RefusalError, match="fallback entry"):
        with_new_kernel(on_fallback, NEW)


def test_an_fdt_the_new_package_does_not_ship_becomes_fdtdir_at_its_device_trees():
    stale = FACTORY.replace("FDT /dtbs/rockchip/rk3399-board.dtb", "FDT /vendor/board.dtb")
    new = parse(with_new_kernel(stale, NEW)).entry(NEW_LABEL)
    assert new is not None and new.get("FDT") is None and new.get("FDTDIR") == "/dtbs"
    assert new.paths() == (("/dtbs", True), ("/Image", False), ("/initramfs-linux.img", False))


def test_the_manifests_fdt_replaces_every_device_tree_line():
    text = FACTORY.replace("    FDT /dtbs/rockchip/rk3399-board.dtb\n", "    FDTDIR /dtbs-factory\n")
    chosen = NewKernel("6.1", "/Image", "/initramfs-linux.img", "/dtbs", fdt="/dtbs/rockchip/rk3399-other.dtb",
                       dtbs=NEW.dtbs)
    new = parse(with_new_kernel(text, chosen)).entry(NEW_LABEL)
    assert new is not None and new.get("FDT") == "/dtbs/rockchip/rk3399-other.dtb" and new.get("FDTDIR") is None
    plain = parse(with_new_kernel("DEFAULT a\nLABEL a\n  KERNEL /Image\n", chosen)).entry(NEW_LABEL)
    assert plain is not None and plain.get("FDT") == "/dtbs/rockchip/rk3399-other.dtb"


def test_a_package_without_device_trees_keeps_the_boards_own_lines():
    text = FACTORY.replace("    FDT /dtbs/rockchip/rk3399-board.dtb\n", "    FDTDIR /dtbs-factory\n")
    new = parse(with_new_kernel(text, NewKernel("6.1", "/Image", "/initramfs-linux.img"))).entry(NEW_LABEL)
    assert new is not None and new.get("FDTDIR") == "/dtbs-factory"
    assert ("/dtbs-factory", True) in new.paths()  # checked on the board before the reboot


@pytest.mark.parametrize("method", [m for m in BootMethod if m is not BootMethod.EXTLINUX])
def test_boot_methods_not_implemented_are_refused_as_configuration(method):
    with pytest.raises(ConfigError, match="not implemented yet") as e:
        bootloader.config_path(method)
    assert e.value.exit_code == ExitCode.CONFIG


@pytest.mark.parametrize("method", [m for m in BootMethod if m is not BootMethod.EXTLINUX])
def test_boot_methods_not_implemented_are_refused_when_the_manifest_is_read(repo, method):
    message = manifest_error(repo, edit(TESTBOARD, "  boot: extlinux", f"  boot: {method}"))
    assert f"install.boot: {method} is not implemented yet (implemented: extlinux)" in message, message
    assert message.startswith("fleet/testboard.yaml:")


def test_install_fdt_is_a_device_tree_path(repo):
    message = manifest_error(repo, edit(TESTBOARD, "  boot: extlinux", "  boot: extlinux\n  fdt: ../board.dtb"))
    assert "install.fdt" in message and "device tree" in message, message
    write_manifest(repo, edit(TESTBOARD, "  boot: extlinux", "  boot: extlinux\n  fdt: rockchip/rk3399-a.dtb"))
    install = load(repo).install
    assert install is not None and install.fdt == "rockchip/rk3399-a.dtb"


# --------------------------------------------------------------------------- the mkinitcpio preset

PRESET = """\
# mkinitcpio preset file for the 'linux-fresnel' package
ALL_config="/etc/mkinitcpio.conf"
ALL_kver="6.12.107-1-fresnel"
PRESETS=('default')   # comment
default_image="/boot/initramfs-linux-fresnel.img"
#fallback_image="/boot/initramfs-linux-fresnel-fallback.img"
"""


def test_the_preset_names_the_image_the_boot_entry_uses():
    from kabuild.install.package import preset_image
    assert preset_image(PRESET, "p") == "/boot/initramfs-linux-fresnel.img"
    first = PRESET.replace("('default')", "('fallback' 'default')") + "fallback_image='/boot/fb.img'\n"
    assert preset_image(first, "p") == "/boot/fb.img"


@pytest.mark.parametrize("change, words", [
    (("PRESETS=('default')   # comment\n", ""), "names no PRESETS"),
    (('default_image="/boot/initramfs-linux-fresnel.img"\n', ""), "names no default_image"),
    (("/boot/initramfs-linux-fresnel.img", "/boot/initramfs-${ALL_kver}.img"), "not a plain path under /boot"),
    (("/boot/initramfs-linux-fresnel.img", "/efi/initramfs.img"), "not a plain path under /boot"),
    (("/boot/initramfs-linux-fresnel.img", "/boot/../initramfs.img"), "not a plain path under /boot"),
    (('default_image="/boot/', 'default_image="/boot/unterminated'), "not a plain quoted value"),
])
def test_a_preset_kabuild_cannot_read_is_refused(change, words):
    from kabuild.install.package import preset_image
    text = PRESET.replace(*change)
    if words == "not a plain quoted value":
        text = text.replace('.img"', ".img")
    with pytest.raises(RefusalError, match=words.replace("$", r"\$")):
        preset_image(text, "linux-fresnel.pkg.tar.zst: etc/mkinitcpio.d/linux-fresnel.preset")


def test_trial_marker_names_the_fallback_for_the_firmware():
    marker = dict(line.split("=", 1) for line in bootloader.trial_marker().splitlines())
    assert marker == {"label": NEW_LABEL, "altlabel": FALLBACK_LABEL, "bootlimit": "1", "bootcount": "0"}


# --------------------------------------------------------------------------- the lock's install: block


RECORD = InstallRecord(
    installed_at="2026-11-30T12:00:00+00:00", board="root@fresnel", release="6.12.107-1-fresnel",
    packages=(InstalledPackage("linux-fresnel", "6.12.107-1", "linux-fresnel-6.12.107-1-aarch64.pkg.tar.zst",
                               "a" * 64),),
    key="0123456789ABCDEF0123456789ABCDEF01234567", replaced="6.12.106-1", replaced_release="6.12.106-1-fresnel",
    backup="/srv/backups/fresnel/6.12.106-1")


@pytest.fixture
def installed(repo):
    write_manifest(repo)
    lock = promote_and_lock(repo)
    with_install(lock, RECORD)
    return lock.path


def test_install_record_round_trips_through_the_lock(installed):
    lock = read_lock(installed)
    assert lock is not None and lock.install == RECORD
    assert load_yaml(installed)["install"] == RECORD.to_dict()


def test_promote_again_keeps_the_install_record(repo, installed):
    lock = promote_and_lock(repo)
    assert lock.install == RECORD


@pytest.mark.parametrize("damage, key", [
    (lambda d: d.pop("release"), "install.release"),
    (lambda d: d.update(key="not-a-fingerprint"), "install.key"),
    (lambda d: d.update(packages=[]), "install.packages"),
    (lambda d: d["packages"][0].update(sha256="zz"), "install.packages[0].sha256"),
    (lambda d: d.update(surprise=1), "install.surprise"),
    (lambda d: d.update(packages="linux"), "install.packages"),
])
def test_a_damaged_install_block_is_one_located_refusal(installed, damage, key):
    data = load_yaml(installed)
    damage(data["install"])
    write_yaml(installed, data)
    with pytest.raises(DocumentError) as e:
        read_lock(installed, "build/testboard/v1.0/manifest.lock")
    assert e.value.exit_code == ExitCode.REFUSED
    assert str(e.value).startswith("build/testboard/v1.0/manifest.lock")
    assert f"{key}:" in str(e.value)


def test_the_install_block_must_be_a_mapping(installed):
    data = load_yaml(installed)
    data["install"] = "yes"
    write_yaml(installed, data)
    with pytest.raises(DocumentError, match="install: expected a mapping"):
        read_lock(installed, "lock")


# --------------------------------------------------------------------------- the journal


def test_journal_round_trip_and_damage(tmp_path):
    j = Journal(id="20261130T120000Z-abcd", started="2026-11-30T12:00:00+00:00", step=Step.INSTALLED,
                packages=RECORD.packages, release=RECORD.release, replaced=RECORD.packages,
                replaced_release="6.12.106-1-fresnel", backup="/b")
    path = tmp_path / "journal.yaml"
    write_journal(path, j)
    assert read_journal(path, "journal.yaml") == j
    assert read_journal(tmp_path / "none.yaml", "none.yaml") is None
    data = load_yaml(path)
    data["step"] = "dancing"
    write_yaml(path, data)
    with pytest.raises(DocumentError, match="journal.yaml:.*step: expected one of locking"):
        read_journal(path, "journal.yaml")


def test_steps_are_ordered_so_recovery_knows_undo_from_finish():
    assert Step.BACKED_UP.order < Step.INSTALLING.order < Step.REBOOTING.order < Step.ROLLING_BACK.order


# --------------------------------------------------------------------------- manifest keys


def test_install_defaults(repo):
    write_manifest(repo)
    ins = load(repo).install
    assert ins is not None
    assert (ins.port, ins.connect_timeout, ins.heartbeat_timeout, ins.min_free_mb) == (22, 10, 300, 8)
    assert ins.packages == (load(repo).packages[0].name,) and ins.power_cycle == () and ins.known_hosts is None


def test_install_keys_are_read(repo):
    plug = repo / "fleet" / "plug"
    plug.write_text("#!/bin/sh\n")
    plug.chmod(0o755)
    text = edit(TESTBOARD, "  boot: extlinux", "  boot: extlinux\n  port: 2222\n  known_hosts: fleet/known_hosts\n"
                "  heartbeat_timeout: 60\n  power_cycle: [fleet/plug, fresnel, cycle]\n  backup: /srv/b\n")
    write_manifest(repo, text)
    ins = load(repo).install
    assert ins is not None
    assert ins.port == 2222 and ins.heartbeat_timeout == 60 and ins.backup == "/srv/b"
    assert ins.known_hosts == repo / "fleet" / "known_hosts"
    assert ins.power_cycle == (str(plug), "fresnel", "cycle")


@pytest.mark.parametrize("line, message", [
    ("  heartbeat_timeout: 0", "install.heartbeat_timeout: expected seconds >= 5, got 0"),
    ("  heartbeat_timeout: 100000", "install.heartbeat_timeout: expected seconds <= 3600, got 100000"),
    ("  port: 70000", "install.port: expected a TCP port <= 65535"),
    ("  power_cycle: reboot-it", "install.power_cycle: expected a list"),
    ("  power_cycle: [plug, 3]", "install.power_cycle: expected a command as a list of non-empty strings"),
    ("  packages: [linux-other]", "install.packages: 'linux-other' is not one of the manifest's packages"),
    ("  backup: rsync://hertz/backups", "install.backup: expected a local directory or ssh://"),
    ("  backup: ssh://hertz", "install.backup: expected a local directory or ssh://"),
    ("  backup: ssh://hertz:99999/b", "install.backup: expected a local directory or ssh://"),
    ("  connect_timeout: 0", "install.connect_timeout: expected seconds >= 1"),
])
def test_implausible_install_values_are_refused(repo, line, message):
    text = edit(TESTBOARD, "  boot: extlinux", "  boot: extlinux\n" + line)
    assert message in manifest_error(repo, text)


def test_remote_backup_is_an_ssh_url(repo):
    text = edit(TESTBOARD, "  boot: extlinux", "  boot: extlinux\n  backup: ssh://backup@hertz:2222/sparfuxdata/kernel-agent-backups")
    write_manifest(repo, text)
    ins = load(repo).install
    assert ins is not None and ins.backup == "ssh://backup@hertz:2222/sparfuxdata/kernel-agent-backups"


def test_ssh_target_cannot_smuggle_options(repo):
    text = edit(TESTBOARD, "  ssh: root@testboard", "  ssh: -oProxyCommand=evil")
    assert "install.ssh: expected an ssh target" in manifest_error(repo, text)


# --------------------------------------------------------------------------- the verb, before any board


@pytest.fixture
def cli(repo, capsys):
    from kabuild.cli import run_cli

    def call(*args: str) -> tuple[int, str]:
        capsys.readouterr()
        code = run_cli(["--root", str(repo), *args])
        return code, capsys.readouterr().err
    return call


def test_install_help_names_the_flags(cli):
    code, _ = cli("install", "--help")
    assert code == 0


@pytest.mark.parametrize("text, code, message", [
    (TESTBOARD.split("install:")[0], 2, "has no install: section"),
    (edit(TESTBOARD, "  boot: extlinux", "  boot: grub"), 2, "install.boot: grub is not implemented yet"),
    (TESTBOARD, 3, "manifest.lock is missing; run `kabuild promote testboard` first"),
])
def test_install_refuses_before_touching_anything(repo, cli, text, code, message):
    write_manifest(repo, text)
    got, err = cli("install", "testboard", "--yes")
    assert got == code, err
    assert message in err and "Traceback" not in err and len(err.strip().splitlines()) == 1


def test_install_without_a_published_repository_is_refused(repo, cli):
    write_manifest(repo)
    promote_and_lock(repo)
    got, err = cli("install", "testboard", "--dry-run")
    assert got == 3, err
    assert "run `kabuild publish testboard` first" in err


def test_pacmans_hook_lines_are_kept_and_mkinitcpios_chatter_is_not():
    from kabuild.install.bootpaths import hook_lines
    out = ("loading packages...\ninstalling linux-fresnel...\n:: Running post-transaction hooks...\n"
           "(1/2) Updating linux-fresnel module dependencies...\n(2/2) Updating linux-fresnel initcpios...\n"
           "==> Building image from preset: linux-fresnel: 'default'\n  -> Running build hook: [base]\n"
           "==> Image generation successful\n")
    assert hook_lines(out + "error: command failed to execute correctly\n") == [
        "(1/2) Updating linux-fresnel module dependencies...", "(2/2) Updating linux-fresnel initcpios...",
        "==> Image generation successful", "error: command failed to execute correctly"]
    assert hook_lines("loading packages...\n(1/1) checking keys in keyring\n") == []  # not a hook
