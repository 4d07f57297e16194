"""How kabuild reaches a remote engine: its own ssh transport and the TLS checks.

``ssh://`` nodes go through the system OpenSSH client, so ``~/.ssh/config`` (Port, ProxyJump,
IdentityFile), the agent and ``known_hosts`` work as they do for the fleet owner's own ssh.  Each
HTTP connection of the Docker SDK is one ``ssh … docker system dial-stdio`` process wired to one
end of a socket pair, so the SDK sees a real socket (timeouts, streaming) and no paramiko is
needed.  Every ssh runs with ``BatchMode=yes`` (never a prompt), ``StrictHostKeyChecking=yes`` and
``ConnectTimeout``; its stderr goes to a file that :func:`ssh_reason` turns into kabuild's one line.

``tcp://`` nodes use exactly the TLS files of ``nodes.yaml``: :func:`tls_files_problem` checks them
before connecting (a key that does not belong to its certificate is named here), and
:func:`tls_reason` names the cause of a failed handshake.
"""

from __future__ import annotations

import re
import socket
import ssl
import subprocess
import tempfile
import threading
from typing import IO
from urllib.parse import urlparse

import requests.adapters
import urllib3
import urllib3.connection
import urllib3.connectionpool

from kabuild.config.nodes import Node

SERVER_ALIVE = 10  # seconds between ssh keep-alives; 3 missed ones end the connection (30 s)
REMOTE_COMMAND = "docker system dial-stdio"


def ssh_argv(node: Node) -> list[str]:
    """The ssh command line for one connection to ``node``'s engine."""
    s = node.ssh
    assert s is not None
    argv = ["ssh", "-T", "-x", "-a", "-e", "none",
            "-o", "BatchMode=yes", "-o", "StrictHostKeyChecking=yes",
            "-o", f"ConnectTimeout={node.connect_timeout}",
            "-o", f"ServerAliveInterval={SERVER_ALIVE}", "-o", "ServerAliveCountMax=3",
            "-o", "LogLevel=ERROR"]
    if s.config is not None:
        argv += ["-F", str(s.config)]
    if s.identity is not None:
        argv += ["-i", str(s.identity), "-o", "IdentitiesOnly=yes"]
    if s.known_hosts is not None:
        argv += ["-o", f"UserKnownHostsFile={s.known_hosts}"]
    if s.port is not None:
        argv += ["-p", str(s.port)]  # only when the URL names a port: ssh_config's Port applies otherwise
    if s.user:
        argv += ["-l", s.user]
    for option in s.options:
        argv += ["-o", option]
    return argv + ["--", s.destination, REMOTE_COMMAND]


class _Tunnel:
    """One ssh process; its stdin and stdout are one end of a socket pair."""

    def __init__(self, argv: list[str]):
        ours, theirs = socket.socketpair()
        self.stderr: IO[bytes] = tempfile.TemporaryFile()
        try:
            # A session of its own: Ctrl-C in the terminal must not kill the connection that
            # removes the build containers after it.
            self.proc = subprocess.Popen(argv, stdin=theirs.fileno(), stdout=theirs.fileno(), stderr=self.stderr,
                                         start_new_session=True, close_fds=True)
        except OSError:
            ours.close()
            self.stderr.close()
            raise
        finally:
            theirs.close()
        self.sock = ours

    def stderr_text(self, wait: float = 0.0) -> str:
        """What ssh said on stderr (after waiting up to ``wait`` seconds for it to exit)."""
        if wait:
            try:
                self.proc.wait(timeout=wait)
            except subprocess.TimeoutExpired:
                pass
        try:
            self.stderr.seek(0)
            return self.stderr.read(64 * 1024).decode("utf-8", "replace")
        except (OSError, ValueError):
            return ""

    def close(self) -> None:
        try:
            self.sock.close()
        except OSError:
            pass
        try:
            self.proc.wait(timeout=2)  # EOF on its stdin ends ssh and dial-stdio
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()
        self.stderr.close()


class Tunnels:
    """Every ssh process of one node's client: the last one's stderr explains a failure, and
    closing the client ends them all (no ssh is left behind)."""

    def __init__(self, node: Node):
        self.node = node
        self.argv = ssh_argv(node)
        self._lock = threading.Lock()
        self._open: list[_Tunnel] = []
        self.last: _Tunnel | None = None

    def open(self, timeout: float | None) -> socket.socket:
        tunnel = _Tunnel(self.argv)
        tunnel.sock.settimeout(timeout)
        with self._lock:
            done = [t for t in self._open if t.proc.poll() is not None]
            for t in done:
                self._open.remove(t)
                t.close()
            self._open.append(tunnel)
            self.last = tunnel
        return tunnel.sock

    def reason(self, wait: float = 1.0) -> str | None:
        """Why the last ssh failed, as one line, or None when it said nothing useful."""
        last = self.last
        return ssh_reason(self.node, last.stderr_text(wait)) if last is not None else None

    def close(self) -> None:
        with self._lock:
            tunnels, self._open = self._open, []
        for t in tunnels:
            t.close()


class _SSHConnection(urllib3.connection.HTTPConnection):
    def __init__(self, tunnels: Tunnels, timeout: float | None):
        super().__init__("localhost", timeout=timeout)
        self._tunnels = tunnels

    def connect(self) -> None:
        self.sock = self._tunnels.open(self.timeout if isinstance(self.timeout, (int, float)) else None)


class _SSHPool(urllib3.connectionpool.HTTPConnectionPool):
    def __init__(self, tunnels: Tunnels, timeout: float | None, maxsize: int):
        super().__init__("localhost", timeout=timeout, maxsize=maxsize)
        self._tunnels = tunnels

    def _new_conn(self):
        timeout = self.timeout.connect_timeout if isinstance(self.timeout, urllib3.Timeout) else self.timeout
        return _SSHConnection(self._tunnels, timeout if isinstance(timeout, (int, float)) else None)


class SSHAdapter(requests.adapters.HTTPAdapter):
    """A requests adapter whose connections are ssh processes (see the module docstring)."""

    def __init__(self, tunnels: Tunnels, timeout: float, maxsize: int = 10):
        self.tunnels = tunnels
        self._timeout = timeout
        self._maxsize = maxsize
        self._pool: _SSHPool | None = None
        super().__init__()

    def get_connection(self, url, proxies=None):
        if self._pool is None:
            self._pool = _SSHPool(self.tunnels, self._timeout, self._maxsize)
        return self._pool

    def get_connection_with_tls_context(self, request, verify, proxies=None, cert=None):
        return self.get_connection(request.url, proxies)

    def request_url(self, request, proxies):
        return request.path_url

    def close(self) -> None:
        super().close()
        if self._pool is not None:
            self._pool.close()
            self._pool = None
        self.tunnels.close()


# --------------------------------------------------------------------------- what ssh said

def _where(node: Node) -> str:
    s = node.ssh
    assert s is not None
    return f"{s.destination}:{s.port}" if s.port else s.destination


def ssh_reason(node: Node, stderr: str) -> str | None:
    """ssh's stderr as one line that says what to do, or None when it said nothing."""
    s = node.ssh
    assert s is not None
    text = stderr.strip()
    if not text:
        return None
    low = text.lower()
    known = str(s.known_hosts) if s.known_hosts else "~/.ssh/known_hosts"
    if "remote host identification has changed" in low:
        return (f"the host key of {_where(node)} is not the one in {known} (it changed: a reinstalled node, "
                "or someone in between); check it, then replace the line in known_hosts")
    if "host key verification failed" in low or "no " in low and "host key is known" in low:
        host = re.search(r"known for (\S+)", text)
        shown = host.group(1) if host else _where(node)
        scan = f"ssh-keyscan{f' -p {s.port}' if s.port else ''} {s.destination} >> {known}"
        return (f"the host key of {shown} is not in {known} (ssh never accepts an unknown key here); "
                f"check the node's key fingerprint, then add it: {scan}")
    if "connection refused" in low:
        return f"connection refused by {_where(node)} (no sshd listening on that port?)"
    if "banner exchange" in low or "timed out" in low:
        return (f"ssh to {_where(node)} timed out after {node.connect_timeout}s (connect_timeout; the host "
                "does not answer as an ssh server)")
    if "permission denied" in low:
        who = f"{s.user}@" if s.user else ""
        key = f" with identity {s.identity}" if s.identity else ""
        return f"permission denied: {who}{_where(node)} did not accept the key{key} (BatchMode: no password prompt)"
    if "could not resolve hostname" in low:
        return f"unknown host name {s.destination} (not in DNS, /etc/hosts or ssh_config)"
    if "command not found" in low or "docker: not found" in low:
        return f"the docker CLI is not installed on {_where(node)} (`{REMOTE_COMMAND}` needs it there)"
    if "cannot connect to the docker daemon" in low or "error during connect" in low:
        return f"no Docker engine answers on {_where(node)} (ssh works, dockerd does not)"
    if "closed by remote host" in low or "broken pipe" in low or "connection reset" in low:
        return f"the ssh connection to {_where(node)} was closed ({_last_line(text)})"
    return _last_line(text)


def _last_line(text: str) -> str:
    lines = [line.strip() for line in text.splitlines() if line.strip()]
    return lines[-1] if lines else ""


# --------------------------------------------------------------------------- TLS

def tls_files_problem(node: Node) -> str | None:
    """What is wrong with a tcp:// node's TLS files before any connection, or None."""
    t = node.tls
    if t is None:
        return None
    missing = [f"tls.{k} {p}" for k, p in (("ca", t.ca), ("cert", t.cert), ("key", t.key)) if not p.is_file()]
    if missing:
        return f"TLS file(s) not found: {', '.join(missing)} (nodes.{node.name}.tls in fleet/nodes.yaml)"
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    try:
        ctx.load_verify_locations(cafile=str(t.ca))
    except (ssl.SSLError, OSError) as e:
        return f"tls.ca {t.ca} is not a PEM CA certificate ({_ssl_text(e)})"
    try:
        ctx.load_cert_chain(str(t.cert), str(t.key))
    except ssl.SSLError as e:
        if "KEY_VALUES_MISMATCH" in str(e) or getattr(e, "reason", "") == "KEY_VALUES_MISMATCH":
            return f"key mismatch: tls.key {t.key} does not belong to tls.cert {t.cert}"
        return f"tls.cert {t.cert} / tls.key {t.key} cannot be loaded ({_ssl_text(e)})"
    except OSError as e:
        return f"tls.cert {t.cert} / tls.key {t.key} cannot be read ({e.strerror or e})"
    return None


def _ssl_text(e: BaseException) -> str:
    reason = getattr(e, "reason", None)
    verify = getattr(e, "verify_message", None)
    return verify or reason or str(e) or type(e).__name__


def _ssl_errors(e: BaseException | None, depth: int = 0):
    """Every ssl.SSLError (and OSError) in an exception's chain and arguments."""
    if e is None or depth > 8:
        return
    if isinstance(e, (ssl.SSLError, OSError)):
        yield e
    for arg in getattr(e, "args", ()):
        if isinstance(arg, BaseException):
            yield from _ssl_errors(arg, depth + 1)
    for attr in ("reason", "__cause__", "__context__"):
        inner = getattr(e, attr, None)
        if isinstance(inner, BaseException) and inner is not e:
            yield from _ssl_errors(inner, depth + 1)


def tls_reason(node: Node, e: BaseException, *, probe: bool = True) -> str | None:
    """The named cause of a failed TLS connection, or None when it was not TLS that failed."""
    t = node.tls
    assert t is not None
    texts = " ".join(f"{getattr(x, 'reason', '') or ''} {getattr(x, 'verify_message', '') or ''} {x}"
                     for x in _ssl_errors(e)) + " " + str(e)
    up = texts.upper()
    if "CERTIFICATE_VERIFY_FAILED" in up or "CERTIFICATE VERIFY FAILED" in up:
        if "HOSTNAME MISMATCH" in up or "IP ADDRESS MISMATCH" in up:
            return (f"TLS: the engine's certificate is not made out to {urlhost(node)} (hostname mismatch; its "
                    "subjectAltName must name the host of the URL)")
        return (f"TLS: CA mismatch: the engine's certificate is not signed by tls.ca {t.ca} "
                f"({_first(e, 'verify_message') or 'certificate verify failed'})")
    if any(k in up for k in ("UNKNOWN_CA", "UNKNOWN CA", "BAD_CERTIFICATE", "BAD CERTIFICATE",
                             "CERTIFICATE_REQUIRED", "CERTIFICATE REQUIRED", "DECRYPT_ERROR",
                             "CERTIFICATE_UNKNOWN", "UNSUPPORTED_CERTIFICATE", "ACCESS_DENIED")):
        return (f"TLS: client certificate refused: the engine does not accept tls.cert {t.cert} "
                "(not signed by the CA its --tlscacert trusts)")
    if any(k in up for k in ("WRONG_VERSION_NUMBER", "WRONG VERSION NUMBER", "RECORD_LAYER_FAILURE",
                             "PACKET_LENGTH_TOO_LONG", "HTTP_REQUEST", "UNEXPECTED_MESSAGE", "UNKNOWN_PROTOCOL")):
        return f"TLS: not a TLS port: {urlhost(node)} answered in clear text (a dockerd without --tlsverify there?)"
    if "KEY_VALUES_MISMATCH" in up:
        return f"TLS: key mismatch: tls.key {t.key} does not belong to tls.cert {t.cert}"
    if "EOF OCCURRED IN VIOLATION" in up or "UNEXPECTED_EOF" in up:
        # TLS 1.3 refuses a client certificate after the handshake, with an EOF; the same handshake
        # limited to TLS 1.2 gets the engine's alert, which names the cause.
        if probe and (cause := _probe_tls12(node)):
            return cause
        return (f"TLS: the engine closed the connection during the handshake (client certificate refused, or "
                f"not a TLS port at {urlhost(node)})")
    return None


def _probe_tls12(node: Node) -> str | None:
    t = node.tls
    assert t is not None
    parsed = urlparse(node.url)
    try:
        ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
        ctx.load_verify_locations(cafile=str(t.ca))
        ctx.load_cert_chain(str(t.cert), str(t.key))
        ctx.check_hostname = False
        ctx.maximum_version = ssl.TLSVersion.TLSv1_2
        with socket.create_connection((parsed.hostname, parsed.port or 2376), timeout=node.connect_timeout) as raw:
            with ctx.wrap_socket(raw) as tls:
                tls.sendall(b"GET /_ping HTTP/1.0\r\n\r\n")
                tls.recv(1)
    except (ssl.SSLError, OSError) as e:
        return tls_reason(node, e, probe=False)
    return None


def _first(e: BaseException, attr: str) -> str | None:
    for x in _ssl_errors(e):
        v = getattr(x, attr, None)
        if v:
            return str(v)
    return None


def urlhost(node: Node) -> str:
    return node.url.split("://", 1)[-1].rstrip("/")

