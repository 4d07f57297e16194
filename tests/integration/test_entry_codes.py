"""The real entry script's own exit code is named for what it is (issue 10: messages that point at the fix).

A build context without a PKGBUILD reaches the real kabuild-build in the real image on a real
engine; the script refuses before makepkg with its contract error (exit 100), and kabuild says
so with the script's own reason instead of "makepkg failed".
"""

from __future__ import annotations

import dataclasses

import pytest
from itest import leftovers, make_repo

from kabuild.build import host as build
from kabuild.build import makepkg
from kabuild.config import manifest as fleet
from kabuild.errors import BuildError, ExitCode

pytestmark = [pytest.mark.docker]


def test_a_context_without_pkgbuild_is_the_entry_scripts_contract_error(tmp_path, engine):
    root = make_repo(tmp_path, "fx", ["steady"])
    manifest = fleet.load(root, "fx")[0]
    prepared = build.prepare(root, manifest, lambda _m: None)
    image = build.ready_image(root, engine, prepared, lambda _m: None)
    ctx = prepared.contexts[0]
    broken = dataclasses.replace(ctx, files=tuple(f for f in ctx.files if f.name != "PKGBUILD"))
    assert len(broken.files) < len(ctx.files)
    spec = build.base_spec(manifest, ctx.package, image, engine.cpus)
    with pytest.raises(BuildError) as excinfo:
        makepkg.run_build(engine, image, spec, broken, tmp_path / "out", "build1", lambda _m: None)
    message = str(excinfo.value)
    assert excinfo.value.exit_code == ExitCode.BUILD_FAILED
    assert "(kabuild-build contract error, exit 100): no /build/src/PKGBUILD" in message, message
    assert "makepkg of steady failed" not in message
    assert "\n" not in message
    assert not leftovers(engine)
