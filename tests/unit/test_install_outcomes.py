"""What `kabuild install` says when it ends: the summary line, and after an interrupt what is left.

Pure logic over the Outcome and the journal; the interrupts themselves run against the board stand-in
in tests/integration/test_install_interrupt.py.
"""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

import pytest

from kabuild.config.install import BootMethod, Install
from kabuild.errors import ExitCode
from kabuild.inputs.records import InstalledPackage
from kabuild.install import procedure
from kabuild.install.journal import Journal, Step, write_journal
from kabuild.install.plan import Plan

SHA = "ab" * 32


def pkg(name: str, version: str) -> InstalledPackage:
    return InstalledPackage(name, version, f"{name}-{version}-aarch64.pkg.tar.zst", SHA)


KERNEL = procedure.Outcome("fresnel", "6.12.107-2-fresnel", (pkg("linux-fresnel", "6.12.107-2"),), "6.12.107-1",
                           "6.12.107-1-fresnel", "build/backups/fresnel/6.12.107-1")


@pytest.mark.parametrize("outcome, says", [
    (KERNEL, "upgraded linux-fresnel 6.12.107-1 → 6.12.107-2 on fresnel: it runs 6.12.107-2-fresnel "
             "(was 6.12.107-1-fresnel); backup in build/backups/fresnel/6.12.107-1"),
    (replace(KERNEL, replaced=None, replaced_release="6.0.0-factory", backup="b/none"),
     "first install of linux-fresnel 6.12.107-2 on fresnel over the factory kernel 6.0.0-factory: it runs "
     "6.12.107-2-fresnel; backup in b/none"),
    (replace(KERNEL, replaced="6.12.107-3"), "downgraded linux-fresnel 6.12.107-3 → 6.12.107-2 on fresnel"),
    (replace(KERNEL, replaced="1:6.12.107-1"), "downgraded linux-fresnel 1:6.12.107-1 → 6.12.107-2"),
    (replace(KERNEL, replaced="6.12.107-2"), "reinstalled linux-fresnel 6.12.107-2 → 6.12.107-2"),
    (replace(KERNEL, packages=(pkg("linux-fresnel", "6.12.107-2"), pkg("linux-fresnel-headers", "6.12.107-2"))),
     "upgraded linux-fresnel 6.12.107-1 → 6.12.107-2 (with linux-fresnel-headers) on fresnel"),
    (procedure.Outcome("demo", "6.0.0-factory", (pkg("kabuild-hello", "1.0-2"),), "1.0-1", "6.0.0-factory", "b/1.0-1",
                       kernel=False), "upgraded kabuild-hello 1.0-1 → 1.0-2 on demo; backup in b/1.0-1"),
    (procedure.Outcome("demo", "6.0.0-factory", (pkg("kabuild-hello", "1.0-1"),), None, "6.0.0-factory", "b/none",
                       kernel=False), "first install of kabuild-hello 1.0-1 on demo; backup in b/none"),
    (replace(KERNEL, already=True), "fresnel already runs 6.12.107-2-fresnel (linux-fresnel-6.12.107-2-aarch64.pkg"),
])
def test_the_summary_reads_naturally(outcome, says):
    line = outcome.summary()
    assert line.startswith(says), line
    assert "\n" not in line


def plan(tmp_path: Path, *, kernel: bool) -> Plan:
    from kabuild.install.package import KernelFiles

    k = KernelFiles("6.1.1-kb1", "/Image", "", "", 1) if kernel else None
    return Plan("kb", Install(ssh="root@127.0.0.1", boot=BootMethod.EXTLINUX), (), k, tmp_path / "backups", None,
                tmp_path / "build" / "kb" / "install" / "journal.yaml")


def journal(step: Step) -> Journal:
    return Journal("20261122T011500Z-ab12cd34", "2026-11-22T01:15:00+00:00", step, (pkg("linux-kbboard", "6.1.1-1"),),
                   "6.1.1-kb1", (), "6.0.0-factory", "/srv/backups/kb/none", why="the board came back on 9.9.9")


@pytest.mark.parametrize("step, says", [
    (None, "kb: interrupted before anything was changed on the board"),
    (Step.INSTALLING, "kb: interrupted at step installing; the board is locked with the install unfinished: run "
                      "`kabuild install kb` again; it puts the board back as it was first (journal "
                      "build/kb/install/journal.yaml)"),
    (Step.REBOOTING, "kb: interrupted at step rebooting; the new kernel is on trial: run `kabuild install kb` again; "
                     "it waits for the board, then confirms the kernel or rolls it back"),
    (Step.ROLLING_BACK, "kb: interrupted at step rolling-back; run `kabuild install kb` again to finish the rollback"),
])
def test_an_interrupt_says_what_the_next_run_does(tmp_path, step, says):
    p = plan(tmp_path, kernel=True)
    if step is not None:
        p.journal_path.parent.mkdir(parents=True)
        write_journal(p.journal_path, journal(step))
    err = procedure._left_for_the_next_run(tmp_path, p)
    assert err.exit_code == ExitCode.INTERRUPTED == 130
    assert str(err).startswith(says), str(err)


@pytest.mark.parametrize("step, kernel, doing", [
    (Step.INSTALLING, True, "pacman -U"), (Step.INSTALLING, False, "pacman -U"),
    (Step.BACKING_UP, False, "the backup"), (Step.UPLOADED, True, "the copy of the running kernel"),
    (Step.INSTALLED, True, "the boot entry"), (Step.INSTALLED, False, "the version check"),
])
def test_the_interrupted_step_is_named_for_what_it_was_doing(tmp_path, step, kernel, doing):
    assert procedure._doing(step, plan(tmp_path, kernel=kernel)) == doing


@pytest.mark.parametrize("hook, says", [
    (("/usr/local/bin/plug", "fresnel", "cycle"), "if the board never answers: power-cycle hook /usr/local/bin/plug "
                                                  "fresnel cycle (found, executable), then the bootloader boots "
                                                  "'kabuild-fallback'"),
    ((), "if the board never answers: no power-cycle hook (install.power_cycle): kabuild stops with exit 5"),
])
def test_the_plan_names_the_power_cycle_hook(tmp_path, hook, says):
    from kabuild.install.package import KernelFiles, Verified

    p = plan(tmp_path, kernel=True)
    k = KernelFiles("6.1.1-kb1", "/Image", None, None, 1)
    verified = Verified("linux-kbboard", "6.1.1-1", tmp_path / "linux-kbboard-6.1.1-1-aarch64.pkg.tar.zst",
                        tmp_path / "x.sig", SHA, "A" * 40, k)
    p = replace(p, settings=replace(p.settings, power_cycle=hook), packages=(verified,))
    assert any(line.startswith(says) for line in p.describe()), p.describe()
