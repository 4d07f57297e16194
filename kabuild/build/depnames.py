"""Build dependencies named the Arch way, installed on other image flavors through a name map.

PKGBUILDs say ``libelf``, ``pahole``, ``xz``; the debian flavor must install ``libelf-dev``,
``dwarves``, ``xz-utils``.  ``containers/<flavor>/arch-names`` maps each Arch name to the
flavor's package(s) (``-``: nothing to install).  Translation happens while a host is
prepared, so an unmapped name is a configuration error (exit 2) before any container starts.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path

from kabuild.config.manifest import Flavor
from kabuild.errors import ConfigError

MAP_NAME = "arch-names"
NOTHING = "-"
# An Arch package name never starts with '-' or '.'; a Debian one follows Debian policy 5.6.1 (lowercase
# letters, digits, '+', '-', '.', at least two characters, starting alphanumeric), optionally ':arch'.
# Anything else (an apt option such as --allow-unauthenticated) never reaches the install step.
_NAME = re.compile(r"[A-Za-z0-9@_+][A-Za-z0-9@._+-]*")
_DEBIAN = re.compile(r"[a-z0-9][a-z0-9+.-]+(:[a-z0-9][a-z0-9-]*)?")


@dataclass(frozen=True)
class NameMap:
    display: str  # repository-relative path of the map file
    names: dict[str, tuple[str, ...]]

    def translate(self, package: str, arch_names: tuple[str, ...]) -> tuple[str, ...]:
        """The flavor's package names for ``arch_names``, sorted and unique; refuse unmapped names."""
        missing = [n for n in arch_names if n not in self.names]
        if missing:
            raise ConfigError(
                f"package {package}: build dependenc{'y' if len(missing) == 1 else 'ies'} "
                f"{', '.join(missing)} {'has' if len(missing) == 1 else 'have'} no entry in {self.display} "
                f"(Arch name -> Debian package); add {'it' if len(missing) == 1 else 'them'} there")
        return tuple(sorted({d for n in arch_names for d in self.names[n]}))


def parse(text: str, display: str) -> NameMap:
    names: dict[str, tuple[str, ...]] = {}
    for lineno, raw in enumerate(text.splitlines(), 1):
        line = raw.split("#", 1)[0].split()
        if not line:
            continue
        arch, targets = line[0], line[1:]
        where = f"{display}:{lineno}"
        if not _NAME.fullmatch(arch):
            raise ConfigError(f"{where}: invalid Arch package name {arch!r}")
        if not targets:
            raise ConfigError(f"{where}: {arch} maps to nothing; write '{NOTHING}' when nothing needs installing")
        if arch in names:
            raise ConfigError(f"{where}: {arch} is mapped twice")
        if targets == [NOTHING]:
            names[arch] = ()
            continue
        bad = [t for t in targets if t == NOTHING or not _DEBIAN.fullmatch(t)]
        if bad:
            raise ConfigError(f"{where}: invalid Debian package name(s) {', '.join(repr(b) for b in bad)} for "
                              f"{arch} (lowercase letters, digits, '+', '-', '.'; an apt option is not a package)")
        names[arch] = tuple(targets)
    return NameMap(display, names)


def load(root: Path, flavor: Flavor) -> NameMap | None:
    """The flavor's name map; None for a flavor that uses Arch names natively."""
    if flavor is Flavor.ARCHLINUXARM:
        return None
    path = root / "containers" / flavor.value / MAP_NAME
    display = path.relative_to(root).as_posix()
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise ConfigError(f"the {flavor} flavor needs its Arch-name map {display}, which does not exist") from None
    except (OSError, UnicodeDecodeError) as e:
        raise ConfigError(f"cannot read {display}: {e}") from None
    return parse(text, display)


def for_flavor(root: Path, flavor: Flavor, package: str, arch_names: tuple[str, ...]) -> tuple[str, ...]:
    """What to install on ``flavor`` for a PKGBUILD's dependencies."""
    if not arch_names:
        return ()
    names = load(root, flavor)
    return arch_names if names is None else names.translate(package, arch_names)
