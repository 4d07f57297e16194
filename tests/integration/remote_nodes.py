"""Real remote build nodes on this machine, for the remote-node tests and the ship benchmark.

- :class:`Dockerd`: a dockerd of its own (its own data-root, exec-root, socket, pidfile and containerd
  namespaces, ``--iptables=false --bridge=none`` like containers/host-setup.sh), optionally also
  listening with ``--tlsverify`` on a loopback TCP port.  A fresh one holds no image.
- :class:`Sshd`: an sshd on its own loopback port with its own host key, client key, authorized key
  and known_hosts, whose sessions talk to one Dockerd (``SetEnv DOCKER_HOST``), so ``ssh … docker
  system dial-stdio`` reaches it exactly as on a real build host.
- :func:`make_ca`: a CA, a server certificate for 127.0.0.1 and a client certificate, by openssl.
- :class:`SilentListener`: a loopback port that accepts connections and never says anything.

Everything lives under one temporary directory and every daemon is stopped by :meth:`stop`.
"""

from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import tempfile
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path

START_TIMEOUT = 60  # seconds for a dockerd or sshd to answer


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _stop(proc: subprocess.Popen | None, timeout: float = 30) -> None:
    if proc is None or proc.poll() is not None:
        return
    proc.terminate()
    try:
        proc.wait(timeout=timeout)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()


# --------------------------------------------------------------------------- TLS material


@dataclass(frozen=True)
class TLSFiles:
    ca: Path
    ca_key: Path
    server_cert: Path
    server_key: Path
    client_cert: Path
    client_key: Path


def _openssl(*args: str | Path) -> None:
    subprocess.run(["openssl", *map(str, args)], check=True, capture_output=True)


def make_ca(d: Path, name: str = "ca") -> TLSFiles:
    """A CA and, signed by it, a server certificate for 127.0.0.1 and a client certificate."""
    d.mkdir(parents=True, exist_ok=True)
    ca, ca_key = d / f"{name}.pem", d / f"{name}-key.pem"
    _openssl("req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256", "-nodes", "-days", "2",
             "-subj", f"/CN=kabuild test {name}", "-keyout", ca_key, "-out", ca)

    def issue(kind: str, ext: str) -> tuple[Path, Path]:
        key, csr, cert, extfile = (d / f"{name}-{kind}-key.pem", d / f"{name}-{kind}.csr", d / f"{name}-{kind}.pem",
                                   d / f"{name}-{kind}.ext")
        extfile.write_text(ext)
        _openssl("req", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256", "-nodes", "-subj",
                 f"/CN=kabuild test {kind}", "-keyout", key, "-out", csr)
        _openssl("x509", "-req", "-in", csr, "-CA", ca, "-CAkey", ca_key, "-CAcreateserial", "-days", "2",
                 "-extfile", extfile, "-out", cert)
        return cert, key

    server = issue("server", "subjectAltName=IP:127.0.0.1,DNS:localhost\nextendedKeyUsage=serverAuth\n")
    client = issue("client", "extendedKeyUsage=clientAuth\n")
    return TLSFiles(ca, ca_key, *server, *client)


# --------------------------------------------------------------------------- dockerd


@dataclass
class Dockerd:
    """A dockerd of its own under ``base``; ``tls`` also opens a --tlsverify TCP port on 127.0.0.1."""

    base: Path
    tls: TLSFiles | None = None
    tcp_port: int | None = None
    proc: subprocess.Popen | None = None
    exec_root: Path = field(default_factory=lambda: Path(tempfile.mkdtemp(prefix="kbx-", dir="/tmp")))

    @property
    def socket(self) -> Path:
        return self.base / "docker.sock"

    @property
    def url(self) -> str:
        return f"unix://{self.socket}"

    def start(self) -> Dockerd:
        self.base.mkdir(parents=True, exist_ok=True)
        ns = f"kbtest-{self.exec_root.name}"
        argv = ["dockerd", "--host", self.url, "--pidfile", str(self.base / "docker.pid"),
                "--data-root", str(self.base / "data"), "--exec-root", str(self.exec_root),
                "--containerd-namespace", ns, "--containerd-plugins-namespace", f"{ns}-plugins",
                "--iptables=false", "--ip6tables=false", "--ip-forward=false", "--ip-masq=false", "--bridge=none",
                "--log-level", "warn"]
        if self.tls is not None:
            self.tcp_port = free_port()
            argv += ["--host", f"tcp://127.0.0.1:{self.tcp_port}", "--tlsverify", "--tlscacert", str(self.tls.ca),
                     "--tlscert", str(self.tls.server_cert), "--tlskey", str(self.tls.server_key)]
        log = open(self.base / "dockerd.log", "ab")
        self.proc = subprocess.Popen(argv, stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                                     start_new_session=True)
        log.close()
        deadline = time.monotonic() + START_TIMEOUT
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"dockerd exited: {(self.base / 'dockerd.log').read_text()[-2000:]}")
            r = subprocess.run(["docker", "-H", self.url, "version", "--format", "{{.Server.Version}}"],
                               capture_output=True, timeout=30)
            if r.returncode == 0:
                return self
            time.sleep(0.5)
        self.stop()
        raise RuntimeError(f"dockerd did not answer within {START_TIMEOUT}s")

    def docker(self, *args: str, check: bool = True) -> subprocess.CompletedProcess:
        return subprocess.run(["docker", "-H", self.url, *args], capture_output=True, text=True, check=check,
                              timeout=120)

    def containers(self) -> list[str]:
        out = self.docker("ps", "-aq", "--filter", "label=org.kabuild.build").stdout
        return out.split()

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            for cid in self.containers() if self.socket.exists() else []:
                self.docker("rm", "-f", cid, check=False)
        _stop(self.proc, 60)
        # dockerd leaves its containerd's mounts only while it runs; the data is ours to remove
        subprocess.run(["umount", "-R", str(self.exec_root)], capture_output=True)
        shutil.rmtree(self.exec_root, ignore_errors=True)
        data = self.base / "data"
        if data.exists():
            subprocess.run(["find", str(data), "-xdev", "-depth", "-mindepth", "1", "-type", "d", "-name", "merged",
                            "-exec", "umount", "{}", ";"], capture_output=True)
            shutil.rmtree(data, ignore_errors=True)


# --------------------------------------------------------------------------- sshd


@dataclass
class Sshd:
    """An sshd on 127.0.0.1:<port> whose sessions use ``dockerd`` (DOCKER_HOST), with its own keys."""

    base: Path
    dockerd: Dockerd
    port: int = 0
    proc: subprocess.Popen | None = None

    @property
    def client_key(self) -> Path:
        return self.base / "client_key"

    @property
    def known_hosts(self) -> Path:
        return self.base / "known_hosts"

    def prepare(self) -> Sshd:
        d = self.base
        d.mkdir(parents=True, exist_ok=True)
        for name in ("host_key", "client_key"):
            if not (d / name).exists():
                subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", str(d / name)], check=True)
        (d / "authorized_keys").write_text((d / "client_key.pub").read_text())
        os.chmod(d / "authorized_keys", 0o600)
        self.port = self.port or free_port()
        path = f"{Path(shutil.which('docker') or '/usr/bin/docker').parent}:/usr/local/bin:/usr/bin:/bin"
        (d / "sshd_config").write_text(
            f"Port {self.port}\nListenAddress 127.0.0.1\nHostKey {d / 'host_key'}\nPidFile {d / 'sshd.pid'}\n"
            f"AuthorizedKeysFile {d / 'authorized_keys'}\nPermitRootLogin prohibit-password\n"
            "PasswordAuthentication no\nKbdInteractiveAuthentication no\nUsePAM no\nStrictModes no\nLogLevel ERROR\n"
            f"SetEnv DOCKER_HOST={self.dockerd.url} PATH={path}\n")
        host_pub = (d / "host_key.pub").read_text().split()
        self.known_hosts.write_text(f"[127.0.0.1]:{self.port} {host_pub[0]} {host_pub[1]}\n")
        return self

    def start(self) -> Sshd:
        self.prepare()
        Path("/run/sshd").mkdir(mode=0o755, exist_ok=True)  # sshd's privilege separation directory
        self.proc = subprocess.Popen(["/usr/sbin/sshd", "-D", "-e", "-f", str(self.base / "sshd_config")],
                                     stdout=open(self.base / "sshd.log", "ab"), stderr=subprocess.STDOUT,
                                     start_new_session=True)
        deadline = time.monotonic() + START_TIMEOUT
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"sshd exited: {(self.base / 'sshd.log').read_text()[-2000:]}")
            r = subprocess.run(["ssh", "-p", str(self.port), "-i", str(self.client_key), "-o", "IdentitiesOnly=yes",
                                "-o", "BatchMode=yes", "-o", f"UserKnownHostsFile={self.known_hosts}",
                                "-o", "StrictHostKeyChecking=yes", "root@127.0.0.1", "docker", "version"],
                               capture_output=True, timeout=30)
            if r.returncode == 0:
                return self
            time.sleep(0.2)
        self.stop()
        raise RuntimeError("sshd did not answer within the start bound")

    def kill(self) -> None:
        """The node dies: sshd and every session it started (their ssh clients see the connection end)."""
        if self.proc is None or self.proc.poll() is not None:
            return
        family = [pid for pid in _pids() if _ppid_chain_has(pid, self.proc.pid)]
        for pid in [self.proc.pid, *family]:
            try:
                os.kill(pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
        self.proc.wait()

    def stop(self) -> None:
        _stop(self.proc, 10)


def _pids() -> list[int]:
    return [int(p.name) for p in Path("/proc").iterdir() if p.name.isdigit()]


def _ppid_chain_has(pid: int, ancestor: int) -> bool:
    for _ in range(20):
        try:
            stat = Path(f"/proc/{pid}/stat").read_text()
        except OSError:
            return False
        ppid = int(stat.rsplit(")", 1)[1].split()[1])
        if ppid == ancestor:
            return True
        if ppid <= 1:
            return False
        pid = ppid
    return False


# --------------------------------------------------------------------------- a silent host


class SilentListener:
    """Accepts TCP connections on a loopback port and never sends a byte (a hung host); with
    ``reply``, it answers every connection with those bytes in clear text (a port that is not TLS)."""

    def __init__(self, reply: bytes | None = None) -> None:
        self.reply = reply
        self.sock = socket.socket()
        self.sock.bind(("127.0.0.1", 0))
        self.sock.listen(16)
        self.port = self.sock.getsockname()[1]
        self._held: list[socket.socket] = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._serve, daemon=True)
        self._thread.start()

    def _serve(self) -> None:
        self.sock.settimeout(0.2)
        while not self._stop.is_set():
            try:
                conn, _ = self.sock.accept()
            except (TimeoutError, OSError):
                continue
            if self.reply is not None:
                try:
                    conn.sendall(self.reply)
                except OSError:
                    pass
            self._held.append(conn)

    def close(self) -> None:
        self._stop.set()
        self._thread.join(timeout=5)
        for c in self._held:
            c.close()
        self.sock.close()


# --------------------------------------------------------------------------- the whole fleet


class RemoteFleet:
    """The remote nodes of one test session and their ``fleet/nodes.yaml`` entries."""

    def __init__(self, base: Path):
        self.base = base
        self.tls_files = make_ca(base / "tls", "ca")
        self.other_ca = make_ca(base / "other", "other")  # a CA the engine does not trust, and its certs
        self.ssh_dockerd = Dockerd(base / "ssh-dockerd")
        self.tls_dockerd = Dockerd(base / "tls-dockerd", tls=self.tls_files)
        self.sshd = Sshd(base / "sshd", self.ssh_dockerd)
        self.silent = SilentListener()
        self.plain = SilentListener(reply=b"HTTP/1.1 400 Bad Request\r\nContent-Length: 0\r\n\r\n")

    def start(self) -> RemoteFleet:
        try:
            self.ssh_dockerd.start()
            self.tls_dockerd.start()
            self.sshd.start()
        except BaseException:
            self.stop()
            raise
        (self.base / "empty_known_hosts").write_text("")
        (self.base / "ssh_config").write_text(
            f"Host kbalias\n  HostName 127.0.0.1\n  Port {self.sshd.port}\n  User root\n"
            f"  IdentityFile {self.sshd.client_key}\n  UserKnownHostsFile {self.sshd.known_hosts}\n")
        return self

    def stop(self) -> None:
        self.sshd.stop()
        for d in (self.ssh_dockerd, self.tls_dockerd):
            d.stop()
        self.silent.close()
        self.plain.close()

    # One engine has one name in a nodes.yaml (kabuild refuses two names for one engine), so the nodes
    # that reach an engine another way (a wrong key, CA or certificate) are written only when asked for.
    DEFAULT_NODES = ("ssh", "ssh-alias", "silent", "silent-tls", "tls", "tls-plain-port")

    def nodes_yaml(self, *names: str) -> str:
        """Node entries to append to a test repository's fleet/nodes.yaml: ``names`` (default
        :data:`DEFAULT_NODES`)."""
        s, t, o = self.sshd, self.tls_files, self.other_ca
        ssh_keys = f"    identity: {s.client_key}\n    known_hosts: {s.known_hosts}\n"

        def tls(ca: Path, cert: Path, key: Path) -> str:
            return f"    tls: {{ca: {ca}, cert: {cert}, key: {key}}}\n"

        tcp = f"tcp://127.0.0.1:{self.tls_dockerd.tcp_port}"
        entries = {
            "ssh": f"    url: ssh://root@127.0.0.1:{s.port}\n{ssh_keys}    description: sshd + dockerd of the tests\n",
            "ssh-alias": f"    url: ssh://kbalias\n    ssh_config: {self.base / 'ssh_config'}\n",
            "ssh-unknown-key": f"    url: ssh://root@127.0.0.1:{s.port}\n    identity: {s.client_key}\n"
                               f"    known_hosts: {self.base / 'empty_known_hosts'}\n",
            "silent": f"    url: ssh://root@127.0.0.1:{self.silent.port}\n    connect_timeout: 2\n",
            "silent-tls": f"    url: tcp://127.0.0.1:{self.silent.port}\n    connect_timeout: 2\n"
                          + tls(t.ca, t.client_cert, t.client_key),
            "tls": f"    url: {tcp}\n" + tls(t.ca, t.client_cert, t.client_key),
            "tls-wrong-ca": f"    url: {tcp}\n" + tls(o.ca, t.client_cert, t.client_key),
            "tls-foreign-cert": f"    url: {tcp}\n" + tls(t.ca, o.client_cert, o.client_key),
            "tls-key-mismatch": f"    url: {tcp}\n" + tls(t.ca, t.client_cert, o.client_key),
            "tls-plain-port": f"    url: tcp://127.0.0.1:{self.plain.port}\n" + tls(t.ca, t.client_cert, t.client_key),
        }
        return "".join(f"  {name}:\n{entries[name]}" for name in (names or self.DEFAULT_NODES))

    def add_to(self, root: Path) -> Path:
        with open(root / "fleet" / "nodes.yaml", "a") as f:
            f.write(self.nodes_yaml())
        return root

    def engines(self) -> dict[str, Dockerd]:
        return {"ssh": self.ssh_dockerd, "tls": self.tls_dockerd}
