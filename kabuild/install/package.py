"""What `kabuild install` installs: a package from the host's published repository, its detached
signature verified with the repository key, and the kernel files it carries.

The package is copied out of the repository into ``build/<host>/install/pkg/`` first and the
*copy* is verified, so the bytes that go to the board are exactly the bytes that were verified.
The repository key is the public key `kabuild publish` exported beside the host's build
directory (``build/<host>/<repository>.asc``); when the manifest names a fingerprint, the key
must be that one.  Verification uses a private, temporary GnuPG home.
"""

from __future__ import annotations

import functools
import os
import re
import shlex
import shutil
import tempfile
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import urlparse

from kabuild import tools
from kabuild.config.manifest import Manifest
from kabuild.errors import ConfigError, RefusalError
from kabuild.files import digest_file
from kabuild.process import run
from kabuild.publish.pacman import parse_pkgfile, pkginfo, vercmp

KERNEL_NAMES = re.compile(r"boot/(Image|Image\.gz|zImage|vmlinuz[^/]*|vmlinux[^/]*)")
INITRD_NAMES = re.compile(r"boot/initramfs[^/]*\.img")
PRESET_NAMES = re.compile(r"etc/mkinitcpio\.d/([^/]+)\.preset")
DTB_DIR = "boot/dtbs/"


@dataclass(frozen=True)
class KernelFiles:
    release: str  # what `uname -r` says once it runs (usr/lib/modules/<release>/)
    kernel: str  # path relative to /boot, with a leading '/'
    initrd: str | None
    fdtdir: str | None
    boot_bytes: int  # size of everything the package puts in /boot
    dtbs: tuple[str, ...] = ()  # the device trees it ships, relative to /boot ('/dtbs/<vendor>/<board>.dtb')
    preset: str | None = None  # the mkinitcpio preset whose image is ``initrd``: made on the board by its hook


@dataclass(frozen=True)
class Verified:
    name: str
    version: str  # pkgver-pkgrel
    file: Path  # the verified local copy
    signature: Path
    sha256: str
    fingerprint: str  # the key that signed it
    kernel: KernelFiles | None  # None: the package carries no kernel


def repository_dir(root: Path, manifest: Manifest) -> Path:
    settings = manifest.publish
    if settings is None or not settings.destination:
        raise ConfigError(f"{manifest.host}: {manifest.display} has no publish.destination: install takes packages "
                          "only from the host's published repository")
    dest = settings.destination
    if dest.startswith("ssh://"):
        raise ConfigError(f"{manifest.host}: installing from a remote repository ({dest}) is not implemented yet; "
                          "publish to a local directory on this machine")
    if "://" in dest:
        dest = urlparse(dest).path
    path = Path(os.path.expanduser(dest))
    path = path if path.is_absolute() else root / path
    if not path.is_dir():
        raise RefusalError(f"{manifest.host}: the repository {path} does not exist: run `kabuild publish "
                           f"{manifest.host}` first")
    return path


def key_file(root: Path, manifest: Manifest) -> Path:
    assert manifest.publish is not None
    return root / "build" / manifest.host / f"{manifest.publish.repository}.asc"


def choose(repo: Path, name: str, version: str | None) -> Path:
    """The newest published file of package ``name`` (or exactly ``version``)."""
    found = [p for p in (parse_pkgfile(f) for f in sorted(os.listdir(repo))) if p and p.name == name]
    if version is not None:
        exact = [p for p in found if p.version == version or p.version.rsplit("-", 1)[0] == version]
        if not exact:
            have = ", ".join(p.version for p in found) or "none"
            raise RefusalError(f"{name} {version} is not in the published repository {repo} (published: {have})")
        found = exact
    if not found:
        raise RefusalError(f"{name} is not in the published repository {repo}: run `kabuild publish` first")
    found.sort(key=functools.cmp_to_key(lambda a, b: vercmp(a.version, b.version)))
    return repo / found[-1].file


def verify(root: Path, manifest: Manifest, repo_file: Path, staging: Path) -> Verified:
    """Copy ``repo_file`` and its ``.sig`` into ``staging`` and verify the copies; refuse (exit 3) otherwise."""
    assert manifest.publish is not None
    sig = repo_file.with_name(repo_file.name + ".sig")
    if not sig.is_file():
        raise RefusalError(f"{repo_file.name} has no detached signature ({sig.name}) in the repository: "
                           "refusing to install an unsigned package; nothing was touched on the board")
    keyf = key_file(root, manifest)
    if not keyf.is_file():
        raise RefusalError(f"the repository key {keyf} is missing (`kabuild publish {manifest.host}` exports it); "
                           "cannot verify the package")
    staging.mkdir(parents=True, exist_ok=True)
    local = staging / repo_file.name
    local_sig = staging / sig.name
    for src, dst in ((repo_file, local), (sig, local_sig)):
        tmp = dst.with_name(f".{dst.name}.tmp")
        shutil.copyfile(src, tmp)
        os.replace(tmp, dst)
    fingerprint = check_signature(local, local_sig, keyf, manifest.publish.key)
    info = pkginfo(local)
    parsed = parse_pkgfile(local.name)
    assert parsed is not None
    if info.get("pkgname") != parsed.name:
        raise RefusalError(f"{local.name}: .PKGINFO names {info.get('pkgname')!r}, the file name {parsed.name!r}")
    return Verified(parsed.name, parsed.version, local, local_sig, digest_file(local).sha256, fingerprint,
                    kernel_files(local))


def check_signature(path: Path, sig: Path, keyf: Path, expected: str | None) -> str:
    """The primary fingerprint of the key that made the good signature ``sig`` of ``path``."""
    gpg = tools.find("gpg")
    with tempfile.TemporaryDirectory(prefix="kabuild-verify-") as home:
        os.chmod(home, 0o700)
        base = [gpg, "--homedir", home, "--batch", "--no-tty", "--no-autostart"]
        imported = run([*base, "--with-colons", "--import-options", "show-only", "--import", str(keyf)],
                       timeout=60, check=False)
        keys = [line.split(":")[9] for line in imported.stdout.splitlines() if line.startswith("fpr:")]
        if not keys:
            raise RefusalError(f"{keyf} holds no OpenPGP public key; cannot verify {path.name}")
        primary = keys[0]
        if expected not in (None, "throwaway") and primary != expected:
            raise RefusalError(f"{keyf} is key {primary}, but publish.key says {expected}; refusing {path.name}")
        run([*base, "--import", str(keyf)], timeout=60)
        result = run([*base, "--status-fd", "1", "--verify", str(sig), str(path)], timeout=300, check=False)
    status = [line.split() for line in result.stdout.splitlines() if line.startswith("[GNUPG:] ")]
    valid = [s for s in status if len(s) > 2 and s[1] == "VALIDSIG"]
    if result.returncode != 0 or not valid or valid[0][-1] != primary:
        why = next((s[1] for s in status if len(s) > 1 and s[1] in ("BADSIG", "ERRSIG", "NODATA", "EXPKEYSIG",
                                                                       "REVKEYSIG")), "no valid signature")
        raise RefusalError(f"{path.name}: the signature does not verify with the repository key {primary} ({why}): "
                           "refusing to install it; nothing was touched on the board")
    return primary


def kernel_files(path: Path) -> KernelFiles | None:
    """The kernel the package carries: ``usr/lib/modules/<release>/``, its files in ``boot/``, and the
    initramfs: the image its mkinitcpio preset names (made on the board by the package's hook), or
    one the package ships itself."""
    bsdtar = tools.find("bsdtar")
    listing = run([bsdtar, "-tvf", str(path)], timeout=300).stdout
    releases, boot, presets, size = set(), [], [], 0
    for line in listing.splitlines():
        parts = line.split(None, 8)
        if len(parts) < 9:
            continue
        name = parts[8].split(" -> ")[0].rstrip("/")
        m = re.fullmatch(r"usr/lib/modules/([^/]+)(/.*)?", name)
        if m:
            releases.add(m.group(1))
        if name.startswith("boot/") and parts[0].startswith("-"):
            boot.append(name)
            size += int(parts[4]) if parts[4].isdigit() else 0
        if PRESET_NAMES.fullmatch(name) and parts[0].startswith("-"):
            presets.append(name)
    kernels = sorted(n for n in boot if KERNEL_NAMES.fullmatch(n))
    if not releases and not kernels:
        return None
    if len(releases) != 1:
        raise RefusalError(f"{path.name}: expected one kernel release in usr/lib/modules/, found "
                           f"{', '.join(sorted(releases)) or 'none'}")
    if len(kernels) != 1:
        raise RefusalError(f"{path.name}: expected one kernel image in boot/, found {', '.join(kernels) or 'none'} "
                           "(a kernel package for a board puts its image in /boot)")
    initrds = sorted(n for n in boot if INITRD_NAMES.fullmatch(n) and "fallback" not in n)
    initrd = "/" + initrds[0][len("boot/"):] if initrds else None
    preset = None
    if presets:
        preset = _choose_preset(path, presets)
        text = run([bsdtar, "-xOf", str(path), preset], timeout=300).stdout
        initrd = "/" + preset_image(text, f"{path.name}: {preset}")[len("/boot/"):]
    dtbs = tuple(sorted("/" + n[len("boot/"):] for n in boot if n.startswith(DTB_DIR) and n.endswith(".dtb")))
    return KernelFiles(release=releases.pop(), kernel="/" + kernels[0][len("boot/"):], initrd=initrd,
                       fdtdir="/" + DTB_DIR[len("boot/"):].rstrip("/") if dtbs else None, boot_bytes=size,
                       dtbs=dtbs, preset="/" + preset if preset else None)


def _choose_preset(path: Path, presets: list[str]) -> str:
    if len(presets) == 1:
        return presets[0]
    name = parse_pkgfile(path.name)
    mine = [p for p in presets if name is not None and p == f"etc/mkinitcpio.d/{name.name}.preset"]
    if len(mine) != 1:
        raise RefusalError(f"{path.name}: ships {len(presets)} mkinitcpio presets ({', '.join(sorted(presets))}) "
                           "and none is named after the package; cannot tell which initramfs it boots")
    return mine[0]


def preset_image(text: str, display: str) -> str:
    """The image a mkinitcpio preset builds first (``PRESETS[0]``'s ``<name>_image``), an absolute path
    under /boot.  The preset is bash; it is read, never run: values must be plain (quoted) words."""
    values: dict[str, str] = {}
    presets: list[str] | None = None
    for raw in text.splitlines():
        line = raw.strip()
        if not line or line.startswith("#"):
            continue
        m = re.fullmatch(r"([A-Za-z_][A-Za-z0-9_]*)=(.*)", line)
        if not m:
            continue
        key, value = m.groups()
        try:
            if key == "PRESETS":
                array = re.fullmatch(r"\((.*)\)\s*(#.*)?", value)
                if not array:
                    raise ValueError(value)
                presets = shlex.split(array.group(1), comments=True)
            else:
                words = shlex.split(value, comments=True)
                values[key] = words[0] if len(words) == 1 else ""
        except ValueError:
            raise RefusalError(f"{display}: cannot read {key}= (not a plain quoted value)") from None
    if not presets:
        raise RefusalError(f"{display}: names no PRESETS, so its hook would make no initramfs")
    image = values.get(f"{presets[0]}_image", "")
    if not image:
        raise RefusalError(f"{display}: preset {presets[0]!r} names no {presets[0]}_image")
    if "$" in image or "`" in image or not image.startswith("/boot/") or ".." in image.split("/"):
        raise RefusalError(f"{display}: {presets[0]}_image={image!r} is not a plain path under /boot, where the "
                           "boot entry can name it")
    return image
