"""Plausibility checks for what people write in manifests and nodes.yaml, beyond types.

A value of the right type can still be wrong in a way that only shows much later, or never:
a SOURCE_DATE_EPOCH of 0 or in the future, a timeout of months, a URL without the host or
path its scheme needs.  The fleet reader calls these in its one pass; each refuses with the
located :class:`~kabuild.errors.ManifestError` of its section (exit 2).
"""

from __future__ import annotations

import datetime
import re
import time
from pathlib import Path
from urllib.parse import ParseResult, urlparse

from kabuild.config.schema import Section

# SOURCE_DATE_EPOCH: zip (and so many archive tools) cannot store a time before 1980; a value
# later than now is a typo, never a pinned release date.
SDE_FLOOR = 315532800  # 1980-01-01T00:00:00Z
SDE_FUTURE_MARGIN = 86400  # seconds: clocks and time zones, not more
MAX_TIMEOUT = 7 * 86400  # seconds: a build that runs longer than a week is a typo (minutes for seconds?)


def parse_url(sec: Section, key: str, url: str, item: str = "", line: int | None = None) -> ParseResult:
    try:
        parsed = urlparse(url)
        port = parsed.port  # urlparse checks the port only when asked
    except ValueError as e:
        sec.fail(key, f"{item}not a valid URL: {url!r} ({e})", line)
    if port == 0:  # urlparse takes it; nothing listens there
        sec.fail(key, f"{item}not a valid URL: {url!r} (port 0)", line)
    return parsed


# What the first component of a path never looks like: "ssh:" (one slash short of ssh://host/path)
_SCHEME = re.compile(r"[A-Za-z][A-Za-z0-9+.-]*:")
# A host ssh is given: letters, digits, dots and dashes, never a leading dash (ssh would read an
# option: ssh://-oProxyCommand=...), or an IPv6 literal; a user name likewise.
_SSH_HOST = re.compile(r"[A-Za-z0-9_](?:[A-Za-z0-9._-]*[A-Za-z0-9_])?|\[[0-9A-Fa-f:.]+\]")
_SSH_USER = re.compile(r"[A-Za-z0-9_][A-Za-z0-9._-]*")


def ssh_url_problem(url: str, parsed: ParseResult) -> str | None:
    """Why the host or user of an ssh:// URL cannot be handed to ssh as they are, or None."""
    netloc = parsed.netloc.rsplit("@", 1)
    host = netloc[-1].rsplit(":", 1)[0] if not netloc[-1].endswith("]") else netloc[-1]
    if not host:
        return None  # "has no host" is said by the caller, with the form it expects
    if not _SSH_HOST.fullmatch(host):
        return f"{url!r}: {host!r} is not a host name (letters, digits, '.', '-', not starting with '-')"
    if len(netloc) == 2 and not _SSH_USER.fullmatch(netloc[0]):
        return f"{url!r}: {netloc[0]!r} is not a user name (letters, digits, '.', '_', '-', not starting with '-')"
    return None


def looks_like_url(text: str) -> bool:
    """``ssh:/host/path`` or ``https:example.org``: a URL written wrong, which as a path would quietly
    become a local directory named ``ssh:``."""
    return _SCHEME.match(text) is not None and "://" not in text


def download_url_problem(url: str, parsed: ParseResult) -> str | None:
    """Why a source or mirror URL cannot name a file, or None: http(s) needs a host and a file
    path, file:// an absolute path to a file, a plain path a file name."""
    if parsed.scheme in ("http", "https"):
        if not parsed.hostname:
            return f"{url!r} has no host"
        if not Path(parsed.path).name:
            return f"{url!r} names no file after the host"
    elif parsed.scheme == "file":
        if parsed.netloc not in ("", "localhost"):
            return f"{url!r}: a file URL names a local path (file:///path), not host {parsed.netloc!r}"
        if not parsed.path.startswith("/") or not Path(parsed.path).name:
            return f"{url!r} names no file (expected file:///absolute/path/file)"
    elif not Path(parsed.path).name or parsed.path.endswith("/"):
        return f"{url!r} names no file"
    return None


def source_date_epoch(sec: Section, sde: int) -> int:
    """baseline.source_date_epoch (as read, an integer): the baseline's release date, plausibly."""
    if sde < SDE_FLOOR:
        sec.fail("source_date_epoch", f"{sde} is before 1980-01-01 ({SDE_FLOOR}), which zip and many archive "
                                      "formats cannot store; expected the release date of the baseline")
    latest = int(time.time()) + SDE_FUTURE_MARGIN
    if sde > latest:
        when = datetime.datetime.fromtimestamp(sde, datetime.UTC).strftime("%Y-%m-%d") if sde < 253402300800 else "?"
        sec.fail("source_date_epoch", f"{sde} ({when}) is in the future; expected the release date of the baseline")
    return sde


def destination(sec: Section, dest: str | None) -> str | None:
    """publish.destination (as read): a directory (relative to the repository root unless absolute),
    file:///path, or ssh://[user@]host[:port]/absolute/path."""
    if dest is not None and looks_like_url(dest):
        sec.fail("destination", f"{dest!r} looks like a URL with a slash missing: expected ssh://[user@]host[:port]"
                                f"/absolute/path or file:///path (for a local directory of that name write ./{dest})")
    if dest is None or "://" not in dest:
        return dest
    parsed = parse_url(sec, "destination", dest)
    if parsed.scheme == "ssh":
        path = parsed.path
        if not parsed.hostname:
            sec.fail("destination", f"{dest!r} has no host (expected ssh://[user@]host[:port]/absolute/path)")
        if not path.startswith("/") or path.rstrip("/") == "" or ".." in path.split("/"):
            sec.fail("destination", f"{dest!r} has no absolute repository path after the host "
                                    "(expected ssh://[user@]host[:port]/absolute/path)")
        problem = ssh_url_problem(dest, parsed)
        if problem:
            sec.fail("destination", problem)
    elif parsed.scheme == "file":
        if parsed.netloc not in ("", "localhost") or not parsed.path.startswith("/") or parsed.path.rstrip("/") == "":
            sec.fail("destination", f"{dest!r}: expected file:///absolute/path")
    else:
        sec.fail("destination", f"expected a directory, file:///path or ssh://host/path, got scheme {parsed.scheme!r}")
    return dest


def node_url_problem(scheme: str, url: str, parsed: ParseResult) -> str | None:
    """Why a node URL cannot reach an engine: unix:// needs an absolute socket path, ssh:// and
    tcp:// a host (and tcp:// no path)."""
    if scheme == "unix":
        if parsed.netloc or not parsed.path.startswith("/") or parsed.path.endswith("/"):
            return f"expected unix:///absolute/path/to/docker.sock, got {url!r}"
    elif not parsed.hostname:
        example = "ssh://[user@]host" if scheme == "ssh" else "tcp://host:port"
        return f"{url!r} has no host (expected {example})"
    elif scheme == "ssh" and ssh_url_problem(url, parsed):
        return ssh_url_problem(url, parsed)
    elif scheme == "tcp" and parsed.path not in ("", "/"):
        return f"expected tcp://host:port with no path, got {url!r}"
    return None
