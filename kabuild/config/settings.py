"""Every key of a host manifest (``fleet/<host>.yaml``), declared once with its default, its check and
its meaning (after mkosi's SETTINGS).

The manifest reader (:mod:`kabuild.config.manifest`, :mod:`kabuild.config.install`) reads each value
through :func:`text`, :func:`integer`, :func:`flag` or :func:`choice`, which take the default and the
limits from here; the command-line overrides name the keys they override; the README's manifest
table is :func:`markdown_table` (a unit test compares them).  A key read without a declaration is a
bug (KeyError), so the table cannot fall behind the reader.
"""

from __future__ import annotations

import enum
import re
from dataclasses import dataclass
from typing import Any, TypeVar

from kabuild.config.choices import Arch, BootMethod, Flavor, Scope, SingleEngine
from kabuild.config.document import DTB, FINGERPRINT, HEX64, HEX128, MAX_NAME, NAME
from kabuild.config.plausible import MAX_TIMEOUT
from kabuild.config.schema import Section

E = TypeVar("E", bound=enum.Enum)


class Kind(enum.StrEnum):
    TEXT = "text"
    INTEGER = "integer"
    FLAG = "flag"
    CHOICE = "choice"
    LIST = "list"
    SECTION = "section"


@dataclass(frozen=True)
class Setting:
    key: str  # the dotted path in the manifest; "[]" marks an item of a list
    kind: Kind
    doc: str
    required: bool = False
    default: Any = None  # the value when the key is absent (None: absent means "not set")
    pattern: str | None = None  # TEXT: the whole value must match
    what: str = ""  # TEXT/INTEGER: what was expected, for the error line
    minimum: int | None = None
    maximum: int | None = None
    choices: type[enum.Enum] | None = None  # CHOICE: the enum (set by the module that owns the enum)
    override: str | None = None  # the command-line option that overrides it for one command
    numbers: bool = True  # TEXT: False where a bare number is never meant (a URL, a path: `url: 42`)

    def shown_default(self) -> str:
        if self.required:
            return "required"
        if self.default is None or self.default == "" or self.default == ():
            return "—"
        if isinstance(self.default, bool):
            return "true" if self.default else "false"
        if isinstance(self.default, enum.Enum):
            return f"`{self.default.value}`"
        return f"`{self.default}`"


def _s(key: str, kind: Kind, doc: str, **kw: Any) -> Setting:
    return Setting(key, kind, doc, **kw)


TEXT, INT, FLAG, CHOICE, LIST, SECTION = Kind.TEXT, Kind.INTEGER, Kind.FLAG, Kind.CHOICE, Kind.LIST, Kind.SECTION
NODE = "a node name from fleet/nodes.yaml"

SETTINGS: tuple[Setting, ...] = (
    _s("schema", INT, "the manifest schema version (1)", required=True, what="the manifest schema version (1)"),
    _s("host", TEXT, "the host's name; must match the file name", required=True, pattern=NAME, what="a host name"),
    _s("arch", CHOICE, "the board's architecture", required=True, choices=Arch),
    _s("description", TEXT, "free text shown by `kabuild status`", default=""),
    _s("baseline", SECTION, "the Linux (or demo) source the patches apply to", required=True),
    _s("baseline.name", TEXT, "package-style name of the baseline", required=True, pattern=NAME,
       what="a package-style name"),
    _s("baseline.version", TEXT, "its version; quote it (YAML reads 6.10 as 6.1)", required=True),
    _s("baseline.ref", TEXT, "names the per-baseline directory `build/<host>/<ref>/`", required=True,
       pattern=rf"[A-Za-z0-9][A-Za-z0-9._+-]{{0,{MAX_NAME - 1}}}", what="a ref usable as a directory name"),
    _s("baseline.source_date_epoch", INT, "a fixed integer (the baseline's release date), never 'now'",
       required=True, minimum=1, what="a fixed integer (seconds since 1970-01-01 UTC), never 'now'"),
    _s("baseline.sources", LIST, "the baseline's files, at least one", required=True),
    _s("baseline.sources[].url", TEXT, "http(s), file:// or a repository-relative path", required=True,
       what="a URL (http, https, file) or a repository-relative path", numbers=False),
    _s("baseline.sources[].sha256", TEXT, "its sha256 (64 lowercase hex digits)", pattern=HEX64,
       what="64 lowercase hex digits"),
    _s("baseline.sources[].b2sum", TEXT, "its BLAKE2b-512 (128 lowercase hex digits)", pattern=HEX128,
       what="128 lowercase hex digits"),
    _s("baseline.sources[].mirrors", LIST, "more URLs of the same file, tried in order", default=()),
    _s("includes", LIST, "the patch series: `{scope, series}` items (`patches/<scope>/<series>/series`)",
       required=True),
    _s("includes[].scope", CHOICE, "the series' scope", required=True, choices=Scope),
    _s("includes[].series", TEXT, "the series directory", required=True, pattern=NAME,
       what="a series directory name"),
    _s("apply_order", LIST, "the scopes in the order their series are concatenated", required=True),
    _s("packages", LIST, "what to build, at least one", required=True),
    _s("packages[].name", TEXT, "the package (for a kernel: its pkgbase)", required=True, pattern=NAME,
       what="a pacman package name"),
    _s("packages[].pkgbuild", TEXT, "the PKGBUILD directory (repository-relative, absolute or `~/…`)",
       required=True, what="the path of the PKGBUILD directory", numbers=False),
    _s("packages[].patch", TEXT, "the PKGBUILD-side copy of the cumulative patch, checked for drift",
       pattern=r"[^/]+", what="a file name inside the PKGBUILD directory"),
    _s("build", SECTION, "how and where the packages are built", required=True),
    _s("build.flavor", CHOICE, "the build image", required=True, choices=Flavor, override="--flavor"),
    _s("build.timeout", INT, "seconds one makepkg run may take", default=3600, minimum=1, maximum=MAX_TIMEOUT,
       what="seconds"),
    _s("build.cross", FLAG, "build an aarch64 kernel in an image of the node's architecture with a cross "
       "toolchain (kernel hosts only: a `kernel:` section)", default=False, override="--cross"),
    _s("build.single_engine", CHOICE, "whether a run whose two builds ran on one engine (the experiment node and "
       "the fallback down, or one node named twice) may be published; `allowed` is for an owner with one build "
       "host", default=SingleEngine.REFUSED, choices=SingleEngine),
    _s("build.nodes", SECTION, "the build nodes, by name from `fleet/nodes.yaml`", required=True),
    _s("build.nodes.control", TEXT, "build 1 (control)", required=True, what=NODE, override="--node"),
    _s("build.nodes.experiment", TEXT, "build 2 (experiment, with the variations)", required=True, what=NODE,
       override="--node"),
    _s("build.nodes.fallback", TEXT, "used when the control or experiment node does not answer", what=NODE,
       override="--node"),
    _s("kernel", SECTION, "for a kernel recipe (one that reads `kabuild.conf`): how the tree is configured "
       "(see Board workflow)"),
    _s("kernel.config", TEXT, "a non-interactive kconfig make target: `defconfig`, `<board>_defconfig`, "
       "`tinyconfig`, `allnoconfig`, …", required=True, pattern=r"[a-z0-9][a-z0-9_.-]*config",
       what="a kconfig make target such as tinyconfig, defconfig or <board>_defconfig"),
    _s("kernel.fragments", LIST, "config fragments merged on top: Kconfig lines, inside the repository (lock "
       "inputs)", default=()),
    _s("kernel.dtbs", LIST, "aarch64 only: the device trees to build and package (as under "
       "`arch/arm64/boot/dts/`); default: every one the configuration enables; `kernel.test` inherits it",
       default=()),
    _s("kernel.test", SECTION, "a small configuration of the same recipe (the same keys as `kernel:`), built by "
       "`--kernel-config test`", override="--kernel-config"),
    _s("publish", SECTION, "where accepted packages are signed and published"),
    _s("publish.repository", TEXT, "the pacman repository name", required=True, pattern=NAME,
       what="a pacman repository name"),
    _s("publish.key", TEXT, "the signing key's fingerprint, or `throwaway` (a generated demo key)",
       pattern=rf"{FINGERPRINT}|throwaway", what="a 40-hex-digit OpenPGP fingerprint (uppercase) or 'throwaway'"),
    _s("publish.destination", TEXT, "a directory, `file:///path` or `ssh://[user@]host[:port]/path`",
       what="a directory or ssh://host/path", numbers=False),
    _s("publish.keep", INT, "how many versions of a package the repository keeps", default=3, minimum=1,
       what="how many versions to keep"),
    _s("install", SECTION, "how `kabuild install` reaches the board (see Installing on a board)"),
    _s("install.ssh", TEXT, "`[user@]host` of the board", required=True,
       pattern=r"([A-Za-z0-9._-]+@)?[A-Za-z0-9._:-]+", what="an ssh target ([user@]host, no options or spaces)",
       numbers=False),
    _s("install.boot", CHOICE, "the boot method; only `extlinux` is implemented, the others are refused when the "
       "manifest is read", required=True, choices=BootMethod),
    _s("install.port", INT, "ssh port", default=22, minimum=1, maximum=65535, what="a TCP port"),
    _s("install.known_hosts", TEXT, "`UserKnownHostsFile` (default: ssh's own)", what="a file path", numbers=False),
    _s("install.identity", TEXT, "private key file (default: ssh's own, or the agent)", what="a file path",
       numbers=False),
    _s("install.connect_timeout", INT, "seconds for every ssh connection", default=10, minimum=1, maximum=120,
       what="seconds"),
    _s("install.heartbeat_timeout", INT, "seconds the board has to come back on the new kernel", default=300,
       minimum=5, maximum=3600, what="seconds"),
    _s("install.backup", TEXT, "a local directory, or `ssh://[user@]host[:port]/path` (default: `build/backups`); "
       "backups go to `<backup>/<host>/<replaced version>/`; a remote one is made locally first "
       "(`build/<host>/install/backups/`, the copy rollbacks use), then copied, verified by sha256 and renamed",
       default="", what="a local directory or ssh://[user@]host[:port]/absolute/path for backups", numbers=False),
    _s("install.power_cycle", LIST, "argv of a local command that power-cycles the board; its program (a path or a "
       "name on `PATH`) must exist and be executable when the manifest is read; `--dry-run` shows it", default=()),
    _s("install.reboot", TEXT, "the command that reboots the board", default="reboot", what="a command"),
    _s("install.min_free_mb", INT, "MiB `/boot` must keep free beyond what the install writes", default=8,
       minimum=0, maximum=1 << 20, what="MiB"),
    _s("install.fdt", TEXT, "boot with `FDT <dtbs>/<fdt>` instead of `FDTDIR` (a device tree the package ships)",
       pattern=DTB, what="a device tree under the package's /boot/dtbs/, e.g. rockchip/rk3399-rockpro64.dtb"),
    _s("install.packages", LIST, "which of the manifest's packages to install (default: the first)", default=()),
)
BY_KEY: dict[str, Setting] = {s.key: s for s in SETTINGS}


def setting_of(sec: Section, key: str) -> Setting:
    """The declaration of ``key`` read in ``sec`` (list indexes and kernel.test folded)."""
    path = re.sub(r"\[\d+\]", "[]", sec.key_path(key))
    path = path.replace("kernel.test.", "kernel.", 1) if path != "kernel.test" else path
    return BY_KEY[path]


def text(sec: Section, key: str) -> str | None:
    s = setting_of(sec, key)
    return sec.text(key, required=s.required, default=s.default, pattern=s.pattern, what=s.what or "a string",
                    numbers=s.numbers)


def required_text(sec: Section, key: str) -> str:
    value = text(sec, key)
    assert value is not None, f"{sec.key_path(key)} is declared required"
    return value


def integer(sec: Section, key: str) -> int:
    s = setting_of(sec, key)
    value = sec.integer(key, required=s.required, default=s.default, minimum=s.minimum, maximum=s.maximum,
                        what=s.what or "an integer")
    assert value is not None, f"{sec.key_path(key)} is declared with a default or required"
    return value


def flag(sec: Section, key: str) -> bool:
    return sec.flag(key, default=bool(setting_of(sec, key).default))


def choice(sec: Section, key: str, cls: type[E]) -> E:
    s = setting_of(sec, key)
    assert s.choices is cls, f"{s.key} is declared with {s.choices}, read as {cls}"
    value = sec.choice(key, cls, required=s.required, default=s.default)
    assert value is not None, f"{sec.key_path(key)} is declared with a default or required"
    return value


def markdown_table() -> str:
    """The README's table of manifest keys."""
    rows = ["| key | default | meaning |", "|---|---|---|"]
    for s in SETTINGS:
        choices = f": {', '.join(f'`{c.value}`' for c in s.choices)}" if s.choices else ""
        flag_note = f" (command line: `{s.override}`)" if s.override else ""
        rows.append(f"| `{s.key}` | {s.shown_default()} | {s.doc}{choices}{flag_note} |")
    return "\n".join(rows) + "\n"


if __name__ == "__main__":
    print(markdown_table(), end="")
