"""Boot entries on the board: a pure transform of the boot configuration text.

Only ``extlinux`` (U-Boot's ``extlinux/extlinux.conf``) is implemented.  A new kernel gets a
new default entry (label :data:`NEW_LABEL`) made from the previous default entry with the
kernel, initramfs and device-tree paths of the new package; the previous default entry is
kept as :data:`FALLBACK_LABEL`, its files re-pointed into :data:`FALLBACK_DIR` (where the
installer copies the previous kernel, initramfs and device trees before ``pacman -U``
overwrites them).  Other entries are kept as they are.

Device trees in the new entry: the manifest's ``install.fdt`` (``FDT``) when set; otherwise, when
the package ships device trees, ``FDTDIR`` at them (an ``FDT`` of the previous entry is kept only
when it names a file the package ships: the board's own tree, now from the new package); a package
without device trees keeps the previous entry's lines (the board's tree does not come from it).
The installer checks that every path an entry names exists before it reboots (:func:`Entry.paths`).

The fallback is booted by the board's firmware when the new kernel does not confirm itself:
U-Boot's bootcount (``bootlimit``/``altbootcmd``), modelled by :func:`trial_marker`.
"""

from __future__ import annotations

import posixpath
from dataclasses import dataclass

from kabuild.config.install import BootMethod
from kabuild.errors import ConfigError, RefusalError

NEW_LABEL = "kabuild"
FALLBACK_LABEL = "kabuild-fallback"
FALLBACK_DIR = "/kabuild-fallback"  # inside /boot
CONFIG_PATH = {BootMethod.EXTLINUX: "/boot/extlinux/extlinux.conf"}
TRIAL_PATH = "/boot/extlinux/kabuild-trial"
PATH_KEYS = ("KERNEL", "LINUX", "INITRD", "FDT", "FDTDIR", "DEVICETREE", "DEVICETREEDIR")
DIR_KEYS = ("FDTDIR", "DEVICETREEDIR")
FDT_KEYS = ("FDT", "DEVICETREE")


def config_path(method: BootMethod) -> str:
    """The boot configuration file on the board, or a clear refusal for methods not implemented."""
    try:
        return CONFIG_PATH[method]
    except KeyError:
        raise ConfigError(f"install.boot: {method} is not implemented yet (implemented: "
                          f"{', '.join(m.value for m in CONFIG_PATH)})") from None


@dataclass(frozen=True)
class Line:
    key: str  # upper-cased keyword ("" for blank lines and comments)
    value: str
    raw: str


@dataclass(frozen=True)
class Entry:
    label: str
    lines: tuple[Line, ...]  # the lines after LABEL, up to the next LABEL

    def get(self, key: str) -> str | None:
        for line in self.lines:
            if line.key == key:
                return line.value
        return None

    def files(self) -> tuple[str, ...]:
        """The paths (relative to /boot, starting with '/') this entry boots from."""
        return tuple(path for path, _ in self.paths())

    def paths(self) -> tuple[tuple[str, bool], ...]:
        """(path relative to /boot, is a directory) for every file and directory the entry names."""
        out: dict[str, bool] = {}
        for line in self.lines:
            if line.key in PATH_KEYS and line.value:
                out.setdefault(line.value, line.key in DIR_KEYS)
            elif line.key == "APPEND":
                for w in line.value.split():
                    if w.startswith("initrd="):
                        out.setdefault(w.split("=", 1)[1], False)
        return tuple(out.items())


@dataclass(frozen=True)
class Extlinux:
    head: tuple[Line, ...]  # global lines (DEFAULT, TIMEOUT, MENU ...)
    entries: tuple[Entry, ...]

    @property
    def default(self) -> str | None:
        for line in self.head:
            if line.key == "DEFAULT":
                return line.value.split()[0] if line.value.split() else None
        return self.entries[0].label if self.entries else None

    def entry(self, label: str) -> Entry | None:
        return next((e for e in self.entries if e.label == label), None)


def _line(raw: str) -> Line:
    text = raw.strip()
    if not text or text.startswith("#"):
        return Line("", "", raw)
    key, _, value = text.partition(" ")
    if "\t" in key:
        key, _, rest = key.partition("\t")
        value = (rest + " " + value).strip()
    return Line(key.upper(), value.strip(), raw)


def parse(text: str) -> Extlinux:
    head: list[Line] = []
    entries: list[Entry] = []
    label: str | None = None
    body: list[Line] = []
    for raw in text.splitlines():
        line = _line(raw)
        if line.key == "LABEL":
            if label is not None:
                entries.append(Entry(label, tuple(body)))
            label, body = line.value, []
        elif label is None:
            head.append(line)
        else:
            body.append(line)
    if label is not None:
        entries.append(Entry(label, tuple(body)))
    return Extlinux(tuple(head), tuple(entries))


@dataclass(frozen=True)
class NewKernel:
    """Paths of the new package's boot files, relative to /boot (starting with '/')."""

    release: str
    kernel: str
    initrd: str | None = None
    fdtdir: str | None = None  # the package's device-tree directory, when it ships device trees
    fdt: str | None = None  # one device tree named by the manifest (install.fdt): FDT instead of FDTDIR
    dtbs: tuple[str, ...] = ()  # the device trees the package ships


def previous_entry(conf: Extlinux, display: str) -> Entry:
    label = conf.default
    entry = conf.entry(label) if label else None
    if entry is None:
        raise RefusalError(f"{display}: no default boot entry (DEFAULT names {label!r}, which has no LABEL); "
                           "fix the boot configuration on the board first")
    if not (entry.get("KERNEL") or entry.get("LINUX")):
        raise RefusalError(f"{display}: the default entry {label!r} has no KERNEL line")
    return entry


def fallback_path(path: str) -> str:
    return posixpath.join(FALLBACK_DIR, path.lstrip("/"))


def with_new_kernel(text: str, new: NewKernel, display: str = "extlinux.conf") -> str:
    """The boot configuration with ``new`` as the default entry and the previous default kept
    as the fallback entry (its files under :data:`FALLBACK_DIR`)."""
    conf = parse(text)
    old = previous_entry(conf, display)
    if old.label == FALLBACK_LABEL:
        raise RefusalError(f"{display}: the board boots its fallback entry by default; "
                           "restore the boot configuration before installing")
    fallback = Entry(FALLBACK_LABEL, tuple(_repoint(line, fallback_path, initrd_only=False) for line in old.lines))
    fresh = Entry(NEW_LABEL, tuple(_new_line(line, new) for line in old.lines if _keep_for_new(line, new)))
    missing = []
    if not (fresh.get("KERNEL") or fresh.get("LINUX")):
        missing.append(Line("KERNEL", new.kernel, f"    KERNEL {new.kernel}"))
    if new.initrd and not fresh.get("INITRD") and not _append_initrd(fresh):
        missing.append(Line("INITRD", new.initrd, f"    INITRD {new.initrd}"))
    if new.fdt and not fresh.get("FDT"):
        missing.append(Line("FDT", new.fdt, f"    FDT {new.fdt}"))
    elif new.fdtdir and not (fresh.get("FDTDIR") or any(fresh.get(k) for k in FDT_KEYS)):
        missing.append(Line("FDTDIR", new.fdtdir, f"    FDTDIR {new.fdtdir}"))
    fresh = Entry(NEW_LABEL, tuple(missing) + fresh.lines)
    head = [line for line in conf.head if line.key != "DEFAULT"]
    while head and not head[-1].raw.strip():  # each entry below brings its own blank line
        head.pop()
    out = [f"DEFAULT {NEW_LABEL}", *(line.raw for line in head)]
    out += _render(fresh, f"kabuild: Linux {new.release}")
    out += _render(fallback, f"kabuild: previous kernel ({old.label})")
    for entry in conf.entries:
        if entry.label not in (NEW_LABEL, FALLBACK_LABEL, old.label):  # the old default became these two
            out += _render(entry, None)
    return "\n".join(out).rstrip("\n") + "\n"


def _render(entry: Entry, menu: str | None) -> list[str]:
    lines = ["", f"LABEL {entry.label}"]
    if menu is not None:
        lines.append(f"    MENU LABEL {menu}")
    lines += [line.raw for line in entry.lines if not (menu is not None and line.key == "MENU" and
                                                        line.value.upper().startswith("LABEL"))]
    while len(lines) > 2 and not lines[-1].strip():
        lines.pop()
    return lines


def _append_initrd(entry: Entry) -> bool:
    value = entry.get("APPEND") or ""
    return any(w.startswith("initrd=") for w in value.split())


def _keep_for_new(line: Line, new: NewKernel) -> bool:
    if line.key == "INITRD" and not new.initrd:
        return False
    if new.fdt:  # the manifest names the device tree: one FDT line, nothing else
        return line.key not in ("FDTDIR", "DEVICETREEDIR", "DEVICETREE")
    if new.fdtdir and line.key in FDT_KEYS:  # a tree the new package does not ship would be stale
        return line.value in new.dtbs
    return True


def _new_line(line: Line, new: NewKernel) -> Line:
    if line.key in ("KERNEL", "LINUX"):
        return _with_value(line, new.kernel)
    if line.key == "INITRD" and new.initrd:
        return _with_value(line, new.initrd)
    if line.key == "FDT" and new.fdt:
        return _with_value(line, new.fdt)
    if line.key in DIR_KEYS and new.fdtdir:
        return _with_value(line, new.fdtdir)
    if line.key == "APPEND":
        words = [w for w in line.value.split() if not (w.startswith("initrd=") and not new.initrd)]
        words = [f"initrd={new.initrd}" if w.startswith("initrd=") else w for w in words]
        return _with_value(line, " ".join(words))
    return line


def _repoint(line: Line, fn, *, initrd_only: bool) -> Line:
    if line.key in PATH_KEYS and not initrd_only and line.value:
        return _with_value(line, fn(line.value))
    if line.key == "APPEND":
        words = [f"initrd={fn(w.split('=', 1)[1])}" if w.startswith("initrd=") else w for w in line.value.split()]
        return _with_value(line, " ".join(words))
    return line


def _with_value(line: Line, value: str) -> Line:
    indent = line.raw[: len(line.raw) - len(line.raw.lstrip())]
    keyword = line.raw.strip().split(None, 1)[0]
    return Line(line.key, value, f"{indent}{keyword} {value}")


def trial_marker(*, bootlimit: int = 1) -> str:
    """The bootcount state the firmware reads while a new kernel is on trial.

    While the marker exists each boot increments ``bootcount``; above ``bootlimit`` the firmware
    boots ``altlabel`` (U-Boot: ``bootcount``/``bootlimit``/``altbootcmd``).  The installer removes
    the marker once the new kernel answered the heartbeat (the new kernel is confirmed)."""
    return f"label={NEW_LABEL}\naltlabel={FALLBACK_LABEL}\nbootlimit={bootlimit}\nbootcount=0\n"
