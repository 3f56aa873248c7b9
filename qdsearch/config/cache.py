"""The ``[cache]`` section: the request cache (:mod:`qdsearch.llm.cache`)."""

from __future__ import annotations

import math
from dataclasses import dataclass

from qdsearch.config.checks import _check, _show


@dataclass(frozen=True)
class CacheConfig:
    """Where replies are cached, and whether.

    Attributes:
        enabled: cache requests (``cache = false`` at the top of a file is the same as
            ``enabled = false``; ``--no-cache`` on ``run``, ``resume`` and ``measure``).
        dir: the cache folder; empty: ``$QDSEARCH_CACHE_DIR``, else
            ``$XDG_CACHE_HOME/qdsearch``, else ``~/.cache/qdsearch``. One SQLite file
            (``requests.sqlite3``) per folder, shared by every process and Ray actor
            of the machine.
        shared: ``dir`` is on a file system several machines use (a cluster's shared
            folder): the rollback journal instead of WAL, which needs shared memory
            on one host. The file system must honour POSIX locks (NFSv4, Lustre, GPFS).
        timeout_s: how long a call waits for another process's lock before the
            cache gives up (with one warning) and the run goes on uncached.
    """

    enabled: bool = True
    dir: str = ""
    shared: bool = False
    timeout_s: float = 5.0

    def validate(self, key: str) -> None:
        _check("\x00" not in self.dir, f"{key}.dir", "must not contain a NUL character")
        _check(self.dir == self.dir.strip(), f"{key}.dir", f"must not start or end with blanks, got {_show(self.dir)}")
        _check(not self.shared or bool(self.dir), f"{key}.shared", "needs cache.dir: the shared folder to use")
        _check(
            0 < self.timeout_s < math.inf, f"{key}.timeout_s", f"must be > 0 and finite, got {_show(self.timeout_s)}"
        )
