"""Patch series and their promotion into one cumulative patch."""

from __future__ import annotations

import shutil
import tarfile
import tempfile
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from kbhelpers import DEMO_INCLUDES, DEMO_TARBALL, HOST, diff, load, with_includes, write_manifest, write_series

from kabuild.config import manifest as fleet
from kabuild.config.manifest import Scope
from kabuild.errors import ExitCode, ManifestError, PatchError
from kabuild.files import digest_bytes, digest_file
from kabuild.inputs.patches import ApplyStatus, check_applies, cumulative_name, promote, read_series

needs_patch = pytest.mark.skipif(shutil.which("patch") is None, reason="needs GNU patch on PATH")


def series_error(root: Path, relpath: str) -> str:
    with pytest.raises(ManifestError) as excinfo:
        read_series(root, relpath)
    assert excinfo.value.exit_code == ExitCode.CONFIG
    return str(excinfo.value)


# --------------------------------------------------------------------------- read_series


def test_read_series_returns_repository_relative_paths_in_order(repo):
    write_series(repo, "soc", "s", {"b.patch": diff("b"), "a.patch": diff("a")}, "b.patch\na.patch\n")
    assert read_series(repo, "patches/soc/s") == ["patches/soc/s/b.patch", "patches/soc/s/a.patch"]


def test_read_series_skips_comments_and_blank_lines(repo):
    write_series(repo, "soc", "s", {"a.patch": diff("a"), "b.patch": diff("b")},
                 "# header\n\n   \na.patch   # trailing comment\n\t\n# b.patch is next\nb.patch\n")
    assert read_series(repo, "patches/soc/s") == ["patches/soc/s/a.patch", "patches/soc/s/b.patch"]


def test_read_series_of_only_comments_is_empty(repo):
    write_series(repo, "soc", "s", {}, "# nothing yet\n\n")
    assert read_series(repo, "patches/soc/s") == []


def test_read_series_allows_minus_p1(repo):
    write_series(repo, "soc", "s", {"a.patch": diff("a")}, "a.patch -p1\n")
    assert read_series(repo, "patches/soc/s") == ["patches/soc/s/a.patch"]


def test_read_series_allows_patches_in_subdirectories(repo):
    d = write_series(repo, "soc", "s", {}, "sub/a.patch\n")
    (d / "sub").mkdir()
    (d / "sub" / "a.patch").write_text(diff("a"))
    assert read_series(repo, "patches/soc/s") == ["patches/soc/s/sub/a.patch"]


@pytest.mark.parametrize("line", ["a.patch -p0", "a.patch -R", "a.patch -p1 -R", "a.patch -p2", "a.patch --fuzz=3"])
def test_read_series_rejects_other_options(repo, line):
    write_series(repo, "soc", "s", {"a.patch": diff("a")}, f"# c\n{line}\n")
    assert series_error(repo, "patches/soc/s") == (
        f"patches/soc/s/series:2: only '-p1' patches are supported, got {line!r}"
    )


def test_read_series_rejects_a_missing_patch_file(repo):
    write_series(repo, "soc", "s", {"a.patch": diff("a")}, "a.patch\nmissing.patch\n")
    assert series_error(repo, "patches/soc/s") == "patches/soc/s/series:2: patch file 'missing.patch' does not exist"


def test_read_series_rejects_a_directory_as_patch(repo):
    d = write_series(repo, "soc", "s", {}, "sub\n")
    (d / "sub").mkdir()
    assert series_error(repo, "patches/soc/s") == "patches/soc/s/series:1: patch file 'sub' does not exist"


@pytest.mark.parametrize("name", ["../other/x.patch", "../../board/demo-board/0001-hello-board-banner.patch",
                                  "/etc/hostname", "sub/../../other/x.patch"])
def test_read_series_rejects_paths_escaping_the_series_directory(repo, name):
    write_series(repo, "soc", "other", {"x.patch": diff("x")})
    write_series(repo, "soc", "s", {}, f"{name}\n")
    assert series_error(repo, "patches/soc/s") == (
        f"patches/soc/s/series:1: {name!r} points outside the series directory"
    )


def test_read_series_rejects_a_symlink_escaping_the_series_directory(repo):
    outside = repo / "outside.patch"
    outside.write_text("x\n")
    d = write_series(repo, "soc", "s", {}, "link.patch\n")
    (d / "link.patch").symlink_to(outside)
    assert series_error(repo, "patches/soc/s") == (
        "patches/soc/s/series:1: 'link.patch' points outside the series directory"
    )


def test_read_series_rejects_a_duplicate_entry(repo):
    write_series(repo, "soc", "s", {"a.patch": diff("a"), "b.patch": diff("b")}, "a.patch\nb.patch\na.patch -p1\n")
    assert series_error(repo, "patches/soc/s") == "patches/soc/s/series:3: 'a.patch' is listed twice"


def test_read_series_rejects_a_duplicate_spelt_differently(repo):
    write_series(repo, "soc", "s", {"a.patch": diff("a")}, "a.patch\n./a.patch\n")
    assert series_error(repo, "patches/soc/s") == "patches/soc/s/series:2: './a.patch' is listed twice"


def test_read_series_refuses_a_series_file_that_is_not_utf8(repo):
    d = write_series(repo, "soc", "s", {"a.patch": diff("a")})
    (d / "series").write_bytes(b"# caf\xe9\na.patch\n")
    assert series_error(repo, "patches/soc/s").startswith("patches/soc/s/series")


# --------------------------------------------------------------------------- promote


def demo_patch_bytes(root: Path) -> bytes:
    names = [
        "patches/soc/demo-soc/0001-hello-name-the-soc.patch",
        "patches/driver/demo-led/0001-hello-add-led-driver.patch",
        "patches/board/demo-board/0001-hello-board-banner.patch",
        "patches/board/demo-board/0002-readme-board-note.patch",
    ]
    return b"".join((root / n).read_bytes() for n in names)


def test_promote_demo_concatenates_the_series_in_apply_order(repo):
    m = load(repo, "demo")
    promo = promote(repo, m)
    assert promo.data == demo_patch_bytes(repo)
    assert promo.digest == digest_bytes(promo.data)
    assert promo.patches == (
        "patches/soc/demo-soc/0001-hello-name-the-soc.patch",
        "patches/driver/demo-led/0001-hello-add-led-driver.patch",
        "patches/board/demo-board/0001-hello-board-banner.patch",
        "patches/board/demo-board/0002-readme-board-note.patch",
    )
    assert promo.filename == cumulative_name("demo", "v1.0") == "demo-v1.0-cumulative.patch"


def test_promote_demo_matches_the_pkgbuild_copy_in_the_repository(repo):
    promo = promote(repo, load(repo, "demo"))
    assert promo.digest == digest_file(repo / "fleet/pkgbuilds/kabuild-hello/demo-v1.0-cumulative.patch")


def test_promote_follows_apply_order_not_manifest_order(repo):
    write_manifest(repo, with_includes(list(reversed(DEMO_INCLUDES)), ["soc", "driver", "board"]))
    assert promote(repo, load(repo)).data == demo_patch_bytes(repo)


def test_promote_keeps_manifest_order_within_a_scope(repo):
    write_series(repo, "board", "first", {"1.patch": diff("first")})
    write_series(repo, "board", "second", {"2.patch": diff("second")})
    write_series(repo, "soc", "soc", {"0.patch": diff("soc")})
    write_manifest(repo, with_includes([("board", "second"), ("soc", "soc"), ("board", "first")],
                                       ["soc", "board"]))
    assert promote(repo, load(repo)).data == (diff("soc") + diff("second") + diff("first")).encode()


def test_swapping_apply_order_changes_the_output(repo):
    write_manifest(repo, with_includes(DEMO_INCLUDES, ["soc", "driver", "board"]))
    forward = promote(repo, load(repo))
    write_manifest(repo, with_includes(DEMO_INCLUDES, ["board", "driver", "soc"]))
    backward = promote(repo, load(repo))
    assert forward.data != backward.data
    assert forward.digest != backward.digest
    assert backward.patches[0].startswith("patches/board/")


def test_promote_adds_a_missing_final_newline_between_patches(repo):
    write_series(repo, "soc", "s", {"a.patch": diff("a", final_newline=False), "b.patch": diff("b"),
                                    "c.patch": diff("c", final_newline=False)})
    write_manifest(repo, with_includes([("soc", "s")], ["soc"]))
    assert promote(repo, load(repo)).data == (diff("a") + diff("b") + diff("c")).encode()


def test_promote_keeps_patch_bytes_otherwise_unchanged(repo):
    crlf = diff("x", eol="\r\n").encode()
    latin1 = diff("caf\xe9").encode("latin-1")
    write_series(repo, "soc", "s", {"a.patch": crlf, "b.patch": latin1})
    write_manifest(repo, with_includes([("soc", "s")], ["soc"]))
    assert promote(repo, load(repo)).data == crlf + latin1


def test_promote_of_empty_series_is_empty(repo):
    write_series(repo, "soc", "s", {}, "# nothing yet\n")
    write_series(repo, "board", "b", {})
    write_manifest(repo, with_includes([("soc", "s"), ("board", "b")], ["soc", "board"]))
    promo = promote(repo, load(repo))
    assert promo.data == b""
    assert promo.digest.size == 0


def test_promote_inputs_are_manifest_then_each_series_file_then_its_patches(repo):
    write_manifest(repo, with_includes(list(reversed(DEMO_INCLUDES)), ["soc", "driver", "board"]))
    promo = promote(repo, load(repo))
    assert [i.path for i in promo.inputs] == [
        f"fleet/{HOST}.yaml",
        "patches/soc/demo-soc/series",
        "patches/soc/demo-soc/0001-hello-name-the-soc.patch",
        "patches/driver/demo-led/series",
        "patches/driver/demo-led/0001-hello-add-led-driver.patch",
        "patches/board/demo-board/series",
        "patches/board/demo-board/0001-hello-board-banner.patch",
        "patches/board/demo-board/0002-readme-board-note.patch",
    ]
    for item in promo.inputs:
        assert item.digest == digest_file(repo / item.path), item.path


def test_promote_input_digest_is_of_the_file_not_of_the_added_newline(repo):
    write_series(repo, "soc", "s", {"a.patch": diff("a", final_newline=False)})
    write_manifest(repo, with_includes([("soc", "s")], ["soc"]))
    inputs = {i.path: i.digest for i in promote(repo, load(repo)).inputs}
    assert inputs["patches/soc/s/a.patch"] == digest_bytes(diff("a", final_newline=False).encode())


def test_promote_raises_on_a_broken_series(repo):
    write_series(repo, "soc", "s", {}, "gone.patch\n")
    write_manifest(repo, with_includes([("soc", "s")], ["soc"]))
    with pytest.raises(ManifestError, match="patches/soc/s/series:1: patch file 'gone.patch' does not exist"):
        promote(repo, load(repo))


# --------------------------------------------------------------------------- property: determinism

# words YAML 1.1 reads as booleans or null are not names a manifest can hold unquoted
names = st.from_regex(r"[a-z][a-z0-9-]{0,7}", fullmatch=True).filter(
    lambda n: n not in ("y", "n", "yes", "no", "on", "off", "true", "false", "null"))
patch_names = st.from_regex(r"[0-9]{4}-[a-z]{1,6}\.patch", fullmatch=True)
series_layout = st.lists(
    st.tuples(st.sampled_from([s.value for s in Scope]), names,
              st.lists(st.tuples(patch_names, st.builds(lambda tag, nl: diff(tag, final_newline=nl).encode(),
                                                        names, st.booleans())),
                       max_size=3, unique_by=lambda p: p[0]),
              st.booleans()),
    min_size=1, max_size=5, unique_by=lambda inc: (inc[0], inc[1]),
)


def build_tree(root: Path, layout, order) -> None:
    (root / "fleet").mkdir(parents=True)
    for scope, series, patches, decorate in layout:
        text = "".join(f"{name}{' -p1' if decorate else ''}\n" for name, _ in patches)
        if decorate:
            text = f"# series {series}\n\n{text}# end\n"
        write_series(root, scope, series, dict(patches), text)
    write_manifest(root, with_includes([(s, n) for s, n, _, _ in layout], order))


def expected_output(layout, order) -> bytes:
    out = b""
    for scope in order:
        for s, _series, patches, _ in layout:
            if s == scope:
                for _name, data in patches:
                    out += data + (b"\n" if data and not data.endswith(b"\n") else b"")
    return out


@settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(layout=series_layout, order=st.permutations([s.value for s in Scope]))
def test_promote_is_a_pure_function_of_file_contents(layout, order):
    with tempfile.TemporaryDirectory() as a, tempfile.TemporaryDirectory() as b:
        first = Path(a) / "repo"
        build_tree(first, layout, order)
        m = fleet.load_manifest(first, HOST)
        once, twice = promote(first, m), promote(first, m)
        assert once.data == twice.data == expected_output(layout, order)
        assert once.digest == twice.digest
        assert once.inputs == twice.inputs

        elsewhere = Path(b) / "some" / "other" / "place"
        shutil.copytree(first, elsewhere)
        moved = promote(elsewhere, fleet.load_manifest(elsewhere, HOST))
        assert moved.data == once.data
        assert moved.digest == once.digest
        assert moved.inputs == once.inputs


# --------------------------------------------------------------------------- check_applies


@needs_patch
def test_demo_cumulative_patch_applies_to_the_demo_baseline(repo, tmp_path):
    patch = tmp_path / "demo.patch"
    patch.write_bytes(promote(repo, load(repo, "demo")).data)
    check = check_applies(patch, repo / DEMO_TARBALL)
    assert check.status is ApplyStatus.PASSED
    assert check.detail == "applies with -p1 to kabuild-hello-1.0.tar.gz"


@needs_patch
def test_check_applies_leaves_no_trace(repo, tmp_path, monkeypatch):
    scratch = tmp_path / "tmp"
    scratch.mkdir()
    monkeypatch.setattr(tempfile, "tempdir", str(scratch))
    patch = tmp_path / "demo.patch"
    patch.write_bytes(promote(repo, load(repo, "demo")).data)
    before = digest_file(repo / DEMO_TARBALL), digest_file(patch)
    check_applies(patch, repo / DEMO_TARBALL)
    assert (digest_file(repo / DEMO_TARBALL), digest_file(patch)) == before
    assert list(scratch.iterdir()) == []  # the throw-away tree is removed


BAD_PATCH = b"""\
--- a/hello.c
+++ b/hello.c
@@ -1,3 +1,3 @@
-this line is not in hello.c
+and neither is this one
 nor this context line
"""


@needs_patch
def test_patch_that_does_not_apply_raises_patch_error(repo, tmp_path):
    patch = tmp_path / "bad.patch"
    patch.write_bytes(BAD_PATCH)
    with pytest.raises(PatchError) as excinfo:
        check_applies(patch, repo / DEMO_TARBALL)
    assert excinfo.value.exit_code == ExitCode.REFUSED == 3
    assert str(excinfo.value).startswith("bad.patch does not apply to kabuild-hello-1.0.tar.gz: ")
    assert "\n" not in str(excinfo.value)


@needs_patch
def test_patch_that_applies_twice_fails_the_check(repo, tmp_path):
    """The same series included twice (under two names) must not pass: hunks apply in sequence."""
    soc = (repo / "patches/soc/demo-soc/0001-hello-name-the-soc.patch").read_bytes()
    patch = tmp_path / "twice.patch"
    patch.write_bytes(soc + soc)
    with pytest.raises(PatchError):
        check_applies(patch, repo / DEMO_TARBALL)


def test_empty_patch_passes_without_running_patch(repo, tmp_path, monkeypatch):
    monkeypatch.setattr("kabuild.inputs.patches.run", lambda *a, **k: pytest.fail("patch must not run"))
    patch = tmp_path / "empty.patch"
    patch.write_bytes(b"")
    check = check_applies(patch, repo / DEMO_TARBALL)
    assert check.status is ApplyStatus.PASSED
    assert "empty patch" in check.detail


def test_unreadable_baseline_raises_patch_error(repo, tmp_path):
    patch = tmp_path / "p.patch"
    patch.write_bytes(BAD_PATCH)
    tarball = tmp_path / "broken.tar.gz"
    tarball.write_bytes(b"this is not a tarball")
    with pytest.raises(PatchError, match=r"^cannot unpack baseline broken\.tar\.gz for the apply check: "):
        check_applies(patch, tarball)


@needs_patch
def test_check_applies_works_with_a_tarball_without_a_top_directory(tmp_path):
    src = tmp_path / "src"
    src.mkdir()
    (src / "a.txt").write_text("one\n")
    tarball = tmp_path / "flat.tar.gz"
    with tarfile.open(tarball, "w:gz") as tf:
        tf.add(src / "a.txt", arcname="a.txt")
    patch = tmp_path / "p.patch"
    patch.write_bytes(b"--- a/a.txt\n+++ b/a.txt\n@@ -1 +1 @@\n-one\n+two\n")
    assert check_applies(patch, tarball).status is ApplyStatus.PASSED
