"""The live view: ``qdsearch watch RUN`` (and ``qdsearch run ... --serve``) serves the
report page of a run folder on 127.0.0.1 while a campaign writes it.

The page is the report's own (:mod:`qdsearch.report`), marked live: its script
polls ``live.json`` every two seconds (QD-score, coverage, spend against the caps,
the latest elites, the phase: a few hundred bytes, read from the tail of the event
log and the last line of ``stats.csv``) and fetches ``data.json`` (the whole report
data, rebuilt from the log in a background thread, at most every few seconds) when
the folder has changed. Only the folder is read: the campaign is never slowed or
locked, and ``watch`` works for a campaign started by another process.

The server answers only requests addressed to 127.0.0.1 or localhost (a page on
another site cannot reach it by rebinding a name to this address) and sends a
content security policy that allows no script but the page's own.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import logging
import os
import threading
import time
from collections import deque
from collections.abc import Callable
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

__all__ = ["LiveRun", "LiveServer", "cmd_watch", "register"]

log = logging.getLogger("qdsearch.watch")

# Seconds between rebuilds of the whole report data while the folder keeps changing.
REBUILD_S = 3.0
# Seconds between redraws of the figures while the folder keeps changing.
FIGURES_S = 20.0
# Seconds without a write after which a run whose lock cannot be read counts as stopped.
QUIET_S = 30.0


def _lock_held(path: Path) -> bool | None:
    """Whether a process holds the run folder's lock (from ``/proc/locks``; the lock
    is never touched, so a ``resume`` starting now cannot be refused because of us).
    None when that cannot be told."""
    try:
        ino = os.stat(path / ".lock").st_ino
        text = Path("/proc/locks").read_text()
    except OSError:
        return None
    return any(line.split()[5].rsplit(":", 1)[-1] == str(ino) for line in text.splitlines() if len(line.split()) > 5)


class LiveRun:
    """Follows one run folder (see the module doc).

    Args:
        path: the run folder.
        extra: called for each ``live.json``; its dict is merged in (the running
            command's phase, e.g. ``{"phase": "seed phase: 12/16 seeds judged"}``).
        rebuild_s: seconds between rebuilds of the report data.
    """

    def __init__(self, path: str | Path, *, extra: Callable[[], dict[str, Any]] | None = None,
                 rebuild_s: float = REBUILD_S) -> None:  # fmt: skip
        from qdsearch.events import Counters
        from qdsearch.store import RunStore

        self.path = Path(path)
        self.store = RunStore.open(self.path, write=False)
        self.extra = extra
        self.rebuild_s = rebuild_s
        self._counters = Counters()
        self._offset = 0  # bytes of events.jsonl folded
        self._segments = 0  # closed segments (events-NNNNNN.jsonl.gz) folded
        self._latest: deque[dict[str, Any]] = deque(maxlen=8)
        self._lock = threading.Lock()
        self._data = b"{}"
        self._data_version = ""
        self._page = ""
        self._built_for = ""
        self._built_at = 0.0
        self._error = ""
        self._figures: list[dict[str, str]] = []
        self._figures_at = 0.0
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self.rebuild()

    # ------------------------------------------------------------------ the whole data
    def rebuild(self) -> None:
        """Rebuilds the report data and page from the folder (if it changed)."""
        from qdsearch.report import build_data, folder_version, render_page
        from qdsearch.report.data import Trace, report_data
        from qdsearch.store import StoreError

        version = folder_version(self.path)
        if version == self._built_for and self._page:
            return
        try:
            # the figures (matplotlib) cost most of a rebuild: while the folder keeps
            # changing they are redrawn at most every FIGURES_S, the numbers every time
            figures = not self._figures or time.monotonic() - self._figures_at >= FIGURES_S
            data, _, _ = build_data(self.store, live=True, with_figures=figures)
            if figures:
                self._figures, self._figures_at = data["figures"], time.monotonic()
            data["figures"] = self._figures
            self._error = ""
        except StoreError as e:  # no archive yet (seed phase), or a damaged folder
            data = report_data(self.store.cfg, None, Trace(), {}, live=True)
            data["version"] = version
            self._error = "" if "has no archive yet" in str(e) else str(e)  # the seed phase is not an error
        page = render_page(data, "<p class='muted'>not computed in the live view (run `qdsearch report`)</p>")
        blob = json.dumps(data, ensure_ascii=False, allow_nan=False).encode()
        with self._lock:
            self._data, self._data_version, self._page = blob, data["version"], page
            self._built_for, self._built_at = version, time.monotonic()

    def _follow(self) -> None:
        while not self._stop.wait(0.5):
            if time.monotonic() - self._built_at >= self.rebuild_s:
                try:
                    self.rebuild()
                except Exception:  # the live view keeps serving its last page
                    log.exception("live view: could not rebuild the report data")

    def start(self) -> LiveRun:
        self._thread = threading.Thread(target=self._follow, name="qdsearch-live", daemon=True)
        self._thread.start()
        return self

    def close(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=10)

    def page(self) -> str:
        with self._lock:
            return self._page

    def data(self) -> bytes:
        with self._lock:
            return self._data

    # ------------------------------------------------------------------ the small, frequent part
    def _tail(self) -> None:
        """Folds the events appended since the last call (whole lines only).

        A long log is moved, at a snapshot, into a closed segment
        (``events-NNNNNN.jsonl.gz``, :mod:`qdsearch.checkpoint`) and ``events.jsonl``
        starts again: the first segment closed since the last call is the file this
        view was reading, so its lines past the bytes already folded are folded, then
        any later segment whole, and ``events.jsonl`` from its start. A watcher started
        on a folder with closed segments folds them first."""
        from qdsearch.checkpoint import closed_segments

        segments = closed_segments(self.path)
        for i, seg in enumerate(segments[self._segments :]):
            self._fold_segment(seg, self._offset if i == 0 else 0)
        if len(segments) > self._segments:
            self._segments, self._offset = len(segments), 0
        p = self.path / "events.jsonl"
        try:
            size = p.stat().st_size
            if size < self._offset:  # the log was cut (a torn line repaired): read it again
                from qdsearch.events import Counters

                self._counters, self._offset, self._segments = Counters(), 0, 0
                self._latest.clear()
                for seg in segments:
                    self._fold_segment(seg, 0)
                self._segments = len(segments)
            with open(p, "rb") as f:
                f.seek(self._offset)
                chunk = f.read(max(0, size - self._offset))
        except FileNotFoundError:
            return
        end = chunk.rfind(b"\n") + 1
        self._offset += end
        for line in chunk[:end].splitlines():
            self._fold_line(line)

    def _fold_segment(self, path: Path, skip: int) -> None:
        """Folds the lines of a closed segment after its first ``skip`` bytes (a segment
        holds the bytes ``events.jsonl`` held, compressed or not)."""
        import gzip

        opener: Callable[..., Any] = gzip.open if path.suffix == ".gz" else open
        try:
            with opener(path, "rb") as f:
                seen = 0
                for line in f:
                    seen += len(line)
                    if seen > skip and line.endswith(b"\n"):
                        self._fold_line(line)
        except (OSError, EOFError):  # a segment being written, or damaged: the report's replay names it
            log.debug("live view: could not read the closed segment %s", path, exc_info=True)

    def _fold_line(self, line: bytes) -> None:
        try:
            ev = json.loads(line)
            self._counters.update(ev)
        except (ValueError, KeyError, TypeError, AttributeError):
            return  # a line the report's replay will name; the live figures skip it
        if ev.get("type") in ("seed", "child") and ev.get("add_status") in ("new", "improved"):
            self._latest.appendleft({k: ev.get(k) for k in ("id", "quality", "operator", "add_status", "time")}
                                    | {"instruction": str(ev.get("instruction", ""))[:300]})  # fmt: skip

    def _last_stats(self) -> dict[str, Any]:
        import csv

        p = self.path / "stats.csv"
        try:
            with open(p, "rb") as f:
                head = f.readline().decode()
                f.seek(0, os.SEEK_END)
                f.seek(max(0, f.tell() - 4096))
                lines = [ln for ln in f.read().decode(errors="replace").splitlines() if ln.strip()]
        except OSError:
            return {}
        if len(lines) < 1 or lines[-1] == head.strip():
            return {}
        row = next(csv.DictReader([head, lines[-1]]), {})
        out: dict[str, Any] = {}
        for k, v in row.items():
            with contextlib.suppress(TypeError, ValueError):
                out[k] = float(v)
        return out

    def live(self) -> dict[str, Any]:
        """The small, frequent update (``live.json``)."""
        with self._lock:
            self._tail()
            c = self._counters
            latest = list(self._latest)
            data_version = self._data_version
        st = self._last_stats()
        state = self.store.read_state() if (self.path / "state.json").is_file() else {}
        held = _lock_held(self.path)
        try:
            quiet = time.time() - (self.path / "events.jsonl").stat().st_mtime
        except OSError:
            quiet = 0.0
        running = held if held is not None else quiet < QUIET_S
        if not c.seeds:
            phase = "seed phase: answering and judging the seeds" if running else "not started"
        elif running:
            phase = "running"
        else:
            phase = "stopped: " + (state.get("stop_reason") or "the campaign is not running")
        from qdsearch.report.data import prices_set

        b = self.store.cfg.budget
        wall = float(st.get("wall_s", state.get("wall_s", 0.0)) or 0.0)
        caps = [
            {"name": "children", "used": c.children + c.lost, "cap": b.max_children},
            {"name": "LLM calls", "used": c.calls + c.lost_calls, "cap": b.max_calls},
            {"name": "tokens", "used": c.tokens + c.lost_tokens, "cap": b.max_tokens},
            {"name": "cost (USD)", "used": c.cost_usd + c.lost_cost_usd, "cap": b.max_cost_usd},
            {"name": "wall time (s)", "used": wall, "cap": b.max_wall_s},
        ]
        cfg = self.store.cfg
        out: dict[str, Any] = {
            "running": bool(running),
            "phase": phase,
            "updated_unix": time.time() - quiet,
            "data_version": data_version,
            "error": self._error,
            "prices_set": prices_set(cfg),
            "summary": {
                "qd_score": st.get("qd_score", 0.0),
                "coverage": st.get("coverage", 0.0),
                "elites": int(st.get("elites", 0)),
                "best_quality": st.get("best_quality", 0.0),
                "seeds": c.seeds,
                "children": c.children,
                "accepted": c.accepted,
                "calls": c.calls,
                "tokens": c.tokens,
                "cost_usd": c.cost_usd,
                "in_flight": int(st.get("in_flight", 0)),
                "wall_s": wall,
            },
            "caps": caps,
            "latest": latest,
        }
        if self.extra is not None:
            with contextlib.suppress(Exception):  # the command's phase is a nicety
                out.update(self.extra())
        return out


class _Handler(BaseHTTPRequestHandler):
    server: _Server

    def log_message(self, format: str, *args: Any) -> None:
        log.debug("watch: " + format, *args)

    def _send(self, status: int, body: bytes, kind: str) -> None:
        from qdsearch.report.html import content_security_policy

        self.send_response(status)
        self.send_header("Content-Type", kind)
        self.send_header("Content-Length", str(len(body)))
        self.send_header("Cache-Control", "no-store")
        self.send_header("X-Content-Type-Options", "nosniff")
        self.send_header("Content-Security-Policy", content_security_policy() + "; frame-ancestors 'none'")
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(body)

    def do_GET(self) -> None:
        host = (self.headers.get("Host") or "").rsplit(":", 1)[0].strip("[]")
        if host not in ("127.0.0.1", "localhost"):
            self._send(403, b"forbidden: the live view answers only 127.0.0.1 and localhost\n", "text/plain")
            return
        live = self.server.live
        route = self.path.split("?", 1)[0]
        try:
            if route in ("/", "/index.html"):
                self._send(200, live.page().encode(), "text/html; charset=utf-8")
            elif route == "/live.json":
                body = json.dumps(live.live(), ensure_ascii=False, allow_nan=False, default=str).encode()
                self._send(200, body, "application/json")
            elif route == "/data.json":
                self._send(200, live.data(), "application/json")
            else:
                self._send(404, b"not found\n", "text/plain")
        except (BrokenPipeError, ConnectionResetError):
            pass

    do_HEAD = do_GET


class _Server(ThreadingHTTPServer):
    daemon_threads = True
    allow_reuse_address = True

    def __init__(self, port: int, live: LiveRun) -> None:
        self.live = live
        super().__init__(("127.0.0.1", port), _Handler)


class LiveServer:
    """The live view of one run folder, served from a thread.

    Raises:
        StoreError: not a run folder.
        OSError: the port cannot be bound.
    """

    def __init__(self, path: str | Path, port: int = 0, *, extra: Callable[[], dict[str, Any]] | None = None,
                 rebuild_s: float = REBUILD_S) -> None:  # fmt: skip
        self.live = LiveRun(path, extra=extra, rebuild_s=rebuild_s).start()
        try:
            self._server = _Server(port, self.live)
        except OSError:
            self.live.close()
            raise
        self.port = int(self._server.server_address[1])
        self.url = f"http://127.0.0.1:{self.port}/"
        self._thread = threading.Thread(target=self._server.serve_forever, kwargs={"poll_interval": 0.25},
                                        name="qdsearch-watch", daemon=True)  # fmt: skip
        self._thread.start()

    def close(self) -> None:
        self._server.shutdown()
        self._server.server_close()
        self._thread.join(timeout=10)
        self.live.close()

    def __enter__(self) -> LiveServer:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def cmd_watch(args: argparse.Namespace) -> int:
    from qdsearch.cli.progress import setup_logging

    setup_logging(args.verbose - args.quiet)
    with LiveServer(args.run_dir, args.port or 0) as srv:
        print(f"live view of {args.run_dir}: {srv.url}  (Ctrl-C to stop)", flush=True)
        with contextlib.suppress(KeyboardInterrupt):
            while True:
                time.sleep(0.5)
    return 0


def register(sub: Any) -> None:
    w = sub.add_parser("watch", help="serve a run's report live on 127.0.0.1 while its campaign runs")
    w.add_argument("run_dir")
    w.add_argument("--port", type=int, default=0, help="port on 127.0.0.1 (default: a free one)")
    w.add_argument("-v", "--verbose", action="count", default=0, help="more diagnostics (DEBUG)")
    w.add_argument("-q", "--quiet", action="count", default=0, help="only warnings and errors")
    w.set_defaults(func=cmd_watch)
