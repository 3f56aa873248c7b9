"""The benchmark's fake OpenAI-compatible endpoint, run as its own process.

    python -m experiments.bench.server --latency 1.0 --slots 64

Prints ``PORT <n>`` on stdout once it listens on 127.0.0.1, then serves until its
standard input closes (the benchmark holds the other end, so the endpoint also
goes away if the benchmark dies) or it gets SIGTERM/SIGINT.

Every chat request waits ``--latency`` seconds in one of ``--slots`` server slots
(more requests than slots queue, like a model server at its batch limit), so the
endpoint's limit is ``slots / latency`` calls per second. ``POST /bench/config``
with ``{"latency_s": ..., "slots": ...}`` changes both between runs, and ``GET
/bench/stats`` says how many chat calls were served and how many were open at
once at most (served + queued: the client's real concurrency). Answers come from
:func:`responder`: the scripted world of the tests (``tests/fakes/world.py``), with
one change so that children are new texts (and go through all three calls): a
mutation the world already answered (same parent and clause, or a parent with all
the world's clauses) gets a numbered variant clause added. Requests from other tools (distilabel's prompts)
get a plain answer. Embeddings are the tests' deterministic 16-dim hash vectors.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import itertools
import json
import signal
import sys
import time
from pathlib import Path
from typing import Any

from aiohttp import web

ROOT = Path(__file__).resolve().parents[2]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from tests.fakes import world as w  # noqa: E402
from tests.fakes.openai_server import fake_embedding  # noqa: E402

__all__ = ["responder", "serve"]

_variant = itertools.count()
_seen: set[str] = set()


def _mutate(req: dict[str, Any]) -> str:
    child = json.loads(w.mutate(req))
    if child["instruction"] in _seen:  # the world repeats itself (or ran out of clauses)
        child["instruction"] += f" Variant {next(_variant)}: give one more example."
    _seen.add(child["instruction"])
    return json.dumps(child)


def responder(req: dict[str, Any]) -> str:
    """The answer to one chat request (see the module docstring)."""
    system = w._system(req)
    try:
        if system.startswith("You rewrite tasks"):
            return _mutate(req)
        if system.startswith("You are a strict, impartial grader"):
            return w.judge(req)
    except (StopIteration, AssertionError, ValueError, KeyError, IndexError):
        pass
    return w.respond(req) if req.get("messages") else "ok"


def _words(req: dict[str, Any]) -> int:
    return sum(len(str(m.get("content", "")).split()) for m in req.get("messages") or [] if isinstance(m, dict))


async def serve(latency_s: float, slots: int, port: int = 0) -> None:
    """Serves until stdin closes or a termination signal arrives."""
    conf = {"latency_s": latency_s, "slots": slots}
    sem = [asyncio.Semaphore(slots)]
    stop = asyncio.Event()
    stats = {"served": 0, "open": 0, "max_open": 0}

    async def chat(request: web.Request) -> web.StreamResponse:
        body = await request.json()
        stats["open"] += 1
        stats["max_open"] = max(stats["max_open"], stats["open"])
        try:
            async with sem[0]:
                if conf["latency_s"] > 0:
                    await asyncio.sleep(conf["latency_s"])
                content = responder(body)
        finally:
            stats["open"] -= 1
        stats["served"] += 1
        p_in, p_out = _words(body), len(content.split())
        return web.json_response(
            {
                "id": "chatcmpl-bench",
                "object": "chat.completion",
                "created": int(time.time()),
                "model": str(body.get("model") or "bench-model"),
                "choices": [
                    {"index": 0, "message": {"role": "assistant", "content": content}, "finish_reason": "stop"}
                ],
                "usage": {"prompt_tokens": p_in, "completion_tokens": p_out, "total_tokens": p_in + p_out},
            }
        )

    async def configure(request: web.Request) -> web.StreamResponse:
        """``POST /bench/config {"latency_s", "slots"}`` between runs; resets the stats."""
        body = await request.json()
        conf["latency_s"] = float(body.get("latency_s", conf["latency_s"]))
        conf["slots"] = int(body.get("slots", conf["slots"]))
        sem[0] = asyncio.Semaphore(int(conf["slots"]))
        stats.update(served=0, open=0, max_open=0)
        return web.json_response(conf)

    async def get_stats(request: web.Request) -> web.StreamResponse:
        """``GET /bench/stats``: chat calls served, and the most open at once (queued + served)."""
        return web.json_response(conf | stats)

    async def embeddings(request: web.Request) -> web.StreamResponse:
        body = await request.json()
        raw = body.get("input")
        inputs = raw if isinstance(raw, list) else [raw]
        data = [{"object": "embedding", "index": i, "embedding": fake_embedding(str(t))} for i, t in enumerate(inputs)]
        n = sum(len(str(t).split()) for t in inputs)
        return web.json_response(
            {"object": "list", "data": data, "model": "bench-embed", "usage": {"prompt_tokens": n, "total_tokens": n}}
        )

    async def models(request: web.Request) -> web.StreamResponse:
        return web.json_response({"object": "list", "data": [{"id": "bench-model", "object": "model"}]})

    app = web.Application(client_max_size=16 * 2**20)
    app.router.add_post("/v1/chat/completions", chat)
    app.router.add_post("/v1/embeddings", embeddings)
    app.router.add_get("/v1/models", models)
    app.router.add_post("/bench/config", configure)
    app.router.add_get("/bench/stats", get_stats)
    runner = web.AppRunner(app, access_log=None, shutdown_timeout=0.5)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", port, backlog=1024)
    await site.start()
    server = site._server
    assert server is not None
    print(f"PORT {server.sockets[0].getsockname()[1]}", flush=True)  # type: ignore[union-attr]

    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    # stdin closing (the benchmark ended or died) also stops the endpoint
    reader = asyncio.StreamReader()
    watcher: asyncio.Future[None] | None = None
    with contextlib.suppress(OSError, ValueError):
        await loop.connect_read_pipe(lambda: asyncio.StreamReaderProtocol(reader), sys.stdin)

        async def watch() -> None:
            await reader.read()
            stop.set()

        watcher = asyncio.ensure_future(watch())
    try:
        await stop.wait()
    finally:
        if watcher is not None:
            watcher.cancel()
        await runner.cleanup()


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--latency", type=float, default=0.0, help="seconds per chat call")
    ap.add_argument("--slots", type=int, default=64, help="chat calls served at once")
    ap.add_argument("--port", type=int, default=0)
    a = ap.parse_args(argv)
    asyncio.run(serve(a.latency, a.slots, a.port))


if __name__ == "__main__":
    main()
