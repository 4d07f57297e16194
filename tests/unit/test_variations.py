"""Variations are pure transforms of an immutable BuildSpec; the control is the same chain with vary off."""

from __future__ import annotations

import dataclasses

import pytest

from kabuild import variations as v
from kabuild.build import ALT_USER, BUILDER, BuildSpec
from kabuild.errors import ConfigError, ExitCode
from kabuild.fleet import Arch

BASE = BuildSpec(host="h", package="p", arch=Arch.X86_64, image="img:1", source_date_epoch=1767225600, timeout=60)


def fields_changed(a: BuildSpec, b: BuildSpec) -> set[str]:
    return {f.name for f in dataclasses.fields(a) if getattr(a, f.name) != getattr(b, f.name)}


def test_control_is_the_same_chain_with_vary_off():
    control = v.apply(BASE, v.DEFAULT, vary=False)
    # only the CPU count is pinned for the control (one CPU, -j1), everything else untouched
    assert fields_changed(BASE, control) == {"cpus"} and control.cpus == 1
    assert v.apply(BASE, frozenset(), vary=True) == control


@pytest.mark.parametrize("variation, fields", [
    (v.Variation.HOSTNAME, {"hostname"}),
    (v.Variation.DOMAIN, {"domainname"}),
    (v.Variation.TIMEZONE, {"timezone"}),
    (v.Variation.LOCALE, {"locale"}),
    (v.Variation.UMASK, {"umask"}),
    (v.Variation.USER, {"user"}),
    (v.Variation.HOME, {"home"}),
    (v.Variation.CPUS, {"cpus"}),
    (v.Variation.CLOCK, {"faketime"}),
    (v.Variation.ENV, {"extra_env"}),
    (v.Variation.FILEORDER, {"reverse_context"}),
])
def test_each_variation_changes_only_its_own_fields(variation, fields):
    control = v.apply(BASE, frozenset({variation}), vary=False)
    experiment = v.apply(BASE, frozenset({variation}), vary=True)
    assert fields_changed(control, experiment) == fields


def test_transforms_are_pure():
    before = dataclasses.replace(BASE)
    a = v.apply(BASE, v.DEFAULT, vary=True)
    b = v.apply(BASE, v.DEFAULT, vary=True)
    assert a == b and BASE == before


def test_build_path_is_never_varied():
    control = v.describe(v.apply(BASE, frozenset(v.ORDER), vary=False))
    experiment = v.describe(v.apply(BASE, frozenset(v.ORDER), vary=True))
    assert control["build_path"] == experiment["build_path"] == "/build"
    assert {k for k in control if control[k] != experiment[k]} == {
        "hostname", "domainname", "timezone", "locale", "umask", "user", "home", "cpus", "clock", "env",
        "context_order"}


def test_experiment_environment_and_container():
    spec = v.apply(BASE, v.DEFAULT, vary=True)
    env = dict(spec.environment())
    assert env["TZ"] == "Pacific/Kiritimati" and env["LANG"] == env["LC_ALL"] == "de_DE.UTF-8"
    assert env["KABUILD_UMASK"] == "0002" and env["HOME"] == "/tmp" and env["MAKEFLAGS"] == "-j2"
    assert env["KABUILD_FAKETIME"] == "+400d" and env["KABUILD_NOISE"].startswith("experiment")
    assert env["SOURCE_DATE_EPOCH"] == "1767225600"
    c = spec.container("build2")
    assert c.user == f"{ALT_USER.uid}:{ALT_USER.gid}" and c.cpuset == "0-1" and c.network == "none"
    control = v.apply(BASE, v.DEFAULT, vary=False).container("build1")
    assert control.user == f"{BUILDER.uid}:{BUILDER.gid}" and control.cpuset == "0"


@pytest.mark.parametrize("text, expected", [
    (None, v.DEFAULT),
    ("", v.DEFAULT),
    ("all", frozenset(v.ORDER)),
    ("none", frozenset()),
    ("-clock", v.DEFAULT - {v.Variation.CLOCK}),
    ("+fileorder,-clock,-env", (v.DEFAULT | {v.Variation.FILEORDER}) - {v.Variation.CLOCK, v.Variation.ENV}),
    ("hostname,user", frozenset({v.Variation.HOSTNAME, v.Variation.USER})),
])
def test_parse(text, expected):
    assert v.parse(text) == expected


@pytest.mark.parametrize("text, message", [
    ("+nosuch", "unknown variation 'nosuch'"),
    ("hostname,-user", "mix of +/- and plain names"),
])
def test_parse_errors_are_usage_errors(text, message):
    with pytest.raises(ConfigError) as e:
        v.parse(text)
    assert message in str(e.value) and e.value.exit_code == ExitCode.CONFIG


def test_default_set_is_everything_but_fileorder_in_documented_order():
    assert v.ordered(v.DEFAULT) == ["hostname", "domain", "timezone", "locale", "umask", "user", "home", "cpus",
                                    "clock", "env"]
