"""Command line: ``qdsearch run | resume | export | operators | serve | report | measure | describe | refit | world``.

One module per group of commands, each with its ``register`` function(s) and
``cmd_*`` functions: :mod:`~qdsearch.cli.campaign` (run, resume, serve and the
progress bar), :mod:`~qdsearch.cli.runs` (export, operators, report),
:mod:`~qdsearch.cli.measure`, :mod:`~qdsearch.cli.describe`,
:mod:`~qdsearch.cli.refit`, :mod:`~qdsearch.cli.world`;
:mod:`~qdsearch.cli.app` holds the one table of commands, the parser, :func:`main`
and the deferral of a Ctrl-C during the imports; :mod:`~qdsearch.cli.errors` the
one error-to-message mapping. The library parts of describe, refit, measure and
the world stay in their own modules.
"""

from __future__ import annotations

# app first: it starts deferring a Ctrl-C before anything heavy is imported.
from qdsearch.cli.app import COMMANDS, build_parser, main
from qdsearch.cli.app import _exit as _exit  # for qdsearch/__main__.py

# isort: split
from qdsearch.api import check_ray_address
from qdsearch.cli.campaign import OVERRIDE_OPTIONS, cmd_resume, cmd_run, cmd_serve, with_overrides
from qdsearch.cli.errors import KNOWN_ERRORS, UserError
from qdsearch.cli.errors import _describe as _describe
from qdsearch.cli.errors import _missing_field as _missing_field
from qdsearch.cli.runs import cmd_export, cmd_operators, cmd_report

__all__ = [
    "COMMANDS",
    "KNOWN_ERRORS",
    "OVERRIDE_OPTIONS",
    "UserError",
    "build_parser",
    "check_ray_address",
    "cmd_export",
    "cmd_operators",
    "cmd_report",
    "cmd_resume",
    "cmd_run",
    "cmd_serve",
    "main",
    "with_overrides",
]
