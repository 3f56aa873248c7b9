"""The one error-to-message mapping of the command line: which errors the user can
act on (a one-line message and exit code 2) and which are bugs (a traceback).

Imports nothing heavy: :func:`_describe` runs after a Ctrl-C inside an import.
"""

from __future__ import annotations

import errno
import json
import sys
from collections.abc import Iterator, Sequence
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


def _log_records(run_dir: Path) -> Iterator[tuple[Path, int, dict[str, Any]]]:
    """``(file, line number, record)`` for every JSON object line of the run's log: its
    closed segments (gzip or plain), then ``events.jsonl``, read in a stream; lines that
    do not parse are passed over, a file that cannot be read ends its part."""
    import gzip

    from qdsearch.checkpoint import closed_segments

    for path in [*closed_segments(run_dir), run_dir / "events.jsonl"]:
        opener: Any = gzip.open if path.suffix == ".gz" else open
        try:
            with opener(path, "rb") as f:
                for no, line in enumerate(f, 1):
                    try:
                        ev = json.loads(line) if line.strip() else None
                    except ValueError:
                        continue
                    if isinstance(ev, dict):
                        yield path, no, ev
        except (OSError, EOFError):  # missing, unreadable, or a damaged gzip stream
            continue


def _missing_field(run_dir: Path, key: str) -> str | None:
    """Where the event log lacks ``key``: ``FILE:LINE: ...`` for the first record
    without a field that the other records of its kind carry (top level, or in the
    objects of one of its lists, such as ``calls``); None if no record lacks it. The
    log's closed segments are read too, in log order; two streamed passes, so memory
    does not grow with the log."""

    def kinds(ev: dict[str, Any]) -> tuple[Any, Any]:
        return (ev.get("type"), ev.get("status")), ev.get("type")

    by_status: set[Any] = set()  # (type, status) of the records that carry key
    by_type: set[Any] = set()
    lists: set[str] = set()  # list fields whose objects carry key
    for _, _, ev in _log_records(run_dir):
        if key in ev:
            a, b = kinds(ev)
            by_status.add(a)
            by_type.add(b)
        for name, v in ev.items():
            if isinstance(v, list) and any(isinstance(x, dict) and key in x for x in v):
                lists.add(name)
    if not (by_status or lists):
        return None
    # a top-level field that other records of the same type and status (else type) carry
    first_by_type: str | None = None
    first_in_list: str | None = None
    for path, no, ev in _log_records(run_dir):
        if key not in ev:
            a, b = kinds(ev)
            if a in by_status:
                return f"{path}:{no}: event record has no field {key!r}"
            if first_by_type is None and b in by_type:
                first_by_type = f"{path}:{no}: event record has no field {key!r}"
        if first_in_list is None:
            for name in sorted(lists):
                items = ev.get(name)
                for i, item in enumerate(items if isinstance(items, list) else []):
                    if isinstance(item, dict) and key not in item:
                        first_in_list = f"{path}:{no}: event record has no field '{name}[{i}].{key}'"
                        break
                if first_in_list is not None:
                    break
    return first_by_type or first_in_list
