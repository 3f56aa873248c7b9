"""Atomic file writes (a reader sees the old file or the new one, never a torn one),
and fsyncs that do not hold up the caller.

Its own module (no qdsearch import) so that the run store and the checkpoints, which
import each other's parts, can both use it without an import cycle.
"""

from __future__ import annotations

import contextlib
import os
import tempfile
import threading
from pathlib import Path

__all__ = ["BackgroundSync", "atomic_write"]


def atomic_write(path: Path, data: bytes) -> None:
    """Writes ``data`` to ``path`` via a temp file in the same folder, fsync and rename."""
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        raise
    dfd = os.open(path.parent, os.O_RDONLY)
    try:
        os.fsync(dfd)
    finally:
        os.close(dfd)


class BackgroundSync:
    """fsyncs a file on a thread of its own, so that an event loop writing the file
    does not wait for the disk (an fsync of the event log took 4 to 6 ms here, the time
    of a few children at a fast endpoint).

    Requests made while one runs are folded into one more fsync after it, which covers
    every write made before the request. An fsync's error is raised by the next
    :meth:`request` or :meth:`wait`. Call :meth:`wait` before closing the file, and
    :meth:`close` when done (the thread ends; a new request starts it again).
    """

    def __init__(self) -> None:
        self._cv = threading.Condition()
        self._fd: int | None = None  # asked for, not yet begun
        self._busy = False
        self._error: OSError | None = None
        self._thread: threading.Thread | None = None
        self._closing = False

    def request(self, fd: int) -> None:
        """Asks for an fsync of ``fd`` and returns at once."""
        with self._cv:
            self._raise()
            self._fd = fd
            if self._thread is None:
                self._closing = False
                self._thread = threading.Thread(target=self._run, name="qdsearch-fsync", daemon=True)
                self._thread.start()
            self._cv.notify_all()

    def wait(self) -> None:
        """Returns once no fsync is asked for or running."""
        with self._cv:
            while self._fd is not None or self._busy:
                self._cv.wait()
            self._raise()

    def close(self) -> None:
        """Waits for the fsyncs asked for, then ends the thread."""
        try:
            self.wait()
        finally:
            with self._cv:
                thread, self._thread = self._thread, None
                self._closing = True
                self._cv.notify_all()
            if thread is not None:
                thread.join()

    def _raise(self) -> None:
        if self._error is not None:
            err, self._error = self._error, None
            raise err

    def _run(self) -> None:
        while True:
            with self._cv:
                while self._fd is None and not self._closing:
                    self._cv.wait()
                if self._fd is None:
                    return
                fd, self._fd, self._busy = self._fd, None, True
            err: OSError | None = None
            try:
                os.fsync(fd)
            except OSError as e:
                err = e
            with self._cv:
                self._busy = False
                if err is not None:
                    self._error = err
                self._cv.notify_all()
