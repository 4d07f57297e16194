"""The production image's root tarball: its pins in ``containers/archlinuxarm/recipe.yaml`` and
`kabuild image pin archlinuxarm`, which downloads, verifies and pins it.

The recipe pins the Arch Linux ARM root tarball by ``rootfs_sha256`` and the key that signs it by
``signing_key_fingerprint``; ``mkimage.sh`` refuses to build until both are set.  Pinning verifies
the tarball's detached OpenPGP signature offline, against a key file the owner supplies, in a
private temporary GnuPG home (python-gnupg, as publish signs); the home's gpg-agent is stopped
before the home is removed.  The fingerprint the signature must come from is the one the owner
confirmed (``--fingerprint``) or, once pinned, the recipe's own.  The recipe is rewritten
atomically, and only when everything verified: a refusal writes nothing.

The recipe may also pin the package mirror stage 2 installs from (``mirror``: a dated snapshot or
the owner's own mirror, ``http(s)://`` or ``file://``, a pacman ``Server`` with ``$repo``), so two
images built a week apart get the same packages; empty means the tarball's own mirror list, which
moves.

UNTESTED_HERE says what of this never ran on the machine kabuild was developed on.
"""

from __future__ import annotations

import logging
import re
import shutil
import tempfile
import urllib.error
import urllib.request
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import urlparse

import gnupg

from kabuild import tools
from kabuild.config.document import FINGERPRINT, HEX64
from kabuild.errors import ConfigError, RefusalError, ToolError
from kabuild.files import CHUNK, atomic_write, digest_file
from kabuild.process import stop_gpg_agent

RECIPE = "containers/archlinuxarm/recipe.yaml"
PINS = ("rootfs_sha256", "signing_key_fingerprint")
DOWNLOAD_TIMEOUT = 600
UNTESTED_HERE = (
    "the archlinuxarm image has never been built on the machine kabuild was developed on: the Arch Linux ARM "
    "servers (tarball and package mirrors) are unreachable there, so containers/archlinuxarm/mkimage.sh and "
    "stage2.sh (and a pinned mirror) never ran; `kabuild image pin` is tested only with test-made tarballs, "
    "keys and signatures")

Progress = Callable[[str], None]


# --------------------------------------------------------------------------- the recipe file


def recipe_values(text: str) -> dict[str, str]:
    """The recipe's ``key: scalar`` lines (the subset recipe-lib.sh reads; comments and lists ignored)."""
    out = {}
    for line in text.splitlines():
        m = re.fullmatch(r"([a-z0-9_]+):(.*)", line)
        if m:
            value = re.sub(r"(^|\s+)#.*$", "", m.group(2)).strip().strip("\"'")
            out[m.group(1)] = value
    return out


def with_values(text: str, values: dict[str, str]) -> str:
    """``text`` with each ``key: …`` line of ``values`` replaced, comments and order kept."""
    lines = text.splitlines(keepends=True)
    for key, value in values.items():
        found = [i for i, line in enumerate(lines) if re.match(rf"{re.escape(key)}:", line)]
        if len(found) != 1:
            raise ConfigError(f"{RECIPE}: expected one `{key}:` line, found {len(found)}")
        lines[found[0]] = f"{key}: {value}\n" if value else f"{key}:\n"
    return "".join(lines)


def mirror_problem(mirror: str) -> str | None:
    """Why ``mirror`` cannot be the recipe's pinned package mirror, or None."""
    u = urlparse(mirror)
    if u.scheme not in ("http", "https", "file"):
        return f"mirror {mirror!r}: expected an http, https or file URL"
    if u.scheme == "file" and (u.netloc or not u.path.startswith("/")):
        return f"mirror {mirror!r}: a file URL names an absolute path on the build machine (file:///srv/mirror/...)"
    if u.scheme != "file" and not u.hostname:
        return f"mirror {mirror!r}: no host"
    if "$repo" not in mirror:
        return (f"mirror {mirror!r}: a pacman Server names its repositories with $repo "
                "(e.g. http://host/aarm/repos/2026/01/01/$arch/$repo)")
    if any(c in mirror for c in " \t\n\"'`\\;"):
        return f"mirror {mirror!r}: contains a character a pacman Server line cannot hold"
    return None


def pinning_problem(root: Path) -> str | None:
    """Why the recipe cannot be used yet (unpinned, or a value that is not what it should be), or None."""
    path = root / RECIPE
    try:
        values = recipe_values(path.read_text(encoding="utf-8"))
    except OSError as e:
        return f"image recipe {RECIPE} cannot be read ({e.strerror or e})"
    unset = [key for key in PINS if not values.get(key)]
    if unset:
        return f"the Arch Linux ARM root tarball is not pinned ({RECIPE}: {' and '.join(unset)} empty)"
    if not re.fullmatch(HEX64, values["rootfs_sha256"]):
        return f"{RECIPE}: rootfs_sha256 is not 64 lowercase hex digits"
    if not re.fullmatch(FINGERPRINT, values["signing_key_fingerprint"]):
        return f"{RECIPE}: signing_key_fingerprint is not 40 uppercase hex digits"
    if values.get("mirror"):
        return mirror_problem(values["mirror"])
    return None


# --------------------------------------------------------------------------- pinning


@dataclass(frozen=True)
class Pinned:
    recipe: Path
    rootfs_sha256: str
    fingerprint: str
    signer: str  # the key's first user id
    tarball: str  # as given (file or URL)
    changed: bool  # False: the recipe already pinned exactly this
    previous_fingerprint: str | None
    mirror: str | None


def _fetch(location: str, workdir: Path, what: str, progress: Progress) -> Path:
    """A local file, or a download (http, https, file URL) into ``workdir``."""
    u = urlparse(location)
    if u.scheme in ("", "file") and "://" not in location:
        path = Path(location).expanduser()
        if not path.is_file():
            raise ConfigError(f"--{what} {location}: no such file")
        return path
    if u.scheme not in ("http", "https", "file"):
        raise ConfigError(f"--{what} {location}: expected a file or an http, https or file URL")
    name = Path(u.path).name or what
    dest = workdir / f"{what}-{name}"
    progress(f"downloading {location}")
    try:
        with urllib.request.urlopen(location, timeout=DOWNLOAD_TIMEOUT) as resp, open(dest, "wb") as out:
            while chunk := resp.read(CHUNK):
                out.write(chunk)
    except (urllib.error.URLError, OSError, ValueError) as e:
        reason = getattr(e, "reason", None) or e
        raise ToolError(f"--{what} {location}: download failed ({reason})") from None
    return dest


def _normalize(fingerprint: str) -> str:
    fpr = fingerprint.replace(" ", "").upper()
    if not re.fullmatch(FINGERPRINT, fpr):
        raise ConfigError(f"--fingerprint {fingerprint!r}: expected a 40-hex-digit OpenPGP fingerprint")
    return fpr


def _verify(tarball: Path, signature: Path, key: Path, expected: str | None, display: str) -> tuple[str, str]:
    """(primary fingerprint, user id) of the key in ``key`` that made the good signature; RefusalError else."""
    binary = tools.find("gpg")
    gnupg_log = logging.getLogger("gnupg")
    if gnupg_log.level == logging.NOTSET and not logging.getLogger("kabuild").isEnabledFor(logging.DEBUG):
        gnupg_log.setLevel(logging.ERROR)  # python-gnupg warns on every failure; we say it once, clearly
    home = Path(tempfile.mkdtemp(prefix="kabuild-pin-gnupg-"))
    try:
        home.chmod(0o700)
        try:
            gpg = gnupg.GPG(gpgbinary=binary, gnupghome=str(home))
        except (OSError, ValueError) as exc:
            raise ToolError(f"cannot run {binary}: {exc}") from None
        imported = gpg.import_keys(key.read_bytes())
        keys = {k["fingerprint"]: k for k in gpg.list_keys()}
        if not imported.count or not keys:
            raise RefusalError(f"{key}: holds no OpenPGP public key; {display} was not pinned")
        if expected is None:
            raise RefusalError(
                f"no signing key is pinned yet: confirm the fingerprint of the Arch Linux ARM build key at "
                f"archlinuxarm.org and give it with --fingerprint ({key} holds {', '.join(sorted(keys))}); "
                "the recipe is unchanged")
        if expected not in keys:
            raise RefusalError(f"{key} does not hold the key {expected} (it holds {', '.join(sorted(keys))}); "
                               "the recipe is unchanged")
        with open(signature, "rb") as sig:
            verified = gpg.verify_file(sig, data_filename=str(tarball))
        if not verified.valid:
            raise RefusalError(f"{display}: the signature {signature.name} does not verify with {key} "
                               f"({verified.status or 'no valid signature'}); the recipe is unchanged")
        if (verified.pubkey_fingerprint or "").upper() != expected:
            raise RefusalError(f"{display}: signed by {verified.pubkey_fingerprint}, not by the expected key "
                               f"{expected}; the recipe is unchanged")
        uid = (keys[expected].get("uids") or [""])[0]
        return expected, uid
    finally:  # no agent outlives its home
        try:
            stop_gpg_agent(home)
        finally:
            shutil.rmtree(home, ignore_errors=True)


def pin(root: Path, *, tarball: str, signature: str, key: Path, fingerprint: str | None = None,
        mirror: str | None = None, progress: Progress = lambda _m: None) -> Pinned:
    """Verify ``tarball`` against ``signature`` and ``key``; write its sha256 and the key's fingerprint
    (and ``mirror``, when given) into the recipe.  Nothing is written unless everything verified."""
    path = root / RECIPE
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as e:
        raise ConfigError(f"image recipe {RECIPE} cannot be read ({e.strerror or e})") from None
    values = recipe_values(text)
    if not key.is_file():
        raise ConfigError(f"--key {key}: no such file")
    if mirror is not None and mirror and (problem := mirror_problem(mirror)):
        raise ConfigError(problem)
    pinned_fpr = values.get("signing_key_fingerprint") or None
    expected = _normalize(fingerprint) if fingerprint else pinned_fpr
    with tempfile.TemporaryDirectory(prefix="kabuild-pin-") as tmp:
        work = Path(tmp)
        local = _fetch(tarball, work, "tarball", progress)
        sig = _fetch(signature, work, "signature", progress)
        progress(f"verifying the signature of {Path(urlparse(tarball).path).name} offline")
        fpr, uid = _verify(local, sig, key, expected, Path(urlparse(tarball).path).name)
        sha256 = digest_file(local).sha256
    new = {"rootfs_sha256": sha256, "signing_key_fingerprint": fpr}
    if "://" in tarball:  # the recipe says where its pinned bytes came from
        new["rootfs_url"] = tarball
    if "://" in signature:
        new["signature_url"] = signature
    if mirror is not None:
        new["mirror"] = mirror
    updated = with_values(text, new)
    if updated != text:
        atomic_write(path, updated)
    return Pinned(path, sha256, fpr, uid, tarball, updated != text,
                  pinned_fpr if pinned_fpr != fpr else None, new.get("mirror", values.get("mirror") or None))
