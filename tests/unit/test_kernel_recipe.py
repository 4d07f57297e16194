"""Kernel hosts: the manifest's kernel section, fragments as lock inputs, the Arch-name map,
and the kabuild.conf the shared recipe reads.  Pure logic: no container is started."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest
from kbhelpers import TESTBOARD, edit, insert_after, load, manifest_error, write_manifest

from kabuild.build import context, depnames, host, kernel, pkgbuild
from kabuild.config.manifest import Arch, Flavor
from kabuild.errors import ChecksumError, ConfigError, ExitCode
from kabuild.inputs import lock, patches, promotion
from kabuild.inputs.sources import SourceCache

REPO_ROOT = Path(__file__).resolve().parents[2]
KERNEL = "kernel:\n  config: tinyconfig\n  fragments: [fleet/kconfig/small.config]\n"


def kernel_recipe(text: str) -> str:
    """``text`` with its package built from the shared kernel recipe (which reads kabuild.conf)."""
    text = edit(text, "pkgbuild: fleet/pkgbuilds/kabuild-hello", "pkgbuild: fleet/pkgbuilds/linux-kabuild")
    return edit(text, "    patch: demo-v1.0-cumulative.patch\n", "")


def kernel_board(text: str = TESTBOARD) -> str:
    return kernel_recipe(insert_after(text, "    patch: demo-v1.0-cumulative.patch", KERNEL))


# --------------------------------------------------------------------------- the name map


def test_name_map_translates_and_dedupes():
    m = depnames.parse("libelf libelf-dev\nxz xz-utils  # comment\nkmod kmod\ncoreutils -\n", "map")
    assert m.translate("p", ("xz", "libelf", "coreutils", "kmod")) == ("kmod", "libelf-dev", "xz-utils")
    assert m.translate("p", ("coreutils",)) == ()


def test_unmapped_name_is_a_config_error_naming_package_and_map_file():
    m = depnames.parse("bc bc\n", "containers/debian/arch-names")
    with pytest.raises(ConfigError) as e:
        m.translate("linux-x", ("bc", "pahole-ng"))
    assert e.value.exit_code == ExitCode.CONFIG == 2
    assert "pahole-ng" in str(e.value) and "containers/debian/arch-names" in str(e.value)
    assert "linux-x" in str(e.value)


@pytest.mark.parametrize("text, words", [
    ("bc\n", ["map:1", "'-'"]),
    ("bc bc\nbc bc2\n", ["map:2", "twice"]),
    ("bc b$d\n", ["map:1", "b$d"]),
    ("b!c bc\n", ["map:1", "b!c"]),
    ("bc bc -\n", ["map:1", "'-'"]),
])
def test_bad_map_lines_are_located(text, words):
    with pytest.raises(ConfigError) as e:
        depnames.parse(text, "map")
    assert all(w in str(e.value) for w in words), str(e.value)


def test_the_real_map_covers_the_kernel_recipe_and_cross_toolchains():
    names = depnames.load(REPO_ROOT, Flavor.DEBIAN)
    assert names is not None
    recipe = REPO_ROOT / "fleet/pkgbuilds/linux-kabuild"
    conf = b"KABUILD_PKGBASE=linux-x\nKABUILD_PKGVER=1\nKABUILD_KCONFIG=tinyconfig\n"
    deps = pkgbuild.read({"PKGBUILD": recipe / "PKGBUILD", "kabuild.conf": conf}, "PKGBUILD", carch="x86_64",
                         source_date_epoch=1767225600).dependencies
    assert {"bc", "kmod", "libelf", "xz", "coreutils"} <= set(deps)  # coreutils: the split kernel package's depends
    for arch_name in ("libelf", "pahole", "xmlto", "kmod", "bc", "cpio", "perl", "tar", "xz", *deps,
                      "aarch64-linux-gnu-gcc", "aarch64-linux-gnu-binutils"):
        assert arch_name in names.names, arch_name
    assert names.translate("p", ("libelf", "xz", "pahole")) == ("dwarves", "libelf-dev", "xz-utils")


def test_archlinuxarm_keeps_arch_names():
    assert depnames.for_flavor(REPO_ROOT, Flavor.ARCHLINUXARM, "p", ("libelf",)) == ("libelf",)


def test_missing_map_is_a_config_error(tmp_path):
    with pytest.raises(ConfigError, match="containers/debian/arch-names"):
        depnames.for_flavor(tmp_path, Flavor.DEBIAN, "p", ("bc",))


def test_the_map_is_not_part_of_the_image_identity(tmp_path):
    from kabuild.build import images
    shutil.copytree(REPO_ROOT / "containers", tmp_path / "containers")
    before = images.recipe(tmp_path, Flavor.DEBIAN, Arch.X86_64).hash
    (tmp_path / "containers/debian/arch-names").write_text("bc bc\n")
    assert images.recipe(tmp_path, Flavor.DEBIAN, Arch.X86_64).hash == before


# --------------------------------------------------------------------------- the manifest


def test_kernel_section_is_read(repo):
    write_manifest(repo, kernel_board())
    m = load(repo)
    assert m.kernel is not None and m.kernel.config == "tinyconfig"
    assert m.kernel.fragments == ("fleet/kconfig/small.config",)
    assert m.build.cross is False


def test_manifest_without_kernel_section_has_none(repo):
    write_manifest(repo)
    assert load(repo).kernel is None


def test_the_real_kernel_manifests_load():
    from kabuild.config import manifest as fleet
    m = fleet.load(REPO_ROOT, "kernel-demo")[0]
    assert m.kernel is not None and m.arch is Arch.X86_64
    assert m.packages[0].pkgbuild == REPO_ROOT / "fleet/pkgbuilds/linux-kabuild"


@pytest.mark.parametrize("kernel_text, words", [
    ("kernel:\n  config: Tiny\n", ["kernel.config", "kconfig make target"]),
    ("kernel:\n  config: tinyconfig\n  fragments: [fleet/kconfig/nope.config]\n", ["kernel.fragments", "does not exist"]),
    ("kernel:\n  config: tinyconfig\n  fragments: [/etc/passwd]\n", ["kernel.fragments", "inside the repository"]),
    ("kernel:\n  config: tinyconfig\n  fragments: [../x.config]\n", ["kernel.fragments", "inside the repository"]),
    ("kernel:\n  config: tinyconfig\n  fragments: [fleet/kconfig/small.config, fleet/kconfig/small.config]\n",
     ["kernel.fragments", "twice"]),
    ("kernel:\n  config: tinyconfig\n  colour: red\n", ["colour"]),
    ("kernel:\n  fragments: []\n", ["kernel.config"]),
])
def test_bad_kernel_sections_are_located(repo, kernel_text, words):
    text = insert_after(TESTBOARD, "    patch: demo-v1.0-cumulative.patch", kernel_text)
    message = manifest_error(repo, text)
    assert message.startswith("fleet/testboard.yaml:") and all(w in message for w in words), message


def test_cross_flag_must_be_a_boolean(repo):
    message = manifest_error(repo, edit(TESTBOARD, "  timeout: 1800\n", "  timeout: 1800\n  cross: maybe\n"))
    assert "build.cross" in message and "true or false" in message


# --------------------------------------------------------------------------- fragments are lock inputs


def test_fragments_are_promotion_inputs_and_their_drift_is_caught(repo):
    write_manifest(repo, kernel_board())
    m = load(repo)
    promo = patches.promote(repo, m)
    assert promo.inputs[-1].path == "fleet/kconfig/small.config"
    result = promotion.promote_host(repo, m)
    assert lock.integrity(repo, m, result.lock).state is lock.LockState.FRESH
    (repo / "fleet/kconfig/small.config").write_text("CONFIG_MODULES=n\n")
    reasons = lock.integrity(repo, m, lock.read_for(repo, m)).reasons
    assert any("fleet/kconfig/small.config: changed" in r for r in reasons), reasons


# --------------------------------------------------------------------------- staging


def _staged(repo: Path, text: str):
    write_manifest(repo, text)
    m = load(repo)
    result = promotion.promote_host(repo, m)
    ctx = context.stage(repo, m, m.packages[0], result.lock, SourceCache())
    return m, result.lock, ctx


def test_kernel_context_carries_conf_and_fragments(repo):
    m, lk, ctx = _staged(repo, kernel_board())
    names = [f.name for f in ctx.files]
    assert names == sorted(names) and "kabuild.conf" in names and "small.config" in names
    conf = next(f for f in ctx.files if f.name == "kabuild.conf").data
    assert conf is not None
    text = conf.decode()
    assert "KABUILD_PKGBASE=kabuild-hello\n" in text and "KABUILD_KCONFIG=tinyconfig\n" in text
    assert f"KABUILD_PATCH={lk.output.file}\n" in text and lk.output.digest.b2sum in text
    assert "KABUILD_FRAGMENTS=(small.config)\n" in text and "KABUILD_CROSS_COMPILE=''\n" in text
    assert "KABUILD_KARCH=arm64\n" in text and "KABUILD_BOOT_IMAGE=arch/arm64/boot/Image\n" in text


def test_device_trees_are_read_inherited_by_the_test_configuration_and_handed_to_the_recipe(repo):
    text = kernel_recipe(insert_after(
        TESTBOARD, "    patch: demo-v1.0-cumulative.patch",
        "kernel:\n  config: defconfig\n  dtbs: [rockchip/rk3399-rockpro64.dtb, arm/juno.dtb]\n"
        "  test:\n    config: tinyconfig\n    fragments: [fleet/kconfig/small.config]\n"))
    m, _lk, ctx = _staged(repo, text)
    assert m.kernel is not None and m.kernel.dtbs == ("rockchip/rk3399-rockpro64.dtb", "arm/juno.dtb")
    assert m.kernel.test is not None and m.kernel.test.dtbs == m.kernel.dtbs
    conf = next(f for f in ctx.files if f.name == "kabuild.conf").data
    assert conf is not None and b"KABUILD_DTBS=(rockchip/rk3399-rockpro64.dtb arm/juno.dtb)\n" in conf
    own = text.replace("    fragments: [fleet/kconfig/small.config]\n",
                       "    fragments: [fleet/kconfig/small.config]\n    dtbs: [arm/foundation-v8.dtb]\n")
    write_manifest(repo, own)
    test = load(repo).kernel.test  # type: ignore[union-attr]
    assert test is not None and test.dtbs == ("arm/foundation-v8.dtb",)
    _m, _lk, plain = _staged(repo, kernel_board())
    conf = next(f for f in plain.files if f.name == "kabuild.conf").data
    assert conf is not None and b"KABUILD_DTBS=()\n" in conf  # every device tree the configuration enables


@pytest.mark.parametrize("dtbs, words", [
    ("[]", "at least one device tree"),
    ("[../x.dtb]", "device tree as under arch/arm64/boot/dts/"),
    ("[rockchip/board.dts]", "device tree as under arch/arm64/boot/dts/"),
    ("[arm/juno.dtb, arm/juno.dtb]", "listed twice"),
])
def test_bad_device_tree_lists_are_located(repo, dtbs, words):
    text = insert_after(TESTBOARD, "    patch: demo-v1.0-cumulative.patch", f"kernel:\n  config: defconfig\n  dtbs: {dtbs}\n")
    message = manifest_error(repo, text)
    assert message.startswith("fleet/testboard.yaml:") and "kernel.dtbs" in message and words in message, message


def test_device_trees_are_refused_for_an_x86_64_host(repo):
    text = insert_after(edit(TESTBOARD, "arch: aarch64", "arch: x86_64"), "    patch: demo-v1.0-cumulative.patch",
                        "kernel:\n  config: defconfig\n  dtbs: [arm/juno.dtb]\n")
    assert "aarch64 kernels only" in manifest_error(repo, text)


def test_the_device_trees_are_part_of_a_runs_identity():
    from kabuild.build import variations
    from kabuild.config.manifest import Kernel
    from kabuild.reproduce import identity
    from kabuild.reproduce.options import Options
    opts = Options(variations=variations.DEFAULT)
    small = Kernel("tinyconfig", ("fleet/kconfig/small.config",))
    one = Kernel("tinyconfig", ("fleet/kconfig/small.config",), None, ("arm/foundation-v8.dtb",))
    assert identity.inputs_key("a" * 64, "b" * 64, opts, small) != identity.inputs_key("a" * 64, "b" * 64, opts, one)


def test_a_plain_host_gets_no_conf(repo):
    _m, _lk, ctx = _staged(repo, TESTBOARD)
    assert "kabuild.conf" not in [f.name for f in ctx.files]


def test_a_fragment_changed_after_promotion_is_refused_at_staging(repo):
    write_manifest(repo, kernel_board())
    m = load(repo)
    lk = promotion.promote_host(repo, m).lock
    (repo / "fleet/kconfig/small.config").write_text("CONFIG_MODULES=n\n")
    with pytest.raises(ChecksumError, match="small.config"):
        context.stage(repo, m, m.packages[0], lk, SourceCache())


def test_cross_build_adds_the_cross_toolchain_and_uses_the_node_image(repo, monkeypatch):
    monkeypatch.setattr(kernel, "node_arch", lambda: Arch.X86_64)
    text = edit(kernel_board(), "  timeout: 1800\n", "  timeout: 1800\n  cross: true\n")
    m, _lk, ctx = _staged(repo, text)
    assert kernel.image_arch(m) is Arch.X86_64
    assert {"aarch64-linux-gnu-gcc", "aarch64-linux-gnu-binutils"} <= set(ctx.dependencies)
    conf = next(f for f in ctx.files if f.name == "kabuild.conf").data
    assert conf is not None and b"KABUILD_CROSS_COMPILE=aarch64-linux-gnu-\n" in conf


def test_unmapped_dependency_is_refused_while_preparing(repo, monkeypatch):
    pkgbuild = repo / "fleet/pkgbuilds/kabuild-hello/PKGBUILD"
    pkgbuild.write_text(pkgbuild.read_text() + "makedepends=('bc' 'no-such-arch-pkg')\n")
    shutil.copytree(REPO_ROOT / "containers", repo / "containers")
    write_manifest(repo)
    m = load(repo)
    promotion.promote_host(repo, m)
    with pytest.raises(ConfigError) as e:
        host.prepare(repo, m, lambda _m: None)
    assert "no-such-arch-pkg" in str(e.value) and "containers/debian/arch-names" in str(e.value)


def test_cross_manifest_is_reported_as_cross(repo, monkeypatch):
    from kabuild.reproduce import pair

    class FakeEngine:
        arch = "x86_64"

    text = edit(kernel_board(), "  timeout: 1800\n", "  timeout: 1800\n  cross: true\n")
    write_manifest(repo, text)
    assert pair.build_mode(load(repo), FakeEngine()) == "cross"  # type: ignore[arg-type]


def test_the_shared_recipe_keeps_what_makes_it_reproducible_and_installable():
    """The recipe is read, never run, here: the integration test builds it (test_kernel.py)."""
    text = (REPO_ROOT / "fleet/pkgbuilds/linux-kabuild/PKGBUILD").read_text()
    for needle in ('export KBUILD_BUILD_TIMESTAMP="$(date -Ru${SOURCE_DATE_EPOCH:+d @$SOURCE_DATE_EPOCH})"',
                   "export KBUILD_BUILD_HOST=kabuild", "export KBUILD_BUILD_USER=$pkgbase",
                   'pkgname=("$pkgbase" "$pkgbase-headers")', 'ln -sr "$builddir" "$pkgdir/usr/src/$pkgbase"',
                   'install -Dm644 .config "$modulesdir/config"', 'patch -Np1 < "../$KABUILD_PATCH"',
                   "_make syncconfig", '. "${startdir:-.}/kabuild.conf"',
                   # what boots a board: device trees with overlay symbols, the preset, the hooks
                   '_make DTC_FLAGS=-@ "${KABUILD_DTBS[@]}"', "_make DTC_FLAGS=-@ dtbs",
                   '_make INSTALL_DTBS_PATH="$pkgdir/boot/dtbs" dtbs_install',
                   '"$pkgdir/boot/dtbs/$dtb"', 'backup=("etc/mkinitcpio.d/$pkgbase.preset")',
                   "depends=('coreutils' 'kmod' 'mkinitcpio')", 'depmod -b "$pkgdir/usr" -F System.map "$kernver"',
                   '"$pkgdir/etc/mkinitcpio.d/$pkgbase.preset"',
                   '"$pkgdir/usr/share/libalpm/hooks/90-$pkgbase.hook"'):
        assert needle in text, needle
    assert "marfrit" not in text and "fresnel" not in text  # it names no board


def test_the_recipes_preset_and_hooks_are_pinned_by_their_b2sums():
    """makepkg refuses a file whose b2sum the PKGBUILD does not list; this says which, without a build."""
    import hashlib
    import re
    d = REPO_ROOT / "fleet/pkgbuilds/linux-kabuild"
    text = (d / "PKGBUILD").read_text()
    names = re.search(r"^source=\((.*?)\)", text, re.M | re.S)
    sums = re.search(r"^b2sums=\((.*?)\)", text, re.M | re.S)
    assert names and sums
    local = [w.strip("'") for w in names.group(1).split() if w.startswith("'")]
    pinned = [w.strip("'") for w in sums.group(1).split() if w.startswith("'")]
    assert local == ["linux.preset", "60-linux.hook", "90-linux.hook", "60-linux-remove.hook"]
    assert pinned == [hashlib.blake2b((d / n).read_bytes()).hexdigest() for n in local]


def test_the_hooks_make_the_image_the_preset_names_and_remove_it():
    d = REPO_ROOT / "fleet/pkgbuilds/linux-kabuild"
    preset = d.joinpath("linux.preset").read_text()
    assert "PRESETS=('default')" in preset and 'default_image="/boot/initramfs-%PKGBASE%.img"' in preset
    make = d.joinpath("90-linux.hook").read_text()
    assert "Exec = /usr/bin/mkinitcpio -p %PKGBASE%" in make and "Operation = Upgrade" in make
    remove = d.joinpath("60-linux-remove.hook").read_text()
    assert "Operation = Remove" in remove and "/boot/initramfs-%PKGBASE%.img" in remove
    assert "Exec = /usr/bin/depmod %KERNVER%" in d.joinpath("60-linux.hook").read_text()


# --------------------------------------------------------------------------- the test configuration

TEST_PROFILE = ("kernel:\n  config: defconfig\n  test:\n    config: tinyconfig\n"
                "    fragments: [fleet/kconfig/small.config]\n")


def _profile_board() -> str:
    return kernel_recipe(insert_after(TESTBOARD, "    patch: demo-v1.0-cumulative.patch", TEST_PROFILE))


def test_kernel_test_configuration_is_read_and_its_fragments_are_lock_inputs(repo):
    write_manifest(repo, _profile_board())
    m = load(repo)
    assert m.kernel is not None and m.kernel.config == "defconfig" and m.kernel.fragments == ()
    assert m.kernel.test is not None and m.kernel.test.config == "tinyconfig"
    assert m.kernel.test.fragments == ("fleet/kconfig/small.config",)
    assert "fleet/kconfig/small.config" in [i.path for i in patches.promote(repo, m).inputs]


def test_kernel_config_test_override_builds_the_test_configuration_with_a_fresh_lock(repo):
    from kabuild.config import manifest as fleet
    write_manifest(repo, _profile_board())
    m, nodes = fleet.load(repo, "testboard")
    result = promotion.promote_host(repo, m)
    small = fleet.with_overrides(m, nodes, kernel_config="test", cross=True)
    assert small.kernel is not None and small.kernel.config == "tinyconfig" and small.kernel.test is None
    assert small.build.cross is True and m.build.cross is False
    # the lock was promoted from the manifest; the override does not make it stale
    assert lock.integrity(repo, small, result.lock).state is lock.LockState.FRESH
    conf = context.stage(repo, small, small.packages[0], result.lock, SourceCache())
    text = next(f for f in conf.files if f.name.endswith("kabuild.conf")).data.decode()
    assert "tinyconfig" in text and "defconfig" not in text


def test_kernel_config_override_refused_without_a_test_configuration(repo):
    from kabuild.config import manifest as fleet
    from kabuild.errors import ManifestError
    write_manifest(repo, kernel_board())
    m, nodes = fleet.load(repo, "testboard")
    with pytest.raises(ManifestError, match="has no kernel.test configuration"):
        fleet.with_overrides(m, nodes, kernel_config="test")


def test_the_kernel_configuration_is_part_of_a_runs_identity():
    from kabuild.build import variations
    from kabuild.config.manifest import Kernel
    from kabuild.reproduce import identity
    from kabuild.reproduce.options import Options
    opts = Options(variations=variations.DEFAULT)
    plain = identity.inputs_key("a" * 64, "b" * 64, opts)
    assert plain == identity.inputs_key("a" * 64, "b" * 64, opts, None)
    big = identity.inputs_key("a" * 64, "b" * 64, opts, Kernel("defconfig"))
    small = identity.inputs_key("a" * 64, "b" * 64, opts, Kernel("tinyconfig", ("fleet/kconfig/small.config",)))
    assert len({plain, big, small}) == 3


def test_fresnel_is_refused_here_with_the_flags_that_exercise_its_recipe():
    import contextlib
    import io

    from kabuild.cli import run_cli
    err = io.StringIO()
    with contextlib.redirect_stderr(err):
        code = run_cli(["--root", str(REPO_ROOT), "build", "fresnel"])
    assert code == 2
    line = err.getvalue().strip()
    assert "\n" not in line and "fresnel cannot be built here" in line
    assert "--flavor debian --node local --cross --kernel-config test" in line
