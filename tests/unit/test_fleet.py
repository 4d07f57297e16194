"""Fleet manifests and build nodes: the happy path and every error a user can make.

Every error must be a ManifestError (exit 2) whose one-line message names the file,
the line, the dotted key and what was expected: ``fleet/x.yaml:12: a.b: expected ...``.
"""

from __future__ import annotations

import re
from pathlib import Path

import pytest
from kbhelpers import (
    HOST,
    TESTBOARD,
    diff,
    drop,
    edit,
    insert_after,
    line_of,
    load,
    manifest_error,
    write_manifest,
    write_series,
)

from kabuild.config import manifest as fleet
from kabuild.config.install import BootMethod
from kabuild.config.manifest import Arch, Flavor, Scope, Source
from kabuild.config.nodes import NodeKind, load_nodes
from kabuild.errors import ConfigError, ExitCode, ManifestError

FILE = f"fleet/{HOST}.yaml"
REAL_ROOT = Path(__file__).resolve().parents[2]


def where(text: str, needle: str) -> str:
    """The ``file:line`` prefix an error about the line containing ``needle`` must start with."""
    return f"{FILE}:{line_of(text, needle)}"


# --------------------------------------------------------------------------- happy path


def test_demo_manifest_of_the_real_repository_loads():
    manifest, nodes = fleet.load(REAL_ROOT, "demo")

    assert manifest.host == "demo"
    assert manifest.display == "fleet/demo.yaml"
    assert manifest.arch is Arch.AARCH64
    assert manifest.arch.debian == "arm64"
    assert manifest.arch.docker_platform == "linux/arm64"
    assert manifest.baseline.name == "kabuild-hello"
    assert manifest.baseline.version == "1.0"
    assert manifest.baseline.ref == "v1.0"
    assert manifest.baseline.source_date_epoch == 1767225600
    assert manifest.baseline.sources[0].filename == "kabuild-hello-1.0.tar.gz"
    assert manifest.baseline.sources[0].verifiable
    assert [(i.scope, i.series) for i in manifest.ordered_includes()] == [
        (Scope.SOC, "demo-soc"), (Scope.DRIVER, "demo-led"), (Scope.BOARD, "demo-board"),
    ]
    assert [p.name for p in manifest.packages] == ["kabuild-hello"]
    assert manifest.packages[0].pkgbuild == REAL_ROOT / "fleet/pkgbuilds/kabuild-hello"
    assert manifest.packages[0].patch == "demo-v1.0-cumulative.patch"
    assert manifest.build.flavor is Flavor.DEBIAN
    assert manifest.build.nodes.control in nodes.nodes
    assert manifest.build.nodes.experiment in nodes.nodes
    assert manifest.publish is not None and manifest.publish.key == "throwaway"


def test_testboard_manifest_loads_with_every_section(repo):
    write_manifest(repo)
    m = load(repo)
    assert m.host == HOST
    assert m.description == "a board for the unit tests"
    assert m.build.timeout == 1800
    assert m.build.nodes.fallback == "local"
    assert m.publish.repository == "kabuild-test"
    assert m.publish.keep == 3
    assert m.install.ssh == "root@testboard"
    assert m.install.boot is BootMethod.EXTLINUX
    assert m.includes[0].relpath == "patches/soc/demo-soc"


def test_optional_values_get_their_defaults(repo):
    text = drop(drop(drop(drop(TESTBOARD, "publish:"), "install:"), "  timeout:"), "description:")
    text = drop(text, "    fallback:")
    write_manifest(repo, text)
    m = load(repo)
    assert m.description == ""
    assert m.build.timeout == 3600
    assert m.build.nodes.fallback is None
    assert m.publish is None
    assert m.install is None


def test_optional_publish_values_get_their_defaults(repo):
    text = drop(drop(drop(TESTBOARD, "  key:"), "  destination:"), "  keep:")
    write_manifest(repo, text)
    publish = load(repo).publish
    assert (publish.key, publish.destination, publish.keep) == (None, None, 3)


def test_ordered_includes_follow_apply_order_then_manifest_order(repo):
    write_series(repo, "board", "second-board", {"a.patch": diff("x")})
    text = edit(TESTBOARD, """\
  - scope: soc
    series: demo-soc
  - scope: driver
    series: demo-led
  - scope: board
    series: demo-board
""", """\
  - {scope: board, series: demo-board}
  - {scope: soc, series: demo-soc}
  - {scope: board, series: second-board}
  - {scope: driver, series: demo-led}
""")
    text = edit(text, "apply_order: [soc, driver, board]", "apply_order: [board, driver, soc]")
    write_manifest(repo, text)
    assert [i.relpath for i in load(repo).ordered_includes()] == [
        "patches/board/demo-board", "patches/board/second-board",
        "patches/driver/demo-led", "patches/soc/demo-soc",
    ]


def test_relative_pkgbuild_path_is_resolved_against_the_root(repo):
    write_manifest(repo)
    assert load(repo).packages[0].pkgbuild == repo / "fleet/pkgbuilds/kabuild-hello"


def test_source_with_a_url_has_a_file_name_and_is_unverifiable_without_checksums():
    s = Source("https://example.invalid/pub/linux-6.1.tar.xz?x=1")
    assert s.filename == "linux-6.1.tar.xz"
    assert not s.verifiable
    assert Source("x.tar.gz", b2sum="0" * 128).verifiable


def test_known_hosts_lists_manifests_but_not_nodes(repo):
    write_manifest(repo)
    hosts = fleet.known_hosts(repo)
    assert "demo" in hosts and HOST in hosts
    assert "nodes" not in hosts
    assert hosts == sorted(hosts)


# --------------------------------------------------------------------------- host


def test_unknown_host_lists_the_known_hosts(repo):
    with pytest.raises(ManifestError) as excinfo:
        fleet.load(repo, "nohost")
    message = str(excinfo.value)
    assert excinfo.value.exit_code == ExitCode.CONFIG == 2
    assert message.startswith("unknown host 'nohost': fleet/nohost.yaml does not exist (known hosts: ")
    assert f"known hosts: {', '.join(fleet.known_hosts(repo))})" in message
    assert "demo" in message


def test_unknown_host_without_any_manifest_says_none(repo):
    for path in (repo / "fleet").glob("*.yaml"):
        if path.name != "nodes.yaml":
            path.unlink()
    with pytest.raises(ManifestError, match=r"\(known hosts: none\)$"):
        fleet.load(repo, "demo")


@pytest.mark.parametrize("host", ["Demo", "../demo", "demo/x", "", "-demo", "de mo", "démo"])
def test_invalid_host_name_is_refused_before_touching_the_disk(repo, host):
    with pytest.raises(ManifestError) as excinfo:
        fleet.load(repo, host)
    assert excinfo.value.exit_code == 2
    assert str(excinfo.value).startswith(f"invalid host name {host!r}: expected lowercase letters")


def test_host_must_match_the_file_name(repo):
    text = edit(TESTBOARD, "host: testboard", "host: otherboard")
    assert manifest_error(repo, text) == (
        f"{where(text, 'host: otherboard')}: host: expected 'testboard' (the file name), got 'otherboard'"
    )


def test_host_must_be_a_valid_name(repo):
    text = edit(TESTBOARD, "host: testboard", "host: Test_Board!")
    assert manifest_error(repo, text) == (
        f"{where(text, 'host: Test')}: host: expected a host name, got 'Test_Board!'"
    )


# --------------------------------------------------------------------------- YAML level


def test_invalid_yaml_names_the_line(repo):
    text = edit(TESTBOARD, "arch: aarch64", "arch: aarch64: big")
    assert manifest_error(repo, text) == (
        f"{where(text, 'arch:')}: invalid YAML: mapping values are not allowed in this context"
    )


def test_tab_indentation_is_invalid_yaml_with_a_line(repo):
    text = edit(TESTBOARD, "  ref: v1.0", "\tref: v1.0")
    message = manifest_error(repo, text)
    assert message.startswith(f"{where(text, 'ref: v1.0')}: invalid YAML: ")


def test_unterminated_flow_sequence_is_invalid_yaml(repo):
    text = edit(TESTBOARD, "apply_order: [soc, driver, board]", "apply_order: [soc, driver, board")
    assert re.fullmatch(rf"{re.escape(FILE)}:\d+: invalid YAML: .+", manifest_error(repo, text))


def test_duplicate_top_level_key_names_the_second_occurrence(repo):
    text = insert_after(TESTBOARD, "arch: aarch64", "arch: x86_64\n")
    assert manifest_error(repo, text) == f"{where(text, 'arch: x86_64')}: duplicate key 'arch'"


def test_duplicate_nested_key_names_the_second_occurrence(repo):
    text = insert_after(TESTBOARD, "  ref: v1.0", "  ref: v2.0\n")
    assert manifest_error(repo, text) == f"{where(text, 'ref: v2.0')}: duplicate key 'ref'"


@pytest.mark.parametrize("text, kind", [
    ("- host: testboard\n- arch: aarch64\n", "a list"),
    ("testboard\n", "a string"),
    ("42\n", "an integer"),
    ("", "nothing"),
    ("# only a comment\n", "nothing"),
])
def test_top_level_must_be_a_mapping(repo, text, kind):
    where = f"{FILE}:1" if kind == "a list" else FILE  # a list has a line; a bare scalar or nothing does not
    assert manifest_error(repo, text) == f"{where}: (top level): expected a mapping, got {kind}"


def test_manifest_that_is_not_utf8_is_refused(repo):
    (repo / "fleet" / f"{HOST}.yaml").write_bytes(b"host: caf\xe9\n")
    with pytest.raises(ManifestError, match=rf"^{re.escape(FILE)}: not UTF-8 text"):
        load(repo)


# --------------------------------------------------------------------------- missing keys

# (prefix of the line(s) to drop, dotted key, start of the line the error must name:
#  the first remaining line of the enclosing mapping)
MISSING = [
    ("schema:", "schema", "host: testboard"),
    ("host:", "host", "schema: 1"),
    ("arch:", "arch", "schema: 1"),
    ("baseline:", "baseline", "schema: 1"),
    ("  name: kabuild-hello", "baseline.name", "baseline:"),
    ("  version:", "baseline.version", "baseline:"),
    ("  ref:", "baseline.ref", "baseline:"),
    ("  source_date_epoch:", "baseline.source_date_epoch", "baseline:"),
    ("  sources:", "baseline.sources", "baseline:"),
    ("includes:", "includes", "schema: 1"),
    ("apply_order:", "apply_order", "schema: 1"),
    ("packages:", "packages", "schema: 1"),
    ("    pkgbuild:", "packages[0].pkgbuild", "  - name: kabuild-hello"),
    ("build:", "build", "schema: 1"),
    ("  flavor:", "build.flavor", "^build:"),
    ("  nodes:", "build.nodes", "^build:"),
    ("    control:", "build.nodes.control", "  nodes:"),
    ("    experiment:", "build.nodes.experiment", "  nodes:"),
    ("  repository:", "publish.repository", "publish:"),
    ("  ssh:", "install.ssh", "install:"),
    ("  boot:", "install.boot", "install:"),
]


@pytest.mark.parametrize("prefix, key, anchor", MISSING, ids=[m[1] for m in MISSING])
def test_missing_required_key_is_named_with_its_section_line(repo, prefix, key, anchor):
    text = drop(TESTBOARD, prefix)
    assert manifest_error(repo, text) == f"{where(text, anchor)}: {key}: is required but missing"


@pytest.mark.parametrize("checksum", ["      sha256:", "      b2sum:"])
def test_either_checksum_alone_is_enough(repo, checksum):
    write_manifest(repo, drop(TESTBOARD, checksum))
    assert load(repo).baseline.sources[0].verifiable


def test_missing_source_url_is_named_with_its_item_index(repo):
    text = edit(TESTBOARD, "    - url: fleet/sources/kabuild-hello-1.0.tar.gz\n      sha256:", "    - sha256:")
    assert manifest_error(repo, text) == (
        f"{where(text, '    - sha256:')}: baseline.sources[0].url: is required but missing"
    )


def test_missing_package_name_is_named_with_its_item_index(repo):
    text = edit(TESTBOARD, "  - name: kabuild-hello\n    pkgbuild:", "  - pkgbuild:")
    assert manifest_error(repo, text) == (
        f"{where(text, '  - pkgbuild:')}: packages[0].name: is required but missing"
    )


def test_empty_value_is_named_at_its_own_line(repo):
    text = edit(TESTBOARD, "  source_date_epoch: 1767225600", "  source_date_epoch:")
    assert manifest_error(repo, text) == (
        f"{where(text, '  source_date_epoch:')}: baseline.source_date_epoch: is required but empty"
    )


def test_empty_source_list_is_refused(repo):
    text = drop(TESTBOARD, "  sources:")
    text = insert_after(text, "  source_date_epoch:", "  sources: []\n")
    assert manifest_error(repo, text) == (
        f"{where(text, 'sources: []')}: baseline.sources: expected at least one source"
    )


def test_empty_package_list_is_refused(repo):
    text = drop(TESTBOARD, "packages:")
    text = insert_after(text, "apply_order:", "packages: []\n")
    assert manifest_error(repo, text) == (
        f"{where(text, 'packages: []')}: packages: expected at least one package"
    )


# --------------------------------------------------------------------------- wrong types

SDE_WHAT = "expected a fixed integer (seconds since 1970-01-01 UTC), never 'now'"


@pytest.mark.parametrize("value, got", [
    ("now", "got a string 'now'"),
    ("'1767225600'", "got a string '1767225600'"),
    ('"2026-01-01T00:00:00Z"', "got a string '2026-01-01T00:00:00Z'"),
    ("true", "got a boolean True"),
    ("1767225600.5", "got float 1767225600.5"),
    ("[1767225600]", "got a list [1767225600]"),
])
def test_source_date_epoch_must_be_a_fixed_integer(repo, value, got):
    text = edit(TESTBOARD, "source_date_epoch: 1767225600", f"source_date_epoch: {value}")
    assert manifest_error(repo, text) == (
        f"{where(text, 'source_date_epoch:')}: baseline.source_date_epoch: {SDE_WHAT}, {got}"
    )


def test_source_date_epoch_must_be_positive(repo):
    text = edit(TESTBOARD, "source_date_epoch: 1767225600", "source_date_epoch: 0")
    assert manifest_error(repo, text) == (
        f"{where(text, 'source_date_epoch:')}: baseline.source_date_epoch: {SDE_WHAT} >= 1, got 0"
    )


@pytest.mark.parametrize("old, new, key, expected", [
    ("schema: 1", "schema: 2", "schema", "expected 1, got 2"),
    ("schema: 1", "schema: '1'", "schema", "expected the manifest schema version (1), got a string '1'"),
    ("schema: 1", "schema: true", "schema", "expected the manifest schema version (1), got a boolean True"),
    ("  timeout: 1800", "  timeout: yes", "build.timeout", "expected seconds, got a boolean True"),
    ("  timeout: 1800", "  timeout: 0", "build.timeout", "expected seconds >= 1, got 0"),
    ("  timeout: 1800", "  timeout: 30m", "build.timeout", "expected seconds, got a string '30m'"),
    ("  keep: 3", "  keep: false", "publish.keep", "expected how many versions to keep, got a boolean False"),
    ("  keep: 3", "  keep: 0", "publish.keep", "expected how many versions to keep >= 1, got 0"),
    ("description: a board for the unit tests", "description: [a, b]", "description",
     "expected a string, got a list"),
    ("description: a board for the unit tests", "description: true", "description",
     "expected a string, got a boolean"),
    ("  name: kabuild-hello", "  name: Kabuild_Hello", "baseline.name",
     "expected a package-style name, got 'Kabuild_Hello'"),
    ("  ref: v1.0", "  ref: ../v1.0", "baseline.ref",
     "expected a ref usable as a directory name, got '../v1.0'"),
    ("  ref: v1.0", "  ref: v1/0", "baseline.ref", "expected a ref usable as a directory name, got 'v1/0'"),
    ("    patch: demo-v1.0-cumulative.patch", "    patch: ../x.patch", "packages[0].patch",
     "expected a file name inside the PKGBUILD directory, got '../x.patch'"),
    ("  - name: kabuild-hello", "  - name: Hello", "packages[0].name", "expected a pacman package name, got 'Hello'"),
    ("    series: demo-soc", "    series: ../soc", "includes[0].series",
     "expected a series directory name, got '../soc'"),
    ("  repository: kabuild-test", "  repository: Kabuild Test", "publish.repository",
     "expected a pacman repository name, got 'Kabuild Test'"),
    ("  repository: kabuild-test", "  repository: [a]", "publish.repository",
     "expected a pacman repository name, got a list"),
    ("apply_order: [soc, driver, board]", "apply_order: soc", "apply_order", "expected a list, got a string"),
    ("  sources:", "  sources: {}\n  old_sources:", "baseline.sources", "expected a list, got a mapping"),
])
def test_wrong_type_or_format_is_located(repo, old, new, key, expected):
    text = edit(TESTBOARD, old, new)
    needle = new.strip().splitlines()[0]
    assert manifest_error(repo, text) == f"{where(text, needle)}: {key}: {expected}"


@pytest.mark.parametrize("value", ["''", "'   '"])
def test_empty_string_is_refused(repo, value):
    text = edit(TESTBOARD, '  version: "1.0"', f"  version: {value}")
    assert manifest_error(repo, text).startswith(f"{where(text, 'version:')}: baseline.version: expected a string")


def test_empty_string_message_does_not_contradict_itself(repo):
    text = edit(TESTBOARD, '  version: "1.0"', "  version: ''")
    assert "got a string" not in manifest_error(repo, text)


@pytest.mark.parametrize("old, new, key", [
    ("baseline:\n", "baseline: kabuild-hello\nold_baseline:\n", "baseline"),
    ("build:\n", "build: [local]\nold_build:\n", "build"),
    ("  nodes:\n", "  nodes: local\n  old_nodes:\n", "build.nodes"),
    ("publish:\n", "publish: yes\nold_publish:\n", "publish"),
])
def test_section_that_is_not_a_mapping_is_located(repo, old, new, key):
    text = edit(TESTBOARD, old, new)
    message = manifest_error(repo, text)
    assert re.fullmatch(rf"{re.escape(where(text, new.splitlines()[0]))}: {re.escape(key)}: "
                        r"expected a mapping, got .+", message)


def test_include_that_is_not_a_mapping_is_located(repo):
    text = edit(TESTBOARD, "  - scope: soc\n    series: demo-soc\n", "  - soc/demo-soc\n")
    assert manifest_error(repo, text) == (
        f"{where(text, '- soc/demo-soc')}: includes[0]: expected a mapping, got a string"
    )


# --------------------------------------------------------------------------- enums


@pytest.mark.parametrize("old, new, key, choices", [
    ("arch: aarch64", "arch: arm64", "arch", "aarch64, x86_64"),
    ("arch: aarch64", "arch: AArch64", "arch", "aarch64, x86_64"),
    ("  - scope: soc", "  - scope: kernel", "includes[0].scope",
     "soc, driver, board, module, subsystem, arch"),
    ("  flavor: debian", "  flavor: ubuntu", "build.flavor", "archlinuxarm, debian"),
    ("  boot: extlinux", "  boot: lilo", "install.boot", "extlinux, uboot-script, systemd-boot, grub"),
])
def test_bad_enum_value_lists_the_choices(repo, old, new, key, choices):
    text = edit(TESTBOARD, old, new)
    value = new.split(": ", 1)[1]
    assert manifest_error(repo, text) == (
        f"{where(text, new.strip())}: {key}: expected one of {choices}, got {value!r}"
    )


def test_bad_apply_order_scope_names_the_item(repo):
    text = edit(TESTBOARD, "apply_order: [soc, driver, board]", "apply_order: [soc, driver, board, kernel]")
    assert manifest_error(repo, text) == (
        f"{where(text, 'apply_order:')}: apply_order: item 3: expected one of "
        "soc, driver, board, module, subsystem, arch, got 'kernel'"
    )


# --------------------------------------------------------------------------- checksums and URLs


@pytest.mark.parametrize("field, value, what", [
    ("sha256", "4B6EFB132D7CCED2508F372CE6AAB1E6DC1B58A1C50923326839C5A5F565299E", "64 lowercase hex digits"),
    ("sha256", "4b6efb132d7cced2508f372ce6aab1e6", "64 lowercase hex digits"),
    ("sha256", "z" * 64, "64 lowercase hex digits"),
    ("sha256", "sha256:" + "0" * 64, "64 lowercase hex digits"),
    ("b2sum", "4b6efb132d7cced2508f372ce6aab1e6dc1b58a1c50923326839c5a5f565299e", "128 lowercase hex digits"),
    ("b2sum", "g" * 128, "128 lowercase hex digits"),
])
def test_bad_checksum_format_is_located(repo, field, value, what):
    lines = [line for line in TESTBOARD.splitlines() if line.startswith(f"      {field}:")]
    text = edit(TESTBOARD, lines[0], f"      {field}: {value}")
    assert manifest_error(repo, text) == (
        f"{where(text, f'{field}: {value}')}: baseline.sources[0].{field}: expected {what}, got {value!r}"
    )


@pytest.mark.parametrize("url, scheme", [
    ("ftp://example.invalid/kabuild-hello-1.0.tar.gz", "ftp"),
    ("git+ssh://example.invalid/kabuild-hello.git", "git+ssh"),
    ("rsync://example.invalid/kabuild-hello-1.0.tar.gz", "rsync"),
])
def test_bad_url_scheme_is_located(repo, url, scheme):
    text = edit(TESTBOARD, "url: fleet/sources/kabuild-hello-1.0.tar.gz", f"url: {url}")
    assert manifest_error(repo, text) == (
        f"{where(text, url)}: baseline.sources[0].url: expected an http, https or file URL, got scheme {scheme!r}"
    )


@pytest.mark.parametrize("url", [
    "https://example.invalid/kabuild-hello-1.0.tar.gz",
    "http://example.invalid/kabuild-hello-1.0.tar.gz",
    "file:///srv/mirror/kabuild-hello-1.0.tar.gz",
    "fleet/sources/kabuild-hello-1.0.tar.gz",
])
def test_good_url_schemes_are_accepted(repo, url):
    text = edit(TESTBOARD, "url: fleet/sources/kabuild-hello-1.0.tar.gz", f"url: {url}")
    write_manifest(repo, text)
    assert load(repo).baseline.sources[0].url == url


def test_mirrors_are_kept_in_order(repo):
    text = insert_after(TESTBOARD, "      b2sum:", "      mirrors:\n        - file:///a/x.tar.gz\n"
                                                  "        - https://b.invalid/x.tar.gz\n")
    write_manifest(repo, text)
    assert load(repo).baseline.sources[0].mirrors == ("file:///a/x.tar.gz", "https://b.invalid/x.tar.gz")


@pytest.mark.parametrize("mirror, shown", [
    ("ftp://a.invalid/x.tar.gz", "'ftp://a.invalid/x.tar.gz'"),
    ("mirror/x.tar.gz", "'mirror/x.tar.gz'"),
    ("42", "42"),
])
def test_bad_mirror_is_located_with_its_index(repo, mirror, shown):
    text = insert_after(TESTBOARD, "      b2sum:", f"      mirrors: [https://ok.invalid/x, {mirror}]\n")
    assert manifest_error(repo, text) == (
        f"{where(text, 'mirrors:')}: baseline.sources[0].mirrors: item 1: "
        f"expected an http, https or file URL, got {shown}"
    )


def test_mirrors_must_be_a_list(repo):
    text = insert_after(TESTBOARD, "      b2sum:", "      mirrors: https://a.invalid/x.tar.gz\n")
    assert manifest_error(repo, text) == (
        f"{where(text, 'mirrors:')}: baseline.sources[0].mirrors: expected a list, got a string"
    )


# --------------------------------------------------------------------------- unknown keys

TOP_KEYS = "apply_order, arch, baseline, build, description, host, includes, install, kernel, packages, publish, schema"

# (line after which to insert, the inserted line, dotted key, the keys the message must offer)
UNKNOWN = [
    ("arch: aarch64", "colour: blue", "colour", TOP_KEYS),
    ("  ref: v1.0", "  tag: v1.0", "baseline.tag", "name, ref, source_date_epoch, sources, version"),
    ("      b2sum:", "      md5sum: abc", "baseline.sources[0].md5sum", "b2sum, mirrors, sha256, url"),
    ("    series: demo-soc", "    patches: 3", "includes[0].patches", "scope, series"),
    ("    series: demo-board", "    optional: true", "includes[2].optional", "scope, series"),
    ("    patch: demo-v1.0", "    epoch: 1", "packages[0].epoch", "name, patch, pkgbuild"),
    ("  timeout: 1800", "  jobs: 4", "build.jobs", "cross, flavor, nodes, single_engine, timeout"),
    ("    fallback: local", "    spare: local", "build.nodes.spare", "control, experiment, fallback"),
    ("  keep: 3", "  sign: yes", "publish.sign", "destination, keep, key, repository"),
    ("  boot: extlinux", "  portt: 22", "install.portt",
     "backup, boot, connect_timeout, fdt, heartbeat_timeout, identity, known_hosts, min_free_mb, packages, port, "
     "power_cycle, reboot, ssh"),
]


@pytest.mark.parametrize("anchor, line, key, known", UNKNOWN, ids=[u[2] for u in UNKNOWN])
def test_unknown_key_is_located_and_lists_the_known_keys(repo, anchor, line, key, known):
    text = insert_after(TESTBOARD, anchor, line + "\n")
    assert manifest_error(repo, text) == (
        f"{where(text, line)}: {key}: unknown key (expected one of: {known})"
    )


def test_misspelt_key_is_unknown_not_ignored(repo):
    text = edit(TESTBOARD, "  source_date_epoch: 1767225600", "  source_date_epoch: 1767225600\n  sourcedate: 1")
    assert manifest_error(repo, text).startswith(f"{where(text, 'sourcedate')}: baseline.sourcedate: unknown key")


def test_unknown_key_with_a_block_value_names_the_line_of_the_key(repo):
    text = TESTBOARD + "extra:\n  # a comment\n  a: 1\n"
    assert manifest_error(repo, text).startswith(f"{where(text, 'extra:')}: extra: unknown key")


# --------------------------------------------------------------------------- cross-checks


def test_missing_series_directory_is_located(repo):
    text = edit(TESTBOARD, "    series: demo-led", "    series: no-such-series")
    assert manifest_error(repo, text) == (
        f"{where(text, 'no-such-series')}: includes[1].series: expected a patch series at "
        "patches/driver/no-such-series/series, which does not exist"
    )


def test_series_directory_without_series_file_is_refused(repo):
    (repo / "patches/driver/demo-led/series").unlink()
    write_manifest(repo)
    with pytest.raises(ManifestError, match=r"includes\[1\]\.series: expected a patch series at "
                                            r"patches/driver/demo-led/series, which does not exist"):
        load(repo)


def test_series_of_another_scope_is_not_found(repo):
    text = edit(TESTBOARD, "  - scope: soc", "  - scope: board")
    text = edit(text, "apply_order: [soc, driver, board]", "apply_order: [driver, board]")
    assert "patches/board/demo-soc/series, which does not exist" in manifest_error(repo, text)


def test_scope_used_by_an_include_must_be_in_apply_order(repo):
    text = edit(TESTBOARD, "apply_order: [soc, driver, board]", "apply_order: [soc, board]")
    assert manifest_error(repo, text) == (
        f"{where(text, 'apply_order:')}: apply_order: scope driver (used by patches/driver/demo-led) "
        "is missing from apply_order"
    )


def test_duplicate_scope_in_apply_order_is_refused(repo):
    text = edit(TESTBOARD, "apply_order: [soc, driver, board]", "apply_order: [soc, driver, board, soc]")
    assert manifest_error(repo, text) == f"{where(text, 'apply_order:')}: apply_order: scope soc is listed twice"


def test_apply_order_may_name_scopes_without_includes(repo):
    text = edit(TESTBOARD, "apply_order: [soc, driver, board]", "apply_order: [arch, soc, driver, board, module]")
    write_manifest(repo, text)
    assert load(repo).apply_order == (Scope.ARCH, Scope.SOC, Scope.DRIVER, Scope.BOARD, Scope.MODULE)


def test_duplicate_include_is_refused(repo):
    text = insert_after(TESTBOARD, "    series: demo-board", "  - {scope: soc, series: demo-soc}\n")
    assert manifest_error(repo, text) == (
        f"{where(text, '{scope: soc, series: demo-soc}')}: includes[3].series: "
        "patches/soc/demo-soc is included twice"
    )


def test_duplicate_package_is_refused(repo):
    text = insert_after(TESTBOARD, "    patch: demo-v1.0", "  - {name: kabuild-hello, pkgbuild: elsewhere}\n")
    assert manifest_error(repo, text) == (
        f"{where(text, 'pkgbuild: elsewhere')}: packages[1].name: package 'kabuild-hello' is listed twice"
    )


@pytest.mark.parametrize("key", ["control", "experiment", "fallback"])
def test_unknown_build_node_lists_the_nodes_of_nodes_yaml(repo, key):
    old = [line for line in TESTBOARD.splitlines() if line.startswith(f"    {key}:")][0]
    text = edit(TESTBOARD, old, f"    {key}: nowhere")
    known = ", ".join(sorted(load_nodes(repo).nodes))
    assert manifest_error(repo, text) == (
        f"{where(text, 'nowhere')}: build.nodes.{key}: unknown node 'nowhere': "
        f"expected one of {known} (fleet/nodes.yaml)"
    )


def test_node_names_are_not_checked_without_a_nodes_file(repo):
    text = edit(TESTBOARD, "    control: local", "    control: nowhere")
    write_manifest(repo, text)
    assert fleet.load_manifest(repo, HOST, None).build.nodes.control == "nowhere"


FINGERPRINT = "0123456789ABCDEF0123456789ABCDEF01234567"


@pytest.mark.parametrize("key", [
    FINGERPRINT.lower(),  # must be uppercase
    FINGERPRINT[:-1],  # 39 digits
    FINGERPRINT + "8",  # 41 digits
    "0x" + FINGERPRINT[2:],
    "0123 4567 89AB CDEF 0123 4567 89AB CDEF 0123 4567",
    "release@example.invalid",
])
def test_publish_key_must_be_a_fingerprint(repo, key):
    text = edit(TESTBOARD, "  key: throwaway", f"  key: '{key}'")
    assert manifest_error(repo, text) == (
        f"{where(text, '  key:')}: publish.key: expected a 40-hex-digit OpenPGP fingerprint (uppercase) "
        f"or 'throwaway', got {key!r}"
    )


def test_publish_key_fingerprint_is_accepted(repo):
    write_manifest(repo, edit(TESTBOARD, "  key: throwaway", f"  key: {FINGERPRINT}"))
    assert load(repo).publish.key == FINGERPRINT


def test_unquoted_version_is_not_silently_changed(repo):
    write_manifest(repo, edit(TESTBOARD, '  version: "1.0"', "  version: 6.10"))
    try:
        version = load(repo).baseline.version
    except ManifestError:
        return  # refusing the ambiguous number is fine too
    assert version == "6.10"


# --------------------------------------------------------------------------- nodes.yaml

NODES = """\
schema: 1
nodes:
  local:
    url: unix:///var/run/docker.sock
  local-2:
    url: unix:///run/kabuild-docker2.sock
  remote:
    url: tcp://builder.invalid:2376
    tls:
      ca: certs/ca.pem
      cert: certs/cert.pem
      key: ~/certs/key.pem
    description: a TLS engine
"""


def nodes_error(repo: Path, text: str) -> str:
    (repo / "fleet" / "nodes.yaml").write_text(text)
    with pytest.raises(ManifestError) as excinfo:
        load_nodes(repo)
    assert excinfo.value.exit_code == 2
    return str(excinfo.value)


def nodes_where(text: str, needle: str) -> str:
    return f"fleet/nodes.yaml:{line_of(text, needle)}"


def test_nodes_file_of_the_real_repository_loads():
    nodes = load_nodes(REAL_ROOT)
    assert nodes.get("local").kind is NodeKind.UNIX
    assert all(n.name == name for name, n in nodes.nodes.items())


def test_nodes_file_loads_all_kinds(repo):
    (repo / "fleet" / "nodes.yaml").write_text(NODES + "  far:\n    url: ssh://builder@far.invalid\n")
    nodes = load_nodes(repo)
    assert nodes.get("local").kind is NodeKind.UNIX
    assert nodes.get("far").kind is NodeKind.SSH
    remote = nodes.get("remote")
    assert remote.kind is NodeKind.TCP
    assert remote.description == "a TLS engine"
    assert remote.tls.ca == repo / "certs/ca.pem"
    assert remote.tls.key == Path("~/certs/key.pem").expanduser()


def test_nodes_get_unknown_node_lists_the_known_ones(repo):
    (repo / "fleet" / "nodes.yaml").write_text(NODES)
    with pytest.raises(ManifestError, match=r"^unknown build node 'x' in fleet/nodes\.yaml \(known: local, local-2, remote\)$"):
        load_nodes(repo).get("x")


@pytest.mark.parametrize("url", ["http://builder.invalid:2375", "docker.sock", "npipe:////./pipe/docker"])
def test_node_with_a_bad_scheme_is_located(repo, url):
    text = edit(NODES, "url: unix:///run/kabuild-docker2.sock", f"url: {url}")
    assert nodes_error(repo, text) == (
        f"{nodes_where(text, f'url: {url}')}: nodes.local-2.url: expected unix://, ssh:// or tcp://, got {url!r}"
    )


def test_tcp_node_without_tls_is_refused_when_used(repo):
    """Read like any node (commands that do not use it work), refused by the command that uses it."""
    text = drop(NODES, "    tls:")
    (repo / "fleet" / "nodes.yaml").write_text(text)
    node = load_nodes(repo).get("remote")
    with pytest.raises(ConfigError) as e:
        node.usable()
    assert re.fullmatch(r"build node remote \(tcp://\S+\): tls: is required for tcp:// nodes .*", str(e.value))
    assert "clear text" in str(e.value)


@pytest.mark.parametrize("anchor, line, key, known", [
    ("schema: 1", "version: 2", "version", "nodes, schema"),
    ("url: unix:///var/run/docker.sock", "    colour: red", "nodes.local.colour", "connect_timeout, description, tls, url"),
    ("      key: ~/certs", "      password: x", "nodes.remote.tls.password", "ca, cert, key"),
])
def test_unknown_key_in_nodes_file_is_located(repo, anchor, line, key, known):
    text = insert_after(NODES, anchor, line + "\n")
    assert nodes_error(repo, text) == (
        f"{nodes_where(text, line)}: {key}: unknown key (expected one of: {known})"
    )


def test_missing_tls_file_key_is_located(repo):
    text = drop(NODES, "      cert:")
    assert nodes_error(repo, text).endswith(": nodes.remote.tls.cert: is required but missing")


def test_invalid_node_name_is_refused(repo):
    text = edit(NODES, "  local-2:", "  Local_2:")
    assert re.fullmatch(r"fleet/nodes\.yaml:\d+: nodes\.Local_2: invalid node name 'Local_2'", nodes_error(repo, text))


def test_invalid_node_name_names_the_line_of_the_name(repo):
    text = edit(NODES, "  local-2:", "  Local_2:")
    assert nodes_error(repo, text).startswith(f"{nodes_where(text, 'Local_2')}: nodes.Local_2: ")


def test_node_that_is_not_a_mapping_is_refused(repo):
    text = edit(NODES, "  local-2:\n    url: unix:///run/kabuild-docker2.sock\n", "  local-2: unix:///run/x.sock\n")
    assert nodes_error(repo, text) == (
        f"{nodes_where(text, 'local-2:')}: nodes.local-2: expected a mapping, got a string"
    )


def test_nodes_schema_must_be_1(repo):
    text = edit(NODES, "schema: 1", "schema: 3")
    assert nodes_error(repo, text) == "fleet/nodes.yaml:1: schema: expected 1, got 3"


def test_duplicate_node_is_refused(repo):
    text = NODES + "  local:\n    url: unix:///x.sock\n"
    assert nodes_error(repo, text) == f"fleet/nodes.yaml:{len(NODES.splitlines()) + 1}: duplicate key 'local'"


def test_missing_nodes_file_is_a_manifest_error(repo):
    (repo / "fleet" / "nodes.yaml").unlink()
    write_manifest(repo)
    with pytest.raises(ManifestError, match=r"^fleet/nodes\.yaml: file not found$"):
        load(repo)


def test_nodes_file_errors_surface_through_load(repo):
    (repo / "fleet" / "nodes.yaml").write_text(edit(NODES, "schema: 1", "schema: 1\nextra: 1"))
    write_manifest(repo)
    with pytest.raises(ManifestError, match=r"^fleet/nodes\.yaml:2: extra: unknown key"):
        load(repo)


def test_ssh_node_settings_are_read_in_one_pass(repo):
    text = NODES + ("  boltz:\n    url: ssh://builder@boltzmann.example:2222\n    identity: keys/id_ed25519\n"
                    "    known_hosts: keys/known_hosts\n    ssh_config: keys/ssh_config\n"
                    "    ssh_options: [ProxyJump=bastion, ServerAliveInterval=5]\n    connect_timeout: 7\n"
                    "  fermi:\n    url: ssh://fermi\n")
    (repo / "fleet" / "nodes.yaml").write_text(text)
    nodes = load_nodes(repo)
    boltz, fermi = nodes.get("boltz"), nodes.get("fermi")
    assert boltz.kind is NodeKind.SSH and boltz.connect_timeout == 7
    assert boltz.ssh.destination == "boltzmann.example" and boltz.ssh.user == "builder" and boltz.ssh.port == 2222
    assert boltz.ssh.identity == repo / "keys/id_ed25519" and boltz.ssh.config == repo / "keys/ssh_config"
    assert boltz.ssh.options == ("ProxyJump=bastion", "ServerAliveInterval=5")
    # no port in the URL: none on the command line, so ssh_config's Port applies
    assert fermi.ssh.port is None and fermi.ssh.user is None and fermi.connect_timeout == 10


def test_ssh_command_line_never_prompts_and_checks_host_keys(repo):
    from kabuild.build.transport import ssh_argv

    (repo / "fleet" / "nodes.yaml").write_text(NODES + "  fermi:\n    url: ssh://fermi\n    ssh_options: [Port=2200]\n")
    argv = ssh_argv(load_nodes(repo).get("fermi"))
    opts = [argv[i + 1] for i, a in enumerate(argv) if a == "-o"]
    assert {"BatchMode=yes", "StrictHostKeyChecking=yes", "ConnectTimeout=10", "Port=2200"} <= set(opts)
    assert "-p" not in argv  # the port comes from ssh_config (or the option), never rewritten to 22
    assert argv[-3:] == ["--", "fermi", "docker system dial-stdio"]
