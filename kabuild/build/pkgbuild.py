"""Reading a PKGBUILD the way makepkg reads it: sourced by bash, never matched with regexes.

A PKGBUILD is a bash script: ``makedepends+=(…)``, arrays over several lines with comments
(a ``)`` in a comment included), ``depends_$CARCH``, a split package's ``depends`` inside its
``package_<name>()`` and values computed from ``kabuild.conf`` are only what they are once bash
has read them.  So kabuild sources it, as makepkg does, before any container starts, and reads
back pkgname, pkgver, arch, the dependencies, ``source=`` and the ``*sums`` arrays.

Sourcing runs the PKGBUILD's top-level code on the main node, so it happens where that code
cannot touch anything: in a temporary copy of the recipe (the PKGBUILD directory's small files
and kabuild.conf), with an empty environment (``env -i``), no network (``unshare --net``), as
``nobody`` when kabuild runs as root (``setpriv``), stdin closed, and a timeout.  Without root,
the network is cut with a user namespace when the kernel allows one; where no network namespace
can be made at all, the copy, the empty environment and (as root) ``nobody`` remain (README:
"Recipes and sources").
"""

from __future__ import annotations

import functools
import os
import re
import shutil
import tempfile
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

from kabuild import tools
from kabuild.errors import ConfigError, ToolFailed
from kabuild.inputs.sources import SUM_ALGORITHMS, SourceEntry
from kabuild.process import run

TIMEOUT = 30  # seconds; a PKGBUILD's top level only assigns variables and defines functions
MAX_PKGBUILD = 1 << 20  # bytes
MAX_COPIED = 4 << 20  # recipe files larger than this (source tarballs) are not copied for reading
NOBODY = 65534
PATH = "/usr/local/bin:/usr/bin:/bin"
# Package names as makepkg's lint accepts them: no leading '-' (an option) or '.'.
PKGNAME = re.compile(r"[A-Za-z0-9@_+][A-Za-z0-9@._+-]*")
PKGVER = re.compile(r"[^:/\s-]+")
PKGREL = re.compile(r"[0-9]+(\.[0-9]+)?")
_VERSIONED = re.compile(r"[<>=]")
DEPENDENCY_ARRAYS = ("depends", "makedepends", "checkdepends")

# The bash program: source the PKGBUILD (stdout to stderr, stdin closed), then print what was read
# as NUL-separated records on stdout, the way makepkg reads it (merge_arch_attrs for $CARCH, and
# extract_function_variable for the arrays of a split package's package_<name>()).
_READER = r"""
__kb_emit() {
  local __kb_n
  for __kb_n in "$@"; do
    declare -p "$__kb_n" &>/dev/null || continue
    local -n __kb_r=$__kb_n
    builtin printf 'V\0%s\0%s\0' "$__kb_n" "${#__kb_r[@]}"
    (( ${#__kb_r[@]} )) && builtin printf '%s\0' "${__kb_r[@]}"
    unset -n __kb_r
  done
}
shopt -u extglob
{ source ./PKGBUILD; } >&2 </dev/null
__kb_rc=$?
shopt -s extglob
if (( __kb_rc )); then builtin printf 'F\0%s\0' "$__kb_rc"; exit 0; fi
__kb_sums=()
for __kb_a in SUMS; do __kb_sums+=("${__kb_a}sums" "${__kb_a}sums_$CARCH"); done
__kb_emit CARCH pkgbase pkgname pkgver pkgrel epoch arch depends makedepends checkdepends \
  "depends_$CARCH" "makedepends_$CARCH" "checkdepends_$CARCH" source "source_$CARCH" "${__kb_sums[@]}" \
  KABUILD_KCONFIG
for __kb_p in "${pkgname[@]}"; do
  declare -F "package_$__kb_p" >/dev/null || continue
  __kb_body=$(declare -f "package_$__kb_p")
  for __kb_a in depends "depends_$CARCH"; do
    __kb_v=()
    while IFS= read -r __kb_line; do
      [[ $__kb_line =~ ^[[:space:]]*${__kb_a}(\+?)=\( ]] || continue
      __kb_line=${__kb_line##*([[:space:]])}
      eval "__kb_v${BASH_REMATCH[1]}=${__kb_line#*=}"
    done <<< "$__kb_body"
    builtin printf 'P\0%s\0%s\0' "$__kb_p" "${#__kb_v[@]}"
    (( ${#__kb_v[@]} )) && builtin printf '%s\0' "${__kb_v[@]}"
  done
done
builtin printf 'END\0'
""".replace("SUMS", " ".join(SUM_ALGORITHMS))


@dataclass(frozen=True)
class PkgbuildInfo:
    """What makepkg would read from one PKGBUILD for one architecture."""

    pkgbase: str
    pkgnames: tuple[str, ...]
    version: str  # [epoch:]pkgver-pkgrel
    arch: tuple[str, ...]
    carch: str  # CARCH once the PKGBUILD was read (a cross recipe sets the target's)
    dependencies: tuple[str, ...]  # depends/makedepends/checkdepends names, version constraints dropped, sorted
    sources: tuple[SourceEntry, ...]
    reads_kabuild_conf: bool  # the PKGBUILD sourced kabuild.conf (a kernel recipe)


def check_text(data: bytes, where: str) -> None:
    """An empty, binary or oversized PKGBUILD is refused before anything runs it."""
    if len(data) > MAX_PKGBUILD:
        raise ConfigError(f"{where}: {len(data)} bytes; a PKGBUILD is at most {MAX_PKGBUILD} (is it one at all?)")
    if not data.strip():
        raise ConfigError(f"{where}: is empty; a PKGBUILD defines at least pkgname, pkgver, pkgrel and arch")
    nul = data.find(b"\0")
    if nul >= 0:
        raise ConfigError(f"{where}: is binary (a NUL byte at offset {nul}), not a PKGBUILD")
    try:
        data.decode("utf-8")
    except UnicodeDecodeError as e:
        line = data[:e.start].count(b"\n") + 1
        raise ConfigError(f"{where}:{line}: not UTF-8 text ({e.reason}), not a PKGBUILD") from None


def read(files: Mapping[str, Path | bytes], where: str, *, carch: str, source_date_epoch: int) -> PkgbuildInfo:
    """Source ``files["PKGBUILD"]`` next to the other ``files`` (name -> path or generated bytes) as
    makepkg would with ``CARCH=carch``; ConfigError (exit 2) naming ``where`` (the PKGBUILD's path)."""
    pkgbuild = files["PKGBUILD"]
    data = pkgbuild if isinstance(pkgbuild, bytes) else pkgbuild.read_bytes()
    check_text(data, where)
    tmp = Path(tempfile.mkdtemp(prefix="kabuild-pkgbuild-"))
    try:
        _copy(files, tmp)
        env = [f"PATH={PATH}", f"HOME={tmp}", f"startdir={tmp}", f"srcdir={tmp}/src", f"pkgdir={tmp}/pkg",
               f"CARCH={carch}", "LANG=C.UTF-8", "TZ=UTC", f"SOURCE_DATE_EPOCH={source_date_epoch}"]
        argv = [*_sandbox(), tools.find("env"), "-i", *env, tools.find("bash"), "--noprofile", "--norc", "-c",
                _READER, "kabuild-pkgbuild"]
        try:
            result = run(argv, cwd=tmp, timeout=TIMEOUT, check=False, input=b"", text=False)
        except ToolFailed as e:
            if e.returncode is not None:
                raise
            raise ConfigError(f"{where}: reading it took longer than {TIMEOUT}s (does its top level wait for "
                              "input or the network? makepkg sources it the same way)") from None
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return _parse(result.stdout, result.stderr.decode("utf-8", "replace"), result.returncode, where)


def _copy(files: Mapping[str, Path | bytes], tmp: Path) -> None:
    for name, item in files.items():
        if isinstance(item, Path) and item.stat().st_size > MAX_COPIED:
            continue  # a source tarball: no top level needs its bytes to say what it builds
        dest = tmp / name
        dest.parent.mkdir(parents=True, exist_ok=True)
        if isinstance(item, bytes):
            dest.write_bytes(item)
        else:
            shutil.copyfile(item, dest)
        dest.chmod(0o644)
    if os.geteuid() == 0:  # the reader runs as nobody: its working directory is its own, nothing else
        for path in (tmp, *tmp.rglob("*")):
            if path.is_dir():
                os.chown(path, NOBODY, NOBODY)
                path.chmod(0o755)


@functools.cache
def _sandbox() -> tuple[str, ...]:
    """The command prefix that runs the reader without network and, as root, as nobody."""
    unshare = tools.find("unshare")

    def works(prefix: tuple[str, ...]) -> bool:  # e.g. no CAP_SYS_ADMIN inside a container
        return run([*prefix, "true"], check=False, timeout=10).returncode == 0

    offline: tuple[str, ...] = ()
    candidate = (unshare, "--net", "--") if os.geteuid() == 0 else (unshare, "--user", "--net", "--")
    if works(candidate):
        offline = candidate
    if os.geteuid() == 0:
        setpriv = tools.find("setpriv")
        return (*offline, setpriv, f"--reuid={NOBODY}", f"--regid={NOBODY}", "--clear-groups", "--no-new-privs")
    return offline


_BASH_ERROR = re.compile(r"(?:\./)?PKGBUILD: line (\d+): (.*)")


def _parse(out: bytes, err: str, code: int, where: str) -> PkgbuildInfo:
    fields = out.split(b"\0")
    values: dict[str, tuple[str, ...]] = {}
    split_deps: list[str] = []
    i = 0

    def take(n: int) -> list[str]:
        nonlocal i
        got = [f.decode("utf-8", "surrogateescape") for f in fields[i:i + n]]
        i += n
        return got

    finished = False
    while i < len(fields):
        kind = take(1)[0]
        if kind == "V":
            name, count = take(2)
            values[name] = tuple(take(int(count)))
        elif kind == "P":
            _pkg, count = take(2)
            split_deps += take(int(count))
        elif kind == "F":
            status = take(1)[0]
            if _BASH_ERROR.search(err):
                raise ConfigError(f"{_located(where, err)}: bash cannot read it{_last(err)}")
            raise ConfigError(f"{where}: its top level ends in a failing command (exit {status}), which makepkg "
                              f"refuses too{_last(err)}")
        elif kind == "END":
            finished = True
            break
        elif kind:
            raise ConfigError(f"{where}: unexpected output while reading it ({kind[:40]!r})")
    if not finished:
        raise ConfigError(f"{_located(where, err)}: its top level exits (status {code}) while bash reads it"
                          f"{_last(err)}")
    return _info(values, split_deps, where)


def _located(where: str, err: str) -> str:
    """``where`` with the line bash named in its first error, if any."""
    for line in err.splitlines():
        m = _BASH_ERROR.search(line)
        if m:
            return f"{where}:{m.group(1)}"
    return where


def _last(err: str) -> str:
    lines = [line.strip() for line in err.splitlines() if line.strip()]
    if not lines:
        return ""
    m = _BASH_ERROR.search(lines[0])
    text = m.group(2) if m else lines[-1]
    return f": {text[:160]}"


def _one(values: dict[str, tuple[str, ...]], name: str, where: str, pattern: re.Pattern | None = None,
         required: bool = True) -> str:
    found = values.get(name, ())
    if not found or not found[0]:
        if required:
            raise ConfigError(f"{where}: defines no {name}")
        return ""
    if len(found) > 1 and name != "pkgname":
        raise ConfigError(f"{where}: {name} is an array, expected one value")
    if pattern is not None and not pattern.fullmatch(found[0]):
        raise ConfigError(f"{where}: {name}={found[0]!r} is not a valid {name}")
    return found[0]


def _info(values: dict[str, tuple[str, ...]], split_deps: list[str], where: str) -> PkgbuildInfo:
    names = values.get("pkgname", ())
    if not names or not all(names):
        raise ConfigError(f"{where}: defines no pkgname")
    for n in names:
        if not PKGNAME.fullmatch(n):
            raise ConfigError(f"{where}: pkgname {n!r} is not a valid package name")
    pkgver = _one(values, "pkgver", where, PKGVER)
    pkgrel = _one(values, "pkgrel", where, PKGREL)
    epoch = _one(values, "epoch", where, re.compile(r"[0-9]+"), required=False)
    arch = values.get("arch", ())
    if not arch or not all(arch):
        raise ConfigError(f"{where}: defines no arch (e.g. arch=('x86_64' 'aarch64'))")
    if "any" in arch and len(arch) > 1:
        raise ConfigError(f"{where}: arch=({' '.join(arch)}): 'any' cannot be given with other architectures")
    carch = values.get("CARCH", ("",))[0]
    deps = []
    for array in (*DEPENDENCY_ARRAYS, *(f"{a}_{carch}" for a in DEPENDENCY_ARRAYS)):
        deps += [(array, d) for d in values.get(array, ())]
    deps += [("depends (split package)", d) for d in split_deps]
    dependencies = set()
    for array, dep in deps:
        name = _VERSIONED.split(dep, 1)[0]
        if not PKGNAME.fullmatch(name):
            raise ConfigError(f"{where}: {array}: {dep!r} is not a package name")
        dependencies.add(name)
    sources = []
    for array in ("source", f"source_{carch}"):
        suffix = array[len("source"):]
        for index, text in enumerate(values.get(array, ())):
            sums = tuple((alg, values[f"{alg}sums{suffix}"][index]) for alg in SUM_ALGORITHMS
                         if index < len(values.get(f"{alg}sums{suffix}", ())))
            sources.append(SourceEntry(array, index, text, sums))
    version = f"{epoch}:{pkgver}-{pkgrel}" if epoch and epoch != "0" else f"{pkgver}-{pkgrel}"
    return PkgbuildInfo(
        pkgbase=_one(values, "pkgbase", where, PKGNAME, required=False) or names[0], pkgnames=names,
        version=version, arch=arch, carch=carch, dependencies=tuple(sorted(dependencies)), sources=tuple(sources),
        reads_kabuild_conf=bool(values.get("KABUILD_KCONFIG")))
