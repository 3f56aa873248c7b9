"""The request cache's one SQLite file: replies by key, safe for many processes.

One database file per cache folder (:data:`FILE_NAME`), opened lazily by each process
that uses it (every Ray actor, every CLI process). In WAL mode readers never wait for
a writer and a writer holds the lock for one small transaction, so several processes
and actors on one machine share it; ``synchronous = NORMAL`` keeps a committed reply
through a ``kill -9`` of the process (only a power loss can drop the last few). On a
folder shared between machines (``[cache] shared = true``) WAL cannot work (its index
lives in shared memory), so the rollback journal is used instead, which needs a
file system with working POSIX locks (NFSv4, Lustre, GPFS; not every NFSv3 mount).
A folder on a network file system without ``shared`` (a cluster's NFS home holding
``~/.cache``) gets one file per host instead (``requests.HOST.sqlite3``), so no WAL
file is ever used from two machines.

The cache is an optimisation, never a point of failure: any SQLite or OS error (a
corrupt file, a lock held past the busy timeout, a read-only or full disk) gives one
:class:`CacheWarning` and turns the cache off for the rest of the process; calls then
go to the endpoint as if there were no cache. The file is never deleted or rewritten
on an error (``qdsearch cache clear`` does that when asked).
"""

from __future__ import annotations

import contextlib
import os
import re
import socket
import sqlite3
import threading
import time
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Any

__all__ = ["FILE_NAME", "NETWORK_FS", "SCHEMA_VERSION", "CacheWarning", "CachedReply", "RequestCache", "network_fs"]

FILE_NAME = "requests.sqlite3"
SCHEMA_VERSION = 1

_SCHEMA = """
CREATE TABLE IF NOT EXISTS meta (name TEXT PRIMARY KEY, value TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS replies (
    key TEXT PRIMARY KEY,
    sampled INTEGER NOT NULL,
    place TEXT NOT NULL,
    model TEXT NOT NULL,
    role TEXT NOT NULL,
    text TEXT NOT NULL,
    finish_reason TEXT,
    prompt_tokens INTEGER NOT NULL,
    completion_tokens INTEGER NOT NULL,
    cost_usd REAL NOT NULL,
    created REAL NOT NULL
) WITHOUT ROWID;
"""


# File systems that several machines may mount at once (a WAL index cannot be shared).
NETWORK_FS = frozenset(
    {"nfs", "nfs4", "cifs", "smb3", "smbfs", "lustre", "gpfs", "beegfs", "glusterfs", "ceph", "9p", "afs", "panfs"}
)
_MOUNTS = "/proc/mounts"


def network_fs(path: Path) -> str:
    """The type of the file system holding ``path`` if several machines may share it
    (:data:`NETWORK_FS`, ``nfs*`` and FUSE network mounts), else ``""`` (also where
    the mount table cannot be read: not Linux)."""
    try:
        text = Path(_MOUNTS).read_text(errors="replace")
    except OSError:
        return ""
    where = str(path.resolve())
    best, fstype = "", ""
    for line in text.splitlines():
        parts = line.split()
        if len(parts) < 3:
            continue
        mount = parts[1].replace("\\040", " ")
        inside = where == mount or where.startswith(mount.rstrip("/") + "/")
        if inside and len(mount) >= len(best):
            best, fstype = mount, parts[2]
    kind = fstype.removeprefix("fuse.")
    return fstype if kind in NETWORK_FS or kind.startswith("nfs") or fstype == "fuse.sshfs" else ""


class CacheWarning(UserWarning):
    """The request cache cannot be used (the campaign goes on uncached)."""


@dataclass(frozen=True)
class CachedReply:
    """One stored reply: what the endpoint answered, and what it cost then."""

    text: str
    finish_reason: str | None
    prompt_tokens: int
    completion_tokens: int
    cost_usd: float = 0.0


class RequestCache:
    """Replies by request key, in ``folder/requests.sqlite3``.

    Args:
        folder: the cache folder (made if missing).
        shared: the folder is shared between machines: rollback journal, not WAL.
        timeout_s: how long a call waits for another process's lock before the cache
            gives up (and turns off, with a warning).

    Every method is safe to call from several threads; none raises for a database or
    disk problem (see the module docstring). ``error`` says why the cache is off.
    """

    def __init__(self, folder: str | Path, *, shared: bool = False, timeout_s: float = 5.0) -> None:
        self.folder = Path(folder).expanduser()
        self.path = self.folder / FILE_NAME
        if not shared and network_fs(self.folder):
            # WAL on a folder other machines may use too (an NFS home on a cluster): one
            # file per host, so no two machines ever share a WAL index
            host = re.sub(r"[^A-Za-z0-9._-]", "_", socket.gethostname()) or "host"
            self.path = self.folder / f"{Path(FILE_NAME).stem}.{host}{Path(FILE_NAME).suffix}"
        self.shared = shared
        self.timeout_s = float(timeout_s)
        self.error = ""
        self._exc: type[BaseException] | None = None  # what turned the cache off
        self._con: sqlite3.Connection | None = None
        self._pid = 0
        self._lock = threading.Lock()

    def __repr__(self) -> str:
        state = f"off: {self.error}" if self.error else "on"
        return f"RequestCache({str(self.path)!r}, {state})"

    @property
    def enabled(self) -> bool:
        return not self.error

    # ------------------------------------------------------------------ connection
    def _connect(self) -> sqlite3.Connection:
        if self._con is not None and self._pid == os.getpid():
            return self._con
        self._con = None  # a connection must not cross a fork: open our own
        self.folder.mkdir(parents=True, exist_ok=True)
        con = sqlite3.connect(self.path, timeout=self.timeout_s, isolation_level=None, check_same_thread=False)
        try:
            con.execute(f"PRAGMA busy_timeout = {int(self.timeout_s * 1000)}")
            mode = "DELETE" if self.shared else "WAL"
            got = str(con.execute(f"PRAGMA journal_mode = {mode}").fetchone()[0]).upper()
            if got != mode:
                raise sqlite3.OperationalError(f"cannot set journal_mode {mode} (got {got})")
            con.execute("PRAGMA synchronous = NORMAL")
            con.executescript(_SCHEMA)
            row = con.execute("SELECT value FROM meta WHERE name = 'schema'").fetchone()
            if row is None:
                con.execute("INSERT OR IGNORE INTO meta VALUES ('schema', ?)", (str(SCHEMA_VERSION),))
            elif row[0] != str(SCHEMA_VERSION):
                raise sqlite3.DatabaseError(f"schema version {row[0]}, this qdsearch reads {SCHEMA_VERSION}")
        except BaseException:
            con.close()
            raise
        self._con, self._pid = con, os.getpid()
        return con

    def _fail(self, e: BaseException) -> None:
        """Turns the cache off for this process, with one warning naming the file."""
        if self.error:
            return
        self.error = f"{type(e).__name__}: {e}"
        self._exc = type(e)
        warnings.warn(
            f"request cache {self.path} cannot be used ({self.error}); going on without it "
            "(nothing is lost: calls go to the endpoint). `qdsearch cache clear` removes a broken file; "
            "--no-cache or [cache] enabled = false silences this",
            CacheWarning,
            stacklevel=3,
        )
        if self._con is not None:
            with contextlib.suppress(sqlite3.Error):
                self._con.close()
            self._con = None

    def _run(self, sql: str, args: tuple[Any, ...] = ()) -> list[tuple[Any, ...]] | None:
        """Runs one statement (its own transaction); None when the cache is or goes off."""
        if self.error:
            return None
        with self._lock:
            try:
                return self._connect().execute(sql, args).fetchall()
            except (sqlite3.Error, OSError) as e:
                self._fail(e)
                return None

    # ------------------------------------------------------------------ entries
    def get(self, key: str) -> CachedReply | None:
        """The reply stored under ``key``, or None (a miss, or the cache is off)."""
        rows = self._run(
            "SELECT text, finish_reason, prompt_tokens, completion_tokens, cost_usd FROM replies WHERE key = ?",
            (key,),
        )
        if not rows:
            return None
        text, finish, p_in, p_out, cost = rows[0]
        if not isinstance(text, str):  # a row written by something else: not ours to trust
            return None
        return CachedReply(text, finish if isinstance(finish, str) else None, int(p_in), int(p_out), float(cost))

    def put(
        self, key: str, reply: CachedReply, *, model: str, role: str, place: str = "", sampled: bool = False
    ) -> bool:
        """Stores ``reply`` under ``key`` (replacing what was there); False if not stored.

        ``place`` (where it was asked) and ``sampled`` (keyed by place) are for
        :meth:`stats` and :meth:`count` only."""
        rows = self._run(
            "INSERT OR REPLACE INTO replies VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
            (
                key,
                int(sampled),
                place,
                model,
                role,
                reply.text,
                reply.finish_reason,
                int(reply.prompt_tokens),
                int(reply.completion_tokens),
                float(reply.cost_usd),
                time.time(),
            ),
        )
        return rows is not None

    def forget(self, key: str) -> None:
        """Removes the entry under ``key`` (a reply its caller finds unusable for good)."""
        self._run("DELETE FROM replies WHERE key = ?", (key,))

    # ------------------------------------------------------------------ the whole file
    def stats(self) -> dict[str, Any]:
        """Entries, stored tokens and cost, by role and model; the file's size.

        ``error`` is set (and the counts empty) when the file cannot be read.
        """
        out: dict[str, Any] = {"path": str(self.path), "exists": self.path.is_file(), "shared": self.shared}
        out["bytes"] = sum(p.stat().st_size for p in self._files() if p.is_file())
        if not out["exists"]:
            out |= {"entries": 0, "sampled": 0, "prompt_tokens": 0, "completion_tokens": 0, "cost_usd": 0.0}
            out |= {"roles": {}, "models": {}, "error": self.error}
            return out
        total = self._run(
            "SELECT COUNT(*), COALESCE(SUM(sampled), 0), COALESCE(SUM(prompt_tokens), 0), "
            "COALESCE(SUM(completion_tokens), 0), COALESCE(SUM(cost_usd), 0.0) FROM replies"
        )
        roles = self._run("SELECT role, COUNT(*) FROM replies GROUP BY role ORDER BY COUNT(*) DESC")
        models = self._run("SELECT model, COUNT(*) FROM replies GROUP BY model ORDER BY COUNT(*) DESC")
        if total is None or roles is None or models is None:
            return out | {"entries": 0, "roles": {}, "models": {}, "error": self.error}
        n, sampled, p_in, p_out, cost = total[0]
        return out | {
            "entries": int(n),
            "sampled": int(sampled),
            "prompt_tokens": int(p_in),
            "completion_tokens": int(p_out),
            "cost_usd": float(cost),
            "roles": {str(r): int(c) for r, c in roles},
            "models": {str(m): int(c) for m, c in models},
            "error": "",
        }

    def count(self, place_prefix: str = "") -> int:
        """Entries whose place starts with ``place_prefix`` (``"3/c0000012/"``: the replies
        first asked for one child of the campaign seeded 3); every entry for ``""``."""
        if place_prefix:
            like = place_prefix.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_") + "%"
            rows = self._run("SELECT COUNT(*) FROM replies WHERE place LIKE ? ESCAPE '\\'", (like,))
        else:
            rows = self._run("SELECT COUNT(*) FROM replies")
        return int(rows[0][0]) if rows else 0

    def clear(self, older_than_s: float | None = None) -> int:
        """Removes every entry (or those stored more than ``older_than_s`` seconds ago);
        returns how many. A file that is not a readable cache (corrupt, another
        schema) is deleted with its journal files.

        Raises:
            OSError: the file is locked, read-only, or a broken file could not be
                deleted (a healthy file in use is never deleted).
        """
        self.close()
        if not self.path.exists():
            return 0
        probe = RequestCache(self.folder, shared=self.shared, timeout_s=self.timeout_s)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", CacheWarning)
            cutoff = float("inf") if older_than_s is None else time.time() - older_than_s
            rows = probe._run("SELECT COUNT(*) FROM replies WHERE created < ?", (cutoff,))
            ok = rows is not None and probe._run("DELETE FROM replies WHERE created < ?", (cutoff,)) is not None
            if ok:
                probe._run("VACUUM")
        probe.close()
        if ok and rows:
            return int(rows[0][0])
        if probe._exc is not sqlite3.DatabaseError or older_than_s is not None:  # locked, read-only, I/O
            raise OSError(f"cannot clear the request cache {self.path}: {probe.error}")
        for p in self._files():
            p.unlink(missing_ok=True)
        return 0

    def _files(self) -> list[Path]:
        return [self.path, *(self.path.with_name(self.path.name + s) for s in ("-wal", "-shm", "-journal"))]

    def close(self) -> None:
        with self._lock:
            if self._con is not None:
                with contextlib.suppress(sqlite3.Error):
                    self._con.close()
                self._con = None
