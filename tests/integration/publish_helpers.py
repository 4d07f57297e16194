"""Shared helpers for the publish integration tests: real packages (makepkg), a real pacman client,
acceptance reports shaped like the reproduce step writes them."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import tempfile
import textwrap
from dataclasses import dataclass
from pathlib import Path

from kabuild.files import digest_file

NOBODY = "65534"
TEST_REPO = "kbtest"


def makepkg(d: Path, **extra_env: str) -> None:
    """Real makepkg in ``d`` (as nobody when root), with a fixed SOURCE_DATE_EPOCH and no network."""
    env = {"PATH": "/usr/bin:/bin", "HOME": str(d), "LANG": "C.UTF-8", "PKGEXT": ".pkg.tar.zst",
           "SOURCE_DATE_EPOCH": "1767225600", "BUILDDIR": str(d / "build"), "PKGDEST": str(d),
           "SRCDEST": str(d), "TZ": "UTC", **extra_env}
    argv = ["makepkg", "--nodeps", "--noconfirm", "--nocolor"]
    if os.geteuid() == 0:
        argv = ["setpriv", f"--reuid={NOBODY}", f"--regid={NOBODY}", "--clear-groups", *argv]
    r = subprocess.run(argv, cwd=d, env=env, capture_output=True, text=True, timeout=300)
    assert r.returncode == 0, f"makepkg failed: {r.stdout}\n{r.stderr}"


def have(*tools: str) -> list[str]:
    return [t for t in tools if shutil.which(t) is None]


def build_package(workdir: Path, name: str, version: str, rel: str = "1", *, content: str | None = None) -> Path:
    """Build a tiny real package with Debian's makepkg, run as 'nobody'; return the .pkg.tar.zst path."""
    workdir.mkdir(parents=True, exist_ok=True)
    # pytest's tmp dirs are private to root: build in a scratch dir 'nobody' can reach, then move the result.
    scratch = Path(tempfile.mkdtemp(prefix="kabuild-makepkg-"))
    try:
        return _makepkg(scratch, workdir, name, version, rel, content)
    finally:
        shutil.rmtree(scratch, ignore_errors=True)


def _makepkg(scratch: Path, workdir: Path, name: str, version: str, rel: str, content: str | None) -> Path:
    os.chmod(scratch, 0o755)
    d = scratch / "pkg"
    d.mkdir()
    os.chmod(d, 0o777)
    body = content if content is not None else f"hello from {name} {version}-{rel}"
    (d / "PKGBUILD").write_text(textwrap.dedent(f"""\
        pkgname={name}
        pkgver={version}
        pkgrel={rel}
        pkgdesc="kabuild publish test package"
        arch=(any)
        license=(MIT)
        package() {{
          install -d "$pkgdir/usr/share/{name}"
          printf '%s\\n' '{body}' > "$pkgdir/usr/share/{name}/hello.txt"
        }}
        """))
    os.chmod(d / "PKGBUILD", 0o644)
    makepkg(d)
    found = list(d.glob(f"{name}-{version}-{rel}-any.pkg.tar.zst"))
    assert len(found) == 1, list(d.iterdir())
    out = workdir / found[0].name
    shutil.copyfile(found[0], out)
    return out


def write_report(run_dir: Path, packages: list[Path], *, lock_hash: str = "a" * 64, host: str = "test"):
    """A run directory with build1/ and build2/ copies and an all-accepted report.json (a real document)."""
    from kabuild.compare import acceptance
    from kabuild.config.document import ImageRecord

    results = []
    for pkg in packages:
        for b in ("build1", "build2"):
            (run_dir / b).mkdir(parents=True, exist_ok=True)
            shutil.copyfile(pkg, run_dir / b / pkg.name)
        dig = digest_file(pkg)
        name = pkg.name.rsplit("-", 3)[0]
        results.append(acceptance.PackageResult(
            name=name, file=pkg.name,
            build1=acceptance.BuiltArtifact(dig, f"build1/{pkg.name}", 1.0, f"build1/{name}.log"),
            build2=acceptance.BuiltArtifact(dig, f"build2/{pkg.name}", 1.0, f"build2/{name}.log"),
            reproducible=True, verdict=acceptance.Verdict.ACCEPTED,
            reference=acceptance.ReferenceSeen(dig, f"references/{host}/{name}/reference.yaml"), parity=True))
    node1, node2 = acceptance.NodeUse("local", "local", False, "", 2), acceptance.NodeUse("local-2", "local-2", False, "", 2)
    report = acceptance.Report(
        kabuild_version="0.1.0", host=host, arch="x86_64", run_id=run_dir.name, inputs_key="0" * 64,
        started_at="2026-11-22T00:00:00+00:00", finished_at="2026-11-22T00:00:01+00:00", duration=1.0,
        baseline=("kabuild-hello", "1.0", "v1.0"), source_date_epoch=1767225600, lock_hash=lock_hash,
        lock_path="build/test/v1.0/manifest.lock",
        image=ImageRecord("kabuild/debian-x86_64:0123456789abcdef", "sha256:" + "0" * 64, "1" * 64, "debian", "x86_64"),
        toolchain=(), build_mode=acceptance.BuildMode.NATIVE, node_arch="x86_64", build1_node=node1, build2_node=node2,
        same_engine=False, variations=(), control=acceptance.BuildConditions(()),
        experiment=acceptance.BuildConditions(()), packages=tuple(results))
    acceptance.write_json(run_dir / "report.json", report)
    return report


@dataclass
class PacmanResult:
    returncode: int
    output: str

    @property
    def ok(self) -> bool:
        return self.returncode == 0


class PacmanClient:
    """A real pacman with its own root, database, keyring and config; SigLevel = Required."""

    def __init__(self, base: Path, repo_conf: str, *, keyring: Path | None = None, architecture: str = "auto"):
        self.base = base
        self.architecture = architecture
        self.root = base / "root"
        self.dbpath = self.root / "var/lib/pacman"
        self.gpgdir = base / "gnupg"
        self.cachedir = base / "cache"
        self.config = base / "pacman.conf"
        for d in (self.dbpath, self.cachedir, base / "hooks"):
            d.mkdir(parents=True, exist_ok=True)
        self.repo_conf = repo_conf  # the [repo] section, as publish prints it
        self.config.write_text(self.conf_text())
        if keyring is not None:
            # A copy of an initialised (and possibly already trusting) keyring: pacman-key --init is slow.
            shutil.copytree(keyring, self.gpgdir, symlinks=True,
                            ignore=shutil.ignore_patterns("S.*", "*.lock", ".#*"))
        else:
            self._run(["pacman-key", "--config", self.config, "--gpgdir", self.gpgdir, "--init"], check=True)
            offline_keyring(self.gpgdir)

    def conf_text(self) -> str:
        return textwrap.dedent(f"""\
            [options]
            RootDir = {self.root}
            DBPath = {self.dbpath}/
            CacheDir = {self.cachedir}/
            LogFile = {self.base}/pacman.log
            GPGDir = {self.gpgdir}/
            HookDir = {self.base}/hooks/
            Architecture = {self.architecture}
            SigLevel = Required
            LocalFileSigLevel = Required

            """) + self.repo_conf

    def _run(self, argv, check=False) -> PacmanResult:
        r = subprocess.run([str(a) for a in argv], capture_output=True, text=True, timeout=300,
                           env={"PATH": "/usr/sbin:/usr/bin:/sbin:/bin", "LANG": "C.UTF-8", "HOME": str(self.base)})
        res = PacmanResult(r.returncode, r.stdout + r.stderr)
        assert not check or res.ok, f"{argv} failed: {res.output}"
        return res

    def trust(self, public_key: bytes, fingerprint: str) -> None:
        key = self.base / f"{fingerprint}.asc"
        key.write_bytes(public_key)
        self._run(["pacman-key", "--config", self.config, "--gpgdir", self.gpgdir, "--add", key], check=True)
        self._run(["pacman-key", "--config", self.config, "--gpgdir", self.gpgdir, "--lsign-key", fingerprint], check=True)

    def pacman(self, *args: str) -> PacmanResult:
        return self._run(["pacman", "--config", self.config, "--root", self.root, "--dbpath", self.dbpath,
                          "--gpgdir", self.gpgdir, "--cachedir", self.cachedir, "--noconfirm", *args])

    def sync_install(self, *packages: str) -> PacmanResult:
        # -yy: always refetch the databases.
        return self.pacman("-Syy", "--noprogressbar", *packages)

    def clear_cache(self) -> None:
        for p in self.cachedir.iterdir():
            p.unlink()

    def installed_version(self, name: str) -> str | None:
        r = self.pacman("-Q", name)
        return r.output.split()[1] if r.ok else None

    def close(self) -> None:
        subprocess.run(["gpgconf", "--homedir", str(self.gpgdir), "--kill", "all"], capture_output=True)


def offline_keyring(gpgdir: Path) -> None:
    """Point pacman's keyserver lookups at a closed local port: an unknown key fails fast, offline."""
    conf = gpgdir / "gpg.conf"
    lines = [ln for ln in conf.read_text().splitlines() if not ln.startswith("keyserver ")]
    conf.write_text("\n".join(lines + ["keyserver hkp://127.0.0.1:9"]) + "\n")


def tree_snapshot(path: Path) -> dict[str, object]:
    """Every entry below path (symlinks not followed) with its link target or content hash."""
    snap: dict[str, object] = {}
    if not os.path.lexists(path):
        return snap
    base = path.parent
    todo = [path]
    for sibling in base.iterdir():
        if sibling.name.startswith(path.name) and sibling != path:
            todo.append(sibling)
    while todo:
        p = todo.pop()
        rel = str(p.relative_to(base))
        if p.is_symlink():
            snap[rel] = ("link", os.readlink(p))
        elif p.is_dir():
            snap[rel] = ("dir",)
            todo.extend(p.iterdir())
        else:
            snap[rel] = ("file", digest_file(p).sha256)
    return snap


def publish_main(argv: list[str]) -> int:
    """Entry point of the crash-test subprocess: gate, open the key, publish; print the result as JSON."""
    from dataclasses import asdict

    from kabuild.compare import acceptance
    from kabuild.publish import gate, publish
    from kabuild.publish.signing import Signer

    args = json.loads(argv[0])
    run_dir = Path(args["run_dir"])
    candidates = gate(acceptance.load(run_dir / "report.json"), run_dir, args["lock_hash"])
    signer = Signer.open(Path(args["gnupghome"]), args["fingerprint"], args.get("passphrase"))
    result = publish(candidates, repository=args["repository"], destination=args["destination"], signer=signer,
                     keep=args["keep"], root=Path(args["root"]))
    print(json.dumps(asdict(result)))
    return 0


if __name__ == "__main__":
    raise SystemExit(publish_main(sys.argv[1:]))
