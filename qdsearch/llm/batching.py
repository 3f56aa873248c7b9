"""The batching transport (``[endpoint] batch = true``): the chat calls a generation's
children make together go out as one provider batch job (:mod:`qdsearch.llm.batch`).

A :class:`Batcher` is shared by a worker's clients. Each job (child) the worker runs is
a *caller* (:meth:`Batcher.caller`); its chat calls, once the request cache has missed
(:class:`~qdsearch.llm.client.LLMClient` looks it up first), are queued by
:meth:`Batcher.send`. When every caller is waiting for an answer, or a queue holds
``batch_max_lines`` requests, or nothing changed for :data:`QUIET_S` seconds (a caller
held up elsewhere), the queued requests go out as one job per endpoint (after
:data:`SETTLE_S` seconds of every caller waiting: jobs handed out together start one
after the other). So under the
generational schedule, where a generation's children run at once, its operator calls
form one job, then their responses, then the judging (ask-loop retries and children a
step behind join whichever job is next).

Each line's ``custom_id`` is a function of where the call is made and what it asks
(:func:`custom_id`: the child, the call's role, a digest of the body and attempt, and
how many identical requests that child made before), so a generation run again after a
crash asks the same ids. Every job's id and custom ids are written to the event log
(a ``batch`` event) before it is polled, and a ``batch_done`` event counts how its lines
ended; :func:`attach_journal` reads them back on resume, and a request whose id is in a
job logged since the last ``generation`` event is answered by polling that job (and
downloading its files), not by paying for it again.

A line that failed for a reason that may pass (429, 5xx, an expired or cancelled job)
goes into the next job, up to ``batch_max_jobs`` jobs; then the client asks it as a
single call at full price. A line that failed for good (a 400) becomes the call's
:class:`~qdsearch.llm.client.LLMError` (the child is rejected as ``llm_http_400``,
with the batch id in its detail). No line is dropped.
"""

from __future__ import annotations

import asyncio
import contextlib
import contextvars
import hashlib
import json
import os
import time
from collections.abc import Callable, Iterable, Iterator, Mapping
from dataclasses import dataclass, field
from types import SimpleNamespace
from typing import TYPE_CHECKING, Any

from qdsearch.llm.batch import BatchClient, BatchUnavailable, LineResult
from qdsearch.llm.cache.keys import current_site

if TYPE_CHECKING:
    from qdsearch.config import EndpointConfig

__all__ = ["QUIET_S", "SETTLE_S", "Batcher", "Journal", "as_completion", "attach_journal", "custom_id"]

#: Seconds without a new request after which the queued ones go out even though some
#: caller is not waiting (it is held up by something else: a call to an endpoint
#: without batch, an embedding).
QUIET_S = 2.0

#: Seconds the queued requests wait once every caller waits, so that callers handed
#: out together but started a moment later ask too.
SETTLE_S = 0.05

#: Event types this module writes (a record of the process, like ``session``).
EVENT_TYPES = ("batch", "batch_done")

_CALLER: contextvars.ContextVar[object | None] = contextvars.ContextVar("qdsearch_batch_caller", default=None)


def custom_id(body: Mapping[str, Any], tag: str, attempt: int) -> str:
    """The line id of a request made now: ``child-role-digest-n``.

    The child is the current call site's (:func:`qdsearch.llm.cache.call_site`; ``x``
    outside one), the digest covers the body and the ask loop's attempt, and ``n``
    counts identical requests made before under the same site (the n-th identical
    sampled request is the n-th sample). Deterministic for a deterministic pipeline,
    so a generation run again asks the same ids.
    """
    text = json.dumps([dict(body), attempt], sort_keys=True, separators=(",", ":"), ensure_ascii=False, default=repr)
    digest = hashlib.sha256(text.encode("utf-8", "surrogatepass")).hexdigest()[:16]
    role = "".join(ch for ch in tag if ch.isalnum() or ch == "_")[:16] or "call"
    site = current_site()
    if site is None:
        return f"x-{role}-{digest}"
    slot = f"batch/{digest}"
    n = site.counts.get(slot, 0)
    site.counts[slot] = n + 1
    return f"{site.child}-{role}-{digest}-{n}"


def as_completion(body: Mapping[str, Any]) -> Any:
    """A batch line's chat completion (a dict) as the attributes the client reads from
    an SDK completion: ``usage.prompt_tokens``, ``choices[i].message.content``..."""
    usage = body.get("usage")
    choices = body.get("choices")
    return SimpleNamespace(
        usage=SimpleNamespace(**usage) if isinstance(usage, dict) else None,
        choices=[
            SimpleNamespace(
                message=SimpleNamespace(**c["message"]) if isinstance(c.get("message"), dict) else None,
                finish_reason=c.get("finish_reason"),
            )
            for c in (choices if isinstance(choices, list) else [])
            if isinstance(c, dict)
        ],
    )


class Journal:
    """Where a batcher writes its jobs down, and the jobs of the log it resumes.

    Args:
        append: writes one event (the campaign's sink).
        events: the event log so far: the ``batch`` events after its last
            ``generation`` event (or all of them before the first) are the jobs whose
            lines a resumed run may still need.
    """

    def __init__(self, append: Callable[[dict[str, Any]], None], events: Iterable[dict[str, Any]] = ()) -> None:
        self.append = append
        self.known: dict[str, str] = {}  # custom id -> the logged job that holds it
        for ev in events:
            kind = ev.get("type")
            if kind == "generation":
                self.known.clear()
            elif kind == "batch":
                for cid in ev.get("custom_ids", ()):
                    self.known[str(cid)] = str(ev["id"])

    def submitted(self, batch_id: str, ids: list[str], endpoint: str) -> None:
        self.append({"type": "batch", "id": batch_id, "endpoint": endpoint, "lines": len(ids),
                     "custom_ids": ids, "time": time.time()})  # fmt: skip

    def done(self, summary: dict[str, Any]) -> None:
        self.append({"type": "batch_done", **summary, "time": time.time()})


@dataclass
class _Lane:
    """The queue of one endpoint."""

    cfg: EndpointConfig
    client: BatchClient
    pending: dict[str, tuple[dict[str, Any], asyncio.Future[LineResult]]] = field(default_factory=dict)
    # logged jobs being polled again after a resume: batch id -> its results
    resumed: dict[str, asyncio.Future[dict[str, LineResult]]] = field(default_factory=dict)


class Batcher:
    """Collects the chat calls of concurrently running callers into batch jobs (see the
    module docstring). One per worker, shared by its clients; used on one event loop.

    Attributes:
        journal: where jobs are written down (None: nowhere; :func:`attach_journal`).
        stats: lines sent, answered, retried in a later job, left to single calls,
            failed for good, answered from a resumed job; jobs made.
    """

    def __init__(self, journal: Journal | None = None, quiet_s: float = QUIET_S, settle_s: float = SETTLE_S) -> None:
        self.journal = journal
        self.quiet_s = quiet_s
        self.settle_s = settle_s
        self._lanes: dict[str, _Lane] = {}
        self._active: set[object] = set()
        self._waiting: dict[object, int] = {}
        self._tasks: set[asyncio.Task[None]] = set()
        self._timer: asyncio.TimerHandle | None = None
        self._loop: asyncio.AbstractEventLoop | None = None  # the loop the lanes' HTTP clients are bound to
        self.stats = dict.fromkeys(("jobs", "lines", "ok", "retried", "single", "failed", "resumed"), 0)

    # ------------------------------------------------------------------ callers
    @contextlib.contextmanager
    def caller(self) -> Iterator[None]:
        """Marks the block (a job) as one caller: the queued requests wait for it to
        ask or finish before they go out."""
        token = object()
        self._active.add(token)
        ctx = _CALLER.set(token)
        self._poke()
        try:
            yield
        finally:
            _CALLER.reset(ctx)
            self._active.discard(token)
            self._waiting.pop(token, None)
            self._poke()

    def _lane(self, cfg: EndpointConfig) -> _Lane:
        loop = asyncio.get_running_loop()
        if loop is not self._loop:  # a new event loop (a run after another): new HTTP clients
            self._lanes, self._loop = {}, loop
        lane = self._lanes.get(cfg.base_url)
        if lane is None:
            client = BatchClient(cfg.base_url, os.environ.get(cfg.api_key_env, ""), poll_s=cfg.batch_poll_s,
                                 timeout_s=cfg.timeout_s)  # fmt: skip
            lane = self._lanes[cfg.base_url] = _Lane(cfg, client)
        return lane

    # ------------------------------------------------------------------ requests
    async def send(self, cfg: EndpointConfig, body: dict[str, Any], tag: str, attempt: int = 0) -> LineResult:
        """One chat request as a line of the next batch job on ``cfg``'s endpoint.

        Returns:
            Its result: answered (``ok``), failed for a reason that may pass after
            ``batch_max_jobs`` jobs (``retryable``: ask it as a single call), or failed
            for good.
        """
        lane = self._lane(cfg)
        cid = custom_id(body, tag, attempt)
        while cid in lane.pending:  # the same request twice at once (outside any call site)
            cid += "+"
        token = _CALLER.get()
        adhoc = token is None or token not in self._active
        if adhoc:  # a call made outside any job: a caller of its own while it waits
            token = object()
            self._active.add(token)
        assert token is not None
        self._waiting[token] = self._waiting.get(token, 0) + 1
        try:
            bid = self.journal.known.pop(cid, "") if self.journal is not None else ""
            if bid:
                found = (await self._resumed(lane, bid)).get(cid)
                if found is not None and (found.ok or not found.retryable):
                    self.stats["resumed"] += 1
                    return found
            fut: asyncio.Future[LineResult] = asyncio.get_running_loop().create_future()
            lane.pending[cid] = (body, fut)
            self._poke()
            try:
                return await fut
            finally:
                if lane.pending.get(cid, (None, None))[1] is fut:  # cancelled before it went out
                    del lane.pending[cid]
        finally:
            left = self._waiting.get(token, 0) - 1
            if left > 0:
                self._waiting[token] = left
            else:
                self._waiting.pop(token, None)
            if adhoc:
                self._active.discard(token)
            self._poke()

    async def _resumed(self, lane: _Lane, batch_id: str) -> dict[str, LineResult]:
        """The results of a job logged before a crash: it is polled to its end and its
        files downloaded, once for all the requests it holds."""
        fut = lane.resumed.get(batch_id)
        if fut is None:

            async def poll() -> dict[str, LineResult]:
                return await lane.client.fetch(await lane.client.wait(batch_id))

            fut = lane.resumed[batch_id] = asyncio.ensure_future(poll())
        try:
            return await asyncio.shield(fut)
        except Exception:  # the job cannot be read back (gone, a broken file): its lines are asked again
            return {}

    # ------------------------------------------------------------------ flushing
    def _poke(self) -> None:
        """Called on every change of the callers or the queues: sends the queued requests
        at once if a queue is full; else arms the timer that sends them, in
        :data:`SETTLE_S` when every caller waits (jobs handed out together start one
        after the other: the wait lets them all ask) or in :data:`QUIET_S` otherwise."""
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        queued = [lane for lane in self._lanes.values() if lane.pending]
        if not queued:
            return
        if any(len(lane.pending) >= lane.cfg.batch_max_lines for lane in queued):
            self.flush()
            return
        everyone = all(self._waiting.get(t, 0) > 0 for t in self._active)
        delay = self.settle_s if everyone else self.quiet_s
        self._timer = asyncio.get_running_loop().call_later(delay, self.flush)

    def flush(self) -> None:
        """Sends every queue as batch jobs now (at most ``batch_max_lines`` lines each)."""
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        for lane in self._lanes.values():
            while lane.pending:
                items = dict(list(lane.pending.items())[: lane.cfg.batch_max_lines])
                for cid in items:
                    del lane.pending[cid]
                task = asyncio.ensure_future(self._run(lane, items))
                self._tasks.add(task)
                task.add_done_callback(self._tasks.discard)

    async def _run(self, lane: _Lane, items: dict[str, tuple[dict[str, Any], asyncio.Future[LineResult]]]) -> None:
        requests = [(cid, body) for cid, (body, _) in items.items()]
        jobs: list[str] = []

        def submitted(bid: str, ids: list[str]) -> None:
            jobs.append(bid)
            self.stats["jobs"] += 1
            if self.journal is not None:
                self.journal.submitted(bid, ids, lane.cfg.base_url)

        try:
            results = await lane.client.run(requests, on_submitted=submitted, max_jobs=lane.cfg.batch_max_jobs)
        except BatchUnavailable as e:  # checked before the run: an endpoint that lost its batch API
            results = {cid: LineResult(cid, 404, None, str(e), "") for cid, _ in requests}
        except Exception as e:  # the job could not be made (or read): its lines go to single calls
            why = f"batch job failed: {type(e).__name__}: {e}"[:300]
            results = {cid: LineResult(cid, 0, None, why, jobs[-1] if jobs else "") for cid, _ in requests}
        ok = sum(r.ok for r in results.values())
        single = sum(r.retryable for r in results.values())
        counts = {"lines": len(requests), "ok": ok, "retried": sum(r.jobs > 1 for r in results.values()),
                  "single": single, "failed": len(requests) - ok - single}  # fmt: skip
        for k, n in counts.items():
            self.stats[k] += n
        if self.journal is not None:
            self.journal.done({"ids": jobs, "endpoint": lane.cfg.base_url, **counts})
        for cid, (_, fut) in items.items():
            if not fut.done():
                fut.set_result(results[cid])

    async def aclose(self) -> None:
        """Stops polling (a job still running goes on at the provider; a resumed run
        polls it from the log) and closes the HTTP clients."""
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        lanes, self._lanes = self._lanes, {}
        if self._loop is not asyncio.get_running_loop():  # closed from another loop (the CLI):
            self._tasks.clear()  # the run's loop is gone, and its tasks and connections with it
            return
        for t in list(self._tasks):
            t.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        for lane in lanes.values():
            for fut in lane.resumed.values():
                fut.cancel()
            with contextlib.suppress(Exception):
                await lane.client.aclose()


def attach_journal(runtime: Any, append: Callable[[dict[str, Any]], None], events: Iterable[dict[str, Any]]) -> None:
    """Gives the batcher of an in-process runtime's worker a :class:`Journal` writing to
    ``append`` and resuming the jobs of ``events``; nothing for a runtime without one."""
    worker = getattr(runtime, "_worker", None)  # InProcessRuntime's one worker
    batcher = getattr(worker, "batcher", None)
    if isinstance(batcher, Batcher):
        batcher.journal = Journal(append, events)
