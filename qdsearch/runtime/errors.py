"""Errors of the runtimes (a module of its own, so runtimes need not import the package)."""

from __future__ import annotations

__all__ = ["JobLost"]


class JobLost(RuntimeError):
    """A job the runtime could not run to its end (its worker process died on every
    try). The child is counted as lost, never as a reject: its calls may have been
    made but their outcome is unknown."""
