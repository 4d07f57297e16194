"""The manifest keys are declared once (kabuild.config.settings): the reader accepts exactly the declared
keys, takes its defaults from them, and the command-line overrides are the declared ones."""

from __future__ import annotations

from pathlib import Path

import click
import yaml

from kabuild.cli import main
from kabuild.config import settings
from kabuild.config.manifest import load_manifest
from kabuild.config.nodes import load_nodes
from kabuild.config.schema import Section

FULL = """\
schema: 1
host: kernel-demo
arch: aarch64
description: every key of the manifest table, with a value
baseline:
  name: linux
  version: 6.12.107
  ref: v6.12.107
  source_date_epoch: 1767225600
  sources:
    - url: http://deb.debian.org/debian/pool/main/l/linux/linux_6.12.107.orig.tar.xz
      sha256: efc76d3c78a5d65f42724118c437d11db1c9f6309a5f024ee9a8b1978fdc6919
      b2sum: 16b4078c2c15a139d210fc1e6794d17f7dd1ec5b8a7357656e5c37a20fb54e592b44aef5b90489fe3ae1da2915767af2fdb9d578f0b33c47eb31d7a2087e58a1
      mirrors: [https://mirror.example.invalid/linux_6.12.107.orig.tar.xz]
includes:
  - {scope: board, series: kernel-demo}
apply_order: [soc, driver, board, module, subsystem, arch]
packages:
  - name: linux-kernel-demo
    pkgbuild: fleet/pkgbuilds/linux-kabuild
    patch: kernel-demo.patch
kernel:
  config: tinyconfig
  fragments: [fleet/kconfig/small.config]
  dtbs: [arm/foundation-v8.dtb]
  test:
    config: tinyconfig
    fragments: [fleet/kconfig/small.config]
build:
  flavor: debian
  timeout: 3600
  cross: false
  single_engine: allowed
  nodes: {control: local, experiment: local-2, fallback: local}
publish:
  repository: kabuild-kernel-demo
  key: throwaway
  destination: build/kernel-demo/repo
  keep: 2
install:
  ssh: root@127.0.0.1
  boot: extlinux
  port: 22022
  known_hosts: build/k/known_hosts
  identity: build/k/id_ed25519
  connect_timeout: 5
  heartbeat_timeout: 60
  backup: build/backups
  power_cycle: [/bin/true]
  reboot: reboot
  min_free_mb: 4
  packages: [linux-kernel-demo]
  fdt: arm/foundation-v8.dtb
"""


def _paths(data, prefix=""):
    """Every key path of a YAML document, lists folded to []."""
    if isinstance(data, dict):
        for k, v in data.items():
            path = f"{prefix}.{k}" if prefix else k
            yield path
            yield from _paths(v, path)
    elif isinstance(data, list):
        for v in data:
            yield from _paths(v, prefix + "[]")


def _load_recording(repo: Path, text: str, monkeypatch) -> set[str]:
    (repo / "fleet" / "kernel-demo.yaml").write_text(text)
    nodes = load_nodes(repo)
    read: set[str] = set()
    real_get = Section._get

    def recording(self, key, required):
        read.add(self.key_path(key))
        return real_get(self, key, required)

    monkeypatch.setattr(Section, "_get", recording)
    load_manifest(repo, "kernel-demo", nodes)
    return read


def test_a_manifest_with_every_declared_key_loads(repo, monkeypatch):
    """Every declared key is accepted (the reader's unknown-key check would refuse it otherwise)."""
    written = {p.replace("kernel.test.", "kernel.") for p in _paths(yaml.safe_load(FULL))}
    assert written == set(settings.BY_KEY), set(settings.BY_KEY) ^ written
    _load_recording(repo, FULL, monkeypatch)


def test_the_reader_reads_only_declared_keys(repo, monkeypatch):
    import re

    read = _load_recording(repo, FULL, monkeypatch)
    folded = {re.sub(r"\[\d+\]", "[]", p) for p in read}
    folded = {p.replace("kernel.test.", "kernel.") for p in folded}
    assert folded <= set(settings.BY_KEY), folded - set(settings.BY_KEY)
    assert len(folded) > 40, "the recording saw the reader at work"


def test_defaults_come_from_the_table(repo):
    minimal = "\n".join(line for line in FULL.splitlines()
                        if not line.startswith(("  timeout:", "  keep:", "  port:", "  connect_timeout:",
                                                "  heartbeat_timeout:", "  min_free_mb:", "  reboot:")))
    (repo / "fleet" / "kernel-demo.yaml").write_text(minimal)
    m = load_manifest(repo, "kernel-demo", load_nodes(repo))
    by = settings.BY_KEY
    assert m.build.timeout == by["build.timeout"].default
    assert m.publish is not None and m.publish.keep == by["publish.keep"].default
    assert m.install is not None
    for key in ("port", "connect_timeout", "heartbeat_timeout", "min_free_mb", "reboot"):
        assert getattr(m.install, key) == by[f"install.{key}"].default, key


def test_the_command_line_overrides_are_the_declared_ones():
    declared = {s.override for s in settings.SETTINGS if s.override}
    for verb in ("build", "reproduce"):
        cmd = main.commands[verb]
        options = {o for p in cmd.params if isinstance(p, click.Option) for o in p.opts}
        assert declared <= options, (verb, declared - options)
    not_overrides = {"--json", "--vary", "--find-culprit", "--rebuild", "--whole-diffoscope", "--help"}
    build_options = {o for p in main.commands["build"].params if isinstance(p, click.Option) for o in p.opts}
    assert build_options - not_overrides == declared
