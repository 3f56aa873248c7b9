"""Provider batch APIs: many chat requests as one job, through the OpenAI-compatible Files
and Batches endpoints (OpenAI's Batch API; vLLM's and other servers' compatible ones).

A job is a JSONL file of ``{"custom_id", "method": "POST", "url": "/v1/chat/completions",
"body"}`` lines, uploaded with ``purpose = "batch"``; the batch is created on it, polled
until it is ``completed``, ``failed``, ``expired`` or ``cancelled``, and its output and
error files are downloaded and mapped back by ``custom_id`` (they come in any order).
:meth:`BatchClient.run` sends lines that were not run (an expired or cancelled job), or
failed for a reason that may pass (429, 408, 5xx), again in the next job, up to
``max_jobs`` jobs; what still fails is returned as failed, never dropped, for the caller
to ask as single calls or reject. The batch id is handed to ``on_submitted`` before
polling starts, so a caller that writes it down (the event log) can, after a crash,
:meth:`BatchClient.resume` the job by polling it instead of paying for it again.

An endpoint without a batch API answers 404: :class:`BatchUnavailable` (a config error:
bad input, exit status 2), one line saying so and how to run without it;
:func:`check_batch_api` asks before a campaign starts. Polling and downloading ride out
transient errors (connection, 429, 5xx) until ``max_wait_s``: a job already paid for is
never given up for a network blip. This module does no accounting; batch prices are the
endpoint's prices times its batch discount (:func:`batch_cost`).
"""

from __future__ import annotations

import asyncio
import functools
import io
import json
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from qdsearch.config import ConfigError

__all__ = [
    "TERMINAL",
    "BatchClient",
    "BatchUnavailable",
    "LineResult",
    "batch_cost",
    "check_batch_api",
    "job_lines",
]

# Batch statuses after which nothing changes.
TERMINAL = ("completed", "failed", "expired", "cancelled")


class BatchUnavailable(ConfigError):
    """The endpoint has no batch API (it answered 404 to the Files or Batches endpoint)."""


def _no_batch_api(base_url: str, what: str) -> BatchUnavailable:
    return BatchUnavailable(
        f"{base_url.rstrip('/')} has no batch API (404 on {what}): set endpoint.batch = false to run without it"
    )


def check_batch_api(base_url: str, api_key: str = "", timeout_s: float = 10.0) -> None:
    """Asks the endpoint whether it has a batch API (``GET /batches?limit=1``), before any
    job is made. Only a 404 (or 405) counts as no: any other failure (the endpoint is not
    up yet, a 5xx) is left to the run, which retries.

    Raises:
        BatchUnavailable: the endpoint answered 404 or 405.
    """
    import openai

    with openai.OpenAI(base_url=base_url, api_key=api_key or "none", timeout=timeout_s, max_retries=0) as client:
        try:
            client.batches.list(limit=1)
        except openai.APIStatusError as e:
            if e.status_code in (404, 405):
                raise _no_batch_api(base_url, "/batches") from None
        except openai.APIError:
            return


@dataclass(frozen=True)
class LineResult:
    """The answer to one line of a batch job.

    Attributes:
        custom_id: the line's id.
        status: the HTTP status of its answer; 0 when it was not run (the job expired,
            was cancelled or failed before it).
        body: the chat completion (a dict, as the endpoint sent it) when ``status`` is 200.
        error: why it failed (``""`` when it did not).
        batch_id: the job that answered it last.
        jobs: how many jobs it was in.
    """

    custom_id: str
    status: int
    body: dict[str, Any] | None
    error: str
    batch_id: str
    jobs: int = 1

    @property
    def ok(self) -> bool:
        return self.status == 200 and self.body is not None

    @property
    def retryable(self) -> bool:
        """Whether another job may answer it: not run, rate limited, timed out, or a server error."""
        return not self.ok and (self.status in (0, 408, 429) or self.status >= 500)


def batch_cost(cost_usd: float, discount: float) -> float:
    """What a call priced ``cost_usd`` at the endpoint's prices costs in a batch job
    (``discount``: the share of the price a batch pays, e.g. 0.5)."""
    return cost_usd * discount


def job_lines(requests: Sequence[tuple[str, Mapping[str, Any]]]) -> bytes:
    """The JSONL input file of a job: one line per ``(custom_id, chat body)``.

    Raises:
        ValueError: two requests share a custom id.
    """
    ids = [cid for cid, _ in requests]
    if len(set(ids)) != len(ids):
        raise ValueError("batch requests need distinct custom ids")
    lines = (
        json.dumps({"custom_id": cid, "method": "POST", "url": "/v1/chat/completions", "body": dict(body)})
        for cid, body in requests
    )
    return "".join(line + "\n" for line in lines).encode()


def _field(obj: Any, name: str) -> Any:
    return obj.get(name) if isinstance(obj, dict) else getattr(obj, name, None)


def _parse_results(text: str, batch_id: str) -> dict[str, LineResult]:
    """custom id -> its result, from an output or error file (malformed lines are skipped:
    their requests count as not answered)."""
    out: dict[str, LineResult] = {}
    for raw in text.splitlines():
        try:
            line = json.loads(raw)
        except ValueError:
            continue
        cid = line.get("custom_id") if isinstance(line, dict) else None
        if not isinstance(cid, str):
            continue
        resp, err = line.get("response"), line.get("error")
        if isinstance(resp, dict) and isinstance(resp.get("status_code"), int):
            status, body = int(resp["status_code"]), resp.get("body")
            if status == 200 and isinstance(body, dict):
                out[cid] = LineResult(cid, 200, body, "", batch_id)
                continue
            msg = body.get("error", {}).get("message", "") if isinstance(body, dict) else ""
            out[cid] = LineResult(cid, status, None, f"http_{status}: {msg}"[:300], batch_id)
        elif isinstance(err, dict):
            out[cid] = LineResult(cid, 0, None, f"{err.get('code', 'error')}: {err.get('message', '')}"[:300], batch_id)
    return out


class BatchClient:
    """Runs chat requests as batch jobs on one endpoint.

    Args:
        base_url: the endpoint's OpenAI-compatible base URL (``.../v1``).
        api_key: its key (from the environment, never stored by this class beyond the
            HTTP client).
        poll_s: seconds between polls of a running job.
        max_wait_s: a job still running after this long is cancelled (its lines not run
            are retried in the next job).
        completion_window: the window asked of the provider (OpenAI accepts ``"24h"``).
        timeout_s: each HTTP request's timeout.
    """

    def __init__(
        self,
        base_url: str,
        api_key: str = "",
        *,
        poll_s: float = 10.0,
        max_wait_s: float = 26 * 3600.0,
        completion_window: str = "24h",
        timeout_s: float = 60.0,
    ) -> None:
        import openai

        self.base_url = base_url.rstrip("/")
        self.poll_s = poll_s
        self.max_wait_s = max_wait_s
        self.completion_window = completion_window
        self._openai = openai
        self._client = openai.AsyncOpenAI(base_url=self.base_url, api_key=api_key or "none", timeout=timeout_s)
        self.jobs: list[str] = []  # the batch ids this client created, in order

    async def aclose(self) -> None:
        await self._client.close()

    def _unavailable(self, what: str) -> BatchUnavailable:
        return _no_batch_api(self.base_url, what)

    def _transient(self, e: BaseException) -> bool:
        """Whether a polling or download error may pass (connection, timeout, 408, 429, 5xx)."""
        o = self._openai
        if isinstance(e, (o.APIConnectionError, o.APITimeoutError)):
            return True
        return isinstance(e, o.APIStatusError) and (e.status_code in (408, 409, 429) or e.status_code >= 500)

    async def _patiently(self, what: str, call: Callable[[], Any], start: float) -> Any:
        """``await call()``, again after transient errors until ``max_wait_s`` since ``start``."""
        delay = min(self.poll_s, 1.0)
        while True:
            try:
                return await call()
            except self._openai.NotFoundError:
                raise self._unavailable(what) from None
            except Exception as e:
                if not self._transient(e) or time.monotonic() - start > self.max_wait_s:
                    raise
            await asyncio.sleep(delay)
            delay = min(2 * delay, max(self.poll_s, 1.0), 60.0)

    async def submit(self, requests: Sequence[tuple[str, Mapping[str, Any]]]) -> str:
        """Uploads the requests as a JSONL file and creates a batch job on it.

        Returns:
            The batch id.

        Raises:
            BatchUnavailable: the endpoint answered 404.
            ValueError: two requests share a custom id.
        """
        data = job_lines(requests)
        try:
            f = await self._client.files.create(file=("batch.jsonl", io.BytesIO(data)), purpose="batch")
        except self._openai.NotFoundError:
            raise self._unavailable("/files") from None
        try:
            b = await self._client.batches.create(
                input_file_id=f.id,
                endpoint="/v1/chat/completions",
                completion_window=self.completion_window,  # type: ignore[arg-type]
            )
        except self._openai.NotFoundError:
            raise self._unavailable("/batches") from None
        self.jobs.append(b.id)
        return str(b.id)

    async def wait(self, batch_id: str) -> Any:
        """Polls a job until its status is one of :data:`TERMINAL` (cancelling it after
        ``max_wait_s``); returns the final batch object."""
        start = time.monotonic()
        cancelled = False
        while True:
            b = await self._patiently(f"/batches/{batch_id}", lambda: self._client.batches.retrieve(batch_id), start)
            if b.status in TERMINAL:
                return b
            if not cancelled and time.monotonic() - start > self.max_wait_s:
                await self._client.batches.cancel(batch_id)
                cancelled = True
            await asyncio.sleep(self.poll_s)

    async def fetch(self, batch: Any) -> dict[str, LineResult]:
        """The results of a finished job's output and error files, by custom id."""
        out: dict[str, LineResult] = {}
        start = time.monotonic()
        for key in ("error_file_id", "output_file_id"):  # an answer wins over an error
            fid = _field(batch, key)
            if fid:
                fetch: Callable[[], Any] = functools.partial(self._client.files.content, fid)
                content = await self._patiently(f"/files/{fid}/content", fetch, start)
                out.update(_parse_results(content.text, str(batch.id)))
        return out

    async def run(
        self,
        requests: Sequence[tuple[str, Mapping[str, Any]]],
        *,
        on_submitted: Callable[[str, list[str]], None] | None = None,
        max_jobs: int = 3,
        resume_id: str = "",
    ) -> dict[str, LineResult]:
        """Runs ``requests`` as batch jobs until every line is answered or ``max_jobs``
        jobs were made; lines that failed for a reason that may pass go into the next job.

        Args:
            requests: ``(custom_id, chat body)`` pairs.
            on_submitted: called with each job's id and custom ids right after it was
                created, before it is polled (write it down to resume after a crash).
            max_jobs: jobs at most (resumed job included), >= 1.
            resume_id: a job already created for these requests (after a crash): it is
                polled first instead of creating one.

        Returns:
            custom id -> result, for every request (failed ones with their last error).

        Raises:
            BatchUnavailable: the endpoint has no batch API.
            ValueError: ``max_jobs < 1`` or duplicate custom ids.
        """
        if max_jobs < 1:
            raise ValueError(f"max_jobs must be >= 1, got {max_jobs}")
        bodies = dict(requests)
        if len(bodies) != len(requests):
            raise ValueError("batch requests need distinct custom ids")
        results: dict[str, LineResult] = {}
        todo = list(bodies)
        jobs = 0
        while todo and jobs < max_jobs:
            if resume_id and jobs == 0:
                bid = resume_id
            else:
                bid = await self.submit([(cid, bodies[cid]) for cid in todo])
                if on_submitted is not None:
                    on_submitted(bid, list(todo))
            jobs += 1
            batch = await self.wait(bid)
            got = await self.fetch(batch)
            for cid in todo:
                prev = results.get(cid)
                r = got.get(cid) or LineResult(cid, 0, None, f"not answered: the batch was {batch.status}", bid)
                results[cid] = LineResult(
                    r.custom_id, r.status, r.body, r.error, r.batch_id, (prev.jobs + 1) if prev else 1
                )
            todo = [cid for cid in todo if results[cid].retryable]
        return {cid: results[cid] for cid in bodies}
