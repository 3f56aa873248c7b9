"""A fake OpenAI-compatible server on 127.0.0.1 for tests.

Runs aiohttp in a daemon thread with its own event loop, so sync tests, code that
runs its own loop, and other processes (Ray workers, CLI subprocesses) can all use
it by URL. Replies come from a script queue first, then from a responder
function; faults (429, 500, hangs, malformed bodies) are drawn from a seeded RNG.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import random
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from aiohttp import web

Responder = Callable[[dict[str, Any]], "str | Reply"]


@dataclass
class Reply:
    content: str = ""
    finish_reason: str = "stop"
    prompt_tokens: int | None = None
    completion_tokens: int | None = None
    status: int = 200
    headers: dict[str, str] = field(default_factory=dict)
    raw_body: str | None = None
    delay_s: float | None = None


@dataclass
class Faults:
    p_429: float = 0.0
    p_500: float = 0.0
    p_hang: float = 0.0
    p_malformed: float = 0.0
    retry_after: str | None = None
    hang_s: float = 30.0


def _echo(req: dict[str, Any]) -> str:
    return str(req["messages"][-1]["content"]) if req.get("messages") else ""


def _words(req: dict[str, Any]) -> int:
    return sum(len(str(m.get("content", "")).split()) for m in req.get("messages", []))


class FakeOpenAI:
    def __init__(
        self, responder: Responder | None = None, *, latency_s: float = 0.0, faults: Faults | None = None, seed: int = 0
    ) -> None:
        self.responder = responder or _echo
        self.latency_s = latency_s
        self.faults = faults or Faults()
        self._rng = random.Random(seed)
        self._lock = threading.Lock()
        self._script: list[str | Reply] = []
        self.requests: list[dict[str, Any]] = []
        self.auth_headers: list[str] = []
        self.stats: dict[str, int] = {}
        self.in_flight = 0
        self.max_in_flight = 0
        self.port = 0
        self._loop: asyncio.AbstractEventLoop | None = None
        self._thread: threading.Thread | None = None
        self._runner: web.AppRunner | None = None
        self._stopping: asyncio.Event | None = None

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self.port}/v1"

    def script(self, replies: list[str | Reply]) -> None:
        with self._lock:
            self._script.extend(replies)

    def _count(self, kind: str) -> None:
        with self._lock:
            self.stats[kind] = self.stats.get(kind, 0) + 1

    # ------------------------------------------------------------------ handlers
    async def _chat(self, request: web.Request) -> web.StreamResponse:
        body = await request.json()
        with self._lock:
            self.requests.append(body)
            self.auth_headers.append(request.headers.get("Authorization", ""))
            self.in_flight += 1
            self.max_in_flight = max(self.max_in_flight, self.in_flight)
            scripted = self._script.pop(0) if self._script else None
            roll = self._rng.random()
        try:
            f = self.faults
            if scripted is None:
                edges = [("429", f.p_429), ("500", f.p_500), ("hang", f.p_hang), ("malformed", f.p_malformed)]
                acc = 0.0
                for kind, p in edges:
                    acc += p
                    if roll < acc:
                        return await self._fault(kind)
            reply = scripted if scripted is not None else self.responder(body)
            if isinstance(reply, str):
                reply = Reply(content=reply)
            delay = self.latency_s if reply.delay_s is None else reply.delay_s
            if delay:
                await asyncio.sleep(delay)
            if reply.raw_body is not None:
                self._count("malformed")
                return web.Response(status=reply.status, text=reply.raw_body, content_type="application/json")
            if reply.status != 200:
                self._count(str(reply.status))
                return web.json_response(
                    {"error": {"message": f"scripted {reply.status}", "type": "test"}},
                    status=reply.status,
                    headers=reply.headers,
                )
            self._count("ok")
            p_in = reply.prompt_tokens if reply.prompt_tokens is not None else _words(body)
            p_out = reply.completion_tokens if reply.completion_tokens is not None else len(reply.content.split())
            return web.json_response(
                {
                    "id": "chatcmpl-fake",
                    "object": "chat.completion",
                    "created": int(time.time()),
                    "model": body.get("model", "fake-model"),
                    "choices": [
                        {
                            "index": 0,
                            "message": {"role": "assistant", "content": reply.content},
                            "finish_reason": reply.finish_reason,
                        }
                    ],
                    "usage": {"prompt_tokens": p_in, "completion_tokens": p_out, "total_tokens": p_in + p_out},
                },
                headers=reply.headers,
            )
        finally:
            with self._lock:
                self.in_flight -= 1

    async def _fault(self, kind: str) -> web.StreamResponse:
        self._count(kind)
        if kind == "429":
            headers = {"Retry-After": self.faults.retry_after} if self.faults.retry_after else {}
            return web.json_response({"error": {"message": "rate limited"}}, status=429, headers=headers)
        if kind == "500":
            return web.json_response({"error": {"message": "internal"}}, status=500)
        if kind == "malformed":
            return web.Response(status=200, text='{"id": "x", "choices": [{"mess', content_type="application/json")
        assert self._stopping is not None
        # hang: never answer (until the client gives up or the server stops)
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self._stopping.wait(), timeout=self.faults.hang_s)
        return web.json_response({"error": {"message": "hung"}}, status=504)

    async def _embeddings(self, request: web.Request) -> web.StreamResponse:
        body = await request.json()
        inputs = body["input"] if isinstance(body["input"], list) else [body["input"]]
        data = []
        for i, text in enumerate(inputs):
            digest = hashlib.sha256(str(text).encode()).digest()
            vec = [(b - 127.5) / 127.5 for b in digest[:16]]
            data.append({"object": "embedding", "index": i, "embedding": vec})
        n = sum(len(str(t).split()) for t in inputs)
        return web.json_response(
            {
                "object": "list",
                "data": data,
                "model": body.get("model"),
                "usage": {"prompt_tokens": n, "total_tokens": n},
            }
        )

    async def _models(self, request: web.Request) -> web.StreamResponse:
        return web.json_response({"object": "list", "data": [{"id": "fake-model", "object": "model"}]})

    # ------------------------------------------------------------------ lifecycle
    def start(self) -> FakeOpenAI:
        ready = threading.Event()

        async def serve() -> None:
            app = web.Application()
            app.router.add_post("/v1/chat/completions", self._chat)
            app.router.add_post("/v1/embeddings", self._embeddings)
            app.router.add_get("/v1/models", self._models)
            self._runner = web.AppRunner(app, shutdown_timeout=1.0)
            await self._runner.setup()
            site = web.TCPSite(self._runner, "127.0.0.1", 0)
            await site.start()
            server = site._server
            assert server is not None
            self.port = server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
            self._stopping = asyncio.Event()
            ready.set()
            await self._stopping.wait()
            await self._runner.cleanup()

        def main() -> None:
            self._loop = asyncio.new_event_loop()
            self._loop.run_until_complete(serve())
            self._loop.close()

        self._thread = threading.Thread(target=main, daemon=True, name="fake-openai")
        self._thread.start()
        if not ready.wait(10):
            raise RuntimeError("fake OpenAI server did not start")
        return self

    def stop(self) -> None:
        if self._loop is not None and self._stopping is not None and self._thread is not None:
            self._loop.call_soon_threadsafe(self._stopping.set)
            self._thread.join(timeout=10)
            self._thread = None

    def __enter__(self) -> FakeOpenAI:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()
