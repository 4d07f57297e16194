"""The bad-input table, continued for issue 15's verdicts: recipes, architectures, references as evidence,
kernel configuration, PKGBUILDs read the way makepkg reads them and sources served offline.

Same rules as :mod:`test_bad_inputs` (whose world and helpers this reuses): one damaged input, one verb
run in-process, the documented exit code, exactly one ``kabuild: error:`` line on stderr naming the
file (and line where it has lines), no traceback, and no Docker engine reached: every refusal here
happens before any container starts.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from pathlib import Path

import kbworld
import pytest
import test_bad_inputs as base
from kbhelpers import line_of
from kbworld import LOCK, REFERENCE, REPORT
from test_bad_inputs import (
    DEMO,
    MANIFEST,
    Case,
    both,
    check_case,
    delitem,
    esc,
    json_edit,
    kabuild,
    promote_demo,
    setitem,
    write_text,
    yaml_edit,
)

from kabuild.config.yamlio import write_yaml

template, world = base.template, base.world  # the demo world and its damaged copy (fixtures)

PKGBUILD = "fleet/pkgbuilds/kabuild-hello/PKGBUILD"
DEMO_PKGBUILD = (kbworld.REPO_ROOT / PKGBUILD).read_text()
ARCH_NAMES = "containers/debian/arch-names"
ANCHOR = "    patch: demo-v1.0-cumulative.patch\n"
REF_DIR = str(Path(REFERENCE).parent)


def with_kernel(kernel: str) -> str:
    """The demo manifest with a kernel: section (``kernel`` is its body, indented by two spaces)."""
    assert DEMO.count(ANCHOR) == 1
    return DEMO.replace(ANCHOR, ANCHOR + "kernel:\n" + kernel)


def kernel_line(kernel: str, needle: str) -> int:
    return line_of(with_kernel(kernel), needle)


def fragment(name: str, data: bytes | str, *, link: str | None = None) -> Callable[[Path], None]:
    """fleet/kconfig/<name> with ``data`` (or a symlink to ``link``), and the manifest naming it."""
    def damage(root: Path) -> None:
        path = root / "fleet/kconfig" / name
        if link is not None:
            path.symlink_to(link)
        else:
            path.write_bytes(data.encode() if isinstance(data, str) else data)
        (root / MANIFEST).write_text(with_kernel(f"  config: tinyconfig\n  fragments: [fleet/kconfig/{name}]\n"))
    return damage


FRAGMENTS = "  config: tinyconfig\n  fragments: [fleet/kconfig/{}]\n"


def fragment_case(cid: str, name: str, data: bytes | str, says: str, **kw) -> Case:
    line = kernel_line(FRAGMENTS.format(name), "  fragments:")
    return Case(f"kernel-fragment-{cid}", fragment(name, data, **kw), ("verify", "demo"), 2,
                rf"{esc(MANIFEST)}:{line}: kernel\.fragments: item 0: {says}")


def target_case(target: str, says: str) -> Case:
    body = f"  config: {target}\n"
    return Case(f"kernel-target-{target}", write_text(MANIFEST, with_kernel(body)), ("verify", "demo"), 2,
                rf"{esc(MANIFEST)}:{kernel_line(body, '  config:')}: kernel\.config: '{target}' {says}")


CASES = [
    target_case("menuconfig", "is an interactive menu"),
    target_case("oldconfig", "asks about every new option on the terminal"),
    target_case("xconfig", r"is an interactive \(Qt\) program"),
    target_case("randconfig", "picks options at random: never reproducible"),
    target_case("localmodconfig", "reads the modules loaded on the build machine"),
    fragment_case("symlink-to-passwd", "passwd.config", b"", r"fleet/kconfig/passwd\.config resolves to /etc/passwd, "
                  r"outside the repository", link="/etc/passwd"),
    fragment_case("crlf", "crlf.config", "CONFIG_MODULES=y\r\nCONFIG_PRINTK=y\r\n",
                  r"fleet/kconfig/crlf\.config:1: ends in CR LF"),
    fragment_case("binary", "blob.config", b"CONFIG_MODULES=y\n\x00\x01\x02",
                  r"fleet/kconfig/blob\.config: is binary \(a NUL byte at offset 17\)"),
    fragment_case("prose", "notes.config", "# what we want\nturn on modules please\n",
                  r"fleet/kconfig/notes\.config:2: expected CONFIG_NAME=y\|m\|n\|\"text\"\|number"),
    fragment_case("inline-comment", "inline.config", "CONFIG_MODULES=y  # needed\n",
                  r"fleet/kconfig/inline\.config:1: expected CONFIG_NAME="),
    fragment_case("not-utf8", "latin1.config", b'CONFIG_LOCALVERSION="-caf\xe9"\n',
                  r"fleet/kconfig/latin1\.config: is not UTF-8 text"),
    Case("kernel-on-a-recipe-that-is-not-a-kernel",
         both(write_text(MANIFEST, with_kernel(FRAGMENTS.format("small.config"))), promote_demo), ("build", "demo"), 2,
         rf"{esc(PKGBUILD)}: package kabuild-hello is not a kernel recipe \(its PKGBUILD does not read kabuild\.conf\), "
         r"so the kernel: section of fleet/demo\.yaml would never be applied"),
    Case("build-cross-on-a-plain-host", write_text(MANIFEST, DEMO.replace("  timeout: 1800\n", "  timeout: 1800\n  cross: true\n")),
         ("verify", "demo"), 2, rf"{esc(MANIFEST)}:\d+: build\.cross: a cross build is for kernel recipes"),
    Case("cross-flag-on-demo-reproduce", lambda root: None, ("reproduce", "demo", "--cross"), 2,
         r"--cross: demo is not a kernel host \(fleet/demo\.yaml has no kernel: section\)"),
    Case("cross-flag-on-demo-build", lambda root: None, ("build", "demo", "--cross"), 2,
         r"--cross: demo is not a kernel host"),
]


# --------------------------------------------------------------------------- PKGBUILDs, read the way makepkg reads them

def pkgbuild(text: str | bytes, *extra: Callable[[Path], None]) -> Callable[[Path], None]:
    """The demo PKGBUILD replaced by ``text``, promoted (an edited recipe is a lock input)."""
    return both(write_text(PKGBUILD, text), *extra, promote_demo)


def pkgbuild_case(cid: str, text: str | bytes, code: int, says: str, verb: str = "build", *extra) -> Case:
    return Case(f"pkgbuild-{cid}-{verb}", pkgbuild(text, *extra), (verb, "demo"), code, says)


def edited(old: str, new: str) -> str:
    assert DEMO_PKGBUILD.count(old) == 1, old
    return DEMO_PKGBUILD.replace(old, new)


MAP_AT = rf"package kabuild-hello: build dependency no-such-dep has no entry in {esc(ARCH_NAMES)}"
ON_SOURCE = 'source=("kabuild-hello-${pkgver}.tar.gz"'
B2_OF_BASELINE = "b2sums=('b8cfd51b"


def elsewhere(source: str) -> str:
    """The demo PKGBUILD with its first source replaced by ``source``, whose b2sum names no file kabuild has
    (with the baseline's b2sum kabuild would serve the baseline tarball under the new name)."""
    return edited(ON_SOURCE, f'source=("{source}"').replace(B2_OF_BASELINE, "b2sums=('c8cfd51b")
UNSERVED = r"source\[0\] 'https://example\.org/dl/other-2\.0\.tar\.gz' cannot be served offline \(builds have no network\)"
CASES += [
    pkgbuild_case("empty", "", 2, rf"{esc(PKGBUILD)}: is empty"),
    pkgbuild_case("binary", b"\x7fELF\x02\x01\x01\x00", 2, rf"{esc(PKGBUILD)}: is binary \(a NUL byte at offset 7\)",
                  "reproduce"),
    pkgbuild_case("makedepends-append-unmapped", DEMO_PKGBUILD + "makedepends+=(no-such-dep)\n", 2, MAP_AT),
    pkgbuild_case("paren-in-a-comment", DEMO_PKGBUILD + "makedepends=(bc  # a ) in a comment\n  no-such-dep)\n", 2,
                  MAP_AT, "reproduce"),
    pkgbuild_case("split-package-depends", DEMO_PKGBUILD + "package_kabuild-hello() { depends=(no-such-dep); }\n", 2,
                  MAP_AT),
    pkgbuild_case("arch-dependent-makedepends", DEMO_PKGBUILD + "makedepends_aarch64=(no-such-dep)\n", 2, MAP_AT),
    pkgbuild_case("syntax-error", DEMO_PKGBUILD + "depends=(a\n", 2,
                  rf"{esc(PKGBUILD)}:{DEMO_PKGBUILD.count(chr(10)) + 1}: bash cannot read it"),
    pkgbuild_case("apt-option-as-dependency", DEMO_PKGBUILD + "makedepends=(--allow-unauthenticated)\n", 2,
                  rf"{esc(PKGBUILD)}: makedepends: '--allow-unauthenticated' is not a package name"),
    pkgbuild_case("no-pkgver", edited("pkgver=1.0\n", ""), 2, rf"{esc(PKGBUILD)}: defines no pkgver"),
    pkgbuild_case("exits-at-top-level", "exit 0\n" + DEMO_PKGBUILD, 2,
                  rf"{esc(PKGBUILD)}: its top level exits \(status 0\) while bash reads it"),
    pkgbuild_case("arch-of-another-host", edited("arch=('aarch64' 'x86_64')", "arch=('x86_64')"), 2,
                  rf"{esc(PKGBUILD)}: arch=\(x86_64\) does not include aarch64, the architecture of host demo"),
    pkgbuild_case("remote-source-not-served",
                  elsewhere("https://example.org/dl/other-2.0.tar.gz"), 2,
                  rf"{esc(PKGBUILD)}: {UNSERVED}: no file other-2\.0\.tar\.gz in fleet/pkgbuilds/kabuild-hello",
                  "reproduce"),
    pkgbuild_case("git-source", edited(ON_SOURCE, 'source=("git+https://example.org/hello.git#tag=v1.0"'), 2,
                  rf"{esc(PKGBUILD)}: source\[0\] 'git\+https://example\.org/hello\.git#tag=v1\.0' is a git "
                  "checkout; builds are offline"),
    pkgbuild_case("local-source-missing", elsewhere("hello-extra.patch"), 2,
                  rf"{esc(PKGBUILD)}: source\[0\] 'hello-extra\.patch' cannot be served offline"),
    pkgbuild_case("b2sum-of-the-baseline-wrong", edited(B2_OF_BASELINE, "b2sums=('08cfd51b"), 3,
                  rf"{esc(PKGBUILD)}: b2sums for source\[0\] \(kabuild-hello-1\.0\.tar\.gz\) is 08cfd51b"),
    pkgbuild_case("arch-names-apt-option", DEMO_PKGBUILD + "makedepends=(bc)\n", 2,
                  rf"{esc(ARCH_NAMES)}:\d+: invalid Debian package name\(s\) '--allow-unauthenticated' for bc", "build",
                  lambda root: (root / ARCH_NAMES).write_text("bc --allow-unauthenticated bc\n")),
    pkgbuild_case("arch-names-uppercase", DEMO_PKGBUILD + "makedepends=(bc)\n", 2,
                  rf"{esc(ARCH_NAMES)}:1: invalid Debian package name\(s\) 'BC' for bc", "reproduce",
                  lambda root: (root / ARCH_NAMES).write_text("bc BC\n")),
]


# --------------------------------------------------------------------------- the recipe in the lock, the report and the gate

RECIPE_EDIT = write_text(PKGBUILD, DEMO_PKGBUILD.replace("pkgrel=1", "pkgrel=2"))
CASES += [
    Case("recipe-edited-verify", RECIPE_EDIT, ("verify", "demo"), 3,
         r"demo: manifest\.lock is stale \(recipe changed since promote: kabuild-hello \(fleet/pkgbuilds/kabuild-hello\): "
         r"PKGBUILD edited\); run `kabuild promote demo`"),
    Case("recipe-file-added-reproduce", write_text("fleet/pkgbuilds/kabuild-hello/hello.install", "post_install() { :; }\n"),
         ("reproduce", "demo"), 3, r"demo: manifest\.lock is stale \(recipe changed since promote: kabuild-hello "
         r"\(fleet/pkgbuilds/kabuild-hello\): hello\.install added\)"),
    Case("recipe-edited-promoted-publish", both(RECIPE_EDIT, promote_demo), ("publish", "demo"), 3,
         r"publish refused \(1 of 1 package\(s\)\): report: stale report: .*kabuild-hello: .*its recipe changed since "
         rf"run {kbworld.RUN_ID} \(the run built recipe [0-9a-f]{{12}}, the PKGBUILD directory is now [0-9a-f]{{12}}\)"),
    Case("lock-without-recipes", yaml_edit(LOCK, delitem("recipes")), ("verify", "demo"), 3,
         rf"{esc(LOCK)}:\d+: recipes: is missing: this lock was written before kabuild recorded the recipe digests"),
    Case("lock-recipe-digest-edited", yaml_edit(LOCK, setitem("recipes.0.sha256", "0" * 64)), ("build", "demo"), 3,
         rf"{esc(LOCK)}:\d+: recipes\[0\]\.sha256: is not the digest of the files listed under it"),
    Case("report-without-recipes", json_edit(REPORT, delitem("recipes")), ("publish", "demo"), 3,
         rf"{esc(REPORT)}: recipes: is required but missing"),
    Case("report-recipe-not-a-digest", json_edit(REPORT, setitem("recipes.kabuild-hello", "edited")),
         ("reference", "record", "demo"), 3,
         rf"{esc(REPORT)}: recipes\.kabuild-hello: expected the recipe's digest"),
]


# --------------------------------------------------------------------------- architectures

def retarget(arch: str) -> Callable[[Path], None]:
    return write_text(MANIFEST, DEMO.replace("arch: aarch64", f"arch: {arch}"))


CASES += [
    Case("arch-reference-record-for-another-host", retarget("x86_64"), ("reference", "record", "demo"), 3,
         rf"{esc(kbworld.FILE)} is built for aarch64, but host demo is x86_64: references are recorded for x86_64 or "
         "any packages only"),
    Case("arch-publish-for-another-host", both(retarget("x86_64"), promote_demo), ("publish", "demo"), 3,
         rf"publish refused .*kabuild-hello: {esc(kbworld.FILE)} is built for aarch64, but host demo is x86_64 "
         r"\(only x86_64 or any packages belong to it\)"),
]


# --------------------------------------------------------------------------- references are evidence

def stored(change: Callable[[Path], None] | None = None, **fields) -> Callable[[Path], None]:
    """The reference keeps its artifact beside reference.yaml (as `reference record` does for small
    packages); then ``fields`` of artifacts[0] are edited by hand and ``change`` damages the files."""
    def damage(root: Path) -> None:
        (root / REF_DIR / kbworld.FILE).write_bytes(kbworld.PACKAGE_BYTES)
        doc = kbworld.reference_doc(kbworld.acceptance.load(root / REPORT))
        doc = dataclasses.replace(doc, artifacts=tuple((f, d, kbworld.FILE) for f, d, _a in doc.artifacts))
        write_yaml(root / REFERENCE, doc.to_dict())  # as `reference record` writes it
        for key, value in fields.items():
            yaml_edit(REFERENCE, setitem(f"artifacts.0.{key}", value))(root)
        if change is not None:
            change(root)
    return damage


def lose_the_yaml(root: Path) -> None:
    (root / REF_DIR / f"{kbworld.FILE}.PKGINFO").write_text("pkgname = kabuild-hello\n")
    (root / REFERENCE).unlink()


def dangle(root: Path) -> None:
    (root / REFERENCE).unlink()
    (root / REFERENCE).symlink_to("reference-moved.yaml")


def a_directory(root: Path) -> None:
    (root / REFERENCE).unlink()
    (root / REFERENCE).mkdir()


REF = esc(REFERENCE)
CASES += [
    Case("reference-hash-edited-by-hand", stored(sha256="ab" * 32), ("reproduce", "demo"), 3,
         rf"{REF}: artifacts\[0\]\.sha256: records {'ab' * 32}, but the stored artifact {esc(kbworld.FILE)} has "
         r"[0-9a-f]{64} \(a hand-edited reference or a damaged artifact is not evidence\)"),
    Case("reference-size-edited-by-hand", stored(size=1), ("reproduce", "demo"), 3,
         rf"{REF}: artifacts\[0\]\.size: records 1, but the stored artifact"),
    Case("reference-artifact-damaged", stored(lambda root: (root / REF_DIR / kbworld.FILE).write_bytes(b"rot\n")),
         ("reproduce", "demo"), 3, rf"{REF}: artifacts\[0\]\.sha256: records [0-9a-f]{{64}}, but the stored artifact"),
    Case("reference-artifact-gone", stored(lambda root: (root / REF_DIR / kbworld.FILE).unlink()),
         ("reproduce", "demo"), 3,
         rf"{REF}: artifacts\[0\]\.artifact: names {esc(kbworld.FILE)} beside reference\.yaml, which does not exist"),
    Case("reference-toolchain-cut-short", yaml_edit(REFERENCE, lambda d: setitem("toolchain", d["toolchain"][:-1])(d)), ("reproduce", "demo"), 3,
         rf"{REF}:\d+: document_sha256: records [0-9a-f]{{64}}, but the document hashes to [0-9a-f]{{64}}: a "
         "reference edited by hand or damaged is not evidence"),
    Case("reference-lock-hash-edited", yaml_edit(REFERENCE, setitem("lock_hash", "5" * 64)), ("reproduce", "demo"), 3,
         rf"{REF}:\d+: document_sha256: records"),
    Case("reference-digest-missing", yaml_edit(REFERENCE, delitem("document_sha256")), ("reproduce", "demo"), 3,
         rf"{REF}:\d+: document_sha256: is required but missing"),
    Case("reference-yaml-deleted", lose_the_yaml, ("reproduce", "demo"), 3,
         rf"{REF}: file not found, but {esc(REF_DIR)}/ still holds {esc(kbworld.FILE)}\.PKGINFO"),
    Case("reference-dangling-link", dangle, ("reproduce", "demo"), 3, rf"{REF}: file not found"),
    Case("reference-a-directory", a_directory, ("reproduce", "demo"), 3, rf"{REF}: is a directory, not a file"),
]


def test_the_table_adds_what_issue_15_asks_for():
    assert len(CASES) >= 30
    assert len({c.id for c in CASES}) == len(CASES)


@pytest.mark.parametrize("case", CASES, ids=[c.id for c in CASES])
def test_bad_input_is_one_located_line(world, capsys, case):
    check_case(world, capsys, case)
    runs = world.root / kbworld.RUN / ".."
    assert sorted(p.name for p in runs.iterdir()) == sorted([kbworld.RUN_ID, "latest"])  # no run was started


def test_a_reference_with_its_artifact_stored_and_intact_is_accepted(world):
    """The control of the stored-artifact rows: intact, the reader reproduce uses accepts it (reproduce
    itself connects to its nodes before it answers, which a unit test does not)."""
    from kabuild.compare import references

    stored()(world.root)
    refs = references.load(world.root, "demo", "kabuild-hello")
    assert refs and all(r.digest.sha256 for r in refs.values())


def test_a_refused_reference_record_writes_nothing(world, capsys):
    before = sorted(p.name for p in (world.root / REF_DIR).iterdir())
    text = (world.root / REFERENCE).read_bytes()
    retarget("x86_64")(world.root)
    assert kabuild(world.root, capsys, "reference", "record", "demo")[0] == 3
    assert sorted(p.name for p in (world.root / REF_DIR).iterdir()) == before
    assert (world.root / REFERENCE).read_bytes() == text
