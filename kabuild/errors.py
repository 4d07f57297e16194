"""The one exception hierarchy of kabuild and the exit codes it maps to.

Every expected failure is raised as a subclass of :class:`KabuildError`; its
``str()`` is the single line the user sees and ``exit_code`` is what the
process returns.  Only :mod:`kabuild.cli` turns these into an exit.
"""

from __future__ import annotations

import enum


class ExitCode(enum.IntEnum):
    OK = 0
    NOT_REPRODUCIBLE = 1  # a result, not an error: builds differ or parity failed
    CONFIG = 2  # usage or configuration error (bad manifest, unknown host, bad flag)
    REFUSED = 3  # refusal: drift, stale or missing lock, bad checksum, publish gate
    BUILD_FAILED = 4  # makepkg (or the build container) failed
    ENVIRONMENT = 5  # a tool or engine failed or is missing (docker, diffoscope, gpg, qemu)
    INTERNAL = 70  # a bug in kabuild (EX_SOFTWARE); --debug shows the traceback
    INTERRUPTED = 130


class KabuildError(Exception):
    exit_code: ExitCode = ExitCode.ENVIRONMENT

    def __init__(self, message: str, *, hint: str | None = None):
        super().__init__(message)
        self.message = message
        self.hint = hint

    def __str__(self) -> str:
        return self.message


class ConfigError(KabuildError):
    exit_code = ExitCode.CONFIG


class ManifestError(ConfigError):
    """A fleet manifest or nodes file is malformed or names something that does not exist."""


class RefusalError(KabuildError):
    exit_code = ExitCode.REFUSED


class LockError(RefusalError):
    """manifest.lock is missing or stale with respect to its inputs."""


class DocumentError(RefusalError):
    """A document kabuild wrote and reads back (manifest.lock, report.json, reference.yaml) is damaged
    or was edited by hand into something kabuild does not trust.  The message names the file and key."""


class DriftError(RefusalError):
    """A PKGBUILD-side copy of the cumulative patch differs from manifest.lock."""


class ChecksumError(RefusalError):
    """Bytes on disk or on the wire do not match the checksum we were told to expect."""


class PatchError(RefusalError):
    """The cumulative patch does not apply to the baseline source."""


class BuildError(KabuildError):
    exit_code = ExitCode.BUILD_FAILED


class ToolError(KabuildError):
    """An external tool or engine failed, or is missing."""

    exit_code = ExitCode.ENVIRONMENT


class ToolFailed(ToolError):
    """An external command ran and failed, or ran out of time (after pypa/build's FailedProcessError).

    It keeps what callers need to decide, so none of them matches on message text: the command, its
    exit code (None when it was stopped for its timeout) and the last lines of its stderr."""

    def __init__(self, argv: tuple[str, ...], returncode: int | None, stderr_tail: tuple[str, ...],
                 *, timeout: float | None = None):
        self.argv = argv
        self.returncode = returncode
        self.stderr_tail = stderr_tail
        self.timeout = timeout
        tool = argv[0].rsplit("/", 1)[-1] if argv else "command"
        if timeout is not None:
            message = f"{tool} timed out after {timeout:g}s"
        else:
            message = f"{tool} failed (exit {returncode}): {stderr_tail[-1] if stderr_tail else 'no message'}"
        super().__init__(message)

    @property
    def timed_out(self) -> bool:
        return self.timeout is not None


class InstallFailed(KabuildError):
    """`kabuild install`: the new kernel did not come back (or not as itself); the board was rolled back."""

    exit_code = ExitCode.BUILD_FAILED


class Interrupted(KabuildError):
    """Ctrl-C or SIGTERM in the middle of work that had to be undone or left for the next run: the
    message says which (``kabuild install``: the board put back, or how the next run finishes it)."""

    exit_code = ExitCode.INTERRUPTED


class BoardLost(ToolError):
    """`kabuild install`: the board did not come back and could not be rolled back yet; a person has to act."""
