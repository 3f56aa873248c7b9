"""A fake OpenAI-compatible server on 127.0.0.1 for tests.

Runs aiohttp in a daemon thread with its own event loop, so sync tests, code that
runs its own loop, and other processes (Ray workers, CLI subprocesses) can all use
it by URL. Replies come from a script queue first, then from a responder
function; faults (429, 500, hangs, malformed bodies) are drawn from a seeded RNG,
so a run with the same seed and the same request order injects the same faults.

Endpoints: ``POST /v1/chat/completions``, ``POST /v1/embeddings`` (deterministic
16-dim vectors from a hash of each input) and ``GET /v1/models``.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import math
import random
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from aiohttp import web

from tests.fakes.app_thread import ServedApp

__all__ = ["EMBED_DIM", "FakeOpenAI", "Faults", "RateLimit", "Reply", "fake_embedding"]

EMBED_DIM = 16
MALFORMED_BODY = '{"id": "chatcmpl-fake", "object": "chat.completion", "choices": [{"mess'


@dataclass
class Reply:
    """One scripted or computed answer to a chat request.

    ``prompt_tokens`` defaults to the word count of all request messages and
    ``completion_tokens`` to the word count of ``content``. A non-200 ``status``
    answers an OpenAI-style error body; ``raw_body`` is sent verbatim (with
    ``status``) for malformed-body tests; ``delay_s`` overrides the server latency.
    """

    content: str = ""
    finish_reason: str = "stop"
    prompt_tokens: int | None = None
    completion_tokens: int | None = None
    status: int = 200
    headers: dict[str, str] = field(default_factory=dict)
    raw_body: str | None = None
    delay_s: float | None = None


Responder = Callable[[dict[str, Any]], "str | Reply"]


@dataclass
class Faults:
    """Probabilities of injected faults, drawn once per unscripted chat request.

    A 429 carries ``Retry-After: retry_after`` when that is set; a hang waits
    ``hang_s`` (or until the server stops) before answering 504; a malformed reply
    is a 200 with a truncated JSON body; a 400 is a bad-request error; a broken
    reply is not HTTP at all (bytes that echo the request's ``Authorization``
    header, then the connection is closed): the client sees a connection error.
    """

    p_429: float = 0.0
    p_500: float = 0.0
    p_hang: float = 0.0
    p_malformed: float = 0.0
    p_400: float = 0.0
    p_broken: float = 0.0
    retry_after: str | None = None
    hang_s: float = 30.0


class RateLimit:
    """An RPM/TPM limit on chat requests, enforced as OpenAI describes its own: token
    buckets that refill continuously and hold ``burst_s`` seconds' worth (at least one
    request, one call's tokens), so a burst is refused even under the per-minute rate.

    A request is charged 1 request and its prompt's word count plus its
    ``max_tokens`` when it arrives; the unused part of ``max_tokens`` is given back
    with the reply. Above the limit the answer is 429 with ``Retry-After`` (whole
    seconds, rounded up) and ``retry-after-ms`` (the exact wait) when
    ``retry_after``; every chat answer carries ``x-ratelimit-{limit,remaining,reset}-
    {requests,tokens}`` (OpenAI's names and duration format) when ``headers``.

    Attributes:
        refused: requests answered 429 by the limiter.
    """

    def __init__(
        self,
        rpm: float = math.inf,
        tpm: float = math.inf,
        *,
        burst_s: float = 1.0,
        headers: bool = True,
        retry_after: bool = True,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.rpm, self.tpm, self.headers, self.retry_after = rpm, tpm, headers, retry_after
        self._clock = clock
        now = clock()
        # name -> [capacity, level, refill per second, time of level]
        self._b = {
            name: [max(1.0, lim / 60 * burst_s), max(1.0, lim / 60 * burst_s), lim / 60, now]
            for name, lim in (("requests", rpm), ("tokens", tpm))
            if math.isfinite(lim)
        }
        self.refused = 0

    def _level(self, name: str) -> float:
        b = self._b[name]
        now = self._clock()
        b[1], b[3] = min(b[0], b[1] + (now - b[3]) * b[2]), now
        return float(b[1])

    def admit(self, tokens: float) -> tuple[float, dict[str, str]]:
        """(0 and the charge taken, or the seconds until the request would fit; headers)."""
        wait = 0.0
        for name, cost in (("requests", 1.0), ("tokens", tokens)):
            if name in self._b:
                need = min(cost, self._b[name][0])
                wait = max(wait, (need - self._level(name)) / self._b[name][2])
        if wait <= 0:
            for name, cost in (("requests", 1.0), ("tokens", tokens)):
                if name in self._b:
                    self._b[name][1] -= cost
        else:
            self.refused += 1
        return max(0.0, wait), self._headers(max(0.0, wait))

    def give_back(self, tokens: float) -> None:
        if "tokens" in self._b and tokens > 0:
            self._level("tokens")
            b = self._b["tokens"]
            b[1] = min(b[0], b[1] + tokens)

    def _headers(self, wait: float) -> dict[str, str]:
        from qdsearch.llm.limits import format_duration

        out: dict[str, str] = {}
        if wait > 0 and self.retry_after:
            out |= {"Retry-After": str(math.ceil(wait)), "retry-after-ms": str(math.ceil(wait * 1000))}
        if self.headers:
            for name, lim in (("requests", self.rpm), ("tokens", self.tpm)):
                if name in self._b:
                    cap, level, rate, _ = self._b[name]
                    out[f"x-ratelimit-limit-{name}"] = str(int(lim))
                    out[f"x-ratelimit-remaining-{name}"] = str(max(0, int(level)))
                    out[f"x-ratelimit-reset-{name}"] = format_duration(max(0.0, cap - level) / rate)
        return out


def _last_user(req: dict[str, Any]) -> str:
    msgs = req.get("messages") or []
    users = [m for m in msgs if isinstance(m, dict) and m.get("role") == "user"]
    return str(users[-1].get("content", "")) if users else ""


def _words(req: dict[str, Any]) -> int:
    msgs = req.get("messages") or []
    return sum(len(str(m.get("content", "")).split()) for m in msgs if isinstance(m, dict))


def fake_embedding(text: str) -> list[float]:
    """The (unnormalised) vector the fake server returns for ``text``."""
    digest = hashlib.sha256(text.encode("utf-8", "surrogatepass")).digest()
    return [(b - 127.5) / 127.5 for b in digest[:EMBED_DIM]]


def _error(status: int, message: str, headers: dict[str, str] | None = None) -> web.Response:
    body = {"error": {"message": message, "type": "fake_error", "param": None, "code": str(status)}}
    return web.json_response(body, status=status, headers=headers)


class FakeOpenAI(ServedApp):
    """A fake OpenAI-compatible endpoint (see the module docstring).

    Attributes:
        requests: every chat request body, in arrival order.
        auth_headers: the ``Authorization`` header of every chat request.
        stats: count of answers by kind: ``"ok"``, ``"429"``, ``"500"``, ``"hang"``,
            ``"malformed"`` (scripted error statuses count under their number).
        max_in_flight: the most chat requests handled at the same time.
        reverse_embeddings: answer embedding items in reverse order (each keeps
            its ``index``), to check that clients sort by index.
        echo_auth: error bodies (chat and embeddings, scripted or injected) quote
            the request's ``Authorization`` header, as some proxies and gateways do.
        embed_status: the status of every embeddings answer (e.g. 503: the
            embedding endpoint is down); 200 answers vectors.
        embed_fail_next: answer the next this many embeddings requests with 500.
        embed_poison: an embeddings request with an input containing one of these
            texts is answered 400 (a text the endpoint cannot embed).
        n_embed: the number of embeddings requests received.
        record: keep every request body and auth header (``requests``,
            ``auth_headers``); ``False`` for long soak runs, whose memory must stay flat.
        n_chat: the number of chat requests received (also with ``record=False``).
        rate_limit: a :class:`RateLimit` on chat requests (None: none); its 429s
            count under ``"429"`` in ``stats`` and use no script entry or fault draw.
    """

    thread_name = "fake-openai"

    def __init__(
        self,
        responder: Responder | None = None,
        *,
        latency_s: float = 0.0,
        faults: Faults | None = None,
        seed: int = 0,
        record: bool = True,
    ) -> None:
        self.responder: Responder = responder or _last_user
        self.latency_s = latency_s
        self.faults = faults or Faults()
        self.reverse_embeddings = False
        self.echo_auth = False
        self.embed_status = 200
        self.embed_fail_next = 0
        self.embed_poison: tuple[str, ...] = ()
        self.n_embed = 0
        self.record = record
        self.n_chat = 0
        self.rate_limit: RateLimit | None = None
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
        self._stopping: asyncio.Event | None = None
        self._start_error: BaseException | None = None

    def script(self, replies: list[str | Reply]) -> None:
        """Queues replies, answered in order before the responder is asked (and
        before any fault is drawn)."""
        with self._lock:
            self._script.extend(replies)

    def _error(
        self, request: web.Request, status: int, message: str, headers: dict[str, str] | None = None
    ) -> web.Response:
        if self.echo_auth:
            message += f" (request headers: Authorization: {request.headers.get('Authorization', '')})"
        return _error(status, message, headers)

    def _count(self, kind: str) -> None:
        with self._lock:
            self.stats[kind] = self.stats.get(kind, 0) + 1

    async def _sleep(self, seconds: float) -> None:
        """Sleeps, but returns early when the server stops."""
        assert self._stopping is not None
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self._stopping.wait(), timeout=seconds)

    # ------------------------------------------------------------------ handlers
    async def _chat(self, request: web.Request) -> web.StreamResponse:
        try:
            body = await request.json()
        except ValueError:
            return _error(400, "request body is not JSON")
        if not isinstance(body, dict):
            return _error(400, "request body is not a JSON object")
        limit, max_tokens = self.rate_limit, int(body.get("max_tokens") or 0)
        limit_headers: dict[str, str] = {}
        if limit is not None:
            wait, limit_headers = limit.admit(_words(body) + max_tokens)
            if wait > 0:  # refused before any script or fault is used
                with self._lock:
                    self.n_chat += 1
                self._count("429")
                return self._error(request, 429, "rate limit reached", limit_headers)
        with self._lock:
            self.n_chat += 1
            if self.record:
                self.requests.append(body)
                self.auth_headers.append(request.headers.get("Authorization", ""))
            self.in_flight += 1
            self.max_in_flight = max(self.max_in_flight, self.in_flight)
            scripted = self._script.pop(0) if self._script else None
            roll = self._rng.random() if scripted is None else 1.0
        try:
            if scripted is None:
                f = self.faults
                acc = 0.0
                kinds = (
                    ("429", f.p_429),
                    ("500", f.p_500),
                    ("hang", f.p_hang),
                    ("malformed", f.p_malformed),
                    ("400", f.p_400),
                    ("broken", f.p_broken),
                )
                for kind, p in kinds:
                    acc += p
                    if roll < acc:
                        return await self._fault(kind, request)
            reply = scripted if scripted is not None else self.responder(body)
            if isinstance(reply, str):
                reply = Reply(content=reply)
            delay = self.latency_s if reply.delay_s is None else reply.delay_s
            if delay > 0:
                await self._sleep(delay)
            if reply.raw_body is not None:
                self._count("malformed")
                return web.Response(
                    status=reply.status, text=reply.raw_body, content_type="application/json", headers=reply.headers
                )
            if reply.status != 200:
                self._count(str(reply.status))
                return self._error(request, reply.status, f"scripted {reply.status}", reply.headers)
            self._count("ok")
            completion = self._completion(body, reply)
            if limit is not None:
                limit.give_back(max_tokens - completion["usage"]["completion_tokens"])
            return web.json_response(completion, headers=limit_headers | reply.headers)
        finally:
            with self._lock:
                self.in_flight -= 1

    @staticmethod
    def _completion(body: dict[str, Any], reply: Reply) -> dict[str, Any]:
        p_in = reply.prompt_tokens if reply.prompt_tokens is not None else _words(body)
        p_out = reply.completion_tokens if reply.completion_tokens is not None else len(reply.content.split())
        return {
            "id": "chatcmpl-fake",
            "object": "chat.completion",
            "created": int(time.time()),
            "model": str(body.get("model") or "fake-model"),
            "choices": [
                {
                    "index": 0,
                    "message": {"role": "assistant", "content": reply.content},
                    "finish_reason": reply.finish_reason,
                }
            ],
            "usage": {"prompt_tokens": p_in, "completion_tokens": p_out, "total_tokens": p_in + p_out},
        }

    async def _fault(self, kind: str, request: web.Request) -> web.StreamResponse:
        self._count(kind)
        if kind == "429":
            headers = {"Retry-After": self.faults.retry_after} if self.faults.retry_after is not None else None
            return self._error(request, 429, "rate limited", headers)
        if kind == "500":
            return self._error(request, 500, "internal error")
        if kind == "400":
            return self._error(request, 400, "bad request")
        if kind == "malformed":
            return web.Response(status=200, text=MALFORMED_BODY, content_type="application/json")
        if kind == "broken":
            return self._broken(request)
        # hang: no answer until the client gives up, hang_s passes, or the server stops
        await self._sleep(self.faults.hang_s)
        return self._error(request, 504, "hung")

    @staticmethod
    def _broken(request: web.Request) -> web.StreamResponse:
        """Not an HTTP answer: a garbled status line quoting the Authorization header,
        then the connection is closed."""
        transport = request.transport
        if transport is not None:
            auth = request.headers.get("Authorization", "").encode("latin-1", "replace")
            transport.write(b"HTTP/1.1 2OO " + auth + b"\r\nX-Auth: " + auth + b"\r\n\r\n")
            transport.close()
        return web.Response(status=500)

    async def _embeddings(self, request: web.Request) -> web.StreamResponse:
        try:
            body = await request.json()
        except ValueError:
            return _error(400, "request body is not JSON")
        raw = body.get("input") if isinstance(body, dict) else None
        if raw is None:
            return _error(400, "missing input")
        inputs = raw if isinstance(raw, list) else [raw]
        with self._lock:
            self.n_embed += 1
            fail = self.embed_fail_next > 0
            self.embed_fail_next -= fail
        if self.embed_status != 200:
            self._count(f"embed_{self.embed_status}")
            return self._error(request, self.embed_status, "embeddings unavailable")
        if fail:
            self._count("embed_500")
            return self._error(request, 500, "embeddings failed")
        if any(p in str(t) for p in self.embed_poison for t in inputs):
            self._count("embed_400")
            return self._error(request, 400, "cannot embed this input")
        data = [
            {"object": "embedding", "index": i, "embedding": fake_embedding(str(text))} for i, text in enumerate(inputs)
        ]
        if self.reverse_embeddings:
            data.reverse()
        n = sum(len(str(t).split()) for t in inputs)
        return web.json_response(
            {
                "object": "list",
                "data": data,
                "model": str(body.get("model") or "fake-model"),
                "usage": {"prompt_tokens": n, "total_tokens": n},
            }
        )

    async def _models(self, request: web.Request) -> web.StreamResponse:
        return web.json_response(
            {"object": "list", "data": [{"id": "fake-model", "object": "model", "created": 0, "owned_by": "tests"}]}
        )

    # ------------------------------------------------------------------ lifecycle (ServedApp)
    def routes(self, app: web.Application) -> None:
        app.router.add_post("/v1/chat/completions", self._chat)
        app.router.add_post("/v1/embeddings", self._embeddings)
        app.router.add_get("/v1/models", self._models)
