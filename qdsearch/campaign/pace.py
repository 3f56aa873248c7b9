"""When a campaign takes a snapshot: every ``runtime.snapshot_every`` children, but no
sooner than ``runtime.snapshot_min_s`` seconds after the last one ended, nor sooner
than 19 times as long as the last one took. A snapshot rewrites the whole archive,
so however fast the endpoint or large the archive, snapshots take at most about 5%
of the loop's time. ``snapshot_min_s = 0`` turns the pacing off: a snapshot at every
``snapshot_every`` children. The event log is written through on every event
whatever the pace; snapshots only shorten a resume and refresh the run folder's
tables."""

from __future__ import annotations

import time

from qdsearch.config import RuntimeConfig

__all__ = ["SnapshotPace"]

COST_FACTOR = 19.0  # wait at least this many times the last snapshot's own time


class SnapshotPace:
    """The snapshot clock of one campaign session (module doc)."""

    def __init__(self, cfg: RuntimeConfig) -> None:
        self.every, self.floor = cfg.snapshot_every, cfg.snapshot_min_s
        self.since = 0  # children recorded since the last snapshot
        self.end = time.monotonic()  # when the last snapshot ended (the session's start before any)
        self.cost = 0.0  # seconds the last snapshot took

    def due(self, added: int) -> bool:
        """Counts ``added`` recorded children; whether a snapshot is due now."""
        self.since += added
        if self.since < self.every:
            return False
        wait = max(self.floor, COST_FACTOR * self.cost) if self.floor > 0 else 0.0
        return time.monotonic() - self.end >= wait

    def taken(self, start: float) -> None:
        """A snapshot that began at ``start`` (``time.monotonic()``) has just ended."""
        self.end = time.monotonic()
        self.cost = self.end - start
        self.since = 0
