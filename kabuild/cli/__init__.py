"""The kabuild command line: it parses, calls the module that owns the work, and renders.

The verbs live in app (the group), chain, results and board; this is the only place where
errors become exit codes (:func:`run_cli`).
"""

from __future__ import annotations

import signal
import sys
import traceback

import click

from kabuild.cli import board, chain, nodes, results  # noqa: F401  (importing them registers the verbs)
from kabuild.cli.app import main
from kabuild.errors import ExitCode, KabuildError

__all__ = ["entry", "main", "run_cli"]

# --------------------------------------------------------------------------- entry point


def run_cli(argv: list[str] | None = None) -> int:
    argv = _debug_first(list(sys.argv[1:] if argv is None else argv))
    debug = argv[:1] == ["--debug"]
    try:
        rc = main.main(args=argv, prog_name="kabuild", standalone_mode=False)
        # A verb may return an exit code that is a result, not an error (1: not reproducible).
        return int(rc) if isinstance(rc, int) else ExitCode.OK
    except KabuildError as e:
        if debug:
            traceback.print_exc()
        hint = f" ({e.hint})" if e.hint else ""
        click.echo(f"kabuild: error: {_one_line(str(e))}{_one_line(hint)}", err=True)
        return int(e.exit_code)
    except OSError as e:
        # Disk full, permissions, a vanished file: expected in the field, reported in one line.
        if debug:
            traceback.print_exc()
        click.echo(f"kabuild: error: {_one_line(str(e))}", err=True)
        return ExitCode.ENVIRONMENT
    except click.exceptions.Exit as e:
        return e.exit_code
    except click.ClickException as e:
        click.echo(f"kabuild: error: {_one_line(e.format_message())} (see `kabuild --help`)", err=True)
        return ExitCode.CONFIG
    except (KeyboardInterrupt, click.exceptions.Abort):
        click.echo("kabuild: interrupted", err=True)
        return ExitCode.INTERRUPTED
    except Exception as e:  # a bug: never let it masquerade as exit 1 ("not reproducible")
        if debug:
            traceback.print_exc()
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
    return " ".join(text.split("\n"))


def _terminated(signum: int, frame: object) -> None:
    raise KeyboardInterrupt  # SIGTERM (a service manager, `kill`) cleans up like Ctrl-C: containers removed


def entry() -> None:
    signal.signal(signal.SIGTERM, _terminated)
    sys.exit(run_cli())
