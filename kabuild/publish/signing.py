"""OpenPGP signing for publish: detached signatures made with python-gnupg.

Signing happens on the main node only.  This module touches nothing but the
GNUPGHOME it is given; no private key material is ever copied anywhere (build
containers and build nodes never see it).

:meth:`Signer.open` proves, before anything is changed, that the key can sign:
it exists with its secret part, is neither expired nor revoked, has a usable
signing (sub)key, and the passphrase (or the agent) unlocks it -- a nonce is
signed and the signature verified.  Every failure is a one-line
:class:`~kabuild.errors.ConfigError` (exit 2); a missing ``gpg`` is a
:class:`~kabuild.errors.ToolError` (exit 5).
"""

from __future__ import annotations

import contextlib
import logging
import os
import re
import secrets
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import gnupg

from kabuild import tools
from kabuild.config.document import FINGERPRINT
from kabuild.errors import ConfigError, ToolError
from kabuild.files import atomic_write
from kabuild.process import run, stop_gpg_agent

FINGERPRINT_RE = re.compile(FINGERPRINT)

# gpg's validity letters (--with-colons field 2) that make a key unusable.
_BAD_VALIDITY = {
    "r": "revoked",
    "e": "expired",
    "i": "invalid",
    "d": "disabled",
}


def _gpg(gnupghome: Path) -> gnupg.GPG:
    binary = tools.find("gpg")
    # python-gnupg warns about every gpg failure; we turn those into one clear error ourselves.
    gnupg_log = logging.getLogger("gnupg")
    if not logging.getLogger("kabuild").isEnabledFor(logging.DEBUG) and gnupg_log.level == logging.NOTSET:
        gnupg_log.setLevel(logging.ERROR)
    try:
        return gnupg.GPG(gpgbinary=binary, gnupghome=str(gnupghome))
    except (OSError, ValueError) as exc:  # python-gnupg raises these when gpg cannot be run
        raise ToolError(f"cannot run {binary}: {exc}") from None


def _check_home(gnupghome: Path) -> Path:
    gnupghome = Path(gnupghome).expanduser().resolve()
    if not gnupghome.is_dir():
        raise ConfigError(f"GNUPGHOME {gnupghome} does not exist or is not a directory")
    return gnupghome


def _normalize_fingerprint(fingerprint: str) -> str:
    fpr = fingerprint.replace(" ", "").upper()
    if not FINGERPRINT_RE.fullmatch(fpr):
        raise ConfigError(f"signing key {fingerprint!r} is not a 40-hex-digit OpenPGP fingerprint")
    return fpr


def passphrase_from(env_var: str | None, file: Path | None) -> str | None:
    """The passphrase for automation, from an environment variable or a file; None means the agent.

    A file's single trailing newline is dropped (as ``echo secret > file`` writes one).
    """
    if env_var and file:
        raise ConfigError("give the signing passphrase either by environment variable or by file, not both")
    if env_var:
        if env_var not in os.environ:
            raise ConfigError(f"passphrase environment variable {env_var} is not set")
        return os.environ[env_var]
    if file:
        try:
            text = Path(file).read_text(encoding="utf-8")
        except OSError as exc:
            raise ConfigError(f"cannot read passphrase file {file}: {exc.strerror or exc}") from None
        except UnicodeDecodeError:
            raise ConfigError(f"passphrase file {file} is not UTF-8 text") from None
        if text.endswith("\r\n"):
            text = text[:-2]
        elif text.endswith("\n"):
            text = text[:-1]
        return text
    return None


@dataclass
class Signer:
    """A key proven able to sign; make it with :meth:`open`."""

    gnupghome: Path
    fingerprint: str
    passphrase: str | None = field(repr=False, default=None)
    uid: str = ""
    _gpg: gnupg.GPG | None = field(repr=False, default=None)

    def __post_init__(self) -> None:
        if self._gpg is None:
            self._gpg = _gpg(self.gnupghome)

    @property
    def gpg(self) -> gnupg.GPG:
        assert self._gpg is not None  # set by __post_init__
        return self._gpg

    # ------------------------------------------------------------------ opening

    @classmethod
    def open(cls, gnupghome: Path, fingerprint: str, passphrase: str | None) -> Signer:
        gnupghome = _check_home(gnupghome)
        fpr = _normalize_fingerprint(fingerprint)
        gpg = _gpg(gnupghome)

        secret = [k for k in gpg.list_keys(secret=True, keys=[fpr]) if k.get("fingerprint") == fpr]
        if not secret:
            public = [k for k in gpg.list_keys(keys=[fpr]) if k.get("fingerprint") == fpr]
            if public:
                raise ConfigError(f"signing key {fpr}: only the public key is in {gnupghome}, the secret key is missing")
            raise ConfigError(f"signing key {fpr} not found in {gnupghome}")
        public = [k for k in gpg.list_keys(keys=[fpr]) if k.get("fingerprint") == fpr]
        key = public[0] if public else secret[0]
        uid = (key.get("uids") or [""])[0]
        validity = key.get("trust", "")
        if validity in _BAD_VALIDITY:
            raise ConfigError(f"signing key {fpr} ({uid}) is {_BAD_VALIDITY[validity]}")
        expires = key.get("expires") or ""
        if expires.isdigit() and int(expires) <= time.time():
            raise ConfigError(f"signing key {fpr} ({uid}) is expired")
        if "S" not in (key.get("cap") or ""):
            raise ConfigError(f"signing key {fpr} ({uid}) has no usable signing key (expired, revoked or missing signing subkey)")
        sec = secret[0]
        has_secret = sec.get("token") not in ("#",) or any(
            info.get("token") not in ("#",) and "s" in (info.get("cap") or "")
            for info in (sec.get("subkey_info") or {}).values()
        )
        if not has_secret:
            raise ConfigError(f"signing key {fpr} ({uid}): its secret part is not available (stub or offline key)")

        signer = cls(gnupghome=gnupghome, fingerprint=fpr, passphrase=passphrase, uid=uid, _gpg=gpg)
        if passphrase is not None:
            # The agent would happily sign with a cached passphrase and hide a wrong one.
            signer._forget_cached_passphrase(sec)
        signer._prove()
        return signer

    def _forget_cached_passphrase(self, key: dict) -> None:
        grips = [key.get("keygrip")] + [i.get("keygrip") for i in (key.get("subkey_info") or {}).values()]
        commands = [f"CLEAR_PASSPHRASE --mode=normal {g}" for g in grips if g]
        if not commands:
            return
        try:
            agent = tools.find("gpg-connect-agent")
        except ToolError:
            return
        run([agent, "--homedir", self.gnupghome, "--no-autostart", *commands, "/bye"],
            env={"GNUPGHOME": str(self.gnupghome)}, check=False, timeout=30)

    def _prove(self) -> None:
        """Sign a nonce and verify it: the passphrase (or agent) works and the signature is ours."""
        nonce = b"kabuild signing check " + secrets.token_hex(16).encode()
        sig = self._sign_bytes(nonce, what="a test nonce")
        self._verify_bytes(nonce, sig, what="the test nonce")

    # ------------------------------------------------------------------ signing

    def _sign_args(self) -> list[str]:
        # gpg picks this key's usable signing (sub)key, or fails: never another key of the keyring.
        return ["--local-user", self.fingerprint, "--digest-algo", "SHA512"]

    def _sign_bytes(self, data: bytes, *, what: str) -> bytes:
        result = self.gpg.sign(data, passphrase=self.passphrase or None, detach=True, binary=True,
                                clearsign=False, extra_args=self._sign_args())
        return self._signature_of(result, what)

    def _signature_of(self, result, what: str) -> bytes:
        if result.status == "signature created" and result.data:
            return bytes(result.data)
        status = result.status or ""
        stderr = result.stderr or ""
        if status == "bad passphrase" or "Bad passphrase" in stderr:
            raise ConfigError(f"signing key {self.fingerprint}: wrong passphrase")
        if "No pinentry" in stderr or "Operation cancelled" in stderr or "Inappropriate ioctl" in stderr \
                or "No passphrase given" in stderr:
            raise ConfigError(f"signing key {self.fingerprint} is protected and no passphrase is available "
                              "(give a passphrase file or environment variable, or unlock it in gpg-agent)")
        if status in ("key expired", "key revoked"):
            raise ConfigError(f"signing key {self.fingerprint}: {status}")
        lines = [ln for ln in stderr.splitlines() if ln.startswith("gpg:")]
        detail = lines[-1][4:].strip() if lines else (status or "no signature produced")
        raise ConfigError(f"signing {what} with key {self.fingerprint} failed: {detail}")

    def _verify_bytes(self, data: bytes, signature: bytes, *, what: str) -> None:
        with tempfile.NamedTemporaryFile(prefix="kabuild-sig-", suffix=".sig") as f:
            f.write(signature)
            f.flush()
            verified = self.gpg.verify_data(f.name, data)
        self._check_verified(verified, what)

    def _check_verified(self, verified, what: str) -> None:
        if not verified.valid or verified.pubkey_fingerprint != self.fingerprint:
            raise ConfigError(f"the signature of {what} by {self.fingerprint} does not verify "
                              f"({verified.status or 'no valid signature'})")

    def sign_detached(self, path: Path) -> Path:
        """Write ``<path>.sig``, a binary detached signature, atomically; return its path."""
        path = Path(path)
        with open(path, "rb") as f:
            result = self.gpg.sign_file(f, passphrase=self.passphrase or None, detach=True, binary=True,
                                         clearsign=False, extra_args=self._sign_args())
        signature = self._signature_of(result, path.name)
        sig_path = path.with_name(path.name + ".sig")
        atomic_write(sig_path, signature)
        self.verify_detached(path, sig_path)
        return sig_path

    def verify_detached(self, path: Path, sig_path: Path | None = None) -> None:
        """Raise ConfigError unless ``sig_path`` is a good signature of ``path`` by this key."""
        path = Path(path)
        sig_path = Path(sig_path) if sig_path else path.with_name(path.name + ".sig")
        with open(sig_path, "rb") as f:
            verified = self.gpg.verify_file(f, data_filename=str(path))
        self._check_verified(verified, path.name)

    def export_public(self) -> bytes:
        return export_public(self.gnupghome, self.fingerprint)


# --------------------------------------------------------------------------- keys


def _split_uid(name_email: str) -> tuple[str, str | None]:
    m = re.fullmatch(r"\s*(.*?)\s*<([^<>\s]+@[^<>\s]+)>\s*", name_email)
    if m:
        return (m.group(1) or m.group(2)), m.group(2)
    if "@" in name_email and " " not in name_email.strip():
        return name_email.strip(), name_email.strip()
    return name_email.strip(), None


def generate_throwaway(gnupghome: Path, name_email: str, *, expire: str = "1y") -> str:
    """Generate an unprotected ed25519 signing key in ``gnupghome`` (made mode 0700); return its fingerprint.

    For demos and tests only: the key has no passphrase.
    """
    gnupghome = Path(gnupghome).expanduser().resolve()
    gnupghome.mkdir(mode=0o700, parents=True, exist_ok=True)
    os.chmod(gnupghome, 0o700)
    gpg = _gpg(gnupghome)
    name, email = _split_uid(name_email)
    params = dict(key_type="EDDSA", key_curve="ed25519", key_usage="sign", name_real=name,
                  expire_date=expire, no_protection=True)
    if email:
        params["name_email"] = email
    text = gpg.gen_key_input(**params)
    if not email:
        text = "\n".join(ln for ln in text.splitlines() if not ln.startswith("Name-Email:")) + "\n"
    result = gpg.gen_key(text)
    fpr = (result.fingerprint or "").upper()
    if not FINGERPRINT_RE.fullmatch(fpr):
        lines = [ln for ln in (result.stderr or "").splitlines() if ln.startswith("gpg:")]
        raise ToolError(f"gpg could not generate a key: {lines[-1][4:].strip() if lines else 'unknown error'}",
                        hint=agent_hint(gnupghome, result.stderr or ""))
    return fpr


# sockaddr_un's path: gpg-agent cannot listen on a longer socket path
_SOCKET_PATH_MAX = 107


def agent_hint(gnupghome: Path, stderr: str) -> str | None:
    """Why gpg-agent would not start, when the reason is the GnuPG home's path: its sockets go into the
    home unless /run/user/<uid> exists, and a socket path longer than 107 bytes cannot be bound."""
    if "agent" not in stderr.lower():
        return None
    runtime = Path(f"/run/user/{os.getuid()}")
    socket = Path(gnupghome) / "S.gpg-agent.browser"
    if runtime.is_dir() or len(str(socket).encode()) <= _SOCKET_PATH_MAX:
        return None
    return (f"the GnuPG home {gnupghome} is too deep for gpg-agent's sockets ({len(str(socket).encode())} > "
            f"{_SOCKET_PATH_MAX} bytes); create {runtime} (mode 0700), where gpg then puts them, or use a shorter path")


def export_public(gnupghome: Path, fingerprint: str) -> bytes:
    """The ASCII-armored public key ``fingerprint`` from ``gnupghome``."""
    gnupghome = _check_home(gnupghome)
    fpr = _normalize_fingerprint(fingerprint)
    armored = _gpg(gnupghome).export_keys(fpr, armor=True)
    if not armored or "BEGIN PGP PUBLIC KEY BLOCK" not in armored:
        raise ConfigError(f"public key {fpr} not found in {gnupghome}")
    return armored.encode("ascii")


def ensure_throwaway(gnupghome: Path, name_email: str) -> str:
    """The fingerprint of the demo's throwaway key in ``gnupghome``, generating it on first use.

    Reuses the newest usable unprotected signing key there (so repeated `make demo` runs keep one key
    that pacman keyrings already trust); generates a new one if there is none or it expired.
    """
    gnupghome = Path(gnupghome).expanduser().resolve()
    if gnupghome.is_dir():
        gpg = _gpg(gnupghome)
        now = time.time()
        usable = []
        for k in gpg.list_keys(keys=None):
            expires = k.get("expires") or ""
            if (k.get("trust") not in _BAD_VALIDITY and "S" in (k.get("cap") or "")
                    and not (expires.isdigit() and int(expires) <= now + 86400)
                    and any(s.get("fingerprint") == k.get("fingerprint") for s in gpg.list_keys(secret=True))):
                usable.append(k)
        usable.sort(key=lambda k: int(k.get("date") or 0), reverse=True)
        for k in usable:
            try:
                return Signer.open(gnupghome, k["fingerprint"], None).fingerprint
            except ConfigError:
                continue
    return generate_throwaway(gnupghome, name_email)


@contextlib.contextmanager
def repository_signer(key: str, build_root: Path, label: str, gnupghome: Path | None, passphrase: str | None,
                      progress=lambda _m: None) -> Iterator[tuple[Signer, Path]]:
    """:func:`for_repository`, and afterwards the gpg-agent that signing started in kabuild's own GnuPG
    home (a throwaway key's) is stopped, whatever happened.  An owner's own GNUPGHOME is left alone:
    its agent may hold a passphrase the owner unlocked."""
    home = throwaway_home(build_root, gnupghome) if key == "throwaway" else None
    try:
        yield for_repository(key, build_root, label, gnupghome, passphrase, progress)
    finally:
        if home is not None and home.is_dir():
            stop_gpg_agent(home)


def throwaway_home(build_root: Path, gnupghome: Path | None) -> Path:
    return gnupghome or (build_root / "gnupg")


def for_repository(key: str, build_root: Path, label: str, gnupghome: Path | None,
                   passphrase: str | None, progress=lambda _m: None) -> tuple[Signer, Path]:
    """The signer a publish uses: the manifest's key from GNUPGHOME, or the demo's throwaway key.

    ``key`` is a fingerprint or "throwaway"; a throwaway key lives in ``build_root/gnupg``
    unless ``gnupghome`` says otherwise.
    """
    if key == "throwaway":
        home = throwaway_home(build_root, gnupghome)
        fingerprint = ensure_throwaway(home, f"kabuild {label} throwaway key <kabuild-{label}@localhost>")
        progress(f"signing with the throwaway key {fingerprint} in {home}")
    else:
        home = gnupghome or Path(os.environ.get("GNUPGHOME") or os.path.expanduser("~/.gnupg"))
        fingerprint = key
    return Signer.open(home, fingerprint, passphrase), home
