"""The README's reference tables agree with the code they describe: every verb once with its real
arguments and flags, every exit code, every folder of the package."""

from __future__ import annotations

import re
from pathlib import Path

import click
import pytest

from kabuild.cli import main
from kabuild.errors import ExitCode

README = (Path(__file__).resolve().parents[2] / "README.md").read_text()
PACKAGE = Path(__file__).resolve().parents[2] / "kabuild"


def _section(title: str) -> str:
    match = re.search(rf"^#+ {re.escape(title)}\n(.*?)(?=^#+ )", README, re.M | re.S)
    assert match, f"README has no section {title!r}"
    return match.group(1)


def _verbs(cmd: click.Command = main, prefix: tuple[str, ...] = ()) -> dict[str, click.Command]:
    if isinstance(cmd, click.Group):
        out: dict[str, click.Command] = {}
        for name, sub in cmd.commands.items():
            out.update(_verbs(sub, (*prefix, name)))
        return out
    return {" ".join(prefix): cmd}


def _command_rows() -> dict[str, list[str]]:
    """`kabuild VERB ...` cells of the commands table, by the verb they start with."""
    rows: dict[str, list[str]] = {}
    verbs = sorted(_verbs(), key=len, reverse=True)
    for cell in re.findall(r"^\| `kabuild ([^`]*)` \|", _section("Commands"), re.M):
        verb = next((v for v in verbs if cell == v or cell.startswith(v + " ")), cell)
        rows.setdefault(verb, []).append(cell)
    return rows


VERBS = _verbs()


def test_the_commands_table_names_each_verb_exactly_once():
    rows = _command_rows()
    assert sorted(rows) == sorted(VERBS), "verbs missing from or unknown to the README commands table"
    assert all(len(cells) == 1 for cells in rows.values()), {v: c for v, c in rows.items() if len(c) > 1}


@pytest.mark.parametrize("verb", sorted(VERBS))
def test_each_verb_row_shows_its_real_arguments_and_flags(verb):
    cell = _command_rows()[verb][0]
    cmd = VERBS[verb]
    for param in cmd.params:
        if isinstance(param, click.Argument):
            assert (param.metavar or param.name.upper()) in cell, (verb, param.name)
        elif isinstance(param, click.Option):
            assert any(o in cell for o in param.opts if o.startswith("--")), (verb, param.opts)
    assert "--json" not in cell or any("--json" in p.opts for p in cmd.params), (verb, "documents a --json it lacks")


def test_the_exit_code_table_has_every_code():
    table = _section("Exit codes")
    codes = [int(c) for c in re.findall(r"^\| (\d+) \|", table, re.M)]
    assert codes == sorted(int(c) for c in ExitCode)


def test_the_layout_names_every_folder_of_the_package_and_the_ci_entry():
    layout = _section("Repository layout")
    for d in sorted(p.name for p in PACKAGE.iterdir() if p.is_dir() and (p / "__init__.py").exists()):
        assert re.search(rf"\b{d}/", layout), f"kabuild/{d}/ is not in the README layout"
    assert ".ci/run" in layout


def test_the_manifest_key_table_is_the_declared_one():
    from kabuild.config.settings import markdown_table

    assert markdown_table() in README
