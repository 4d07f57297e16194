"""--find-culprit's search (kabuild.reproduce.culprits) with a stand-in for the rebuilds.

The stand-in "builds" a package whose bytes are a pure function of the spec it is given (what a
leaky package would write), so the search's logic is checked without Docker: the null hypothesis,
what is skipped because the evidence named it, halving, and the cost in builds.
"""

from __future__ import annotations

import dataclasses
import io
import itertools
import subprocess
import tarfile
from pathlib import Path
from types import SimpleNamespace

import pytest

from kabuild.build import variations as v
from kabuild.build.spec import Artifact, BuildSpec
from kabuild.compare.acceptance import BuiltArtifact, PackageResult, Verdict
from kabuild.compare.explanation import Explanation, MemberExplanation, MemberState
from kabuild.config.manifest import Arch
from kabuild.files import digest_bytes, digest_file
from kabuild.reproduce import culprits
from kabuild.reproduce.explain import Sides

BASE = BuildSpec(host="h", package="p", arch=Arch.X86_64, image="img:1", source_date_epoch=1767225600, timeout=60,
                 cpus=2, node_cpus=2, vary_cpus=1)
FILE = "p-1-1-x86_64.pkg.tar.zst"


def _leak(fields: tuple[str, ...]):
    """Bytes that depend on these fields of the spec only (what the package leaks)."""
    def content(spec: BuildSpec) -> bytes:
        return repr([getattr(spec, f) for f in fields]).encode()
    return content


class Builder:
    def __init__(self, content, tmp_path: Path):
        self.content, self.tmp, self.specs = content, tmp_path, []
        self.clock = itertools.count()

    def __call__(self, engine, image, spec, ctx, out_dir, label, progress, final_dir=None):
        self.specs.append(spec)
        data = self.content(spec) + (b"" if self.content is not _own_time else str(next(self.clock)).encode())
        path = _package(self.tmp / label / FILE, data)
        return SimpleNamespace(artifacts=(Artifact(FILE, path, digest_file(path)),)), None


def _package(path: Path, data: bytes) -> Path:
    """A real .pkg.tar.zst with one member f (the evidence search reads it when the null differs)."""
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w", format=tarfile.PAX_FORMAT) as tf:
        info = tarfile.TarInfo("f")
        info.size, info.mtime = len(data), 1767225600
        tf.addfile(info, io.BytesIO(data))
    path.parent.mkdir(parents=True, exist_ok=True)
    subprocess.run(["zstd", "-q", "-f", "-o", str(path)], input=buf.getvalue(), check=True)
    return path


def _own_time(spec: BuildSpec) -> bytes:
    return b"built at "  # the Builder appends a new "time" to every build


def search(tmp_path, monkeypatch, content, named: tuple[str, ...] = (), unexplained: tuple[str, ...] = ("f",),
           confirm: bool = False, selected=v.DEFAULT):
    builder = Builder(content, tmp_path)
    monkeypatch.setattr(culprits, "build_on", builder)
    build1 = content(v.apply(BASE, selected, vary=False)) + (b"" if content is not _own_time else b"-1")
    one = _package(tmp_path / "build1" / FILE, build1)
    members = tuple(MemberExplanation(m, MemberState.UNEXPLAINED) for m in unexplained) + \
        (MemberExplanation("g", MemberState.EXPLAINED, named),) if named else \
        tuple(MemberExplanation(m, MemberState.UNEXPLAINED) for m in unexplained)
    found = Explanation(named, members, ())
    art = BuiltArtifact(digest_file(one), f"build1/{FILE}", 1.0, "build1/p.log")
    result = PackageResult("p", FILE, art, dataclasses.replace(art, digest=digest_bytes(b"2")), False,
                           Verdict.NOT_REPRODUCIBLE, explanation=found)
    pair = SimpleNamespace(second=SimpleNamespace(engine=SimpleNamespace(cpus=2)))
    ctx = SimpleNamespace(package=SimpleNamespace(name="p"))
    sides = Sides(BASE, BASE, (0.0, 1.0), (0.0, 1.0))
    (out,) = culprits.find_culprits(pair, None, BASE, selected, ctx, [result], tmp_path, lambda _: None, sides,
                                    confirm)
    return out.culprits, builder


def test_one_hidden_culprit_among_ten_costs_fewer_builds_than_one_per_variation(tmp_path, monkeypatch):
    c, builder = search(tmp_path, monkeypatch, _leak(("hostname",)))
    assert c.variations == ("hostname",) and not c.nondeterministic
    assert c.tested[0] == ("none", "same")  # the null hypothesis comes first
    assert c.builds == len(builder.specs) == len(c.tested) < len(v.DEFAULT)


@pytest.mark.parametrize("leaked", sorted({d.variation for d in v.TABLE if d.default} - {v.Variation.CPUS}),
                         ids=str)
def test_halving_finds_each_single_culprit(tmp_path, monkeypatch, leaked):
    field = {"hostname": "hostname", "domain": "domainname", "timezone": "timezone", "locale": "locale",
             "umask": "umask", "user": "user", "home": "home", "clock": "faketime", "env": "extra_env"}[leaked.value]
    c, _ = search(tmp_path, monkeypatch, _leak((field,)))
    assert c.variations == (leaked.value,)


def test_two_culprits_are_both_found(tmp_path, monkeypatch):
    c, _ = search(tmp_path, monkeypatch, _leak(("hostname", "umask")))
    assert c.variations == ("hostname", "umask")


def test_what_the_evidence_named_is_not_rebuilt(tmp_path, monkeypatch):
    # hostname named from evidence; the user leaks where no value shows: only the other nine are searched
    c, builder = search(tmp_path, monkeypatch, _leak(("hostname", "user")), named=("hostname",))
    assert c.variations == ("user",) and c.from_evidence == ("hostname",)
    assert all(s.hostname == BASE.hostname for s in builder.specs), "hostname was never varied in a rebuild"


def test_nothing_is_rebuilt_but_the_null_hypothesis_when_the_evidence_explained_everything(tmp_path, monkeypatch):
    c, builder = search(tmp_path, monkeypatch, _leak(("hostname",)), named=("hostname",), unexplained=())
    assert c.builds == 1 and c.tested == (("none", "same"),) and c.variations == ()
    assert c.from_evidence == ("hostname",)


def test_confirm_rebuilds_every_variation_also_those_named_from_evidence(tmp_path, monkeypatch):
    c, _ = search(tmp_path, monkeypatch, _leak(("hostname",)), named=("hostname",), unexplained=(), confirm=True)
    assert c.variations == ("hostname",) and c.from_evidence == ()
    assert c.builds == 1 + len(v.DEFAULT)


def test_a_build_that_differs_by_itself_blames_nothing(tmp_path, monkeypatch):
    c, builder = search(tmp_path, monkeypatch, _own_time)
    assert c.nondeterministic and c.variations == () and c.builds == 1
    assert c.tested == (("none", "differs"),)
    assert builder.specs[0] == dataclasses.replace(BASE, node_cpus=2)  # build 1's own conditions, no variation
