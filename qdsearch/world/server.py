"""The world's OpenAI-compatible HTTP server on 127.0.0.1 (aiohttp).

Endpoints: ``POST /v1/chat/completions``, ``POST /v1/embeddings``, ``GET /v1/models``.
:class:`WorldServer` runs in a daemon thread with its own event loop (tests,
experiments: usable by URL from any process) or in the foreground
(:func:`serve_forever`, what ``python -m qdsearch.world`` runs).

The server holds only counters: how many operator requests it served (the payoff
switch reads it) and how many times it saw each exact request (a new draw for a
repeated request at temperature > 0). With many requests in flight the arrival
order, and so these counters, can vary between runs; with one request at a time
a campaign is exactly reproducible.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import json
import signal
import threading
import time
from collections import Counter
from collections.abc import Callable
from typing import Any

from aiohttp import web

from qdsearch.world.model import WorldConfig
from qdsearch.world.world import Reply, World

__all__ = ["WorldServer", "serve_forever"]


def _error(status: int, message: str) -> web.Response:
    body = {"error": {"message": message, "type": "invalid_request_error", "param": None, "code": str(status)}}
    return web.json_response(body, status=status)


def _words(body: dict[str, Any]) -> int:
    msgs = body.get("messages")
    if not isinstance(msgs, list):
        return 0
    return sum(len(str(m.get("content", "")).split()) for m in msgs if isinstance(m, dict))


class WorldServer:
    """A synthetic world served over HTTP.

    Args:
        cfg: the world's settings.
        port: the port on 127.0.0.1 (0: any free one).
        latency_s: a delay added to every chat answer.

    Attributes:
        world: the :class:`~qdsearch.world.world.World` answering.
        stats: answers by ``kind`` (``judge``, ``respond``, ``op:<name>``) and by fault.
        operator_requests: operator requests served so far.
    """

    def __init__(self, cfg: WorldConfig | None = None, *, port: int = 0, latency_s: float = 0.0) -> None:
        self.world = World(cfg)
        self.port = port
        self.latency_s = latency_s
        self.stats: Counter[str] = Counter()
        self.operator_requests = 0
        self._seen: Counter[bytes] = Counter()
        self._lock = threading.Lock()
        self._loop: asyncio.AbstractEventLoop | None = None
        self._thread: threading.Thread | None = None
        self._stopping: asyncio.Event | None = None
        self._start_error: BaseException | None = None

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self.port}/v1"

    # ----------------------------------------------------------------- handlers
    async def _chat(self, request: web.Request) -> web.StreamResponse:
        try:
            body = await request.json()
        except ValueError:
            return _error(400, "request body is not JSON")
        if not isinstance(body, dict) or not isinstance(body.get("messages"), list):
            return _error(400, "request body needs a 'messages' list")
        kind, _ = self.world.classify(body)
        digest = hashlib.sha256(json.dumps(body.get("messages"), sort_keys=True, default=str).encode()).digest()[:16]
        with self._lock:
            occurrence = self._seen[digest]
            self._seen[digest] += 1
            index = self.operator_requests
            if kind == "operator":
                self.operator_requests += 1
        reply = self.world.chat(body, occurrence=occurrence, operator_index=index)
        with self._lock:
            self.stats[f"op:{reply.operator}" if reply.kind == "operator" else reply.kind] += 1
            if reply.fault:
                self.stats[reply.fault] += 1
        if self.latency_s > 0:
            await asyncio.sleep(self.latency_s)
        return web.json_response(self._completion(body, reply))

    def _completion(self, body: dict[str, Any], reply: Reply) -> dict[str, Any]:
        p_in, p_out = _words(body), len(reply.content.split())
        return {
            "id": f"chatcmpl-world-{sum(self.stats.values())}",
            "object": "chat.completion",
            "created": int(time.time()),
            "model": str(body.get("model") or self.world.cfg.model),
            "choices": [
                {
                    "index": 0,
                    "message": {"role": "assistant", "content": reply.content},
                    "finish_reason": reply.finish_reason,
                }
            ],
            "usage": {"prompt_tokens": p_in, "completion_tokens": p_out, "total_tokens": p_in + p_out},
        }

    async def _embeddings(self, request: web.Request) -> web.StreamResponse:
        try:
            body = await request.json()
        except ValueError:
            return _error(400, "request body is not JSON")
        raw = body.get("input") if isinstance(body, dict) else None
        if raw is None:
            return _error(400, "missing input")
        inputs = raw if isinstance(raw, list) else [raw]
        if not all(isinstance(t, str) for t in inputs):
            return _error(400, "input must be a string or a list of strings")
        data = [
            {"object": "embedding", "index": i, "embedding": self.world.embed(t).tolist()} for i, t in enumerate(inputs)
        ]
        with self._lock:
            self.stats["embed"] += len(inputs)
        n = sum(len(t.split()) for t in inputs)
        model = str(body.get("model") or self.world.cfg.model)
        return web.json_response(
            {"object": "list", "data": data, "model": model, "usage": {"prompt_tokens": n, "total_tokens": n}}
        )

    async def _models(self, request: web.Request) -> web.StreamResponse:
        model = {"id": self.world.cfg.model, "object": "model", "created": 0, "owned_by": "qdsearch-world"}
        return web.json_response({"object": "list", "data": [model]})

    # ----------------------------------------------------------------- lifecycle
    async def serve(self, on_ready: Callable[[], None] | None = None) -> None:
        """Serves until :meth:`stop` is called (or the task is cancelled)."""
        app = web.Application(client_max_size=64 * 1024**2)
        app.router.add_post("/v1/chat/completions", self._chat)
        app.router.add_post("/v1/embeddings", self._embeddings)
        app.router.add_get("/v1/models", self._models)
        runner = web.AppRunner(app, shutdown_timeout=1.0, access_log=None)
        await runner.setup()
        try:
            site = web.TCPSite(runner, "127.0.0.1", self.port)
            await site.start()
            server = site._server
            assert server is not None
            self.port = server.sockets[0].getsockname()[1]  # type: ignore[attr-defined,union-attr]
            self._loop = asyncio.get_running_loop()
            self._stopping = asyncio.Event()
            if on_ready is not None:
                on_ready()
            await self._stopping.wait()
        finally:
            await runner.cleanup()

    def start(self) -> WorldServer:
        """Starts serving in a daemon thread; returns once the port is bound.

        Raises:
            RuntimeError: the server did not start within 10 s (e.g. the port is taken).
        """
        if self._thread is not None:
            return self
        ready = threading.Event()

        def main() -> None:
            try:
                asyncio.run(self.serve(ready.set))
            except BaseException as e:  # surfaced by start() if it failed before ready
                self._start_error = e
            finally:
                ready.set()

        self._thread = threading.Thread(target=main, daemon=True, name="qdsearch-world")
        self._thread.start()
        if not ready.wait(10) or self._stopping is None:
            self._thread = None
            raise RuntimeError(f"world server did not start: {self._start_error!r}")
        return self

    def stop(self) -> None:
        """Stops the server (safe to call twice)."""
        thread, loop, stopping = self._thread, self._loop, self._stopping
        self._thread = None
        if loop is None or stopping is None:
            return
        with contextlib.suppress(RuntimeError):  # the loop already closed
            loop.call_soon_threadsafe(stopping.set)
        if thread is not None:
            thread.join(timeout=10)

    def __enter__(self) -> WorldServer:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()


def serve_forever(
    cfg: WorldConfig, port: int = 0, latency_s: float = 0.0, announce: Callable[[str], None] = print
) -> int:
    """Serves in the foreground until SIGINT or SIGTERM; calls ``announce`` with the
    base URL once listening. Returns 0."""
    srv = WorldServer(cfg, port=port, latency_s=latency_s)

    async def run() -> None:
        loop = asyncio.get_running_loop()

        def ready() -> None:
            for sig in (signal.SIGINT, signal.SIGTERM):
                with contextlib.suppress(NotImplementedError, RuntimeError):
                    loop.add_signal_handler(sig, srv.stop)
            announce(srv.base_url)

        await srv.serve(ready)

    with contextlib.suppress(KeyboardInterrupt):
        asyncio.run(run())
    return 0
