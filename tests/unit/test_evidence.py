"""Culprits from evidence (kabuild.compare.evidence, forms, dates, hints) on packages made here.

Each case builds two small .pkg.tar.zst archives the way two builds would differ, runs the member
comparison and the evidence search on them, and checks what is named, and what is not.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import gzip
import io
import subprocess
import tarfile
import time
from pathlib import Path

import pytest

from kabuild.build import variations as v
from kabuild.build.spec import BuildSpec
from kabuild.compare import dates, evidence, forms, hints, members
from kabuild.compare.explanation import FindingKind, MemberState
from kabuild.config.manifest import Arch

BASE = BuildSpec(host="h", package="p", arch=Arch.X86_64, image="img:1", source_date_epoch=1767225600, timeout=60,
                 cpus=2, node_cpus=2, vary_cpus=1)
NOW = time.time()
WINDOW = (NOW - 60, NOW)


def specs(selected=v.DEFAULT):
    return v.apply(BASE, selected, vary=False), v.apply(BASE, selected, vary=True)


def cond(selected=v.DEFAULT, window2=WINDOW):
    s1, s2 = specs(selected)
    return forms.conditions(s1, s2, selected, WINDOW, window2)


def package(path: Path, entries: list[tuple[str, bytes] | tuple[str, bytes, dict]]) -> Path:
    """A .pkg.tar.zst with the entries in this order: (name, data[, {"mode":, "mtime":, "uid":}])."""
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w", format=tarfile.PAX_FORMAT) as tf:
        for entry in entries:
            name, data = entry[0], entry[1]
            meta: dict = entry[2] if len(entry) > 2 else {}  # type: ignore[misc]
            info = tarfile.TarInfo(name)
            info.size = len(data)
            info.mode = meta.get("mode", 0o644)
            info.mtime = meta.get("mtime", 1767225600)
            info.uid = info.gid = meta.get("uid", 0)
            tf.addfile(info, io.BytesIO(data))
    path.parent.mkdir(parents=True, exist_ok=True)
    subprocess.run(["zstd", "-q", "-f", "-o", str(path)], input=buf.getvalue(), check=True)
    return path


def explain(tmp_path: Path, one, two, c=None):
    a = package(tmp_path / "1" / "x-1-1-x86_64.pkg.tar.zst", one)
    b = package(tmp_path / "2" / "x-1-1-x86_64.pkg.tar.zst", two)
    found = members.compare_packages(a, b)
    return hints.with_hints(evidence.explain(a, b, found, c or cond()))


def local(moment: float, zone: str, fmt: str = "%a %b %e %H:%M:%S") -> str:
    return dt.datetime.fromtimestamp(moment, dt.timezone(dt.timedelta(hours=14 if zone != "UTC" else 0))).strftime(fmt)


# --------------------------------------------------------------------------- values


def test_a_hostname_in_a_text_member_is_named_with_its_evidence(tmp_path):
    e = explain(tmp_path, [("etc/built-on", b"built on kabuild-build\n")],
                [("etc/built-on", b"built on kabuild-experiment\n")])
    assert e.variations == ("hostname",) and not e.unexplained
    (f,) = [f for f in e.findings if f.variations]
    assert f.sentence() == 'etc/built-on: "kabuild-experiment" where build 1 has "kabuild-build" (hostname)'
    assert f.context == "built on kabuild-experiment"


def test_a_fully_qualified_name_names_hostname_and_domain(tmp_path):
    e = explain(tmp_path, [("fqdn", b"kabuild-build.kabuild.internal\n")],
                [("fqdn", b"kabuild-experiment.experiment.kabuild.invalid\n")])
    assert e.variations == ("hostname", "domain")


def test_a_value_is_named_only_where_build_1_has_its_own_value_at_that_place(tmp_path):
    # build 2's hostname shows, but the line also differs elsewhere: the hostname is not the (whole) difference
    e = explain(tmp_path, [("f", b"host=kabuild-build serial=17\n")], [("f", b"host=kabuild-experiment serial=93\n")])
    assert e.variations == () and e.unexplained == ("f",)
    # build 2's value where build 1 has something that is not its value: not named either
    e = explain(tmp_path, [("g", b"host=somewhere-else\n")], [("g", b"host=kabuild-experiment\n")])
    assert e.variations == () and e.unexplained == ("g",)


def test_a_value_not_applied_is_never_named(tmp_path):
    only_user = frozenset({v.Variation.USER})
    e = explain(tmp_path, [("f", b"kabuild-build builder\n")], [("f", b"kabuild-experiment kabuild-alt\n")],
                cond(only_user))
    assert e.variations == () and e.unexplained == ("f",)  # the hostname was not varied: no rule for it


@pytest.mark.parametrize("one, two, named", [
    (b"builder\n", b"kabuild-alt\n", ("user",)),
    (b"uid=1000\n", b"uid=2000\n", ("user",)),
    (b"HOME=/home/builder\n", b"HOME=/tmp\n", ("home",)),
    (b"Thursday\n", b"Donnerstag\n", ("locale",)),
    (b"LANG=C.UTF-8\n", b"LANG=de_DE.UTF-8\n", ("locale",)),
    (b"make -j2\n", b"make -j1\n", ("cpus",)),
    (b"2\n", b"1\n", ("cpus",)),
    (b"unset\n", b"experiment-1f8c2a\n", ("env",)),
    (b"TZ=UTC\n", b"TZ=Pacific/Kiritimati\n", ("timezone",)),
])
def test_each_variation_value_is_named(tmp_path, one, two, named):
    e = explain(tmp_path, [("f", one)], [("f", two)])
    assert e.variations == named, e.findings


def test_a_number_is_not_found_inside_a_longer_number(tmp_path):
    e = explain(tmp_path, [("f", b"12\n")], [("f", b"11\n")])  # cpus 2 -> 1, but "12" is not "2"
    assert e.variations == () and e.unexplained == ("f",)


def test_a_digest_of_a_value_stays_unexplained(tmp_path):
    import hashlib

    e = explain(tmp_path, [("id", hashlib.sha256(b"kabuild-build").hexdigest().encode())],
                [("id", hashlib.sha256(b"kabuild-experiment").hexdigest().encode())])
    assert e.variations == () and e.unexplained == ("id",)
    assert "unexplained: id" in e.summary()


def test_strings_of_a_binary_are_searched(tmp_path):
    blob = b"\x7fELF\x02\x01\x00\x00" + bytes(range(256)) * 4
    one = blob + b"\x00Linux version 6.12 (builder@kabuild-build) #1\x00" + blob
    two = blob + b"\x00Linux version 6.12 (kabuild-alt@kabuild-experiment) #1\x00" + blob
    e = explain(tmp_path, [("boot/vmlinuz-x", one)], [("boot/vmlinuz-x", two)])
    assert e.variations == ("hostname", "user")
    (h,) = e.hints
    assert h.cause == "kernel version string" and "KBUILD_BUILD_USER" in h.hint and "kabuild-experiment" in h.evidence


def test_a_compressed_member_is_searched_decompressed(tmp_path):
    e = explain(tmp_path, [("usr/share/doc/x.gz", gzip.compress(b"by builder\n", mtime=0))],
                [("usr/share/doc/x.gz", gzip.compress(b"by kabuild-alt\n", mtime=0))])
    assert e.variations == ("user",)


# --------------------------------------------------------------------------- dates


def test_the_kernel_version_line_names_user_hostname_timezone_and_clock(tmp_path):
    t1 = NOW - 30
    t2 = t1 + 400 * 86400
    one = f"#define UTS_VERSION \"#1 SMP {local(t1, 'UTC')} UTC {local(t1, 'UTC', '%Y')}\"\n" \
          "#define LINUX_COMPILE_BY \"builder\"\n#define LINUX_COMPILE_HOST \"kabuild-build\"\n"
    two = f"#define UTS_VERSION \"#1 SMP {local(t2, 'K')} +14 {local(t2, 'K', '%Y')}\"\n" \
          "#define LINUX_COMPILE_BY \"kabuild-alt\"\n#define LINUX_COMPILE_HOST \"kabuild-experiment\"\n"
    path = "usr/lib/modules/6.12/build/include/generated/compile.h"
    e = explain(tmp_path, [(path, one.encode())], [(path, two.encode())])
    assert e.variations == ("hostname", "timezone", "user", "clock") and e.own_time
    date = next(f for f in e.findings if f.kind is FindingKind.DATE)
    assert "+0000 -> +1400" in date.what and "400 days ahead" in date.what
    assert [h.cause for h in e.hints] == ["kernel version string", "build time"]


def test_the_same_moment_in_two_zones_is_the_timezone_only(tmp_path):
    e = explain(tmp_path, [("f", b"2026-01-01 00:00 +0000\n")], [("f", b"2026-01-01 14:00 +1400\n")])
    assert e.variations == ("timezone",) and not e.own_time


def test_the_builds_own_time_is_named_as_such_and_blames_nothing(tmp_path):
    # the null hypothesis: the same conditions, two builds a minute apart, each writing its own time
    s1, _ = specs()
    c = forms.conditions(s1, s1, frozenset(), WINDOW, (NOW, NOW + 60))
    e = explain(tmp_path, [("now", f"{int((NOW - 30) * 1e9)}\n".encode())],
                [("now", f"{int((NOW + 30) * 1e9)}\n".encode())], c)
    assert e.variations == () and e.own_time and not e.unexplained
    assert [h.cause for h in e.hints] == ["build time"]


def test_a_date_outside_both_builds_is_not_explained(tmp_path):
    e = explain(tmp_path, [("f", b"Released 2019-05-04 10:00:00 +0000\n")],
                [("f", b"Released 2021-05-04 10:00:00 +0000\n")])
    assert e.variations == () and e.unexplained == ("f",) and not e.own_time


def test_a_bare_year_moved_by_the_faked_clock(tmp_path):
    c = cond()
    y1 = sorted(dates.years(c.first, True))[0]
    y2 = sorted(dates.years(c.second, True))[-1]
    e = explain(tmp_path, [("year", f"{y1}\n".encode())], [("year", f"{y2}\n".encode())], c)
    assert e.variations == ("clock",)


@pytest.mark.parametrize("text", ["Sat Dec  5 01:27:33 UTC 2026", "Sa 5. Dez 01:27:33 UTC 2026",
                                  "Sat, 05 Dec 2026 01:27:33 +0000", "2026-12-05T01:27:33Z", "Dec  5 2026 01:27:33",
                                  "1796434053", "1796434053000000000"])
def test_date_formats_are_read(text):
    d = dates.parse(text)
    assert d is not None and d.local.year == 2026 and d.local.month == 12 and d.local.day == 5
    assert dates.PATTERN.fullmatch(text)


# --------------------------------------------------------------------------- archive facts


def test_member_order_that_follows_c_collation_only_in_build_1_names_lc_all(tmp_path):
    names = ["usr/share/locale/pt/LC_MESSAGES/x.mo", "usr/share/locale/pt_BR/LC_MESSAGES/x.mo"]
    one = [(n, b"x") for n in names]
    two = [(n, b"x") for n in reversed(names)]
    strict = v.DEFAULT | {v.Variation.LC_ALL}
    e = explain(tmp_path, one, two, cond(strict))
    assert e.variations == ("lc_all",) and not e.unexplained
    order = next(f for f in e.findings if f.kind is FindingKind.ORDER)
    assert order.build1 == f"{names[0]} before {names[1]}"
    (h,) = e.hints
    assert h.cause == "member order" and "LC_COLLATE=C" in h.hint and "LC_ALL" in h.hint
    # without LC_ALL varied nothing explains the order: it is listed as unexplained, and no hint is given
    e = explain(tmp_path, one, two, cond(v.DEFAULT))
    assert e.variations == () and e.unexplained == ("(member order)",) and not e.hints


def test_modes_that_differ_by_the_umask_bits_name_umask(tmp_path):
    e = explain(tmp_path, [("f", b"x", {"mode": 0o644})], [("f", b"x", {"mode": 0o664})])
    assert e.variations == ("umask",)
    e = explain(tmp_path, [("f", b"x", {"mode": 0o644})], [("f", b"x", {"mode": 0o755})])
    assert e.variations == () and e.unexplained == ("f (metadata)",)


def test_an_mtime_from_the_faked_clock_names_clock(tmp_path):
    t1 = int(NOW - 20)
    e = explain(tmp_path, [("f", b"x", {"mtime": t1})], [("f", b"x", {"mtime": t1 + 400 * 86400})])
    assert e.variations == ("clock",)


def test_a_gzip_header_time_is_found_with_its_hint(tmp_path):
    t1 = int(NOW - 20)
    e = explain(tmp_path, [("a.gz", gzip.compress(b"same\n", mtime=t1))],
                [("a.gz", gzip.compress(b"same\n", mtime=t1 + 400 * 86400))])
    assert e.variations == ("clock",)
    assert "gzip header time" in [h.cause for h in e.hints]


def test_mtree_and_pkginfo_that_only_record_other_members_are_derived(tmp_path):
    one = [(".PKGINFO", b"pkgname = x\nsize = 10\n"),
           (".MTREE", gzip.compress(b"./f size=2 sha256digest=aa\n./g size=1 sha256digest=bb\n", mtime=0)),
           ("f", b"builder\n"), ("g", b"x")]
    two = [(".PKGINFO", b"pkgname = x\nsize = 14\n"),
           (".MTREE", gzip.compress(b"./f size=6 sha256digest=cc\n./g size=1 sha256digest=bb\n", mtime=0)),
           ("f", b"kabuild-alt\n"), ("g", b"x")]
    e = explain(tmp_path, one, two)
    states = {m.member: m.state for m in e.members}
    assert states == {".PKGINFO": MemberState.DERIVED, ".MTREE": MemberState.DERIVED, "f": MemberState.EXPLAINED}
    assert e.variations == ("user",) and not e.unexplained


def test_an_mtree_entry_of_a_member_that_did_not_differ_is_not_derived(tmp_path):
    one = [(".MTREE", gzip.compress(b"./g size=1 sha256digest=bb\n", mtime=0)), ("g", b"x")]
    two = [(".MTREE", gzip.compress(b"./g size=1 sha256digest=ee\n", mtime=0)), ("g", b"x")]
    e = explain(tmp_path, one, two)
    assert e.unexplained == (".MTREE",)


def test_member_names_that_carry_a_value(tmp_path):
    e = explain(tmp_path, [("var/lib/x/kabuild-build.state", b"x")], [("var/lib/x/kabuild-experiment.state", b"x")])
    assert e.variations == ("hostname",)


# --------------------------------------------------------------------------- hints


def test_no_hint_without_its_evidence(tmp_path):
    # a hostname in a file that is no kernel: named, but no kernel hint; nothing in the table is guessed
    e = explain(tmp_path, [("etc/motd", b"kabuild-build\n")], [("etc/motd", b"kabuild-experiment\n")])
    assert e.variations == ("hostname",) and e.hints == ()


def test_the_hint_table_is_documented_in_the_readme():
    readme = (Path(__file__).resolve().parents[2] / "README.md").read_text()
    assert hints.markdown_table() in readme


def test_the_explanation_round_trips_through_the_report(tmp_path):
    from kabuild.compare.explanation import Explanation
    from kabuild.config.document import dict_section

    e = explain(tmp_path, [("f", b"kabuild-build\n", {"mode": 0o644})], [("f", b"kabuild-experiment\n",
                                                                            {"mode": 0o664})])
    again = Explanation.from_section(dict_section(e.to_dict(), "report.json", "explanation"))
    assert again == dataclasses.replace(e, seconds=again.seconds)
    assert again.to_dict()["source"] == "evidence"


def test_a_small_number_is_not_found_in_an_address(tmp_path):
    # System.map of a kernel whose banner grew: the addresses moved; "1" in d1c0 is no CPU count
    one = [("System.map", b"ffffffff8140d2c0 d __func__.0\nffffffff8140d2d0 d banner\n")]
    two = [("System.map", b"ffffffff8140d1c0 d __func__.0\nffffffff8140d1e0 d banner\n")]
    e = explain(tmp_path, one, two)
    assert e.variations == () and not e.unexplained
    (m,) = e.members
    assert m.state is MemberState.DERIVED and "addresses" in e.findings[0].what


def test_a_digest_is_not_an_address_that_moved(tmp_path):
    e = explain(tmp_path, [("id", b"3f9a1c2b4d5e6f70\n")], [("id", b"9e8d7c6b5a4f3e2d\n")])
    assert e.unexplained == ("id",)


def test_archives_that_differ_only_in_their_compression_are_unexplained(tmp_path):
    a = package(tmp_path / "1" / "x.pkg.tar.zst", [("f", b"same\n")])
    b = tmp_path / "2" / "x.pkg.tar.zst"
    b.parent.mkdir(parents=True)
    plain = subprocess.run(["zstd", "-q", "-d", "-c", str(a)], capture_output=True, check=True).stdout
    subprocess.run(["zstd", "-q", "-19", "-f", "-o", str(b)], input=plain, check=True)
    found = members.compare_packages(a, b)
    e = evidence.explain(a, b, found, cond())
    assert e.unexplained == ("(archive: compression)",) and e.variations == ()


def test_many_members_whose_mtimes_moved_are_summed_up_in_one_line(tmp_path):
    t1 = int(NOW - 20)
    one = [(f"f{i}", b"x", {"mtime": t1}) for i in range(60)]
    two = [(f"f{i}", b"x", {"mtime": t1 + 400 * 86400}) for i in range(60)]
    e = explain(tmp_path, one, two)
    assert len(e.members) == evidence.MAX_METADATA + 1 and e.variations == ("clock",)
    assert e.members[-1].member == "(+10 more members whose metadata differs)"
    assert e.members[-1].variations == ("clock",) and not e.unexplained
