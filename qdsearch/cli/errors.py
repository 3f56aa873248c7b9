"""The one error-to-message mapping of the command line: which errors the user can
act on (a one-line message and exit code 2) and which are bugs (a traceback).

Imports nothing heavy: :func:`_describe` runs after a Ctrl-C inside an import.
"""

from __future__ import annotations

import errno
import json
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from qdsearch.api import UserError
from qdsearch.config import ConfigError

__all__ = ["KNOWN_ERRORS", "UserError", "_describe", "_missing_field", "_one_line"]


def _one_line(text: str) -> str:
    return " ".join(text.split())


# Errors of other modules that carry a message for the user (module, class name).
KNOWN_ERRORS: tuple[tuple[str, str], ...] = (
    ("qdsearch.campaign", "CampaignError"),
    ("qdsearch.llm.client", "LLMError"),
    ("qdsearch.runtime.cluster", "ClusterError"),
    ("qdsearch.seeds", "SeedError"),
    ("qdsearch.store", "StoreError"),
)


def _loaded(names: Sequence[tuple[str, str]]) -> tuple[type[BaseException], ...]:
    """The classes among ``names`` whose modules are imported (an error of a module
    never imported cannot have been raised)."""
    return tuple(getattr(sys.modules[m], c) for m, c in names if m in sys.modules and hasattr(sys.modules[m], c))


def _describe(e: BaseException) -> str | None:
    """The one-line message for an error the user can act on; None for anything else
    (a bug, which keeps its traceback). Imports nothing: after a Ctrl-C inside an
    import, importing a half-initialised extension module again can crash."""
    if isinstance(e, KeyboardInterrupt):
        return "interrupted (Ctrl-C)"
    if isinstance(e, MemoryError):
        return "out of memory" + (f" ({_one_line(str(e))})" if str(e) else "")
    if isinstance(e, OSError) and not isinstance(e, FileNotFoundError) and e.errno is not None:
        where = f"{e.filename}: " if e.filename else ""
        hint = " (disk full?)" if e.errno in (errno.ENOSPC, errno.EDQUOT, errno.EFBIG) else ""
        return _one_line(f"{where}{e.strerror or e}{hint}")
    if isinstance(e, (ConfigError, UserError, OSError, ValueError, *_loaded(KNOWN_ERRORS))):
        return _one_line(str(e)) or type(e).__name__
    return None


def _missing_field(run_dir: Path, key: str) -> str | None:
    """Where the event log lacks ``key``: ``events.jsonl:LINE: ...`` for the first
    record without a field that the other records of its kind carry (top level, or in
    the objects of one of its lists, such as ``calls``); None if no record lacks it."""
    path = run_dir / "events.jsonl"
    try:
        lines = path.read_bytes().split(b"\n")
    except OSError:
        return None
    events: list[tuple[int, dict[str, Any]]] = []
    for no, line in enumerate(lines, 1):
        try:
            ev = json.loads(line) if line.strip() else None
        except ValueError:
            continue
        if isinstance(ev, dict):
            events.append((no, ev))

    # a top-level field that other records of the same type and status (else type) carry
    for kind in (lambda ev: (ev.get("type"), ev.get("status")), lambda ev: ev.get("type")):
        carriers = {kind(ev) for _, ev in events if key in ev}
        for no, ev in events:
            if key not in ev and kind(ev) in carriers:
                return f"{path}:{no}: event record has no field {key!r}"
    # a field of the objects in a list (such as each call of ``calls``)
    lists = {
        name
        for _, ev in events
        for name, v in ev.items()
        if isinstance(v, list) and any(isinstance(x, dict) and key in x for x in v)
    }
    for no, ev in events:
        for name in sorted(lists):
            items = ev.get(name)
            for i, item in enumerate(items if isinstance(items, list) else []):
                if isinstance(item, dict) and key not in item:
                    return f"{path}:{no}: event record has no field '{name}[{i}].{key}'"
    return None
