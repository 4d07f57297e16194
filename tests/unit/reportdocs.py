"""Valid acceptance-report documents (report.json, schema 2) for the unit tests to vary.

Tests take these dicts, change one thing, and either render them through
``kabuild.compare.acceptance.from_dict`` or expect it to refuse them with a located DocumentError.
"""

from __future__ import annotations

import copy
from typing import Any

from kabuild.compare import acceptance

SHA1 = "a1" * 32
SHA2 = "b2" * 32
SHAR = "c3" * 32
B2 = "d4" * 64
LOCK = "e5" * 32
KEY = "f6" * 32
FILE = "kabuild-hello-1.0-1-aarch64.pkg.tar.zst"


def build(sha: str, n: int, name: str = "kabuild-hello", b2: str = B2, size: int = 3289) -> dict[str, Any]:
    return {"sha256": sha, "b2sum": b2, "size": size, "path": f"build{n}/{name}-1.0-1-aarch64.pkg.tar.zst",
            "duration": 80.1 if n == 1 else 79.4, "log": f"build{n}/{name}.log"}


def diffoscope(files: list[str], pair: str, name: str = "kabuild-hello") -> dict[str, Any]:
    base = f"diffoscope/{name}/{pair}/members"
    return {"status": "different", "files": files, "html": f"{base}/html/index.html", "text": f"{base}/diff.txt",
            "json": f"{base}/diff.json", "error": None, "truncated": False}


def members(content: list[str], kind: str = "content", **over: Any) -> dict[str, Any]:
    m = {"kind": kind, "content": content, "only_in_first": [], "only_in_second": [], "metadata": [], "order": [],
         "members": 12, "error": None}
    m.update(over)
    return m


def comparison(files: list[str], pair: str) -> dict[str, Any]:
    return {"members": members(files), "diffoscope": diffoscope(files, pair)}


def explanation(**over: Any) -> dict[str, Any]:
    """build 1 vs build 2 explained from evidence: the hostname in the greeting, the binary unexplained."""
    e = {
        "source": "evidence", "marked": "from evidence, not rebuilt", "variations": ["hostname"], "unexplained": ["usr/bin/kabuild-hello"], "own_time": False,
        "members": [
            {"member": ".BUILDINFO", "state": "derived", "variations": [], "unmatched": 0},
            {"member": "usr/bin/kabuild-hello", "state": "unexplained", "variations": [], "unmatched": 2},
            {"member": "usr/share/kabuild-hello/greeting.txt", "state": "explained", "variations": ["hostname"],
             "unmatched": 0}],
        "findings": [{"member": "usr/share/kabuild-hello/greeting.txt", "kind": "value", "variations": ["hostname"],
                      "build1": "kabuild-a", "build2": "kabuild-b", "what": "", "context": "hello from kabuild-b",
                      "own_time": False}],
        "hints": [], "seconds": 0.3, "error": None,
    }
    e.update(over)
    return e


def package(**over: Any) -> dict[str, Any]:
    pkg = {
        "name": "kabuild-hello", "file": FILE,
        "build1": build(SHA1, 1), "build2": build(SHA1, 2),
        "reference": {"sha256": SHA1, "b2sum": B2, "size": 3289,
                      "source": "references/demo/kabuild-hello/reference.yaml"},
        "reproducible": True, "parity": True, "verdict": "accepted",
        "build1_vs_build2": None, "build1_vs_reference": None,
        "toolchain": {"matches_reference": True, "changed": [], "reference_image": "kabuild/debian-aarch64:f57e9f6bce088478"},
        "culprits": None, "error": None,
    }
    pkg.update(over)
    return pkg


def document(packages: list[dict[str, Any]], **over: Any) -> dict[str, Any]:
    doc = {
        "schema": acceptance.SCHEMA, "kind": acceptance.KIND, "kabuild_version": "0.1.0",
        "host": "demo", "arch": "aarch64", "run_id": "20261122T011500Z-ab12cd34", "inputs_key": KEY,
        "completed": True, "started_at": "2026-11-22T01:15:00+00:00", "finished_at": "2026-11-22T01:17:41+00:00",
        "duration": 161.2, "baseline": {"name": "kabuild-hello", "version": "1.0", "ref": "v1.0"},
        "source_date_epoch": 1767225600, "lock_hash": LOCK, "lock_path": "build/demo/v1.0/manifest.lock",
        "recipes": {"kabuild-hello": "7e" * 32},
        "image": {"tag": "kabuild/debian-aarch64:f57e9f6bce088478", "id": "sha256:" + "f6" * 32,
                  "recipe_hash": "9a" * 32, "flavor": "debian", "arch": "aarch64"},
        "toolchain": ["gcc-12 12.2.0-14", "binutils 2.40-1"],
        "build_mode": {"mode": "emulated", "target_arch": "aarch64", "node_arch": "x86_64"},
        "nodes": {"build1": {"node": "local", "requested": "local", "fell_back": False, "reason": None, "cpus": 2},
                  "build2": {"node": "remote-1", "requested": "remote-1", "fell_back": False, "reason": None, "cpus": 2},
                  "same_engine": False},
        "variations": {"applied": ["hostname", "timezone", "umask", "cpus"],
                       "control": {"hostname": "kabuild-a", "timezone": "UTC", "umask": "0022", "cpus": 2},
                       "experiment": {"hostname": "kabuild-b", "timezone": "Pacific/Auckland", "umask": "0002",
                                      "cpus": 1},
                       "changes": [
                           {"name": "hostname", "sets": "container hostname", "control": "kabuild-a",
                            "experiment": "kabuild-b"},
                           {"name": "timezone", "sets": "TZ", "control": "UTC", "experiment": "Pacific/Auckland"},
                           {"name": "umask", "sets": "KABUILD_UMASK", "control": "0022", "experiment": "0002"},
                           {"name": "cpus", "sets": "MAKEFLAGS=-jN and the container's cpuset", "control": "2",
                            "experiment": "1"}]},
        "timings": [{"phase": "image", "seconds": 1.5}, {"phase": "builds (wall clock)", "seconds": 80.2},
                    {"phase": "member hashing", "seconds": 0.4}, {"phase": "evidence", "seconds": 0.3},
                    {"phase": "diffoscope", "seconds": 2.1}],
        "answered_from": None,
        "packages": packages,
        "notes": [],
    }
    doc.update(over)
    report = acceptance.from_dict(_with_verdict(doc))
    return report.to_dict() if "verdict" not in over else doc


def _with_verdict(doc: dict[str, Any]) -> dict[str, Any]:
    doc = copy.deepcopy(doc)
    pkgs = [acceptance.PackageResult.from_section(_sec(p)) for p in doc["packages"]] if doc["packages"] else []
    verdict, code = acceptance.overall(pkgs)
    doc.setdefault("verdict", str(verdict))
    doc.setdefault("exit_code", code)
    return doc


def _sec(data: dict[str, Any]):
    from kabuild.config.document import dict_section

    return dict_section(data, "report.json", "packages[0]")


ACCEPTED = document([package()])

NOT_REPRODUCIBLE = document([package(
    build2=build(SHA2, 2), reproducible=False, parity=None, verdict="not-reproducible",
    reference=None, toolchain={"matches_reference": None, "changed": [], "reference_image": None},
    build1_vs_build2=comparison([".BUILDINFO", "usr/bin/kabuild-hello", "usr/share/kabuild-hello/greeting.txt"],
                                "build1-vs-build2"),
    culprits={"variations": ["hostname"], "builds": 4,
              "tested": [{"varied": v, "result": r} for v, r in (("none", "same"), ("hostname+timezone", "differs"),
                                                                 ("hostname", "differs"), ("timezone+umask", "same"))]},
    explanation=explanation(),
)])

PARITY_FAILED = document([package(
    reference={"sha256": SHAR, "b2sum": "77" * 64, "size": 3301, "source": "references/demo/kabuild-hello/reference.yaml"},
    parity=False, verdict="parity-failed",
    build1_vs_reference=comparison([".BUILDINFO"], "reference-vs-build1"),
    toolchain={"matches_reference": False, "changed": ["gcc-12 12.2.0-14 -> 12.2.0-15", "binutils 2.40-1 -> 2.40-2"],
               "reference_image": "kabuild/debian-aarch64:0000000000000000"},
)])

BUILD_FAILED = document([package(
    build2=None, reference=None, reproducible=False, parity=None, verdict="build-failed",
    toolchain={"matches_reference": None, "changed": [], "reference_image": None},
    error="makepkg failed (exit 4): ==> ERROR: A failure occurred in build().",
)])

FALLBACK = document([package(reference=None, parity=None, verdict="no-reference",
                             toolchain={"matches_reference": None, "changed": [], "reference_image": None})],
                    nodes={"build1": {"node": "local", "requested": "local", "fell_back": False, "reason": None,
                                      "cpus": 2},
                           "build2": {"node": "local", "requested": "local-2", "fell_back": True,
                                      "reason": "build node local-2 (tcp://10.0.0.2:2376) does not answer: timeout",
                                      "cpus": 2},
                           "same_engine": True},
                    notes=["node local-2 is down: build 2 ran on fallback local"])

ALL = {"accepted": ACCEPTED, "not-reproducible": NOT_REPRODUCIBLE, "parity-failed": PARITY_FAILED,
       "build-failed": BUILD_FAILED, "fallback": FALLBACK}


def report(doc: dict[str, Any]) -> acceptance.Report:
    return acceptance.from_dict(copy.deepcopy(doc))
