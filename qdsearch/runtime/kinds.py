"""The one table of runtimes: ``runtime.kind`` -> the module whose ``make_runtime``
makes that runtime (imported only when a campaign uses it). Imports nothing, so the
config can check ``runtime.kind`` against it. A new runtime is one module plus one
line here."""

from __future__ import annotations

__all__ = ["RUNTIMES"]

RUNTIMES: dict[str, str] = {
    "inprocess": "qdsearch.runtime.inprocess",
    "ray": "qdsearch.runtime.ray",
    "process": "qdsearch.runtime.procs",
}
