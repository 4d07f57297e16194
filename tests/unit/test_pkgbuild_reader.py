"""Reading a PKGBUILD the way makepkg does (bash, sandboxed), recipe digests, and serving source= entries
offline.  No container: bash runs on this machine in a temporary copy."""

from __future__ import annotations

import hashlib
import os
from pathlib import Path

import pytest

from kabuild.build import pkgbuild
from kabuild.config.manifest import Package, Source
from kabuild.errors import ChecksumError, ConfigError
from kabuild.files import digest_bytes
from kabuild.inputs import recipes
from kabuild.inputs.sources import CachedSource, SourceCache, SourceEntry, serve

HEAD = "pkgname=x\npkgver=1\npkgrel=1\narch=(x86_64 aarch64)\n"


def read(tmp_path: Path, text: str, carch: str = "x86_64", **extra: bytes) -> pkgbuild.PkgbuildInfo:
    d = tmp_path / "recipe"
    d.mkdir(exist_ok=True)
    (d / "PKGBUILD").write_text(text)
    return pkgbuild.read({"PKGBUILD": d / "PKGBUILD", **extra}, "pkgs/x/PKGBUILD", carch=carch,
                         source_date_epoch=1767225600)


def refused(tmp_path: Path, text: str | bytes, **kw) -> str:
    with pytest.raises(ConfigError) as e:
        if isinstance(text, bytes):
            d = tmp_path / "recipe"
            d.mkdir(exist_ok=True)
            (d / "PKGBUILD").write_bytes(text)
            pkgbuild.read({"PKGBUILD": d / "PKGBUILD"}, "pkgs/x/PKGBUILD", carch="x86_64", source_date_epoch=1)
        else:
            read(tmp_path, text, **kw)
    assert e.value.exit_code == 2 and "\n" not in str(e.value)
    return str(e.value)


def test_arrays_are_read_as_bash_reads_them(tmp_path):
    info = read(tmp_path, HEAD + """
depends=('glibc' "zlib>=1.2")
makedepends=(bc cpio  # a comment with a ) in it
  'perl')
makedepends+=(flex)
checkdepends_x86_64=('python')
checkdepends_aarch64=('ruby')
optdepends=('ignored: not a build dependency')
""")
    assert info.dependencies == ("bc", "cpio", "flex", "glibc", "perl", "python", "zlib")
    assert info.version == "1-1" and info.arch == ("x86_64", "aarch64") and info.carch == "x86_64"
    assert read(tmp_path, HEAD + "checkdepends_aarch64=('ruby')\n", carch="aarch64").dependencies == ("ruby",)


def test_split_packages_bring_their_own_depends(tmp_path):
    info = read(tmp_path, """pkgbase=both
pkgname=(one two)
pkgver=2
pkgrel=3
epoch=1
arch=(any)
makedepends=(make)
package_one() { depends=(kmod); depends+=(coreutils); }
package_two() { depends_x86_64=(perl); :; }
""")
    assert info.pkgbase == "both" and info.pkgnames == ("one", "two") and info.version == "1:2-3"
    assert info.dependencies == ("coreutils", "kmod", "make", "perl")


def test_values_computed_from_kabuild_conf_are_seen(tmp_path):
    conf = b"KABUILD_KCONFIG=tinyconfig\nKABUILD_SOURCE=linux-1.tar.xz\n"
    info = read(tmp_path, '. "$startdir/kabuild.conf"\n' + HEAD + 'source=("$KABUILD_SOURCE")\n',
                **{"kabuild.conf": conf})
    assert info.reads_kabuild_conf and [e.text for e in info.sources] == ["linux-1.tar.xz"]
    assert not read(tmp_path, HEAD).reads_kabuild_conf


def test_sources_carry_their_own_sums_and_the_carch_array(tmp_path):
    info = read(tmp_path, HEAD + """
source=("https://example.org/x-$pkgver.tar.gz" "y.tgz::https://example.org/dl?id=3")
sha256sums=('aa' 'SKIP')
b2sums=('bb' 'cc')
source_x86_64=(extra.patch)
sha256sums_x86_64=('dd')
""")
    assert [(e.label, e.text, e.filename) for e in info.sources] == [
        ("source[0]", "https://example.org/x-1.tar.gz", "x-1.tar.gz"),
        ("source[1]", "y.tgz::https://example.org/dl?id=3", "y.tgz"),
        ("source_x86_64[0]", "extra.patch", "extra.patch")]
    assert info.sources[0].sums == (("sha256", "aa"), ("b2", "bb"))
    assert info.sources[1].checksum("sha256") is None and info.sources[1].checksum("b2") == "cc"


def test_top_level_code_cannot_touch_the_repository_or_the_network(tmp_path):
    outside = tmp_path / "repository-file"
    outside.write_text("keep me\n")
    tmp_path.chmod(0o755)
    info = read(tmp_path, HEAD + f"""
rm -f {outside} 2>/dev/null; echo changed > {outside} 2>/dev/null
[[ -z $KABUILD_CACHE && -z $VIRTUAL_ENV ]] && makedepends=(clean-env)
""")
    assert outside.read_text() == "keep me\n"
    assert info.dependencies == ("clean-env",)  # the caller's environment is not there


@pytest.mark.skipif(os.geteuid() != 0, reason="the reader drops to nobody only when kabuild runs as root")
def test_as_root_the_reader_runs_as_nobody_without_network(tmp_path):
    info = read(tmp_path, HEAD + 'makedepends=("uid-$(id -u)")\n'
                + "while IFS=: read -r dev _; do makedepends+=(\"if-${dev// /}\"); done < <(tail -n +3 /proc/net/dev)\n")
    assert info.dependencies == ("if-lo", "uid-65534")  # a network namespace of its own: loopback only


@pytest.mark.parametrize("text, says", [
    (b"", "pkgs/x/PKGBUILD: is empty"),
    (b"  \n\n", "pkgs/x/PKGBUILD: is empty"),
    (b"pkgname=x\0\n", "pkgs/x/PKGBUILD: is binary (a NUL byte at offset 9)"),
    (b"pkgname=x\npkgdesc='\xff'\n", "pkgs/x/PKGBUILD:2: not UTF-8 text"),
    ("pkgver=1\npkgrel=1\narch=(any)\n", "defines no pkgname"),
    ("pkgname=x\npkgrel=1\narch=(any)\n", "defines no pkgver"),
    ("pkgname=x\npkgver=1\npkgrel=1\n", "defines no arch"),
    ("pkgname=x\npkgver=1.0-2\npkgrel=1\narch=(any)\n", "pkgver='1.0-2' is not a valid pkgver"),
    ("pkgname=x\npkgver=1\npkgrel=one\narch=(any)\n", "pkgrel='one' is not a valid pkgrel"),
    ("pkgname=-x\npkgver=1\npkgrel=1\narch=(any)\n", "pkgname '-x' is not a valid package name"),
    ("pkgname=x\npkgver=1\npkgrel=1\narch=(any x86_64)\n", "'any' cannot be given with other architectures"),
    (HEAD + "makedepends=(--allow-unauthenticated)\n", "makedepends: '--allow-unauthenticated' is not a package name"),
    (HEAD + "depends=(a\n", "pkgs/x/PKGBUILD:5: bash cannot read it: unexpected EOF"),
    (HEAD + "false\n", "its top level ends in a failing command (exit 1)"),
    (HEAD + "exit 0\n", "its top level exits (status 0) while bash reads it"),
])
def test_what_makepkg_would_refuse_is_refused_here(tmp_path, text, says):
    message = refused(tmp_path, text)
    assert says in message, message


def test_a_pkgbuild_that_waits_is_stopped(tmp_path, monkeypatch):
    monkeypatch.setattr(pkgbuild, "TIMEOUT", 1)
    message = refused(tmp_path, HEAD + "sleep 30\n")
    assert "reading it took longer than 1s" in message


# --------------------------------------------------------------------------- recipe digests


def _package(d: Path) -> Package:
    return Package("x", d, "pkgs/x", "x.patch")


def test_a_recipe_digest_covers_every_file_but_the_patch_copy(tmp_path):
    d = tmp_path / "x"
    (d / "sub").mkdir(parents=True)
    (d / "PKGBUILD").write_text(HEAD)
    (d / "sub" / "helper.sh").write_text("echo\n")
    (d / "x.patch").write_text("the drift check covers this copy\n")
    (d / "src").mkdir()
    (d / "src" / "left-by-makepkg").write_text("work\n")
    first = recipes.pin(_package(d))
    assert [f.path for f in first.files] == ["PKGBUILD", "sub/helper.sh"]
    (d / "x.patch").write_text("changed\n")
    (d / "src" / "left-by-makepkg").write_text("changed\n")
    assert recipes.pin(_package(d)) == first
    (d / "sub" / "helper.sh").chmod(0o755)
    moded = recipes.pin(_package(d))
    assert moded.sha256 != first.sha256 and recipes.file_changes(first, moded) == "sub/helper.sh mode changed"
    (d / "PKGBUILD").write_text(HEAD.replace("pkgrel=1", "pkgrel=2"))
    (d / "new.install").write_text("post_install() { :; }\n")
    edited = recipes.pin(_package(d))
    assert recipes.changes((moded,), (edited,)) == ["x (pkgs/x): PKGBUILD edited, new.install added"]


# --------------------------------------------------------------------------- serving source= entries


def _baseline(tmp_path: Path, data: bytes = b"baseline bytes\n") -> CachedSource:
    path = tmp_path / "hello-1.0.tar.gz"
    path.write_bytes(data)
    d = digest_bytes(data)
    return CachedSource(Source("fleet/sources/hello-1.0.tar.gz", d.sha256, d.b2sum), path, d)


def _serve(tmp_path: Path, entries, staged=None, baseline=None, cache=None):
    base = baseline if baseline is not None else [_baseline(tmp_path)]
    have = staged if staged is not None else {b.source.filename: b.path for b in base}
    return serve(entries, have, base, cache or SourceCache(tmp_path / "cache"), where="pkgs/x/PKGBUILD",
                 pkgbuild_dir="pkgs/x", manifest="fleet/fx.yaml", host="fx")


def test_an_upstream_url_is_served_by_the_baseline_source_with_its_checksum(tmp_path):
    base = _baseline(tmp_path)
    entry = SourceEntry("source", 0, "https://example.org/dl/hello-v1.0.tar.gz", (("sha256", base.digest.sha256),))
    assert _serve(tmp_path, [entry], baseline=[base]) == {"hello-v1.0.tar.gz": base.path}
    named = SourceEntry("source", 0, "hello.tgz::https://example.org/x", (("b2", base.digest.b2sum),))
    assert _serve(tmp_path, [named], baseline=[base]) == {"hello.tgz": base.path}
    same_name = SourceEntry("source", 0, "https://example.org/hello-1.0.tar.gz", (("sha256", "SKIP"),))
    assert _serve(tmp_path, [same_name], baseline=[base]) == {}  # staged already under that name


def test_the_checksum_cache_serves_what_the_manifest_does_not_name(tmp_path):
    data = b"an extra upstream file\n"
    sha = hashlib.sha256(data).hexdigest()
    cache = SourceCache(tmp_path / "cache")
    (cache.root / "sha256").mkdir(parents=True)
    (cache.root / "sha256" / sha).write_bytes(data)
    entry = SourceEntry("source", 1, "https://example.org/extra.txt", (("sha256", sha),))
    assert _serve(tmp_path, [entry], cache=cache) == {"extra.txt": cache.root / "sha256" / sha}


@pytest.mark.parametrize("entry, says", [
    (SourceEntry("source", 0, "https://example.org/other-2.0.tar.gz", (("sha256", "ab" * 32),)),
     "source[0] 'https://example.org/other-2.0.tar.gz' cannot be served offline (builds have no network): no file "
     "other-2.0.tar.gz in pkgs/x or among the baseline sources, and no baseline source or cached file has its "
     "sha256sums value; add the URL to baseline.sources in fleet/fx.yaml"),
    (SourceEntry("source", 2, "https://example.org/other.tar.gz", (("sha256", "SKIP"),)),
     "the PKGBUILD gives it no sha256sums or b2sums value to find it by"),
    (SourceEntry("source", 0, "missing.patch"), "no file missing.patch in pkgs/x"),
    (SourceEntry("source", 0, "git+https://example.org/x.git#tag=v1"), "is a git checkout; builds are offline"),
])
def test_what_cannot_be_served_offline_is_one_line_naming_the_entry(tmp_path, entry, says):
    with pytest.raises(ConfigError) as e:
        _serve(tmp_path, [entry])
    assert e.value.exit_code == 2 and says in str(e.value), str(e.value)
    assert str(e.value).startswith("pkgs/x/PKGBUILD: ")


def test_a_staged_file_that_fails_the_pkgbuilds_own_sums_is_refused_before_the_container(tmp_path):
    base = _baseline(tmp_path)
    entry = SourceEntry("source", 0, "hello-1.0.tar.gz", (("md5", "0" * 32),))
    with pytest.raises(ChecksumError) as e:
        _serve(tmp_path, [entry], baseline=[base])
    assert e.value.exit_code == 3
    assert f"md5sums for source[0] (hello-1.0.tar.gz) is {'0' * 32}, but" in str(e.value)
    good = SourceEntry("source", 0, "hello-1.0.tar.gz", (("md5", hashlib.md5(b"baseline bytes\n").hexdigest()),))
    assert _serve(tmp_path, [good], baseline=[base]) == {}


def test_staging_serves_an_upstream_url_from_the_baseline_under_the_name_makepkg_expects(repo):
    from kabuild.build import context
    from kabuild.config import manifest as fleet
    from kabuild.inputs.promotion import promote_host

    pkgbuild_path = repo / "fleet/pkgbuilds/kabuild-hello/PKGBUILD"
    text = pkgbuild_path.read_text()
    pkgbuild_path.write_text(text.replace('source=("kabuild-hello-${pkgver}.tar.gz"',
                                          'source=("https://example.org/releases/hello-v${pkgver}.tar.gz"'))
    m = fleet.load(repo, "demo")[0]
    lock = promote_host(repo, m).lock
    ctx = context.stage(repo, m, m.packages[0], lock, SourceCache(repo / "no-cache"))
    files = {f.name: f.path for f in ctx.files}
    assert files["hello-v1.0.tar.gz"] == files["kabuild-hello-1.0.tar.gz"] == repo / "fleet/sources/kabuild-hello-1.0.tar.gz"
