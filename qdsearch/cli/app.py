"""The command line's entry point: the parser built from one table of commands
(:data:`COMMANDS`), :func:`main` (errors become one-line messages and exit code 2)
and :func:`_exit`; a Ctrl-C while the command line imports is deferred into main().

The CLI is the edge where configs are read, the endpoint is started, progress is
drawn and errors become messages and exit codes; each command is a module of this
package, campaigns themselves are built by :mod:`qdsearch.api`.
"""

from __future__ import annotations

import signal
import threading


def _note_sigint(signum: int, frame: object) -> None:
    _SIGINT_WHILE_IMPORTING.append(signum)


# A Ctrl-C while the command line imports its dependencies (up to a second or more on
# a loaded machine) is noted and raised inside main(), where it becomes the one-line
# message and exit code 2 instead of a traceback and death by SIGINT. This module is
# the first the package imports, so the deferral covers every command module.
_SIGINT_WHILE_IMPORTING: list[int] = []
_DEFERRING_SIGINT = (
    threading.current_thread() is threading.main_thread()
    and signal.getsignal(signal.SIGINT) is signal.default_int_handler
)
if _DEFERRING_SIGINT:
    signal.signal(signal.SIGINT, _note_sigint)

import argparse  # noqa: E402
import contextlib  # noqa: E402
import sys  # noqa: E402
from collections.abc import Callable, Sequence  # noqa: E402
from pathlib import Path  # noqa: E402
from typing import Any  # noqa: E402

from qdsearch.cli import cache, campaign, describe, measure, refit, runs, watch, world  # noqa: E402
from qdsearch.cli.errors import _describe, _missing_field  # noqa: E402


def _started_as_command() -> bool:
    """Whether this process is the command line (the ``qdsearch`` script, ``python -m
    qdsearch`` or ``python -m qdsearch.cli``) rather than a program importing it."""
    argv0 = Path(sys.argv[0])
    if argv0.name == "qdsearch" or argv0.parts[-2:] == ("qdsearch", "__main__.py"):
        return True
    if argv0.parts[-3:] == ("qdsearch", "cli", "__main__.py"):
        return True
    # `python -m qdsearch.cli` imports this package while it looks for the package's
    # __main__; sys.argv[0] is "-m" until then.
    orig = list(getattr(sys, "orig_argv", ()))
    return sys.argv[0] == "-m" and "-m" in orig and orig[orig.index("-m") + 1 :][:1] == ["qdsearch.cli"]


if _DEFERRING_SIGINT:
    signal.signal(signal.SIGINT, signal.default_int_handler)
    if _SIGINT_WHILE_IMPORTING and not _started_as_command():
        raise KeyboardInterrupt  # imported as a library: the interrupt is the caller's

__all__ = ["COMMANDS", "build_parser", "main"]

# Every subcommand, in the order of ``--help``: each adds its parser (with
# ``func(args) -> int``) to the subparsers; command modules keep their heavy imports
# inside their functions, so ``--help`` stays fast.
COMMANDS: tuple[Callable[[Any], Any], ...] = (
    campaign.register_run,
    campaign.register_resume,
    runs.register_export,
    runs.register_operators,
    campaign.register_serve,
    runs.register_report,
    watch.register,
    measure.register,
    describe.register,
    refit.register,
    world.register,
    cache.register,
)


def build_parser() -> argparse.ArgumentParser:
    from qdsearch import __version__

    p = argparse.ArgumentParser(prog="qdsearch", description="Quality-diversity search for prompts and synthetic data.")
    p.add_argument("--version", action="version", version=f"qdsearch {__version__}")
    sub = p.add_subparsers(dest="command", required=True)
    for register in COMMANDS:
        register(sub)
    return p


# Set when main() turned a KeyboardInterrupt into its message and exit status.
_INTERRUPT_HANDLED: list[bool] = []


def main(argv: Sequence[str] | None = None) -> int:
    try:
        if _SIGINT_WHILE_IMPORTING:
            _SIGINT_WHILE_IMPORTING.clear()
            raise KeyboardInterrupt
        args = build_parser().parse_args(argv)
        code: int = args.func(args)
        return code
    except KeyError as e:
        # A field missing from a hand-edited or damaged event log, in any command
        # that replays one (resume, export, operators, report).
        run_dir = getattr(locals().get("args"), "run_dir", None)
        where = _missing_field(Path(run_dir), str(e.args[0])) if run_dir and e.args else None
        if where is None:
            raise
        print(f"qdsearch: error: {where}", file=sys.stderr)
        return 2
    except BaseException as e:
        msg = _describe(e)
        if msg is None or isinstance(e, SystemExit):
            raise
        print(f"qdsearch: error: {msg}", file=sys.stderr)
        if isinstance(e, KeyboardInterrupt):
            _INTERRUPT_HANDLED.append(True)
        return 2


def _exit(status: int) -> None:
    """Exit with ``status``. After a handled Ctrl-C, CPython started with ``-m`` would
    replace the status by death from SIGINT when the interrupt had landed inside code
    run by ``exec`` (dataclasses and namedtuples build their methods that way, so a
    Ctrl-C during an import often does): its "unhandled KeyboardInterrupt" flag stays
    set although the interrupt was caught. So exit-time handlers run here and the
    process ends with the status main() gave."""
    if not _INTERRUPT_HANDLED:
        sys.exit(status)
    import atexit
    import os

    atexit._run_exitfuncs()
    for stream in (sys.stdout, sys.stderr):
        with contextlib.suppress(Exception):
            stream.flush()
    os._exit(status)
