"""Async client for any OpenAI-compatible chat endpoint.

The only module (with :mod:`qdsearch.llm.server`) that talks to the network. It adds
what a long search campaign needs on top of the ``openai`` package: a concurrency
limit, a hard per-request timeout, retries with exponential backoff that honour
``Retry-After``, JSON-output requests that work on both OpenAI and llama.cpp's
server, and an accounting record for every call.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import random
import time
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import replace
from typing import Any

import aiohttp
import numpy as np
import openai

from qdsearch.config import EndpointConfig
from qdsearch.llm.cache import CachedReply, RequestCache, current_site, endpoint_identity, request_key
from qdsearch.llm.cache.keys import RequestKey
from qdsearch.llm.fastpath import ChatReply, create_chat, read_reply
from qdsearch.llm.limits import Limits, estimate_tokens, retry_after_s
from qdsearch.llm.records import REDACTED, CallRecord, Completion, LLMError, Usage, scrub

# The records live in qdsearch.llm.records; they are re-exported here, where callers found them.
__all__ = ["REDACTED", "CallRecord", "Completion", "LLMClient", "LLMError", "Usage", "scrub"]

Message = dict[str, str]

_RETRYABLE_STATUS = frozenset({408, 409, 425, 429, 500, 502, 503, 504})


class _Retry(Exception):
    def __init__(self, outcome: str, detail: str, wait_s: float | None = None) -> None:
        super().__init__(detail)
        self.outcome = outcome
        self.wait_s = wait_s


def _refused(exc: BaseException) -> bool:
    """Whether a ``ConnectionError`` (refused, reset...) is in the exception's chain."""
    seen: set[int] = set()
    e: BaseException | None = exc
    while e is not None and id(e) not in seen:
        if isinstance(e, ConnectionError):
            return True
        seen.add(id(e))
        e = e.__cause__ or e.__context__
    return False


def response_format(mode: str, schema: dict[str, Any], name: str = "output") -> dict[str, Any] | None:
    """The ``response_format`` request field for a JSON-output call.

    Args:
        mode: ``"json_schema"`` (OpenAI structured outputs, also vLLM),
            ``"json_object"`` (JSON mode with the schema attached, as llama.cpp's
            server expects; it answers 500 to ``json_schema``), or ``"none"``.
        schema: a JSON schema of the expected object.
    """
    if mode == "none":
        return None
    if mode == "json_object":
        return {"type": "json_object", "schema": schema}
    return {"type": "json_schema", "json_schema": {"name": name, "schema": schema}}


class LLMClient:
    """Async chat client with concurrency limit, timeouts, retries and accounting.

    Args:
        cfg: the endpoint; ``cfg.base_url`` must be set (resolve the embedded
            default first, see :func:`qdsearch.llm.resolve_endpoint`).
        on_call: called with the :class:`CallRecord` of every finished call.
        cache: the request cache to answer chat calls from and store their replies
            in (:func:`qdsearch.llm.cache.open_cache`); None: every call is asked.

    The API key is read from the environment variable ``cfg.api_key_env`` when the
    client is made and handed to the ``openai`` client only; it is never stored on
    this object, logged or written anywhere.
    """

    def __init__(
        self,
        cfg: EndpointConfig,
        on_call: Callable[[CallRecord], None] | None = None,
        cache: RequestCache | None = None,
    ) -> None:
        if not cfg.base_url:
            raise ValueError("endpoint.base_url is empty: start the embedded server or set a base URL")
        self.cfg = cfg
        self.cache = cache
        self._identity = endpoint_identity(cfg.base_url)
        self.usage = Usage()
        self._on_call = on_call
        self.limits = Limits.for_endpoint(cfg)  # this client's own RPM/TPM buckets and AIMD window
        self._client: openai.AsyncOpenAI | None = None
        # endpoint.batch: chat calls (cache misses) go out as lines of batch jobs
        # (qdsearch.llm.batching.Batcher; set by the worker), priced at cfg.batch_discount
        self.batcher: Any = None

    # The openai client (and its aiohttp session) is bound to the running loop, so
    # it is made lazily on first use inside that loop.
    def _openai(self) -> openai.AsyncOpenAI:
        if self._client is None:
            # A response hook reads every answer's rate-limit headers (429s too) at the
            # cost of a few header lookups, without the SDK's raw-response wrapper.
            hooks = {"response": [self._observe]}
            http: Any = None
            with contextlib.suppress(AttributeError, RuntimeError):  # openai without the aiohttp extra
                http = openai.DefaultAioHttpClient(timeout=self.cfg.timeout_s, event_hooks=hooks)
            self._client = openai.AsyncOpenAI(
                base_url=self.cfg.base_url,
                api_key=os.environ.get(self.cfg.api_key_env) or "EMPTY",
                max_retries=0,  # retries are ours, so they are counted and bounded
                timeout=self.cfg.timeout_s,
                http_client=http or openai.DefaultAsyncHttpxClient(timeout=self.cfg.timeout_s, event_hooks=hooks),
            )
        return self._client

    async def _observe(self, response: Any) -> None:
        self.limits.observe(response.status_code, response.headers)

    def __repr__(self) -> str:  # never shows the key
        return f"LLMClient(base_url={self.cfg.base_url!r}, model={self.cfg.model!r})"

    async def aclose(self) -> None:
        if self._client is not None:
            await self._client.close()
            self._client = None

    async def __aenter__(self) -> LLMClient:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.aclose()

    def _backoff(self, attempt: int, hint: float | None) -> float:
        if hint is not None:
            return min(hint, self.cfg.max_backoff_s)
        base = min(self.cfg.max_backoff_s, self.cfg.backoff_s * (2**attempt))
        return base * (0.5 + 0.5 * random.random())

    def _price(self, p_in: int, p_out: int) -> float:
        return (p_in * self.cfg.price_in_per_mtok + p_out * self.cfg.price_out_per_mtok) / 1e6

    def _finish(self, record: CallRecord) -> None:
        self.usage.add(record)
        if self._on_call is not None:
            self._on_call(record)

    async def _attempt(self, request: Callable[[], Awaitable[Any]], tokens: float = 0.0) -> Any:
        """One HTTP attempt, started when the client's limits allow (:mod:`qdsearch.llm.limits`)."""
        ticket = await self.limits.start(tokens)
        outcome, result = "error", None
        try:
            result = await self._send(request)
            outcome = "ok"
            return result
        except _Retry as r:
            outcome = r.outcome
            raise
        finally:  # the reply's usage corrects the token estimate
            if isinstance(result, ChatReply):
                total = result.total_tokens
            else:
                total = getattr(getattr(result, "usage", None), "total_tokens", None)
            self.limits.finish(ticket, outcome, total)

    async def _send(self, request: Callable[[], Awaitable[Any]]) -> Any:
        try:
            async with asyncio.timeout(self.cfg.timeout_s):
                return await request()
        except TimeoutError:
            raise _Retry("timeout", f"no answer within {self.cfg.timeout_s}s") from None
        except openai.APITimeoutError as e:
            if _refused(e):  # the aiohttp transport reports a refused connection as a connect timeout
                raise _Retry("connection", f"connection failed: {e.__cause__ or e}") from None
            raise _Retry("timeout", f"no answer within {self.cfg.timeout_s}s") from None
        except openai.APIConnectionError as e:
            raise _Retry("connection", f"connection failed: {e.__cause__ or e}") from None
        except openai.APIStatusError as e:
            if e.status_code in _RETRYABLE_STATUS or e.status_code >= 500:
                raise _Retry(f"http_{e.status_code}", str(e), retry_after_s(e.response.headers)) from None
            raise
        except openai.APIResponseValidationError as e:
            raise _Retry("bad_response", f"malformed response body: {e}") from None
        except aiohttp.ClientError as e:  # not wrapped by openai: e.g. a garbled status line
            raise _Retry("connection", f"connection failed: {type(e).__name__}: {e}") from None
        except (ValueError, KeyError, TypeError) as e:  # undecodable body
            raise _Retry("bad_response", f"malformed response body: {type(e).__name__}: {e}") from None

    async def _with_retries(
        self, request: Callable[[], Awaitable[Any]], tag: str, model: str, tokens: float = 0.0
    ) -> tuple[Any, int, float]:
        """Runs ``request`` (estimated at ``tokens`` for TPM) with retries; returns (its
        result, attempts, start time).

        Raises:
            LLMError: retries exhausted or a non-retryable error; the failure's
                record has been accounted for.
        """
        start = time.perf_counter()
        attempts = 0
        outcome = "error"
        detail = ""
        while True:
            attempts += 1
            try:
                return await self._attempt(request, tokens), attempts, start
            except _Retry as r:
                outcome, detail = r.outcome, str(r)
                if attempts > self.cfg.max_retries:
                    break
                await asyncio.sleep(self._backoff(attempts - 1, r.wait_s))
            except openai.APIStatusError as e:
                outcome = f"http_{e.status_code}"
                detail = str(e)
                if e.status_code in (401, 403):
                    detail = (
                        f"the endpoint {self.cfg.base_url} refused the API key "
                        f"(read from ${self.cfg.api_key_env}): {e.status_code}"
                    )
                break
            except Exception as e:  # anything else the client or transport raises: not retried
                outcome, detail = "error", f"{type(e).__name__}: {e}"
                break
        record = CallRecord(
            tag=tag,
            model=model,
            prompt_tokens=0,
            completion_tokens=0,
            latency_s=time.perf_counter() - start,
            attempts=attempts,
            outcome=outcome,
        )
        self._finish(record)
        message = f"{tag or 'call'} to {self.cfg.base_url} failed after {attempts} attempt(s): {detail}"
        raise LLMError(self.scrub(message), record)

    def scrub(self, text: str) -> str:
        """``text`` without this client's API key or anything that looks like a
        credential (see :func:`scrub`). Every error message of the client passes here:
        an endpoint or a proxy may echo the request's ``Authorization`` header in an
        error body, whatever the status, and in the body of a broken response."""
        key = os.environ.get(self.cfg.api_key_env, "")
        return " ".join(scrub(text, (key,)).split())  # one line, too

    # ------------------------------------------------------------------ request cache
    def _cache_lookup(
        self, request: dict[str, Any], tag: str, attempt: int = 0
    ) -> tuple[Completion | None, RequestKey | None]:
        """(a hit's completion or None, the request's cache key); the key is None when
        the call is not cached (no cache, or a sampled call outside any call site: see
        :mod:`qdsearch.llm.cache.keys`)."""
        if self.cache is None or not self.cache.enabled:
            return None, None
        start = time.perf_counter()
        found = request_key(self._identity, request, tag, current_site(), attempt)
        if found is None:
            return None, None
        reply = self.cache.get(found.key)
        if reply is None:
            return None, found if self.cache.enabled else None  # (a cache that just failed: not looked up)
        record = CallRecord(
            tag=tag,
            model=self.cfg.model,
            prompt_tokens=0,
            completion_tokens=0,
            latency_s=time.perf_counter() - start,
            attempts=0,
            outcome="ok",
            finish_reason=reply.finish_reason,
            cache="hit",
            saved_prompt_tokens=reply.prompt_tokens,
            saved_completion_tokens=reply.completion_tokens,
            saved_cost_usd=self._price(reply.prompt_tokens, reply.completion_tokens)
            * (self.cfg.batch_discount if self.batcher is not None else 1.0),
        )
        self._finish(record)
        return Completion(reply.text, reply.finish_reason, record, cache_key=found.key), found

    def _cache_store(self, found: RequestKey | None, record: CallRecord, text: str) -> str:
        """Stores a successful reply; returns its key, or ``""`` if it was not stored
        (no cache, or the reply holds this client's API key: never written anywhere)."""
        secret = os.environ.get(self.cfg.api_key_env, "")
        if found is None or self.cache is None or (len(secret) >= 4 and secret in text):
            return ""
        reply = CachedReply(text, record.finish_reason, record.prompt_tokens, record.completion_tokens, record.cost_usd)
        stored = self.cache.put(
            found.key, reply, model=self.cfg.model, role=record.tag, place=found.place, sampled=found.sampled
        )
        return found.key if stored else ""

    def forget(self, completion: Completion) -> None:
        """Drops ``completion``'s reply from the request cache, for a caller that finds
        it unusable for good: the next identical request is asked afresh. (The ask
        loop keeps rejected replies: its attempts have keys of their own.)"""
        if completion.cache_key and self.cache is not None:
            self.cache.forget(completion.cache_key)

    async def chat(
        self,
        messages: Sequence[Message],
        *,
        tag: str = "",
        json_schema: dict[str, Any] | None = None,
        temperature: float | None = None,
        max_tokens: int | None = None,
        seed: int | None = None,
        attempt: int = 0,
    ) -> Completion:
        """One chat completion, retried on 429/5xx/timeouts/malformed bodies.

        Args:
            messages: the chat messages (``{"role", "content"}`` dicts).
            tag: what the call is for; carried into the :class:`CallRecord`.
            json_schema: ask for a JSON object matching this schema, in the
                endpoint's ``json_mode``.
            temperature, max_tokens: override the endpoint defaults.
            seed: sampling seed, for endpoints that honour it.
            attempt: which attempt at one question this is (:func:`qdsearch.llm.ask.ask`
                asks again when a reply does not parse): part of the cache key, so
                attempt 1 is a fresh request, not attempt 0's reply again.

        Returns:
            The completion. Its text may be empty or truncated
            (``finish_reason == "length"``): judging that is the caller's job. With a
            ``cache``, a request already answered (:mod:`qdsearch.llm.cache`) is served
            from it without a request (``record.cache == "hit"``), and every
            successful reply is stored.

        Raises:
            LLMError: retries were exhausted, or the endpoint answered a
                non-retryable error (400, 401, 404...). ``err.record`` has the
                accounting.
        """
        kwargs: dict[str, Any] = {
            "model": self.cfg.model,
            "messages": list(messages),
            "temperature": self.cfg.temperature if temperature is None else temperature,
            "max_tokens": max_tokens or self.cfg.max_tokens,
        }
        if seed is not None:
            kwargs["seed"] = seed
        if json_schema is not None:
            mode = "json_schema" if self.cfg.json_mode == "auto" else self.cfg.json_mode
            rf = response_format(mode, json_schema)
            if rf is not None:
                kwargs["response_format"] = rf

        hit, key = self._cache_lookup(kwargs, tag, attempt)
        if hit is not None:
            return hit
        line, discount = await self._batched(kwargs, tag, attempt, key) if self.batcher is not None else (None, 1.0)
        try:
            if line is not None:  # answered by a batch job
                resp, attempts, start = line
            else:  # no batch, or a line no batch job answered: a single call at full price
                client = self._openai()
                tokens = estimate_tokens(kwargs["messages"], kwargs["max_tokens"])  # for TPM
                resp, attempts, start = await self._with_retries(
                    lambda: create_chat(client, kwargs),
                    tag,
                    self.cfg.model,
                    tokens,  # the SDK call, minus its transform
                )
        except LLMError as e:
            if key:
                e.record = replace(e.record, cache="miss")
            raise
        reply = read_reply(resp)  # (a batch line's is a ChatCompletion)
        p_in, p_out, text, finish = reply.prompt_tokens, reply.completion_tokens, reply.text, reply.finish_reason
        record = CallRecord(
            tag=tag,
            model=self.cfg.model,
            prompt_tokens=p_in,
            completion_tokens=p_out,
            latency_s=time.perf_counter() - start,
            attempts=attempts,
            outcome="ok",
            finish_reason=finish,
            cost_usd=self._price(p_in, p_out) * discount,
            cache="miss" if key else "",
        )
        self._finish(record)
        stored = self._cache_store(key, record, text) if reply.answered else ""
        return Completion(text=text, finish_reason=finish, record=record, cache_key=stored)

    async def _batched(
        self, kwargs: dict[str, Any], tag: str, attempt: int, key: RequestKey | None
    ) -> tuple[tuple[Any, int, float] | None, float]:
        """A chat request as a line of a batch job: ((its completion, jobs it was in, start
        time), the batch discount), or (None, 1.0) when it is to be asked as a single
        call (it failed in every job for a reason that may pass).

        Raises:
            LLMError: the line failed for good (accounted, as a failed call is)."""
        start = time.perf_counter()
        line = await self.batcher.send(self.cfg, kwargs, tag, attempt)
        if line.ok:
            from qdsearch.llm.batching import as_completion

            return (as_completion(line.body), line.jobs, start), self.cfg.batch_discount
        if line.retryable:
            return None, 1.0
        outcome = f"http_{line.status}" if line.status else "batch_failed"
        record = CallRecord(tag, self.cfg.model, 0, 0, time.perf_counter() - start, line.jobs, outcome,
                            cache="miss" if key else "")  # fmt: skip
        self._finish(record)
        where = f" (batch {line.batch_id})" if line.batch_id else ""
        raise LLMError(self.scrub(f"{tag or 'call'} to {self.cfg.base_url} failed{where}: {line.error}"), record)

    async def embed(self, texts: Sequence[str], model: str | None = None) -> np.ndarray:
        """Embeddings from the endpoint's ``/v1/embeddings``.

        Returns:
            (n, d) float32 array, L2-normalised rows in the order of ``texts``;
            (0, 0) for no texts, without a request.

        Raises:
            LLMError: as :meth:`chat` (a body that is not one vector per text, all
                of one length, counts as malformed and is retried).
        """
        if len(texts) == 0:
            return np.zeros((0, 0), dtype=np.float32)
        client = self._openai()
        name = model or self.cfg.model
        inputs = list(texts)

        async def request() -> tuple[np.ndarray, int]:
            resp = await client.embeddings.create(model=name, input=inputs)
            data = sorted(resp.data, key=lambda d: d.index)
            arr = np.asarray([d.embedding for d in data], dtype=np.float32)  # ValueError if ragged
            if arr.ndim != 2 or arr.shape[0] != len(inputs) or arr.shape[1] == 0:
                raise ValueError(f"expected {len(inputs)} vectors, got an array of shape {arr.shape}")
            return arr, int(getattr(resp.usage, "prompt_tokens", 0) or 0)

        tokens = estimate_tokens(({"content": t} for t in inputs), 0)
        (arr, p_in), attempts, start = await self._with_retries(request, "embed", name, tokens)
        norms = np.linalg.norm(arr, axis=1, keepdims=True)
        arr = (arr / np.where(norms == 0, 1.0, norms)).astype(np.float32)
        self._finish(
            CallRecord(
                "embed",
                name,
                p_in,
                0,
                time.perf_counter() - start,
                attempts,
                "ok",
                cost_usd=self._price(p_in, 0),
            )
        )
        return arr
