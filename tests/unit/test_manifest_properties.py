"""Property: random deletions and type changes in a manifest or nodes.yaml are loaded or refused with
one located ManifestError (exit 2), never anything else."""

from __future__ import annotations

import copy
import shutil
from pathlib import Path

import pytest
import yaml
from hypothesis import HealthCheck, given, settings
from test_document_properties import mutate, mutations

from kabuild.config import manifest as fleet
from kabuild.config.yamlio import dump_yaml
from kabuild.errors import ExitCode, ManifestError

REPO_ROOT = Path(__file__).resolve().parents[2]
DEMO = yaml.safe_load((REPO_ROOT / "fleet" / "demo.yaml").read_text())
NODES = yaml.safe_load((REPO_ROOT / "fleet" / "nodes.yaml").read_text())


@pytest.fixture(scope="module")
def root(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("repo")
    for part in ("fleet", "patches"):
        shutil.copytree(REPO_ROOT / part, root / part)
    return root


def loads_or_refuses(root: Path) -> None:
    try:
        fleet.load(root, "demo")
    except ManifestError as e:
        assert e.exit_code == ExitCode.CONFIG
        assert "\n" not in str(e) and str(e).startswith(("fleet/demo.yaml", "fleet/nodes.yaml", "unknown build node"))


@settings(max_examples=80, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(plan=mutations)
def test_damaged_manifest_is_loaded_or_refused(root, plan):
    (root / "fleet" / "demo.yaml").write_text(dump_yaml(mutate(copy.deepcopy(DEMO), plan)))
    loads_or_refuses(root)


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(plan=mutations)
def test_damaged_nodes_file_is_loaded_or_refused(root, plan):
    (root / "fleet" / "demo.yaml").write_text((REPO_ROOT / "fleet" / "demo.yaml").read_text())
    (root / "fleet" / "nodes.yaml").write_text(dump_yaml(mutate(copy.deepcopy(NODES), plan)))
    loads_or_refuses(root)
