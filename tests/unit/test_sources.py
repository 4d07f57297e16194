"""The checksum-addressed source cache: lookups, fetches through mirrors, refusals."""

from __future__ import annotations

import io
from pathlib import Path

import pytest
from kbhelpers import DEMO_TARBALL, DEMO_TARBALL_B2SUM, DEMO_TARBALL_SHA256

from kabuild.config.manifest import Source
from kabuild.errors import ChecksumError, ExitCode, ToolError
from kabuild.files import digest_bytes, digest_file
from kabuild.inputs.sources import SourceCache, default_cache_dir

DATA = b"the baseline tarball bytes\n"
DIGEST = digest_bytes(DATA)
WRONG_SHA = "0" * 64


@pytest.fixture
def cache(tmp_path) -> SourceCache:
    return SourceCache(tmp_path / "cache")


def files_under(path: Path) -> list[str]:
    return sorted(str(p.relative_to(path)) for p in path.rglob("*") if p.is_file()) if path.exists() else []


# --------------------------------------------------------------------------- lookup


def test_lookup_verifies_a_repository_relative_source(repo, cache):
    source = Source(DEMO_TARBALL, sha256=DEMO_TARBALL_SHA256, b2sum=DEMO_TARBALL_B2SUM)
    found = cache.lookup(source, repo)
    assert found.path == repo / DEMO_TARBALL
    assert found.digest == digest_file(repo / DEMO_TARBALL)
    assert found.source is source


def test_lookup_with_b2sum_only_is_verified(repo, cache):
    found = cache.lookup(Source(DEMO_TARBALL, b2sum=DEMO_TARBALL_B2SUM), repo)
    assert found.digest.b2sum == DEMO_TARBALL_B2SUM


def test_lookup_refuses_a_sha256_mismatch_naming_path_and_both_hashes(repo, cache):
    with pytest.raises(ChecksumError) as excinfo:
        cache.lookup(Source(DEMO_TARBALL, sha256=WRONG_SHA), repo)
    assert excinfo.value.exit_code == ExitCode.REFUSED == 3
    assert str(excinfo.value) == (
        f"{repo / DEMO_TARBALL}: sha256 mismatch: expected {WRONG_SHA}, got {DEMO_TARBALL_SHA256}"
    )


def test_lookup_refuses_a_b2sum_mismatch(repo, cache):
    with pytest.raises(ChecksumError) as excinfo:
        cache.lookup(Source(DEMO_TARBALL, sha256=DEMO_TARBALL_SHA256, b2sum="f" * 128), repo)
    assert str(excinfo.value) == (
        f"{repo / DEMO_TARBALL}: b2sum mismatch: expected {'f' * 128}, got {DEMO_TARBALL_B2SUM}"
    )


def test_lookup_refuses_a_source_without_a_checksum(repo, cache):
    with pytest.raises(ChecksumError) as excinfo:
        cache.lookup(Source(DEMO_TARBALL), repo)
    assert excinfo.value.exit_code == 3
    assert str(excinfo.value) == (
        f"{DEMO_TARBALL}: no sha256 or b2sum in the manifest; kabuild refuses to use an unverified source"
    )


def test_lookup_finds_a_cached_copy_of_a_remote_source(tmp_path, cache):
    slot = cache.root / "sha256" / DIGEST.sha256
    slot.parent.mkdir(parents=True)
    slot.write_bytes(DATA)
    found = cache.lookup(Source("https://example.invalid/x.tar.gz", sha256=DIGEST.sha256), tmp_path)
    assert found.path == slot


def test_lookup_refuses_a_corrupted_cache_entry(tmp_path, cache):
    slot = cache.root / "sha256" / DIGEST.sha256
    slot.parent.mkdir(parents=True)
    slot.write_bytes(b"bit rot\n")
    with pytest.raises(ChecksumError, match=f"^{slot}: sha256 mismatch"):
        cache.lookup(Source("https://example.invalid/x.tar.gz", sha256=DIGEST.sha256), tmp_path)


def test_lookup_of_an_absent_remote_source_is_none(tmp_path, cache):
    assert cache.lookup(Source("https://example.invalid/x.tar.gz", sha256=DIGEST.sha256), tmp_path) is None


def test_slot_is_addressed_by_hash(cache):
    assert cache.slot(Source("x", sha256=DIGEST.sha256)) == cache.root / "sha256" / DIGEST.sha256
    assert cache.slot(Source("x", b2sum=DIGEST.b2sum)) == cache.root / "b2sum" / DIGEST.b2sum


def test_default_cache_dir_follows_the_environment(monkeypatch, tmp_path):
    monkeypatch.setenv("KABUILD_CACHE", str(tmp_path / "k"))
    assert default_cache_dir() == tmp_path / "k" / "sources"
    monkeypatch.delenv("KABUILD_CACHE")
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg"))
    assert default_cache_dir() == tmp_path / "xdg" / "kabuild" / "sources"
    assert SourceCache().root == tmp_path / "xdg" / "kabuild" / "sources"


# --------------------------------------------------------------------------- fetch


@pytest.fixture
def mirror(tmp_path) -> Path:
    d = tmp_path / "mirror"
    d.mkdir()
    (d / "x.tar.gz").write_bytes(DATA)
    return d


def test_fetch_tries_mirrors_in_order_and_stores_under_the_hash(tmp_path, cache, mirror):
    source = Source(f"file://{tmp_path}/upstream/x.tar.gz", sha256=DIGEST.sha256,
                    mirrors=(f"file://{tmp_path}/missing/x.tar.gz", f"file://{mirror}/x.tar.gz"))
    messages = []
    got = cache.fetch(source, tmp_path, progress=messages.append)
    slot = cache.root / "sha256" / DIGEST.sha256
    assert got.path == slot
    assert got.digest == DIGEST
    assert slot.read_bytes() == DATA
    assert files_under(cache.root) == [f"sha256/{DIGEST.sha256}"]  # no temp file left behind
    assert (mirror / "x.tar.gz").read_bytes() == DATA  # the mirror is copied, not moved


def test_fetch_a_second_time_uses_the_cache(tmp_path, cache, mirror):
    source = Source(f"file://{tmp_path}/upstream/x.tar.gz", sha256=DIGEST.sha256,
                    mirrors=(f"file://{mirror}/x.tar.gz",))
    cache.fetch(source, tmp_path)
    (mirror / "x.tar.gz").unlink()
    assert cache.fetch(source, tmp_path).path == cache.root / "sha256" / DIGEST.sha256


def test_fetch_of_a_local_source_does_not_copy_it(repo, cache):
    got = cache.fetch(Source(DEMO_TARBALL, sha256=DEMO_TARBALL_SHA256), repo)
    assert got.path == repo / DEMO_TARBALL
    assert files_under(cache.root) == []


def test_fetch_mismatch_on_a_mirror_leaves_nothing_in_the_cache(tmp_path, cache, mirror):
    source = Source(f"file://{tmp_path}/upstream/x.tar.gz", sha256=WRONG_SHA,
                    mirrors=(f"file://{mirror}/x.tar.gz",))
    with pytest.raises(ChecksumError) as excinfo:
        cache.fetch(source, tmp_path)
    assert excinfo.value.exit_code == 3
    assert str(excinfo.value) == (
        f"file://{mirror}/x.tar.gz: sha256 mismatch: expected {WRONG_SHA}, got {DIGEST.sha256}"
    )
    assert files_under(cache.root) == []


def test_fetch_with_every_location_missing_is_a_tool_error(tmp_path, cache):
    source = Source(f"file://{tmp_path}/a/x.tar.gz", sha256=DIGEST.sha256, mirrors=(f"file://{tmp_path}/b/x.tar.gz",))
    with pytest.raises(ToolError) as excinfo:
        cache.fetch(source, tmp_path)
    assert excinfo.value.exit_code == ExitCode.ENVIRONMENT
    assert str(excinfo.value) == (
        f"cannot fetch x.tar.gz: file://{tmp_path}/a/x.tar.gz: not found; file://{tmp_path}/b/x.tar.gz: not found"
    )
    assert files_under(cache.root) == []


def test_fetch_refuses_a_source_without_a_checksum(tmp_path, cache, mirror):
    with pytest.raises(ChecksumError):
        cache.fetch(Source(f"file://{mirror}/x.tar.gz"), tmp_path)


# Downloads go through urllib; a fake urlopen keeps these tests off the network.


def fake_urlopen(payload: bytes, calls: list):
    def urlopen(url, timeout):
        calls.append(url)
        return io.BytesIO(payload)
    return urlopen


def test_download_is_verified_and_stored_under_the_hash(tmp_path, cache, monkeypatch):
    calls = []
    monkeypatch.setattr("kabuild.inputs.sources.urllib.request.urlopen", fake_urlopen(DATA, calls))
    got = cache.fetch(Source("https://example.invalid/x.tar.gz", sha256=DIGEST.sha256), tmp_path)
    assert calls == ["https://example.invalid/x.tar.gz"]
    assert got.digest == DIGEST
    assert files_under(cache.root) == [f"sha256/{DIGEST.sha256}"]


def test_download_mismatch_leaves_nothing_in_the_cache(tmp_path, cache, monkeypatch):
    monkeypatch.setattr("kabuild.inputs.sources.urllib.request.urlopen", fake_urlopen(b"tampered", []))
    with pytest.raises(ChecksumError, match=r"^https://example\.invalid/x\.tar\.gz: sha256 mismatch: expected "):
        cache.fetch(Source("https://example.invalid/x.tar.gz", sha256=DIGEST.sha256), tmp_path)
    assert files_under(cache.root) == []


def test_download_failure_falls_through_to_the_next_mirror(tmp_path, cache, monkeypatch, mirror):
    def urlopen(url, timeout):
        raise OSError("connection refused")
    monkeypatch.setattr("kabuild.inputs.sources.urllib.request.urlopen", urlopen)
    source = Source("https://example.invalid/x.tar.gz", sha256=DIGEST.sha256, mirrors=(f"file://{mirror}/x.tar.gz",))
    assert cache.fetch(source, tmp_path).path.read_bytes() == DATA
    assert files_under(cache.root) == [f"sha256/{DIGEST.sha256}"]
