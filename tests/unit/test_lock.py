"""manifest.lock: writing, reading, freshness, later blocks, and PKGBUILD drift."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest
from kbhelpers import HOST, TESTBOARD, diff, edit, insert_after, load, write_manifest, write_series

from kabuild.config.document import ImageRecord
from kabuild.config.yamlio import load_yaml, write_yaml
from kabuild.errors import ConfigError, DocumentError, DriftError, ExitCode, LockError
from kabuild.files import Digest, atomic_write, digest_bytes, digest_file
from kabuild.inputs.lock import (
    PROMOTION_KEYS,
    Lock,
    LockState,
    build_dir,
    drift,
    freshness,
    lock_path,
    promoted,
    read_lock,
    require_verified,
    with_build,
    write_lock,
)
from kabuild.inputs.patches import ApplyCheck, ApplyStatus, promote
from kabuild.inputs.promotion import promote_host
from kabuild.inputs.records import BuildBlock, BuiltFile

CHECK = ApplyCheck(ApplyStatus.SKIPPED, "not checked in unit tests")
OUTPUT = f"{HOST}-v1.0-cumulative.patch"
SOC_PATCH = "patches/soc/demo-soc/0001-hello-name-the-soc.patch"
PKGBUILD_COPY = "fleet/pkgbuilds/kabuild-hello/demo-v1.0-cumulative.patch"


def promote_and_lock(root: Path) -> Lock:
    """What `kabuild promote` does, without the apply check: output + lock, keeping later blocks."""
    manifest = load(root)
    promo = promote(root, manifest)
    atomic_write(build_dir(root, manifest) / promo.filename, promo.data)
    path = lock_path(root, manifest)
    return write_lock(path, promoted(manifest, promo, CHECK), read_lock(path))


@pytest.fixture
def locked(repo) -> Path:
    """The repo copy with the testboard manifest promoted and locked."""
    write_manifest(repo)
    promote_and_lock(repo)
    return repo


def state(root: Path):
    manifest = load(root)
    return freshness(root, manifest, read_lock(lock_path(root, manifest)))


def append_to(path: Path, text: bytes) -> None:
    path.write_bytes(path.read_bytes() + text)


# --------------------------------------------------------------------------- write / read


def test_lock_lives_in_the_per_host_per_baseline_build_directory(repo):
    write_manifest(repo)
    assert lock_path(repo, load(repo)) == repo / "build" / HOST / "v1.0" / "manifest.lock"


def test_write_then_read_roundtrip(locked):
    written = promote_and_lock(locked)
    read = read_lock(written.path)
    assert read == written
    assert read.promotion_hash == written.promotion_hash
    assert read.output.file == OUTPUT
    assert read.build is None


def test_lock_records_inputs_output_and_baseline(locked):
    lock = read_lock(lock_path(locked, load(locked)))
    promo = promote(locked, load(locked))
    data = lock.to_dict()
    assert set(data) == set(PROMOTION_KEYS)
    assert data["host"] == HOST
    assert data["baseline"]["source_date_epoch"] == 1767225600
    assert data["baseline"]["sources"][0]["url"] == "fleet/sources/kabuild-hello-1.0.tar.gz"
    assert [i["path"] for i in data["inputs"]] == [i.path for i in promo.inputs]
    assert data["output"] == {"file": OUTPUT, **promo.digest.as_dict()}
    assert data["apply_check"] == {"status": "skipped", "detail": "not checked in unit tests"}


def test_read_lock_of_a_missing_file_is_none(tmp_path):
    assert read_lock(tmp_path / "manifest.lock") is None


@pytest.mark.parametrize("text, names", [
    ("- a list\n", "(top level): expected a mapping, got a list"),
    ("schema: 2\noutput: {}\n", "schema: this kabuild reads lock schema 1, got 2"),
    ("schema: 1\nhost: x\n", "baseline: is required but missing"),
    ("just text\n", "expected a mapping, got a string"),
    ("schema: [1\n", "invalid YAML"),
])
def test_read_lock_refuses_something_that_is_not_a_lock(tmp_path, text, names):
    path = tmp_path / "manifest.lock"
    path.write_text(text)
    with pytest.raises(DocumentError) as excinfo:
        read_lock(path)
    assert excinfo.value.exit_code == ExitCode.REFUSED == 3
    assert str(excinfo.value).startswith(f"{path}:")
    assert names in str(excinfo.value)


def _damage(root, change):
    path = lock_path(root, load(root))
    data = load_yaml(path)
    change(data)
    write_yaml(path, data)
    return path


@pytest.mark.parametrize("change, key", [
    (lambda d: d.__setitem__("output", "not a mapping"), "output: expected a mapping, got a string"),
    (lambda d: d["output"].__setitem__("sha256", "xyz"), "output.sha256: expected 64 lowercase hex digits"),
    (lambda d: d["output"].pop("size"), "output.size: is required but missing"),
    (lambda d: d["baseline"].__setitem__("source_date_epoch", "soon"), "baseline.source_date_epoch: expected"),
    (lambda d: d["inputs"][0].__setitem__("b2sum", 7), "inputs[0].b2sum: expected"),
    (lambda d: d.__setitem__("surprise", 1), "surprise: unknown key"),
    (lambda d: d.__setitem__("build", {"node": "x"}), "build.image: is required but missing"),
    (lambda d: d["apply_check"].__setitem__("status", "maybe"), "apply_check.status: expected one of"),
])
def test_a_damaged_lock_is_one_located_line_naming_the_key(locked, change, key):
    path = _damage(locked, change)
    with pytest.raises(DocumentError) as excinfo:
        require_verified(locked, load(locked))
    message = str(excinfo.value)
    assert message.startswith(f"build/{HOST}/v1.0/manifest.lock:"), message
    assert key in message and "\n" not in message
    assert excinfo.value.exit_code == 3
    assert path.exists()


def test_promote_replaces_a_damaged_lock(locked):
    _damage(locked, lambda d: d.__setitem__("output", "a string"))
    done = promote_host(locked, load(locked))
    assert read_lock(done.lock.path) == done.lock
    assert freshness(locked, load(locked), done.lock).state is LockState.FRESH


@pytest.mark.parametrize("change, field", [
    (lambda d: d["baseline"].__setitem__("source_date_epoch", 1767225601), "baseline.source_date_epoch"),
    (lambda d: d["baseline"]["sources"][0].__setitem__("sha256", "0" * 64), "baseline.sources"),
    (lambda d: d["baseline"].__setitem__("version", "1.1"), "baseline.version"),
    (lambda d: d.__setitem__("host", "otherboard"), "host"),
    (lambda d: d.__setitem__("kabuild_version", "0.0.1"), "kabuild_version"),
    (lambda d: d["output"].__setitem__("size", 1), "output.size"),
    (lambda d: d["inputs"][1].__setitem__("b2sum", "0" * 128), "the lock's b2sum differs"),
])
def test_verify_recomputes_everything_the_lock_records(locked, change, field):
    """An edit to any recorded value is found and named, not read as fresh."""
    _damage(locked, change)
    fresh = state(locked)
    assert fresh.state is LockState.STALE
    assert any(field in r for r in fresh.reasons), fresh.reasons
    with pytest.raises(LockError, match="stale"):
        require_verified(locked, load(locked))


def test_promoting_twice_gives_a_byte_identical_lock(locked):
    path = lock_path(locked, load(locked))
    first = path.read_bytes()
    promote_and_lock(locked)
    assert path.read_bytes() == first


def test_lock_does_not_depend_on_where_the_repository_is(locked, tmp_path):
    elsewhere = tmp_path / "a" / "different" / "checkout"
    shutil.copytree(locked, elsewhere)
    shutil.rmtree(elsewhere / "build")
    promote_and_lock(elsewhere)
    rel = Path("build") / HOST / "v1.0"
    assert (elsewhere / rel / "manifest.lock").read_bytes() == (locked / rel / "manifest.lock").read_bytes()
    assert (elsewhere / rel / OUTPUT).read_bytes() == (locked / rel / OUTPUT).read_bytes()


def test_write_leaves_no_temporary_files(locked):
    assert sorted(p.name for p in build_dir(locked, load(locked)).iterdir()) == ["manifest.lock", OUTPUT]


# --------------------------------------------------------------------------- freshness


def test_freshness_missing_without_a_lock(repo):
    write_manifest(repo)
    fresh = state(repo)
    assert fresh.state is LockState.MISSING
    assert fresh.reasons == (f"no manifest.lock: run `kabuild promote {HOST}`",)


def test_freshness_fresh_right_after_promotion(locked):
    assert state(locked).state is LockState.FRESH
    assert state(locked).reasons == ()


def test_freshness_stale_when_a_patch_changes(locked):
    before = digest_file(locked / SOC_PATCH).sha256
    append_to(locked / SOC_PATCH, b"# edited\n")
    after = digest_file(locked / SOC_PATCH).sha256
    fresh = state(locked)
    assert fresh.state is LockState.STALE
    assert fresh.reasons == (f"{SOC_PATCH}: changed (sha256 {before[:12]}… → {after[:12]}…)",)


def test_freshness_stale_when_a_series_file_changes(locked):
    append_to(locked / "patches/board/demo-board/series", b"# a comment changes the series file\n")
    fresh = state(locked)
    assert fresh.state is LockState.STALE
    assert len(fresh.reasons) == 1
    assert fresh.reasons[0].startswith("patches/board/demo-board/series: changed (sha256 ")


def test_freshness_stale_when_a_series_is_added_to_the_manifest(locked):
    write_series(locked, "module", "extra", {"0001-x.patch": diff("x")})
    write_manifest(locked, insert_after(
        edit(TESTBOARD, "apply_order: [soc, driver, board]", "apply_order: [soc, driver, board, module]"),
        "    series: demo-board", "  - {scope: module, series: extra}\n"))
    fresh = state(locked)
    assert fresh.state is LockState.STALE
    assert fresh.reasons[0].startswith(f"fleet/{HOST}.yaml: changed (sha256 ")
    assert set(fresh.reasons[1:]) == {
        "patches/module/extra/series: new input",
        "patches/module/extra/0001-x.patch: new input",
    }


def test_freshness_stale_when_a_patch_leaves_a_series(locked):
    (locked / "patches/board/demo-board/series").write_text("0001-hello-board-banner.patch\n")
    reasons = state(locked).reasons
    assert "patches/board/demo-board/0002-readme-board-note.patch: no longer an input" in reasons
    assert any(r.startswith("patches/board/demo-board/series: changed") for r in reasons)


def test_freshness_stale_when_the_cumulative_patch_is_deleted(locked):
    (build_dir(locked, load(locked)) / OUTPUT).unlink()
    fresh = state(locked)
    assert fresh.state is LockState.STALE
    assert fresh.reasons == (f"{OUTPUT}: cumulative patch missing",)


def test_freshness_stale_when_the_cumulative_patch_is_tampered_with(locked):
    append_to(build_dir(locked, load(locked)) / OUTPUT, b"+sneaky\n")
    fresh = state(locked)
    assert fresh.state is LockState.STALE
    assert fresh.reasons == (f"{OUTPUT}: differs from the hash recorded in manifest.lock",)


def test_freshness_stale_when_a_series_is_broken(locked):
    append_to(locked / "patches/soc/demo-soc/series", b"gone.patch\n")
    fresh = state(locked)
    assert fresh.state is LockState.STALE
    assert fresh.reasons == ("patches/soc/demo-soc/series:2: patch file 'gone.patch' does not exist",)


def test_freshness_stale_when_only_the_order_of_inputs_changed(locked):
    _damage(locked, lambda d: d.__setitem__("inputs", list(reversed(d["inputs"]))))
    assert state(locked).reasons == ("the order of the inputs changed",)


# --------------------------------------------------------------------------- later blocks

IMAGE = ImageRecord("kabuild/debian-aarch64:0123456789abcdef", "sha256:" + "ab" * 32, "cd" * 32, "debian", "aarch64")
BLOCK = BuildBlock("2026-01-01T00:00:00+00:00", "local", "local", False, IMAGE,
                   (BuiltFile("kabuild-hello-1.0-1-aarch64.pkg.tar.zst", Digest("a" * 64, "b" * 128, 12),
                              "kabuild-hello", IMAGE.tag),))


def test_with_build_adds_a_block_without_touching_promotion(locked):
    lock = read_lock(lock_path(locked, load(locked)))
    updated = with_build(lock, BLOCK)
    assert read_lock(lock.path).build == BLOCK
    assert updated.promotion_hash == lock.promotion_hash


def test_build_block_is_kept_when_the_output_is_unchanged(locked):
    with_build(read_lock(lock_path(locked, load(locked))), BLOCK)
    append_to(locked / "patches/soc/demo-soc/series", b"# only a comment\n")  # stale, same output
    lock = promote_and_lock(locked)
    assert lock.build == BLOCK
    assert read_lock(lock.path).build == BLOCK


def test_build_block_is_dropped_when_the_output_changes(locked):
    with_build(read_lock(lock_path(locked, load(locked))), BLOCK)
    append_to(locked / SOC_PATCH, b"# new bytes in the output\n")
    lock = promote_and_lock(locked)
    assert lock.build is None
    assert "build" not in read_lock(lock.path).to_dict()


def test_write_lock_without_previous_has_only_promotion(locked):
    manifest = load(locked)
    record = promoted(manifest, promote(locked, manifest), CHECK)
    lock = write_lock(lock_path(locked, manifest), record, None)
    assert set(lock.to_dict()) == set(PROMOTION_KEYS)


def test_promotion_hash_ignores_later_blocks(locked):
    lock = read_lock(lock_path(locked, load(locked)))
    assert with_build(lock, BLOCK).promotion_hash == lock.promotion_hash


# --------------------------------------------------------------------------- drift


def current_lock(root: Path) -> Lock:
    return read_lock(lock_path(root, load(root)))


def test_no_drift_when_the_pkgbuild_copy_matches(locked):
    assert drift(load(locked), current_lock(locked)) == ([], [])


def test_drift_when_the_pkgbuild_copy_changed(locked):
    copy = locked / PKGBUILD_COPY
    append_to(copy, b"# local edit\n")
    lock = current_lock(locked)
    drifted, unchecked = drift(load(locked), lock)
    assert unchecked == []
    assert len(drifted) == 1
    d = drifted[0]
    assert (d.package, d.file) == ("kabuild-hello", copy)
    assert d.expected == lock.output.digest.sha256
    assert d.actual == digest_file(copy).sha256 != d.expected


def test_drift_when_the_pkgbuild_copy_is_missing(locked):
    (locked / PKGBUILD_COPY).unlink()
    drifted, _ = drift(load(locked), current_lock(locked))
    assert [(d.package, d.actual) for d in drifted] == [("kabuild-hello", None)]


def test_package_without_a_patch_copy_is_unchecked(locked):
    write_manifest(locked, edit(TESTBOARD, "    patch: demo-v1.0-cumulative.patch\n", ""))
    assert drift(load(locked), current_lock(locked)) == ([], ["kabuild-hello"])


# --------------------------------------------------------------------------- require_verified


def test_require_verified_returns_the_lock(locked):
    assert require_verified(locked, load(locked)) == current_lock(locked)


def test_require_verified_refuses_a_missing_lock(repo):
    write_manifest(repo)
    with pytest.raises(LockError) as excinfo:
        require_verified(repo, load(repo))
    assert excinfo.value.exit_code == ExitCode.REFUSED == 3
    assert str(excinfo.value) == f"{HOST}: manifest.lock is missing; run `kabuild promote {HOST}` first"


def test_require_verified_refuses_a_stale_lock_and_says_why(locked):
    append_to(locked / SOC_PATCH, b"# edited\n")
    with pytest.raises(LockError) as excinfo:
        require_verified(locked, load(locked))
    message = str(excinfo.value)
    assert excinfo.value.exit_code == 3
    assert message.startswith(f"{HOST}: manifest.lock is stale ({SOC_PATCH}: changed (sha256 ")
    assert message.endswith(f"run `kabuild promote {HOST}`")


def test_require_verified_refuses_drift_naming_the_file_and_both_hashes(locked):
    copy = locked / PKGBUILD_COPY
    copy.write_bytes(b"something else\n")
    with pytest.raises(DriftError) as excinfo:
        require_verified(locked, load(locked))
    message = str(excinfo.value)
    assert excinfo.value.exit_code == 3
    assert str(copy) in message
    assert current_lock(locked).output.digest.sha256 in message
    assert "copy " in message and "manifest.lock" not in message.split("copy ")[1].split(" over ")[0][-14:]
    assert digest_bytes(b"something else\n").sha256 in message
    assert "\n" not in message


def test_require_verified_refuses_a_missing_copy(locked):
    (locked / PKGBUILD_COPY).unlink()
    with pytest.raises(DriftError, match="got missing file"):
        require_verified(locked, load(locked))


def test_a_mistyped_pkgbuild_directory_is_a_configuration_error_not_drift(locked):
    write_manifest(locked, edit(TESTBOARD, "pkgbuild: fleet/pkgbuilds/kabuild-hello", "pkgbuild: fleet/pkgbuilds/kabuild-helo"))
    for step in (lambda: promote_and_lock(locked), lambda: require_verified(locked, load(locked))):
        # promote hashes the recipe, so it names the typo too
        with pytest.raises(ConfigError) as excinfo:
            step()
        assert excinfo.value.exit_code == 2
        assert "fleet/pkgbuilds/kabuild-helo does not exist" in str(excinfo.value)
