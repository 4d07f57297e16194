"""Pure parts of building and reproducing: context tar, verdicts, toolchains, recipes."""

from __future__ import annotations

import dataclasses
import io
import tarfile

import pytest

from kabuild.build import images
from kabuild.build.context import context_tar
from kabuild.build.spec import BuildSpec, Context, StagedFile
from kabuild.compare import acceptance, references
from kabuild.config.manifest import Arch, Flavor, Package
from kabuild.files import Digest
from kabuild.reproduce import identity
from kabuild.reproduce.options import Options


def _members(buf) -> list[tarfile.TarInfo]:
    with tarfile.open(fileobj=io.BytesIO(buf.read())) as tf:
        return tf.getmembers()


def test_context_tar_is_deterministic_and_owned_by_the_build_user(tmp_path):
    a = tmp_path / "PKGBUILD"
    a.write_text("pkgname=x\n")
    b = tmp_path / "x.patch"
    b.write_text("--- a\n")
    ctx = Context(Package("x", tmp_path, "x", None), (StagedFile("PKGBUILD", a), StagedFile("x.patch", b)))
    spec = BuildSpec(host="h", package="x", arch=Arch.X86_64, image="i", source_date_epoch=1767225600, timeout=1)
    with context_tar(ctx, spec) as t1, context_tar(ctx, spec) as t2:
        assert t1.read() == t2.read()
    with context_tar(ctx, spec) as t:
        members = _members(t)
    assert [m.name for m in members] == ["src", "src/PKGBUILD", "src/x.patch"]
    assert all(m.uid == 1000 and m.gid == 1000 and m.mtime == 1767225600 for m in members)
    import dataclasses
    with context_tar(ctx, dataclasses.replace(spec, reverse_context=True)) as t:
        assert [m.name for m in _members(t)] == ["src", "src/x.patch", "src/PKGBUILD"]


def _result(b1: bool, b2: bool, repro: bool, parity: bool | None) -> acceptance.PackageResult:
    art = acceptance.BuiltArtifact(Digest("a" * 64, "b" * 128, 1), "build1/x-1-1-any.pkg.tar.zst", 1.0, "build1/x.log")
    return acceptance.PackageResult(name="x", file="x-1-1-any.pkg.tar.zst", build1=art if b1 else None,
                                    build2=art if b2 else None, reproducible=repro, parity=parity,
                                    verdict=acceptance.Verdict.BUILD_FAILED)


@pytest.mark.parametrize("b1, b2, repro, parity, expected", [
    (True, True, True, True, "accepted"),
    (True, True, True, None, "no-reference"),
    (True, True, True, False, "parity-failed"),
    (True, True, False, True, "not-reproducible"),
    (True, False, False, None, "build-failed"),
])
def test_verdict(b1, b2, repro, parity, expected):
    assert acceptance.verdict_of(_result(b1, b2, repro, parity)) == expected


@pytest.mark.parametrize("verdicts, expected", [
    (["accepted", "no-reference"], ("accepted", 0)),
    (["accepted", "parity-failed"], ("rejected", 1)),
    (["not-reproducible", "build-failed"], ("rejected", 4)),
    ([], ("rejected", 1)),
])
def test_overall_verdict_and_exit_code(verdicts, expected):
    results = [dataclasses.replace(_result(True, True, True, True), verdict=acceptance.Verdict(v)) for v in verdicts]
    assert acceptance.overall(results) == expected


def test_inputs_key_depends_on_lock_image_variations_and_cpus():
    from kabuild.build import variations as v

    def key(lock="l", image="i", selected=v.DEFAULT, cpus=None):
        return identity.inputs_key(lock, image, Options(variations=selected, experiment_cpus=cpus))
    k = key()
    assert k == key(selected=frozenset(v.DEFAULT))
    assert len({k, key(lock="l2"), key(image="i2"), key(selected=v.DEFAULT - {v.Variation.CLOCK}), key(cpus=3)}) == 5


def test_toolchain_changes():
    ref = ("gcc-12 12.2.0-14", "make 4.3-4.1", "zstd 1.5.4")
    now = ("gcc-12 12.2.0-15", "make 4.3-4.1", "bc 1.07")
    assert references.toolchain_changes(ref, now) == ["+bc 1.07", "gcc-12 12.2.0-14 -> 12.2.0-15", "-zstd 1.5.4"]
    assert references.toolchain_changes(ref, ref) == []


def test_recipe_hash_covers_every_recipe_file_and_the_arch(tmp_path):
    import shutil
    from pathlib import Path
    repo = Path(__file__).resolve().parents[2]
    shutil.copytree(repo / "containers", tmp_path / "containers")
    r1 = images.recipe(tmp_path, Flavor.DEBIAN, Arch.AARCH64)
    assert r1 == images.recipe(tmp_path, Flavor.DEBIAN, Arch.AARCH64)
    assert r1.hash != images.recipe(tmp_path, Flavor.DEBIAN, Arch.X86_64).hash
    assert r1.tag == f"kabuild/debian-aarch64:{r1.hash[:16]}"
    (tmp_path / "containers" / "common" / "makepkg.conf").write_text("changed\n")
    assert images.recipe(tmp_path, Flavor.DEBIAN, Arch.AARCH64).hash != r1.hash


def test_dependency_layer_tag_is_keyed_by_the_set():
    base = images.ImageInfo("kabuild/debian-x86_64:abc", "id", "r" * 64, "debian", "x86_64", ())
    t = images.dependencies_tag(base, ("bc", "cpio"))
    assert t == images.dependencies_tag(base, ("cpio", "bc", "bc"))
    assert t != images.dependencies_tag(base, ("bc",)) and t.startswith("kabuild/debian-x86_64:deps-")
