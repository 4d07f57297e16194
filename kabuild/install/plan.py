"""What `kabuild install` will do: the plan (settings, lock, the verified package) and the read-only
look at the board (running release, installed versions, boot configuration, free space)."""

from __future__ import annotations

import os
import shlex
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from kabuild.config.install import Install
from kabuild.config.manifest import Manifest
from kabuild.errors import ConfigError, LockError, RefusalError
from kabuild.inputs.lock import read_for
from kabuild.install import bootloader
from kabuild.install import package as installpkg
from kabuild.install.board import Board

CRASH_ENV = "KABUILD_INSTALL_CRASH_AT"
CRASH_STEPS = ("after-lock", "after-backup", "after-upload", "after-fallback", "after-pacman", "after-boot-entry",
               "after-reboot", "after-heartbeat")
ROLLBACK_CRASH_STEPS = ("rollback-after-packages",)  # inside a rollback: the previous package is back, /boot not yet
Progress = Callable[[str], None]


@dataclass(frozen=True)
class Plan:
    host: str
    settings: Install
    packages: tuple[installpkg.Verified, ...]
    kernel: installpkg.KernelFiles | None  # None: no kernel in the set; no boot entry, no reboot
    backup_root: Path  # local: the backup itself, or the working copy of a remote backup
    backup_remote: str | None
    journal_path: Path

    @property
    def backup_where(self) -> str:
        return self.backup_remote.rstrip("/") if self.backup_remote else str(self.backup_root)

    @property
    def version(self) -> str:
        return self.packages[0].version

    def new_kernel(self) -> bootloader.NewKernel:
        """The new package's boot files as the boot entry names them."""
        k = self.kernel
        assert k is not None
        fdt = f"{k.fdtdir}/{self.settings.fdt}" if self.settings.fdt and k.fdtdir else None
        return bootloader.NewKernel(k.release, k.kernel, k.initrd, k.fdtdir, fdt, k.dtbs)

    def describe(self) -> list[str]:
        s = self.settings
        files = ", ".join(p.file.name for p in self.packages)
        if self.kernel is None:
            return [
                f"install {files} (signature verified: key {self.packages[0].fingerprint}) on {self.host} "
                f"({s.ssh} port {s.port}); it carries no kernel: no boot entry, no reboot",
                "1. connect over ssh; 2. check free space in /boot; 3. lock the board, back up (verified by hash) to "
                f"{self.backup_where}/{self.host}/<replaced version>/; 4. upload, pacman -U; "
                "5. check: ssh answers and pacman -Q shows the new version; 6. record in manifest.lock; "
                "on failure: put the board back as it was",
            ]
        return [
            f"install {files} (signature verified: key {self.packages[0].fingerprint}) on {self.host} "
            f"({s.ssh} port {s.port}), kernel release {self.kernel.release}",
            f"1. connect over ssh; 2. check free space in /boot (+{s.min_free_mb} MiB margin)",
            f"3. lock the board, back up /boot, the package database entries and the previous package to "
            f"{self.backup_where}/{self.host}/<replaced version>/ (verified by hash)",
            f"4. upload, keep the running kernel as {bootloader.FALLBACK_DIR}, pacman -U"
            + (f" (its hooks make the initramfs {self.kernel.initrd} from {self.kernel.preset})"
               if self.kernel.preset else ""),
            f"5. check that every file the new boot entries name is on the board (else put the board back and "
            f"stop); {bootloader.config_path(s.boot)}: new default entry {bootloader.NEW_LABEL!r} "
            f"({self._entry_files()}), previous kernel as {bootloader.FALLBACK_LABEL!r}",
            f"6. reboot ({s.reboot}); 7. heartbeat within {s.heartbeat_timeout}s: uname -r == {self.kernel.release}",
            "8. record the install in manifest.lock; on failure: roll back",
            f"if the board never answers: power-cycle hook {shlex.join(s.power_cycle)} (found, executable), then "
            f"the bootloader boots {bootloader.FALLBACK_LABEL!r}" if s.power_cycle else
            "if the board never answers: no power-cycle hook (install.power_cycle): kabuild stops with exit 5 and "
            "asks for the board to be power-cycled by hand",
        ]

    def _entry_files(self) -> str:
        new = self.new_kernel()
        parts = [f"KERNEL {new.kernel}"]
        if new.initrd:
            parts.append(f"INITRD {new.initrd}")
        if new.fdt:
            parts.append(f"FDT {new.fdt}")
        elif new.fdtdir:
            parts.append(f"FDTDIR {new.fdtdir}")
        return ", ".join(parts)


def install_dir(root: Path, manifest: Manifest) -> Path:
    return root / "build" / manifest.host / "install"


def plan(root: Path, manifest: Manifest, *, version: str | None, progress: Progress) -> Plan:
    """Everything checkable without the board: settings, lock, package and signature (exit 3 when bad)."""
    crash = os.environ.get(CRASH_ENV)
    if crash and crash not in CRASH_STEPS + ROLLBACK_CRASH_STEPS:
        raise ConfigError(f"{CRASH_ENV}={crash!r}: expected one of {', '.join(CRASH_STEPS + ROLLBACK_CRASH_STEPS)}")
    settings = manifest.install
    if settings is None:
        raise ConfigError(f"{manifest.host}: {manifest.display} has no install: section (ssh target, boot method)")
    bootloader.config_path(settings.boot)
    for key, path, why in (("known_hosts", settings.known_hosts, "ssh checks the board's host key against it"),
                           ("identity", settings.identity, "ssh logs in to the board with it")):
        if path is not None and not path.is_file():
            raise ConfigError(f"{manifest.display}: install.{key}: {path} "
                              f"{'is not a file' if path.exists() else 'does not exist'} ({why})")
    if read_for(root, manifest) is None:
        raise LockError(f"{manifest.host}: manifest.lock is missing; run `kabuild promote {manifest.host}` first")
    repo = installpkg.repository_dir(root, manifest)
    staging = install_dir(root, manifest) / "pkg"
    verified = []
    for name in settings.packages:
        chosen = installpkg.choose(repo, name, version)
        progress(f"verifying {chosen.name} with the repository key")
        verified.append(installpkg.verify(root, manifest, chosen, staging))
    kernels = [v.kernel for v in verified if v.kernel is not None]
    if len(kernels) > 1:
        raise RefusalError(f"{manifest.host}: install.packages ({', '.join(settings.packages)}) holds "
                           f"{len(kernels)} kernel packages; install one kernel at a time")
    if settings.fdt:
        k = kernels[0] if kernels else None
        if k is None or f"{k.fdtdir}/{settings.fdt}" not in k.dtbs:
            shipped = ", ".join(d.removeprefix(f"{k.fdtdir}/") for d in k.dtbs) if k and k.dtbs else "none"
            raise ConfigError(f"{manifest.host}: install.fdt is {settings.fdt}, which {verified[0].file.name} does "
                              f"not ship under /boot/dtbs/ (it ships: {shipped})")
    remote = settings.backup if settings.backup.startswith("ssh://") else None
    if remote:  # the verified working copy stays here; the backup is copied there and verified again
        backup_root = install_dir(root, manifest) / "backups"
    else:
        backup_root = Path(settings.backup) if settings.backup else root / "build" / "backups"
        backup_root = backup_root if backup_root.is_absolute() else root / backup_root
    return Plan(manifest.host, settings, tuple(verified), kernels[0] if kernels else None, backup_root, remote,
                install_dir(root, manifest) / "journal.yaml")


# --------------------------------------------------------------------------- looking at the board


@dataclass(frozen=True)
class Probe:
    release: str
    installed: dict[str, str | None]
    boot_conf: str
    new_conf: str
    fallback_files: tuple[str, ...]
    need: int
    available: int


def probe(board: Board, p: Plan, progress: Progress) -> Probe:
    s = p.settings
    conf_path = bootloader.config_path(s.boot)
    progress(f"connecting to {s.ssh} port {s.port}")
    names = " ".join(shlex.quote(v.name) for v in p.packages)
    # pacman -Q on a database it never initialised writes ALPM_DB_VERSION: look only where there is one
    out = board.out(f"uname -r; echo ---; for n in {names}; do if [ -e /var/lib/pacman/local/ALPM_DB_VERSION ]; "
                    f"then pacman -Q \"$n\" 2>/dev/null || echo \"$n -\"; else echo \"$n -\"; fi; done; "
                    f"echo ---; cat {shlex.quote(conf_path)}")
    release, installed_text, conf = (out.split("---\n", 2) + ["", ""])[:3]
    installed: dict[str, str | None] = {}
    for line in installed_text.splitlines():
        name, _, ver = line.partition(" ")
        installed[name] = None if ver in ("-", "") else ver
    conf = conf if out.count("---\n") >= 2 else ""
    if p.kernel is None:
        free = board.out("df -Pk /boot | awk 'NR==2 {print $4}'").split()
        available = int(free[-1]) * 1024 if free and free[-1].isdigit() else 0
        return Probe(release.strip(), installed, conf, "", (), s.min_free_mb * (1 << 20), available)
    if not conf.strip():
        raise RefusalError(f"{p.host}: {conf_path} is missing or empty on the board")
    new_conf = bootloader.with_new_kernel(conf, p.new_kernel(), f"{p.host}:{conf_path}")
    old = bootloader.previous_entry(bootloader.parse(conf), conf_path)
    files = old.files()
    quoted = " ".join(shlex.quote("/boot" + f) for f in files)
    # the initramfs the package's hook will make is estimated by the running one (same board, same preset)
    old_initrd = old.get("INITRD") if p.kernel.preset else None
    script = (f"echo fallback $(du -sbc {quoted} 2>/dev/null | tail -n 1 | cut -f1); "
              "echo free $(df -Pk /boot | awk 'NR==2 {print $4}')")
    if old_initrd:
        script += f"; echo initrd $(du -sb {shlex.quote('/boot' + old_initrd)} 2>/dev/null | cut -f1)"
    sizes: dict[str, int] = {}
    for line in board.out(script).splitlines():
        key, _, value = line.partition(" ")
        sizes[key] = int(value) if value.strip().isdigit() else 0
    initrd_bytes, fallback_bytes = sizes.get("initrd", 0), sizes.get("fallback", 0)
    available = sizes.get("free", 0) * 1024
    need = p.kernel.boot_bytes + initrd_bytes + fallback_bytes + s.min_free_mb * (1 << 20)
    progress(f"/boot: {available // 1024} KiB free, {need // 1024} KiB needed (new kernel files"
             + (f", the initramfs its hook makes (~{initrd_bytes // 1024} KiB, as the running one)" if old_initrd else "")
             + f", the fallback copy, {s.min_free_mb} MiB margin)")
    return Probe(release.strip(), installed, conf, new_conf, files, need, available)


def dry_run(root: Path, manifest: Manifest, p: Plan, progress: Progress) -> list[str]:
    board = Board(p.host, p.settings)
    seen = probe(board, p, progress)
    lines = p.describe()
    was = ", ".join(f"{n} {v or '(not installed)'}" for n, v in seen.installed.items())
    lines.append(f"the board runs {seen.release} ({was}); /boot has {seen.available // 1024} KiB free, "
                 f"needs {seen.need // 1024} KiB")
    lines.append("dry run: nothing was changed on the board or here")
    return lines
