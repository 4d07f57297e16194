"""The kabuild command line: it parses, calls the module that owns the work, and renders.

The verbs live in app (the group), chain, results and board; this is the only place where
errors become exit codes (:func:`run_cli`).
"""

from __future__ import annotations

import re
import signal
import sys
import traceback

import click

from kabuild.cli import board, chain, nodes, results  # noqa: F401  (importing them registers the verbs)
from kabuild.cli.app import main
from kabuild.errors import ExitCode, KabuildError

__all__ = ["entry", "exit_for", "main", "run_cli"]

# --------------------------------------------------------------------------- entry point


def run_cli(argv: list[str] | None = None) -> int:
    argv = _debug_first(list(sys.argv[1:] if argv is None else argv))
    debug = argv[:1] == ["--debug"]
    try:
        rc = main.main(args=argv, prog_name="kabuild", standalone_mode=False)
        # A verb may return an exit code that is a result, not an error (1: not reproducible).
        return int(rc) if isinstance(rc, int) else ExitCode.OK
    except Exception as e:
        return exit_for(e, debug=debug)
    except KeyboardInterrupt as e:
        return exit_for(e, debug=debug)


def exit_for(e: BaseException, *, debug: bool = False) -> int:
    """The one place an exception becomes an exit code and one line on stderr."""
    if isinstance(e, KabuildError):
        if debug:
            traceback.print_exception(e)
        hint = f" ({e.hint})" if e.hint else ""
        click.echo(f"kabuild: error: {_one_line(str(e))}{_one_line(hint)}", err=True)
        return int(e.exit_code)
    if isinstance(e, OSError):
        # Disk full, permissions, a vanished file: expected in the field, reported in one line.
        if debug:
            traceback.print_exception(e)
        click.echo(f"kabuild: error: {_one_line(str(e))}", err=True)
        return ExitCode.ENVIRONMENT
    if isinstance(e, click.exceptions.Exit):
        return e.exit_code
    if isinstance(e, click.ClickException):
        click.echo(f"kabuild: error: {_one_line(e.format_message())} (see `kabuild --help`)", err=True)
        return ExitCode.CONFIG
    if isinstance(e, (KeyboardInterrupt, click.exceptions.Abort)):
        click.echo("kabuild: interrupted", err=True)
        return ExitCode.INTERRUPTED
    # a bug: never let it masquerade as exit 1 ("not reproducible")
    if debug:
        traceback.print_exception(e)
    click.echo(f"kabuild: internal error: {type(e).__name__}: {_one_line(str(e))} "
               "(run with --debug for the traceback)", err=True)
    return ExitCode.INTERNAL


def _debug_first(argv: list[str]) -> list[str]:
    """``--debug`` is the group's option, but users put it after the verb too (`kabuild build demo
    --debug`): wherever it is (before a ``--``), it counts as given to the group."""
    end = argv.index("--") if "--" in argv else len(argv)
    if "--debug" not in argv[:end]:
        return argv
    return ["--debug", *(a for i, a in enumerate(argv) if not (i < end and a == "--debug"))]  # first: see run_cli


def _one_line(text: str) -> str:
    """The message as one line a terminal prints as it is: line breaks become spaces, and every other
    control or line-separating character (a value quoted from a damaged file) is shown escaped."""
    return _UNPRINTABLE.sub(lambda m: m.group().encode("unicode_escape").decode("ascii"),
                            " ".join(text.split("\n")))


_UNPRINTABLE = re.compile("[\x00-\x1f\x7f-\x9f\u2028\u2029]")


def _terminated(signum: int, frame: object) -> None:
    raise KeyboardInterrupt  # SIGTERM (a service manager, `kill`) cleans up like Ctrl-C: containers removed


def entry() -> None:
    signal.signal(signal.SIGTERM, _terminated)
    sys.exit(run_cli())
