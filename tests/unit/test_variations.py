"""Variations are pure transforms of an immutable BuildSpec; the control is the same chain with vary off."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import pytest

from kabuild.build import variations as v
from kabuild.build.spec import ALT_USER, BUILDER, BuildSpec
from kabuild.config.manifest import Arch
from kabuild.errors import ConfigError, ExitCode

# A node with 4 CPUs: the control uses all of them, the cpus variation gives the experiment 2.
BASE = BuildSpec(host="h", package="p", arch=Arch.X86_64, image="img:1", source_date_epoch=1767225600, timeout=60,
                 cpus=4, node_cpus=4, vary_cpus=2)


def fields_changed(a: BuildSpec, b: BuildSpec) -> set[str]:
    return {f.name for f in dataclasses.fields(a) if getattr(a, f.name) != getattr(b, f.name)}


def test_control_is_the_same_chain_with_vary_off():
    control = v.apply(BASE, v.DEFAULT, vary=False)
    # the control is the base spec itself: every CPU of its node
    assert control == BASE and control.cpus == 4
    assert v.apply(BASE, frozenset(), vary=True) == control


@pytest.mark.parametrize("variation, fields", [
    (v.Variation.HOSTNAME, {"hostname"}),
    (v.Variation.DOMAIN, {"domainname"}),
    (v.Variation.TIMEZONE, {"timezone"}),
    (v.Variation.LOCALE, {"locale"}),
    (v.Variation.LC_ALL, {"lc_all"}),
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


@pytest.mark.parametrize("variation", v.ORDER)
def test_a_transform_with_vary_off_is_the_identity(variation):
    # The control build is the same chain with vary=False: each transform must hand back the very spec
    # it got (an equality check on the frozen BuildSpec could not fail: nothing can mutate it).
    assert v.TRANSFORMS[variation](BASE, False) is BASE
    assert v.TRANSFORMS[variation](BASE, True) is not BASE


def test_transforms_are_deterministic():
    # the same spec and the same choice give the same experiment, however often (no clock, no randomness)
    assert len({v.apply(BASE, frozenset(v.ORDER), vary=True) for _ in range(3)}) == 1


def test_build_path_is_never_varied():
    control = v.describe(v.apply(BASE, frozenset(v.ORDER), vary=False))
    experiment = v.describe(v.apply(BASE, frozenset(v.ORDER), vary=True))
    assert control["build_path"] == experiment["build_path"] == "/build"
    assert {k for k in control if control[k] != experiment[k]} == {
        "hostname", "domainname", "timezone", "locale", "lc_all", "umask", "user", "home", "cpus", "clock", "env",
        "context_order"}


def test_experiment_environment_and_container():
    spec = v.apply(BASE, v.DEFAULT, vary=True)
    env = dict(spec.environment())
    assert env["TZ"] == "Pacific/Kiritimati" and env["LANG"] == "de_DE.UTF-8" and "LC_ALL" not in env
    assert env["KABUILD_UMASK"] == "0002" and env["HOME"] == "/tmp" and env["MAKEFLAGS"] == "-j2"
    assert env["KABUILD_FAKETIME"] == "+400d" and env["KABUILD_NOISE"].startswith("experiment")
    assert env["SOURCE_DATE_EPOCH"] == "1767225600"
    c = spec.container("build2")
    assert c.user == f"{ALT_USER.uid}:{ALT_USER.gid}" and c.cpuset == "0-1" and c.network == "none"
    control = v.apply(BASE, v.DEFAULT, vary=False)
    assert control.container("build1").user == f"{BUILDER.uid}:{BUILDER.gid}"
    assert control.container("build1").cpuset is None, "the control build is not confined: every CPU"
    assert dict(control.environment())["MAKEFLAGS"] == "-j4"


@pytest.mark.parametrize("control, node, requested, expected", [
    (4, 4, None, 2),      # half of the experiment's node
    (2, 2, None, 1),
    (1, 1, None, 1),      # nothing else is possible; the report says the cpus were not varied
    (2, 4, None, 1),      # half would equal the control's count: one fewer instead
    (1, 2, None, 2),
    (4, 8, 3, 3),         # --vary cpus=3
    (4, 2, 3, 2),         # never more than the node has
    (2, 2, 2, 2),         # asked for explicitly
])
def test_experiment_cpus(control, node, requested, expected):
    assert v.experiment_cpus(control, node, requested) == expected


@pytest.mark.parametrize("text, selected, cpus", [
    ("cpus=3", v.DEFAULT, 3),
    ("hostname,cpus=1", frozenset({v.Variation.HOSTNAME, v.Variation.CPUS}), 1),
    ("+fileorder,cpus=2", v.DEFAULT | {v.Variation.FILEORDER}, 2),
    (None, v.DEFAULT, None),
])
def test_parse_spec_with_cpus(text, selected, cpus):
    assert v.parse_spec(text) == v.VarySpec(selected, cpus)


@pytest.mark.parametrize("text", ["cpus=0", "cpus=x", "hostname=1", "cpus=2,cpus=3", "-cpus,cpus=2"])
def test_parse_spec_errors(text):
    with pytest.raises(ConfigError):
        v.parse_spec(text)


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


# --------------------------------------------------------------------------- the one table


def test_the_table_declares_every_variation_once_in_its_order():
    assert [d.variation for d in v.TABLE] == list(v.Variation) == list(v.ORDER)
    assert v.DEFAULT == {d.variation for d in v.TABLE if d.default}
    assert v.Variation.LC_ALL not in v.DEFAULT and v.Variation.LC_ALL in v.parse("all")
    assert v.parse("+lc_all") == v.DEFAULT | {v.Variation.LC_ALL}


@pytest.mark.parametrize("definition", [d for d in v.TABLE if d.variation is not v.Variation.CPUS],
                         ids=lambda d: d.variation.value)
def test_documented_values_are_what_the_transforms_give(definition):
    control = v.apply(BASE, frozenset({definition.variation}), vary=False)
    experiment = v.apply(BASE, frozenset({definition.variation}), vary=True)
    assert definition.experiment.startswith(definition.value(experiment))
    if definition.variation is not v.Variation.HOME:  # documented as /home/<user>
        assert definition.control.startswith(definition.value(control))
    assert definition.value(control) != definition.value(experiment)


def test_lc_all_sets_lc_all_only_in_build_2_and_locale_only_lang():
    strict = v.apply(BASE, frozenset({v.Variation.LC_ALL}), vary=True)
    assert dict(strict.environment())["LC_ALL"] == "de_DE.UTF-8"
    assert "LC_ALL" not in dict(v.apply(BASE, frozenset(v.ORDER), vary=False).environment())
    lang = dict(v.apply(BASE, frozenset({v.Variation.LOCALE}), vary=True).environment())
    assert lang["LANG"] == "de_DE.UTF-8" and "LC_ALL" not in lang


def test_the_readme_variation_table_is_the_rendered_table():
    readme = (Path(__file__).resolve().parents[2] / "README.md").read_text()
    assert v.markdown_table() in readme
    for d in v.TABLE:  # and the rendering really reads the table
        assert f"| {d.variation.value} | {d.sets} |" in v.markdown_table()


def test_the_cli_help_comes_from_the_table():
    from click.testing import CliRunner

    from kabuild.cli.app import main

    # click rewraps the text (and breaks long words): compare without any whitespace
    out = "".join(CliRunner().invoke(main, ["reproduce", "--help"]).output.split())
    assert "".join(v.help_text().split()) in out
    for d in v.TABLE:
        assert f"{d.variation.value}: {d.description} [sets {d.sets}]" in v.help_text()


def test_the_report_rows_come_from_the_table_with_the_specs_values():
    from reportdocs import NOT_REPRODUCIBLE, report

    from kabuild.report.facts import variation_rows

    control, experiment = v.apply(BASE, v.DEFAULT, vary=False), v.apply(BASE, v.DEFAULT, vary=True)
    rows = v.rows(control, experiment, v.DEFAULT)
    assert [r.name for r in rows] == v.ordered(v.DEFAULT)
    locale = next(r for r in rows if r.name == "locale")
    assert locale.sets.startswith("LANG only") and (locale.control, locale.experiment) == ("C.UTF-8", "de_DE.UTF-8")
    assert next(r for r in rows if r.name == "cpus").experiment == "2"  # BASE's vary_cpus, not the doc's words
    doc = dict(NOT_REPRODUCIBLE, variations=dict(NOT_REPRODUCIBLE["variations"], changes=[
        {"name": r.name, "sets": r.sets, "control": r.control, "experiment": r.experiment} for r in rows]))
    shown = variation_rows(report(doc))
    assert shown[:len(rows)] == [(r.name, r.sets, r.control, r.experiment) for r in rows]
