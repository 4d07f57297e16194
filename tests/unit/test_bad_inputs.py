"""The bad-input table: every case is one damaged input and one verb, run in-process.

Each case asserts the documented exit code, exactly one line on stderr naming the file (and
the line where the file has lines), and no traceback.  The inputs are what people write
(manifests, nodes, series, flags) and damaged copies of every document kabuild writes
(manifest.lock with its ``build:`` block, report.json, reference.yaml), made valid by the
real writers first (:mod:`kbworld`) and then broken.  No Docker: every verb here refuses
before it would need an engine.
"""

from __future__ import annotations

import json
import re
import shutil
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import kbworld
import pytest
import yaml
from kbhelpers import diff, line_of
from kbworld import LOCK, REFERENCE, REPORT, World, copy_world, make_world

from kabuild.cli import run_cli
from kabuild.compare import acceptance
from kabuild.config import manifest as fleet
from kabuild.config.yamlio import dump_yaml
from kabuild.inputs.promotion import promote_host

pytestmark = pytest.mark.skipif(shutil.which("patch") is None, reason="needs GNU patch on PATH (promote)")

MANIFEST = "fleet/demo.yaml"
NODES = "fleet/nodes.yaml"
SERIES = "patches/soc/demo-soc/series"
SOC_PATCH = "patches/soc/demo-soc/0001-hello-name-the-soc.patch"


@dataclass(frozen=True)
class Case:
    id: str
    damage: Callable[[Path], None]
    argv: tuple[str, ...]
    code: int
    expect: str  # a regex the one error line must match (from its start)
    progress: int = 0  # "kabuild: ..." progress lines the verb prints before it finds the damage


# --------------------------------------------------------------------------- damaging files


def write_text(rel: str, text: str | bytes) -> Callable[[Path], None]:
    def damage(root: Path) -> None:
        path = root / rel
        path.write_bytes(text if isinstance(text, bytes) else text.encode("utf-8"))
    return damage


def both(*damages: Callable[[Path], None]) -> Callable[[Path], None]:
    def damage(root: Path) -> None:
        for d in damages:
            d(root)
    return damage


def yaml_edit(rel: str, change: Callable[[Any], Any]) -> Callable[[Path], None]:
    """Load a YAML document kabuild wrote, change it, write it back the way kabuild writes YAML."""
    def damage(root: Path) -> None:
        path = root / rel
        data = yaml.safe_load(path.read_text())
        out = change(data)
        path.write_text(dump_yaml(data if out is None else out))
    return damage


def json_edit(rel: str, change: Callable[[Any], Any]) -> Callable[[Path], None]:
    def damage(root: Path) -> None:
        path = root / rel
        data = json.loads(path.read_text())
        out = change(data)
        path.write_text(json.dumps(data if out is None else out, indent=2))
    return damage


def setitem(path: str, value: Any) -> Callable[[Any], None]:
    """Set the dotted ``path`` (``packages.0.build1``) in a loaded document."""
    def change(data: Any) -> None:
        *parents, last = path.split(".")
        for p in parents:
            data = data[int(p)] if isinstance(data, list) else data[p]
        if isinstance(data, list):
            data[int(last)] = value
        else:
            data[last] = value
    return change


def delitem(path: str) -> Callable[[Any], None]:
    def change(data: Any) -> None:
        *parents, last = path.split(".")
        for p in parents:
            data = data[int(p)] if isinstance(data, list) else data[p]
        del data[int(last) if isinstance(data, list) else last]
    return change


def promote_demo(root: Path) -> None:
    """What a user does after editing the manifest (promote does not look at PKGBUILD directories)."""
    promote_host(root, fleet.load(root, "demo")[0])


def esc(text: str) -> str:
    return re.escape(text)


# --------------------------------------------------------------------------- manifests

DEMO = (kbworld.REPO_ROOT / MANIFEST).read_text()

# (id, old text, new text, key named, what the message says; the line named is the first line of new)
MANIFEST_CASES = [
    ("version-float", 'version: "1.0"', "version: 1.10", "baseline.version", r'.*quote it: "1\.10"'),
    ("version-octal", 'version: "1.0"', "version: 010", "baseline.version", r'.*quote it: "010"'),
    ("version-sexagesimal", 'version: "1.0"', "version: 1:20", "baseline.version", r'.*quote it: "1:20"'),
    ("version-underscore", 'version: "1.0"', "version: 1_000", "baseline.version", r'.*quote it: "1_000"'),
    ("version-exponent", 'version: "1.0"', "version: 1e3", "baseline.version", r'.*quote it: "1e3"'),
    ("version-hex", 'version: "1.0"', "version: 0x10", "baseline.version", r'.*quote it: "0x10"'),
    ("version-leading-dot", 'version: "1.0"', "version: .5", "baseline.version", r'.*quote it: "\.5"'),
    ("version-date", 'version: "1.0"', "version: 2026-01-01", "baseline.version", r'.*quote it: "2026-01-01"'),
    ("ref-float", "ref: v1.0", "ref: 6.10", "baseline.ref", r'.*quote it: "6\.10"'),
    ("sde-1970", "source_date_epoch: 1767225600", "source_date_epoch: 86400", "baseline.source_date_epoch",
     r"86400 is before 1980-01-01"),
    ("sde-future", "source_date_epoch: 1767225600", "source_date_epoch: 4102444800", "baseline.source_date_epoch",
     r"4102444800 \(2100-01-01\) is in the future"),
    ("sde-now", "source_date_epoch: 1767225600", "source_date_epoch: now", "baseline.source_date_epoch",
     r"expected a fixed integer"),
    ("sde-empty", "source_date_epoch: 1767225600", "source_date_epoch:", "baseline.source_date_epoch",
     r"is required but empty"),
    ("ref-empty", "ref: v1.0", "ref:", "baseline.ref", r"is required but empty"),
    ("name-empty-string", "name: kabuild-hello\n  version", 'name: ""\n  version', "baseline.name",
     r"expected a package-style name, got an empty string"),
    ("timeout-zero", "timeout: 1800", "timeout: 0", "build.timeout", r"expected seconds >= 1"),
    ("timeout-sexagesimal", "timeout: 1800", "timeout: 30:00", "build.timeout",
     r"got 30:00, which YAML reads as 1800 \(write plain decimal digits\)"),
    ("sde-octal", "source_date_epoch: 1767225600", "source_date_epoch: 01767225600", "baseline.source_date_epoch",
     r"got 01767225600, which YAML reads as 266152832 \(write plain decimal digits\)"),
    ("keep-hex", "keep: 3", "keep: 0x3", "publish.keep", r"got 0x3, which YAML reads as 3 \(write plain decimal digits\)"),
    ("timeout-eight-days", "timeout: 1800", "timeout: 691200", "build.timeout", r"expected seconds <= 604800"),
    ("url-http-no-host", "url: fleet/sources/kabuild-hello-1.0.tar.gz", "url: http:///kabuild-hello-1.0.tar.gz",
     "baseline.sources[0].url", r".*has no host"),
    ("url-https-no-file", "url: fleet/sources/kabuild-hello-1.0.tar.gz", "url: https://example.org/",
     "baseline.sources[0].url", r".*names no file after the host"),
    ("url-file-with-host", "url: fleet/sources/kabuild-hello-1.0.tar.gz", "url: file://mirror/x.tar.gz",
     "baseline.sources[0].url", r".*a file URL names a local path"),
    ("url-bad-ipv6", "url: fleet/sources/kabuild-hello-1.0.tar.gz", "url: http://[::1/x.tar.gz",
     "baseline.sources[0].url", r"not a valid URL"),
    ("url-bad-port", "url: fleet/sources/kabuild-hello-1.0.tar.gz", "url: http://example.org:http/x.tar.gz",
     "baseline.sources[0].url", r"not a valid URL"),
    ("url-directory", "url: fleet/sources/kabuild-hello-1.0.tar.gz", "url: fleet/sources/",
     "baseline.sources[0].url", r".*names no file"),
    ("source-twice", "includes:\n", "    - url: https://example.org/x/kabuild-hello-1.0.tar.gz\nincludes:\n",
     "baseline.sources[1].url", r"file name 'kabuild-hello-1\.0\.tar\.gz' is already used by sources\[0\]"),
    ("mirror-no-host", "      sha256: 4b6e", "      mirrors: ['https://']\n      sha256: 4b6e",
     "baseline.sources[0].mirrors", r"item 0: 'https://' has no host"),
    ("mirror-item-at-its-line", "      sha256: 4b6e",
     "      mirrors:\n        - https://mirror.example.org/kabuild-hello-1.0.tar.gz\n        - ftp://mirror.example.org/x\n"
     "      sha256: 4b6e", "baseline.sources[0].mirrors", r"item 1: expected an http, https or file URL", 2),
    ("apply-order-item-at-its-line", "apply_order: [soc, driver, board, module, subsystem, arch]",
     "apply_order:\n  - soc\n  - driver\n  - bored", "apply_order", r"item 2: expected one of", 3),
    ("destination-ssh-no-host", "destination: build/demo/repo", "destination: ssh:///srv/repo",
     "publish.destination", r".*has no host"),
    ("destination-ssh-no-path", "destination: build/demo/repo", "destination: ssh://repo.example.org",
     "publish.destination", r".*has no absolute repository path"),
    ("destination-ftp", "destination: build/demo/repo", "destination: ftp://repo.example.org/x",
     "publish.destination", r"expected a directory, file:///path or ssh://host/path, got scheme 'ftp'"),
    ("keep-zero", "keep: 3", "keep: 0", "publish.keep", r"expected how many versions to keep >= 1"),
    ("key-lowercase-fingerprint", "key: throwaway", "key: " + "a" * 40, "publish.key",
     r"expected a 40-hex-digit OpenPGP fingerprint"),
    ("host-mismatch", "host: demo", "host: other", "host", r"expected 'demo' \(the file name\)"),
    ("arch-unknown", "arch: aarch64", "arch: riscv64", "arch", r"expected one of aarch64, x86_64"),
    ("unknown-key", "arch: aarch64", "colour: red\narch: aarch64", "colour", r"unknown key"),
    ("series-missing", "series: demo-soc}", "series: demo-sco}", "includes[0].series",
     r"expected a patch series at patches/soc/demo-sco/series"),
    ("apply-order-unknown", "apply_order: [soc,", "apply_order: [socks,", "apply_order",
     r"item 0: expected one of"),
    ("flavor-unknown", "flavor: debian", "flavor: ubuntu", "build.flavor", r"expected one of archlinuxarm, debian"),
    ("node-unknown", "control: local", "control: nowhere", "build.nodes.control", r"unknown node 'nowhere'"),
    ("install-ssh-no-host", "ssh: root@127.0.0.1", "ssh: root@", "install.ssh",
     r"expected an ssh target \(\[user@\]host, no options or spaces\), got 'root@'"),
    ("install-ssh-an-option", "ssh: root@127.0.0.1", "ssh: -oProxyCommand=x", "install.ssh",
     r"expected an ssh target"),
    ("install-port-zero", "port: 22022", "port: 0", "install.port", r"expected"),
    ("install-boot-unknown", "boot: extlinux", "boot: lilo", "install.boot", r"expected one of"),
]


def line_at(text: str, old: str, offset: int = 0) -> int:
    """The line of ``text`` where ``old`` starts (plus ``offset`` lines)."""
    assert text.count(old) == 1, old
    return text[:text.index(old)].count("\n") + 1 + offset


def manifest_case(cid: str, old: str, new: str, key: str, says: str, offset: int = 0) -> Case:
    line = line_at(DEMO, old, offset)  # offset: the key named is on a later line of ``new``
    text = DEMO.replace(old, new)
    return Case(f"manifest-{cid}", write_text(MANIFEST, text), ("verify", "demo"), 2,
                rf"{esc(MANIFEST)}:{line}: {esc(key)}: {says}")


CASES = [manifest_case(*c) for c in MANIFEST_CASES] + [
    Case("manifest-duplicate-key", write_text(MANIFEST, DEMO.replace("arch: aarch64", "arch: aarch64\narch: x86_64")),
         ("verify", "demo"), 2, rf"{esc(MANIFEST)}:7: duplicate key 'arch'"),
    Case("manifest-tab-indent", write_text(MANIFEST, DEMO.replace("  name: kabuild-hello\n", "\tname: kabuild-hello\n", 1)),
         ("verify", "demo"), 2, rf"{esc(MANIFEST)}:\d+: invalid YAML"),
    Case("manifest-a-list", write_text(MANIFEST, "\n- schema: 1\n"), ("verify", "demo"), 2,
         rf"{esc(MANIFEST)}:2: \(top level\): expected a mapping, got a list"),
    Case("manifest-list-as-key", write_text(MANIFEST, DEMO.replace("arch: aarch64", "[arch]: aarch64")),
         ("verify", "demo"), 2, rf"{esc(MANIFEST)}:6: a key must be a plain value, not a list"),
    Case("manifest-mapping-as-key", write_text(MANIFEST, DEMO.replace("arch: aarch64", "? {arch: 1}\n: aarch64")),
         ("verify", "demo"), 2, rf"{esc(MANIFEST)}:6: a key must be a plain value, not a mapping"),
    Case("manifest-not-utf8", write_text(MANIFEST, b"schema: 1\nhost: d\xe9mo\n"), ("verify", "demo"), 2,
         rf"{esc(MANIFEST)}: not UTF-8 text"),
    Case("manifest-pkgbuild-dir-mistyped",
         both(write_text(MANIFEST, DEMO.replace("pkgbuild: fleet/pkgbuilds/kabuild-hello",
                                                "pkgbuild: fleet/pkgbuild/kabuild-hello"))),
         ("verify", "demo"), 2, rf"{esc(MANIFEST)}: packages\[0\]\.pkgbuild: the directory fleet/pkgbuild/kabuild-hello "
                                r"does not exist"),
    Case("manifest-pkgbuild-dir-mistyped-no-patch-copy",
         both(write_text(MANIFEST, DEMO.replace("pkgbuild: fleet/pkgbuilds/kabuild-hello",
                                                "pkgbuild: fleet/pkgbuild/kabuild-hello")
                         .replace("    patch: demo-v1.0-cumulative.patch\n", ""))),
         ("verify", "demo"), 2, rf"{esc(MANIFEST)}: packages\[0\]\.pkgbuild: the directory fleet/pkgbuild/kabuild-hello "
                                r"does not exist"),
    Case("manifest-host-is-the-nodes-file", lambda root: None, ("status", "nodes"), 2,
         r"'nodes' is not a host: fleet/nodes\.yaml lists the build nodes"),
]

# --------------------------------------------------------------------------- nodes

NODES_TEXT = (kbworld.REPO_ROOT / NODES).read_text()
TLS_NODE = "  remote:\n    url: tcp://builder.invalid:2376\n    tls: {ca: certs/ca.pem, cert: certs/cert.pem, key: certs/key.pem}\n"

NODE_CASES = [
    ("unix-no-path", "url: unix:///run/kabuild-docker2.sock", "url: unix://", "nodes.local-2.url",
     r"expected unix:///absolute/path/to/docker\.sock"),
    ("unix-relative", "url: unix:///run/kabuild-docker2.sock", "url: unix://run/docker.sock", "nodes.local-2.url",
     r"expected unix:///absolute/path/to/docker\.sock"),
    ("ssh-no-host", "url: ssh://fermi", "url: ssh://", "nodes.fermi.url", r"'ssh://' has no host"),
    ("ssh-user-no-host", "url: ssh://fermi", "url: ssh://builder@", "nodes.fermi.url", r"'ssh://builder@' has no host"),
    ("http-scheme", "url: ssh://fermi", "url: http://fermi:2375", "nodes.fermi.url", r"expected unix://, ssh:// or tcp://"),
    ("ssh-option-batchmode", "url: ssh://fermi", "url: ssh://fermi\n    ssh_options: [BatchMode=no]", "nodes.fermi.ssh_options",
     r"item 0: BatchMode is set by kabuild"),
    ("ssh-option-not-key-value", "url: ssh://fermi", "url: ssh://fermi\n    ssh_options: ['-p 2222']",
     "nodes.fermi.ssh_options", r"item 0: expected an ssh option as Key=Value"),
    ("ssh-host-dash", "url: ssh://fermi", "url: ssh://-oProxyCommand=x", "nodes.fermi.url",
     r"'ssh://-oProxyCommand=x': '-oProxyCommand=x' is not a host name \(letters, digits, '\.', '-', not starting "
     r"with '-'\)"),
    ("ssh-with-path", "url: ssh://fermi", "url: ssh://fermi/srv", "nodes.fermi.url", r"expected ssh://\[user@\]host\[:port\] with no path"),
    ("tls-on-ssh", "url: ssh://fermi", "url: ssh://fermi\n    tls: {ca: a, cert: b, key: c}", "nodes.fermi.tls",
     r"only tcp:// nodes use TLS files"),
    ("identity-on-unix", "url: unix:///run/kabuild-docker2.sock",
     "url: unix:///run/kabuild-docker2.sock\n    identity: id_ed25519", "nodes.local-2.identity",
     r"only ssh:// nodes take identity"),
    ("connect-timeout-huge", "url: ssh://fermi", "url: ssh://fermi\n    connect_timeout: 3600",
     "nodes.fermi.connect_timeout", r"3600 is more than 120 seconds"),
    ("tcp-bad-port", "url: ssh://fermi", "url: tcp://fermi:dock", "nodes.fermi.url", r"not a valid URL"),
    ("url-number", "url: ssh://fermi", "url: 2376", "nodes.fermi.url", r"expected unix://, ssh:// or tcp://, got '2376'"),
    ("unknown-key", "url: ssh://fermi", "url: ssh://fermi\n    colour: red", "nodes.fermi.colour", r"unknown key"),
    ("schema-2", "schema: 1", "schema: 2", "schema", r"expected 1, got 2"),
]


def node_case(cid: str, old: str, new: str, key: str, says: str) -> Case:
    text = NODES_TEXT.replace(old, new)
    line = line_at(NODES_TEXT, old, 1 if "\n" in new else 0)  # a key added on the next line is named there
    return Case(f"nodes-{cid}", write_text(NODES, text), ("status", "demo"), 2,
                rf"{esc(NODES)}:{line}: {esc(key)}: {says}")


CASES += [node_case(*c) for c in NODE_CASES] + [
    Case("nodes-invalid-name", write_text(NODES, NODES_TEXT.replace("  fermi:", "  Fermi:")), ("status", "demo"), 2,
         rf"{esc(NODES)}:{line_of(NODES_TEXT, '  fermi:')}: nodes\.Fermi: invalid node name 'Fermi'"),
    Case("nodes-tls-files-missing", write_text(NODES, NODES_TEXT + TLS_NODE), ("build", "demo", "--node", "remote"), 2,
         r"build node remote \(tcp://builder\.invalid:2376\): TLS file\(s\) not found: tls\.ca .*certs/ca\.pem, "
         r"tls\.cert .*certs/cert\.pem, tls\.key .*certs/key\.pem \(nodes\.remote\.tls in fleet/nodes\.yaml\)"),
    # a tcp:// node without tls: is refused when a command uses it, never before
    Case("nodes-tcp-without-tls-used", write_text(NODES, NODES_TEXT.replace("url: ssh://fermi", "url: tcp://fermi:2376")),
         ("build", "demo", "--node", "fermi"), 2,
         r"build node fermi \(tcp://fermi:2376\): tls: is required for tcp:// nodes .*add nodes\.fermi\.tls"),
    Case("nodes-unknown-node-flag", lambda root: None, ("build", "demo", "--node", "nowhere"), 2,
         r"unknown build node 'nowhere' in fleet/nodes\.yaml"),
]

# --------------------------------------------------------------------------- series


def add_extra_patch(root: Path) -> None:
    (root / "patches/soc/demo-soc/extra.patch").write_text(diff("extra"))


def series_case(cid: str, patch: bytes | str, says: str, series: str | None = None, line: int = 1) -> Case:
    name = "0001-hello-name-the-soc.patch"
    damage = write_text(SOC_PATCH, patch)
    if series is not None:  # a valid patch listed first: the bad one is refused on its own
        damage = both(damage, add_extra_patch, write_text(SERIES, series))
    return Case(f"series-{cid}", damage, ("promote", "demo"), 2, rf"{esc(SERIES)}:{line}: {says}".replace("NAME", esc(name)))


CASES += [
    series_case("plain-text", "Fix the LED driver.\nSigned-off-by: someone\n", r"'NAME' is not a unified diff"),
    series_case("binary-noise", bytes(range(256)) * 4, r"'NAME' is binary \(a NUL byte at offset 0\)"),
    series_case("empty-file", "", r"'NAME' is empty"),
    series_case("context-only", "--- a/x\n+++ b/x\n@@ -1 +1 @@\n same\n", r"'NAME' changes nothing"),
    series_case("truncated", "--- a/x\n+++ b/x\n@@ -1,3 +1,3 @@\n-a\n+b\n", r"'NAME' ends in the middle of a hunk"),
    series_case("git-binary", "diff --git a/x b/x\nGIT binary patch\nliteral 3\nKcmZ?\n",
                r"'NAME' is a git binary patch"),
    series_case("second-of-two-is-noise", "not a diff\n", r"'NAME' is not a unified diff",
                series="# two\nextra.patch\n0001-hello-name-the-soc.patch\n", line=3),
    Case("series-missing-file", write_text(SERIES, "0001-hello-name-the-soc.patch\ngone.patch\n"), ("promote", "demo"), 2,
         rf"{esc(SERIES)}:2: patch file 'gone\.patch' does not exist"),
    Case("series-p0", write_text(SERIES, "0001-hello-name-the-soc.patch -p0\n"), ("promote", "demo"), 2,
         rf"{esc(SERIES)}:1: only '-p1' patches are supported"),
    Case("series-twice", write_text(SERIES, "0001-hello-name-the-soc.patch\n./0001-hello-name-the-soc.patch\n"),
         ("promote", "demo"), 2, rf"{esc(SERIES)}:2: '\./0001-hello-name-the-soc\.patch' is listed twice"),
    Case("series-outside", write_text(SERIES, "../../driver/demo-led/0001-hello-add-led-driver.patch\n"),
         ("promote", "demo"), 2, rf"{esc(SERIES)}:1: .* points outside the series directory"),
    Case("series-nul-byte", write_text(SERIES, "0001-hello-name-the-soc.patch\nx\0y.patch\n"), ("promote", "demo"), 2,
         rf"{esc(SERIES)}:2: patch file 'x\\x00y\.patch' cannot be read: embedded null byte"),
    Case("series-name-too-long", write_text(SERIES, "0001-hello-name-the-soc.patch\n" + "a" * 300 + ".patch\n"),
         ("promote", "demo"), 2, rf"{esc(SERIES)}:2: patch file 'a+\.patch' cannot be read: File name too long"),
    Case("series-not-utf8", write_text(SERIES, b"0001-hello-name-the-soc.patch # caf\xe9\n"), ("promote", "demo"), 2,
         rf"{esc(SERIES)}: not UTF-8 text"),
]


# --------------------------------------------------------------------------- flags

FLAG_CASES = [
    ("vary-cancel", "+clock,-clock", r"--vary=\+clock,-clock: \+clock and -clock cancel each other"),
    ("vary-empty", "", r"--vary: empty value"),
    ("vary-blank", "  ", r"--vary: empty value"),
    ("vary-empty-item", "hostname,,umask", r"--vary=hostname,,umask: empty item"),
    ("vary-bare-sign", "+", r"--vary=\+: empty item"),
    ("vary-twice", "hostname,hostname", r"--vary=hostname,hostname: hostname and hostname name the same"),
    ("vary-unknown", "+colour", r"--vary: unknown variation 'colour'"),
    ("vary-mixed", "+clock,umask", r"--vary=\+clock,umask: mix of \+/- and plain names"),
    ("vary-cpus-zero", "cpus=0", r"--vary: 'cpus=0': expected cpus=N with N a positive number"),
    ("vary-cpus-cancel", "cpus=2,-cpus", r"--vary: cpus=N and -cpus cancel each other"),
    ("vary-value-on-other", "clock=3", r"--vary: 'clock=3': only cpus takes a value"),
    ("vary-cpus-superscript", "cpus=\u00b2", r"--vary: 'cpus=\u00b2': expected cpus=N with N a positive number"),
    ("vary-cpus-arabic-digit", "cpus=\u0663", r"--vary: 'cpus=\u0663': expected cpus=N with N a positive number"),
]
CASES += [Case(f"flag-{cid}", lambda root: None, ("reproduce", "demo", f"--vary={value}"), 2, says)
          for cid, value, says in FLAG_CASES]
CASES += [
    Case("flag-report-format", lambda root: None, ("report", "demo", "--format", "pdf"), 2, r".*'pdf' is not one of"),
    Case("flag-artifact-url-not-a-url", lambda root: None,
         ("reference", "record", "demo", "--artifact-url", "packages/here"), 2,
         r"--artifact-url 'packages/here': expected an http\(s\)://host/\.\.\. or file:///path URL"),
    Case("flag-artifact-url-no-host", lambda root: None, ("reference", "record", "demo", "--artifact-url", "https://"), 2,
         r"--artifact-url 'https://': expected an http\(s\)://host/\.\.\. or file:///path URL"),
    Case("flag-flavor", lambda root: None, ("build", "demo", "--flavor", "ubuntu"), 2, r".*'ubuntu' is not one of"),
]

# --------------------------------------------------------------------------- manifest.lock

LOCK_AT = rf"{esc(LOCK)}:\d+: "
LOCK_CASES = [
    ("output-a-string", setitem("output", "demo-v1.0-cumulative.patch"), r"output: expected a mapping, got a string"),
    ("output-sha-not-hex", setitem("output.sha256", "z" * 64), r"output\.sha256: expected 64 lowercase hex digits"),
    ("output-size-negative", setitem("output.size", -1), r"output\.size: expected a size in bytes >= 0"),
    ("output-file-a-path", setitem("output.file", "../x.patch"), r"output\.file: expected a file name beside the lock"),
    ("schema-99", setitem("schema", 99), r"schema: this kabuild reads lock schema 1, got 99"),
    ("schema-string", setitem("schema", "one"), r"schema: expected the lock schema version"),
    ("baseline-missing", delitem("baseline"), r"baseline: is required but missing"),
    ("baseline-a-list", setitem("baseline", []), r"baseline: expected a mapping, got a list"),
    ("sde-a-string", setitem("baseline.source_date_epoch", "now"), r"baseline\.source_date_epoch: expected an integer"),
    ("sources-empty", setitem("baseline.sources", []), r"baseline\.sources: expected at least one source"),
    ("inputs-a-mapping", setitem("inputs", {"a": 1}), r"inputs: expected a list, got a mapping"),
    ("inputs-path-missing", delitem("inputs.0.path"), r"inputs\[0\]\.path: is required but missing"),
    ("inputs-item-a-string", setitem("inputs.0", "fleet/demo.yaml"), r"inputs\[0\]: expected a mapping, got a string"),
    ("apply-check-status", setitem("apply_check.status", "maybe"), r"apply_check\.status: expected one of passed, skipped"),
    ("unknown-key", setitem("signed_by", "me"), r"signed_by: unknown key"),
    ("install-block", setitem("install", {"at": "now"}), r"install\.\w+: is required but missing"),
    ("install-a-string", setitem("install", "yesterday"), r"install: expected a mapping, got a string"),
    ("build-image-missing", delitem("build.image"), r"build\.image: is required but missing"),
    ("build-image-recipe-hash", setitem("build.image.recipe_hash", "abc"),
     r"build\.image\.recipe_hash: expected 64 lowercase hex digits"),
    ("build-package-name", lambda d: d["build"].__setitem__("packages", {"../evil": d["build"]["packages"][kbworld.FILE]}),
     r"build\.packages\.\.\./evil: expected a package file name"),
    ("build-package-size", lambda d: d["build"]["packages"][kbworld.FILE].__setitem__("size", "big"),
     r"build\.packages\..*\.size: expected a size in bytes"),
    ("build-fell-back-string", setitem("build.fell_back", "no"), r"build\.fell_back: expected true or false"),
    ("build-reproduce-a-list", setitem("build.reproduce", ["x"]), r"build\.reproduce: expected a mapping, got a list"),
    ("build-a-string", setitem("build", "yesterday"), r"build: expected a mapping, got a string"),
    ("top-a-list", lambda d: [d], r"\(top level\): expected a mapping, got a list"),
]
LOCK_VERBS = [("verify", "demo"), ("status", "demo")]
CASES += [Case(f"lock-{cid}-{argv[0]}", yaml_edit(LOCK, change), argv, 3, LOCK_AT + says)
          for cid, change, says in LOCK_CASES for argv in LOCK_VERBS]
# the verbs that check the lock before their work: the same damage, the same exit code and line
CASES += [Case(f"lock-{cid}-{argv[0]}", yaml_edit(LOCK, change), argv, 3, LOCK_AT + says)
          for cid, change, says in LOCK_CASES if cid in ("output-a-string", "build-image-missing", "install-block")
          for argv in [("build", "demo"), ("reproduce", "demo"), ("publish", "demo")]]
CASES += [
    Case("lock-invalid-yaml", write_text(LOCK, "schema: 1\nhost: [demo\n"), ("verify", "demo"), 3,
         rf"{esc(LOCK)}:\d+: invalid YAML"),
    Case("lock-empty-file", write_text(LOCK, ""), ("verify", "demo"), 3,
         rf"{esc(LOCK)}: \(top level\): expected a mapping, got nothing"),
    Case("lock-binary", write_text(LOCK, bytes(range(128, 256))), ("verify", "demo"), 3, rf"{esc(LOCK)}: not UTF-8 text"),
    Case("lock-truncated", lambda root: (root / LOCK).write_bytes((root / LOCK).read_bytes()[:200]), ("build", "demo"), 3,
         rf"{esc(LOCK)}(:\d+)?: "),
    Case("lock-a-directory", lambda root: ((root / LOCK).unlink(), (root / LOCK).mkdir()), ("reproduce", "demo"), 3,
         rf"{esc(LOCK)}: is a directory, not a file"),
    Case("lock-sde-edited", yaml_edit(LOCK, setitem("baseline.source_date_epoch", 1767225601)), ("verify", "demo"), 3,
         r"demo: manifest\.lock is stale \(baseline\.source_date_epoch: the lock says 1767225601, recomputed 1767225600\)"),
    Case("lock-source-hash-edited", yaml_edit(LOCK, setitem("baseline.sources.0.sha256", "0" * 64)), ("verify", "demo"), 3,
         r"demo: manifest\.lock is stale \(baseline\.sources: "),
]

# --------------------------------------------------------------------------- report.json

REPORT_AT = rf"{esc(REPORT)}: "  # a JSON path names the value (no line)
REPORT_CASES = [
    ("schema-1", setitem("schema", 1), rf"schema: this kabuild reads schema {acceptance.SCHEMA}, got 1"),
    ("kind", setitem("kind", "something-else"), r"kind: expected 'kabuild-acceptance-report'"),
    ("packages-empty", setitem("packages", []), r"packages: "),
    ("packages-a-mapping", setitem("packages", {}), r"packages: expected a list"),
    ("package-name-missing", delitem("packages.0.name"), r"packages\[0\]\.name: is required but missing"),
    ("build1-sha", setitem("packages.0.build1.sha256", "xyz"), r"packages\[0\]\.build1\.sha256: expected 64 lowercase hex"),
    ("build1-path-escapes", setitem("packages.0.build1.path", "../../../../etc/passwd"), r"packages\[0\]\.build1\.path: "),
    ("verdict", setitem("packages.0.verdict", "fine"), r"packages\[0\]\.verdict: expected one of"),
    ("run-verdict", setitem("verdict", "fine"), r"verdict: 'fine' contradicts the packages' verdicts"),
    ("run-verdict-contradicts", setitem("verdict", "not-reproducible"),
     r"verdict: 'not-reproducible' contradicts the packages' verdicts"),
    ("exit-code-string", setitem("exit_code", "0"), r"exit_code: expected"),
    ("run-id-missing", delitem("run_id"), r"run_id: is required but missing"),
    ("unknown-key", setitem("colour", "red"), r"colour: unknown key"),
    ("cpus-string", setitem("nodes.build1.cpus", "two"), r"nodes\.build1\.cpus: expected"),
    ("top-a-list", lambda d: [d], r"\(top level\): expected a mapping, got a list"),
    ("host-a-path", setitem("host", "../../evil"), r"host: expected a host name, got '\.\./\.\./evil'"),
]
# a valid report that lies in another host's (or baseline's) runs/: about the whole document, no line
REPORT_ORIGIN_CASES = [
    ("host-another", setitem("host", "ohm"),
     r"host/baseline\.ref: records ohm/v1\.0, but it lies in build/demo/v1\.0/runs/"),
    ("baseline-ref-another", setitem("baseline.ref", "v2.0"),
     r"host/baseline\.ref: records demo/v2\.0, but it lies in build/demo/v1\.0/runs/"),
]
REPORT_VERBS = [("report", "demo"), ("publish", "demo"), ("reference", "record", "demo")]
CASES += [Case(f"report-{cid}-{argv[0]}", json_edit(REPORT, change), argv, 3, REPORT_AT + says)
          for cid, change, says in REPORT_CASES for argv in REPORT_VERBS]
CASES += [Case(f"report-{cid}-{argv[0]}", json_edit(REPORT, change), argv, 3, rf"{esc(REPORT)}: {says}")
          for cid, change, says in REPORT_ORIGIN_CASES for argv in REPORT_VERBS]
CASES += [Case(f"report-{cid}-{argv[0]}", write_text(REPORT, text), argv, 3, rf"{esc(REPORT)}{says}")
          for cid, text, says in [("truncated", '{"schema": 2, "kind": ', r":1: not valid JSON"),
                                  ("duplicate-key", '{"schema": 2,\n "schema": 1}', r": schema: the key is given twice in one JSON object"),
                                  ("binary", bytes(range(128, 256)), r": not UTF-8 text"),
                                  ("empty", "", r":1: not valid JSON")]
          for argv in REPORT_VERBS]

RUN_DIR = kbworld.RUN


def dangle_latest(root: Path) -> None:
    latest = root / RUN_DIR / ".." / "latest"
    latest.unlink()
    latest.symlink_to("nowhere")


def report_a_directory(root: Path) -> None:
    (root / REPORT).unlink()
    (root / REPORT).mkdir()


def drop_build1_package(root: Path) -> None:
    (root / RUN_DIR / "build1" / kbworld.FILE).unlink()


CASES += [
    Case("report-latest-dangling-report", dangle_latest, ("report", "demo"), 3,
         r"build/demo/v1\.0/runs/nowhere/report\.json: file not found"),
    Case("report-latest-dangling-reference", dangle_latest, ("reference", "record", "demo"), 3,
         r"build/demo/v1\.0/runs/nowhere/report\.json: file not found"),
    Case("report-latest-dangling-publish", dangle_latest, ("publish", "demo"), 3,
         r"no acceptance report for demo \(v1\.0\): .*build/demo/v1\.0/runs/latest does not exist"),
] + [Case(f"report-a-directory-{argv[0]}", report_a_directory, argv, 3, rf"{esc(REPORT)}: is a directory, not a file")
     for argv in REPORT_VERBS] + [
    Case("report-build1-package-missing-reference", drop_build1_package, ("reference", "record", "demo"), 3,
         rf".*{esc(RUN_DIR)}/build1/{esc(kbworld.FILE)}: the package build 1 made in run {kbworld.RUN_ID} is missing"),
]

# --------------------------------------------------------------------------- reference.yaml

REFERENCE_AT = rf"{esc(REFERENCE)}:\d+: "
REFERENCE_CASES = [
    ("schema-2", setitem("schema", 2), r"schema: this kabuild reads schema 1, got 2"),
    ("artifacts-empty", setitem("artifacts", []), r"artifacts: expected at least one artifact"),
    ("artifact-sha", setitem("artifacts.0.sha256", "Z" * 64), r"artifacts\[0\]\.sha256: expected 64 lowercase hex"),
    ("artifact-file", setitem("artifacts.0.file", "evil.tar"), r"artifacts\[0\]\.file: expected a package file name"),
    ("artifact-path", setitem("artifacts.0.artifact", "../../x.pkg.tar.zst"), r"artifacts\[0\]\.artifact: expected a file"),
    ("image-missing", delitem("image"), r"image: is required but missing"),
    ("image-a-string", setitem("image", "kabuild/debian"), r"image: expected a mapping, got a string"),
    ("unknown-key", setitem("colour", "red"), r"colour: unknown key"),
    ("sde-a-string", setitem("source_date_epoch", "x"), r"source_date_epoch: expected an integer"),
    ("toolchain-number", setitem("toolchain", ["gcc 12", 12]), r"toolchain: item 1: expected a string"),
    ("lock-hash", setitem("lock_hash", "abc"), r"lock_hash: expected 64 lowercase hex digits, got 'abc'"),
    ("top-a-list", lambda d: [d], r"\(top level\): expected a mapping, got a list"),
]
# reproduce reads every reference before it builds or answers from an earlier run: the one error line only
CASES += [Case(f"reference-{cid}", yaml_edit(REFERENCE, change), ("reproduce", "demo"), 3, REFERENCE_AT + says)
          for cid, change, says in REFERENCE_CASES]
CASES += [
    Case("reference-other-host", yaml_edit(REFERENCE, setitem("host", "ohm")), ("reproduce", "demo"), 3,
         rf"{esc(REFERENCE)}: host/package: records ohm/kabuild-hello, but it lies in references/demo/kabuild-hello/"),
    Case("reference-invalid-yaml", write_text(REFERENCE, "schema: 1\nartifacts: [\n"), ("reproduce", "demo"), 3,
         rf"{esc(REFERENCE)}:\d+: invalid YAML"),
    Case("reference-empty", write_text(REFERENCE, ""), ("reproduce", "demo"), 3,
         rf"{esc(REFERENCE)}: \(top level\): expected a mapping, got nothing"),
]


# --------------------------------------------------------------------------- running


@pytest.fixture(scope="module")
def template(tmp_path_factory) -> World:
    if shutil.which("patch") is None:
        pytest.skip("needs GNU patch on PATH (promote)")
    with pytest.MonkeyPatch.context() as mp:  # the autouse hermetic_env is function-scoped
        mp.setenv("KABUILD_CACHE", str(tmp_path_factory.mktemp("cache")))
        mp.delenv("KABUILD_ROOT", raising=False)
        return make_world(tmp_path_factory.mktemp("world") / "repo")


@pytest.fixture
def world(template, tmp_path, monkeypatch) -> World:
    def no_engine(node, timeout):
        raise AssertionError(f"a unit test reached the Docker engine of node {node.name}")

    monkeypatch.setattr("kabuild.build.engines._client", no_engine)  # every verb here must refuse before that
    return copy_world(template, tmp_path / "repo")


def kabuild(root: Path, capsys, *argv: str) -> tuple[int, str, str]:
    capsys.readouterr()
    code = run_cli(["--root", str(root), *argv])
    out, err = capsys.readouterr()
    return code, out, err


def test_the_table_is_large_and_ids_are_unique():
    assert len(CASES) >= 60
    assert len({c.id for c in CASES}) == len(CASES)


def check_case(world: World, capsys, case: Case) -> None:
    """One row of a bad-input table (this file's and the issue tables beside it): the damage, the verb,
    then exactly its exit code and one located error line, after the verb's progress lines if any; no
    traceback, and a refused reproduce leaves no half-made run behind."""
    case.damage(world.root)
    code, _out, err = kabuild(world.root, capsys, *case.argv)
    assert "Traceback" not in err
    lines = err.splitlines()
    assert len(lines) == 1 + case.progress, err  # the one error line, after the verb's progress lines if any
    assert all(line.startswith("kabuild: ") and not line.startswith("kabuild: error") for line in lines[:-1]), err
    assert code == case.code, err
    assert re.match("kabuild: error: " + case.expect, lines[-1]), lines[-1]
    if case.argv[0] == "reproduce":  # a refused reproduce leaves no half-made run behind
        assert not list((world.root / RUN_DIR).parent.glob(".*.partial"))


@pytest.mark.parametrize("case", CASES, ids=[c.id for c in CASES])
def test_bad_input_is_one_located_line(world, capsys, case):
    check_case(world, capsys, case)


# --------------------------------------------------------------------------- the valid world (controls)


@pytest.mark.parametrize("argv", [("verify", "demo"), ("status", "demo"), ("report", "demo")])
def test_the_undamaged_world_is_accepted(world, capsys, argv):
    code, _out, err = kabuild(world.root, capsys, *argv)
    assert code == 0, err
    assert err == ""


def test_a_run_is_identified_by_the_engines_and_image_ids_that_built_it():
    """A run that fell back (other engines) or used another image (toolchain) never answers for this one."""
    from kabuild.reproduce import identity
    from kabuild.reproduce.options import Options

    opts = Options(frozenset())
    key = identity.inputs_key("a" * 64, "b" * 64, opts, engines=("local", "boltzmann"), images=("sha256:1", "sha256:2"))
    assert key == identity.inputs_key("a" * 64, "b" * 64, opts, engines=("local", "boltzmann"),
                                      images=("sha256:1", "sha256:2"))
    assert key != identity.inputs_key("a" * 64, "b" * 64, opts, engines=("local", "local"),
                                      images=("sha256:1", "sha256:2"))
    assert key != identity.inputs_key("a" * 64, "b" * 64, opts, engines=("local", "boltzmann"),
                                      images=("sha256:1", "sha256:3"))


def test_a_run_whose_packages_are_gone_does_not_answer_a_reproduce(world):
    from kabuild.reproduce import identity

    runs = world.root / RUN_DIR / ".."
    report = kbworld.acceptance.load(world.root / REPORT)
    assert identity.earlier_run(runs, report.inputs_key) is not None
    drop_build1_package(world.root)
    assert identity.earlier_run(runs, report.inputs_key) is None


@pytest.mark.parametrize("change, says", [
    (setitem("packages.0.build1.sha256", "xyz"), "packages[0].build1.sha256: expected 64 lowercase hex digits"),
    (setitem("host", "ohm"), "host/baseline.ref: records ohm/v1.0, but it lies in build/demo/v1.0/runs/"),
])
def test_status_shows_a_damaged_report_as_unreadable(world, capsys, change, says):
    json_edit(REPORT, change)(world.root)
    code, out, err = kabuild(world.root, capsys, "status", "demo", "--json")
    assert code == 0, err
    seen = json.loads(out)["last_reproduce"]
    assert seen["verdict"] == "unreadable" and says in seen["error"], seen


def test_promote_replaces_a_damaged_lock(world, capsys):
    yaml_edit(LOCK, setitem("output", "a string"))(world.root)
    assert kabuild(world.root, capsys, "verify", "demo")[0] == 3
    code, _out, err = kabuild(world.root, capsys, "promote", "demo")
    assert code == 0, err
    code, _out, err = kabuild(world.root, capsys, "verify", "demo")
    assert code == 0, err


def test_preflight_names_missing_tls_files_instead_of_does_not_answer(world):
    from kabuild.build import preflight

    (world.root / NODES).write_text(NODES_TEXT + TLS_NODE)
    (world.root / MANIFEST).write_text(DEMO.replace("control: local", "control: remote")
                                       .replace("experiment: local-2", "experiment: remote")
                                       .replace("fallback: local", "fallback: remote"))
    manifest, nodes = fleet.load(world.root, "demo")
    problems = preflight._unreachable(manifest, nodes)
    assert len(problems) == 3
    assert all("TLS file(s) not found: tls.ca " in p and "does not answer" not in p for p in problems)
    assert [p.rsplit(" ", 1)[1] for p in problems] == ["(control)", "(experiment)", "(fallback)"]
