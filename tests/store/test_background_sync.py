"""The event log's periodic fsync runs on a thread of its own (qdsearch.atomic.BackgroundSync).

- the caller does not wait for the disk: an append that asks for an fsync returns
  while that fsync is still blocked;
- requests made while one runs fold into one more fsync, begun after the last request;
- an fsync's error is raised by the next request or wait, not lost;
- the store waits for it before closing the log, and ``close`` ends the thread.
"""

from __future__ import annotations

import errno
import os
import threading
from pathlib import Path
from typing import Any

import pytest

from qdsearch.atomic import BackgroundSync
from qdsearch.store import RunStore
from tests.helpers import store_cfg


class _Fsyncs:
    """Stands in for os.fsync: records each call, and can hold it until released."""

    def __init__(self) -> None:
        self.calls: list[int] = []
        self.started = threading.Event()
        self.release = threading.Event()
        self.release.set()
        self.error: OSError | None = None
        self._real = os.fsync

    def __call__(self, fd: int) -> None:
        self.calls.append(fd)
        self.started.set()
        assert self.release.wait(30)
        if self.error is not None:
            raise self.error
        self._real(fd)


@pytest.fixture
def fsyncs(monkeypatch: pytest.MonkeyPatch) -> _Fsyncs:
    f = _Fsyncs()
    monkeypatch.setattr(os, "fsync", f)
    return f


def test_an_append_does_not_wait_for_the_log_fsync(fsyncs: _Fsyncs, tmp_path: Path) -> None:
    store = RunStore.create(store_cfg(tmp_path))
    fsyncs.calls.clear()  # those of the run folder's creation
    fsyncs.started.clear()
    fsyncs.release.clear()  # every fsync blocks until the test lets it go
    for i in range(64):
        store.append({"type": "note", "i": i})  # the 64th asks for an fsync
    assert fsyncs.started.wait(10), "no fsync was asked for"
    store.append({"type": "note", "i": 64})  # returns although that fsync is still blocked
    assert len(fsyncs.calls) == 1
    fsyncs.release.set()
    store.close()  # waits for it, then syncs the rest itself
    assert len(fsyncs.calls) >= 2
    assert store._sync._thread is None
    assert (tmp_path / "r" / "events.jsonl").read_bytes().count(b"\n") == 65


def test_requests_made_during_an_fsync_fold_into_one_more(fsyncs: _Fsyncs, tmp_path: Path) -> None:
    sync = BackgroundSync()
    with open(tmp_path / "f", "wb") as f:
        fsyncs.release.clear()
        sync.request(f.fileno())
        assert fsyncs.started.wait(10)
        for _ in range(20):  # all while the first one is blocked
            f.write(b"x")
            f.flush()
            sync.request(f.fileno())
        fsyncs.release.set()
        sync.wait()
        assert len(fsyncs.calls) == 2  # the first, and one after the last request
        sync.close()
    assert sync._thread is None


def test_an_fsync_error_is_raised_by_the_next_call(fsyncs: _Fsyncs, tmp_path: Path) -> None:
    sync = BackgroundSync()
    with open(tmp_path / "f", "wb") as f:
        fsyncs.error = OSError(errno.EIO, "Input/output error")
        sync.request(f.fileno())
        with pytest.raises(OSError, match="Input/output error"):
            sync.wait()
        fsyncs.error = None
        sync.request(f.fileno())  # reported once; the next fsync goes ahead
        sync.wait()
        sync.close()
    assert len(fsyncs.calls) == 2


def test_a_failed_log_fsync_surfaces_in_the_store_and_close_still_closes(fsyncs: _Fsyncs, tmp_path: Path) -> None:
    store = RunStore.create(store_cfg(tmp_path))
    fsyncs.error = OSError(errno.EIO, "Input/output error")
    for i in range(64):
        store.append({"type": "note", "i": i})
    with pytest.raises(OSError, match="Input/output error"):
        store._sync.wait()
    store.append({"type": "note", "i": 64})  # the error was reported; appends go on
    fsyncs.error = None
    store.close()
    assert store._events is None
    events: list[Any] = list(RunStore.open(tmp_path / "r").events())
    assert len([e for e in events if e.get("type") == "note"]) == 65
