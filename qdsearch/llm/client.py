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
import email.utils
import os
import random
import re
import time
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

import aiohttp
import numpy as np
import openai

from qdsearch.config import EndpointConfig

__all__ = ["CallRecord", "Completion", "LLMClient", "LLMError", "Usage", "scrub"]

Message = dict[str, str]

_RETRYABLE_STATUS = frozenset({408, 409, 425, 429, 500, 502, 503, 504})

REDACTED = "[redacted]"
# Things that look like credentials, whoever's they are: a bearer (or base64 basic)
# Authorization value, OpenAI-style secret keys (sk-..., sk-proj-...), and the value
# after a key-like name (api_key=..., "x-api-key": "...", Authorization: ...).
_CREDENTIAL_PATTERNS = (
    re.compile(
        r"(?i)\b(bearer)(?:\s+|%20|\+)(?!\[redacted\])[^\s'\"`,;&}\])>]+|\b(basic)(?:\s+|%20|\+)[A-Za-z0-9+/]{12,}=*"
    ),
    re.compile(r"\bsk-[A-Za-z0-9_\-]{6,}"),
    re.compile(
        r"(?i)\b((?:x-)?api[-_ ]?key|authorization|access[-_]?token|secret|password)"
        r"((?:\\?[\"'])?\s*[:=]\s*(?:\\?[\"'])?)"
        r"(?!\[redacted\]|bearer\b|basic\b)[^\s'\"\\`,;&}\])>]+"
    ),
)
_MIN_SECRET_LEN = 4  # a shorter "key" would blank ordinary words, and guards nothing


def scrub(text: str, secrets: Sequence[str] = ()) -> str:
    """``text`` with every credential removed: each of ``secrets`` (the key values in
    use) and anything that looks like a bearer token or an API key, so that an
    endpoint or proxy that echoes the request's ``Authorization`` header in an error
    body cannot put the key into an exception, a log or an event.
    """
    text = _CREDENTIAL_PATTERNS[0].sub(lambda m: f"{m.group(1) or m.group(2)} {REDACTED}", text)
    text = _CREDENTIAL_PATTERNS[1].sub(REDACTED, text)
    text = _CREDENTIAL_PATTERNS[2].sub(lambda m: f"{m.group(1)}{m.group(2)}{REDACTED}", text)
    for s in sorted({s for s in secrets if len(s) >= _MIN_SECRET_LEN}, key=len, reverse=True):
        text = text.replace(s, REDACTED)
    return text


@dataclass(frozen=True)
class CallRecord:
    """Accounting of one logical LLM call (all its attempts together).

    Attributes:
        tag: what the call was for (an operator name, ``"respond"``, ``"judge"``).
        model: the model name sent to the endpoint.
        prompt_tokens: tokens in, from the final response's ``usage`` (0 if none).
        completion_tokens: tokens out, likewise.
        latency_s: wall time from first attempt to the end, backoff included.
        attempts: number of HTTP attempts made.
        outcome: ``"ok"`` or the reason of the final failure (``"http_429"``,
            ``"http_500"``, ``"timeout"``, ``"connection"``, ``"bad_response"``,
            ``"http_401"``...).
        finish_reason: the choice's ``finish_reason`` when a response came back.
        cost_usd: priced from the endpoint config's per-token prices.
    """

    tag: str
    model: str
    prompt_tokens: int
    completion_tokens: int
    latency_s: float
    attempts: int
    outcome: str
    finish_reason: str | None = None
    cost_usd: float = 0.0

    @property
    def ok(self) -> bool:
        return self.outcome == "ok"

    @property
    def tokens(self) -> int:
        return self.prompt_tokens + self.completion_tokens


@dataclass
class Usage:
    """Running totals over all calls of one client."""

    calls: int = 0
    failed: int = 0
    attempts: int = 0
    prompt_tokens: int = 0
    completion_tokens: int = 0
    cost_usd: float = 0.0
    outcomes: dict[str, int] = field(default_factory=dict)

    def add(self, r: CallRecord) -> None:
        self.calls += 1
        self.failed += 0 if r.ok else 1
        self.attempts += r.attempts
        self.prompt_tokens += r.prompt_tokens
        self.completion_tokens += r.completion_tokens
        self.cost_usd += r.cost_usd
        self.outcomes[r.outcome] = self.outcomes.get(r.outcome, 0) + 1

    @property
    def tokens(self) -> int:
        return self.prompt_tokens + self.completion_tokens


@dataclass(frozen=True)
class Completion:
    """A chat completion: the text of the first choice and its accounting."""

    text: str
    finish_reason: str | None
    record: CallRecord


class LLMError(RuntimeError):
    """A call failed for good (retries exhausted or a non-retryable error).

    Attributes:
        record: the accounting record of the failed call.
    """

    def __init__(self, message: str, record: CallRecord) -> None:
        super().__init__(message)
        self.record = record


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


def retry_after_s(headers: Any) -> float | None:
    """Seconds to wait from ``retry-after-ms`` / ``Retry-After`` headers, if present.

    ``Retry-After`` may be a number of seconds or an HTTP date. Unparsable values
    give None.
    """
    if headers is None:
        return None
    ms = headers.get("retry-after-ms")
    if ms is not None:
        try:
            return max(0.0, float(ms) / 1000.0)
        except ValueError:
            pass
    ra = headers.get("retry-after")
    if ra is None:
        return None
    try:
        return max(0.0, float(ra))
    except ValueError:
        pass
    try:
        when = email.utils.parsedate_to_datetime(ra)
    except (TypeError, ValueError):
        return None
    if when is None:
        return None
    return max(0.0, when.timestamp() - time.time())


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

    The API key is read from the environment variable ``cfg.api_key_env`` when the
    client is made and handed to the ``openai`` client only; it is never stored on
    this object, logged or written anywhere.
    """

    def __init__(self, cfg: EndpointConfig, on_call: Callable[[CallRecord], None] | None = None) -> None:
        if not cfg.base_url:
            raise ValueError("endpoint.base_url is empty: start the embedded server or set a base URL")
        self.cfg = cfg
        self.usage = Usage()
        self._on_call = on_call
        self._sem: asyncio.Semaphore | None = None
        self._client: openai.AsyncOpenAI | None = None

    # The openai client (and its aiohttp session) is bound to the running loop, so
    # it is made lazily on first use inside that loop.
    def _openai(self) -> openai.AsyncOpenAI:
        if self._client is None:
            kwargs: dict[str, Any] = {}
            with contextlib.suppress(AttributeError, RuntimeError):  # openai without the aiohttp extra
                kwargs["http_client"] = openai.DefaultAioHttpClient(timeout=self.cfg.timeout_s)
            self._client = openai.AsyncOpenAI(
                base_url=self.cfg.base_url,
                api_key=os.environ.get(self.cfg.api_key_env) or "EMPTY",
                max_retries=0,  # retries are ours, so they are counted and bounded
                timeout=self.cfg.timeout_s,
                **kwargs,
            )
            self._sem = asyncio.Semaphore(self.cfg.concurrency)
        return self._client

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

    async def _attempt(self, request: Callable[[], Awaitable[Any]]) -> Any:
        assert self._sem is not None
        async with self._sem:
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
        self, request: Callable[[], Awaitable[Any]], tag: str, model: str
    ) -> tuple[Any, int, float]:
        """Runs ``request`` with retries; returns (its result, attempts, start time).

        Raises:
            LLMError: retries exhausted or a non-retryable error; the failure's
                record has been accounted for.
        """
        self._openai()  # makes the semaphore in this loop
        start = time.perf_counter()
        attempts = 0
        outcome = "error"
        detail = ""
        while True:
            attempts += 1
            try:
                return await self._attempt(request), attempts, start
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

    async def chat(
        self,
        messages: Sequence[Message],
        *,
        tag: str = "",
        json_schema: dict[str, Any] | None = None,
        temperature: float | None = None,
        max_tokens: int | None = None,
        seed: int | None = None,
    ) -> Completion:
        """One chat completion, retried on 429/5xx/timeouts/malformed bodies.

        Args:
            messages: the chat messages (``{"role", "content"}`` dicts).
            tag: what the call is for; carried into the :class:`CallRecord`.
            json_schema: ask for a JSON object matching this schema, in the
                endpoint's ``json_mode``.
            temperature, max_tokens: override the endpoint defaults.
            seed: sampling seed, for endpoints that honour it.

        Returns:
            The completion. Its text may be empty or truncated
            (``finish_reason == "length"``): judging that is the caller's job.

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

        client = self._openai()
        resp, attempts, start = await self._with_retries(
            lambda: client.chat.completions.create(**kwargs), tag, self.cfg.model
        )
        usage = getattr(resp, "usage", None)
        p_in = int(getattr(usage, "prompt_tokens", 0) or 0)
        p_out = int(getattr(usage, "completion_tokens", 0) or 0)
        choices = getattr(resp, "choices", None) or []
        text, finish = "", None
        if choices:
            msg = getattr(choices[0], "message", None)
            text = (getattr(msg, "content", None) or "") if msg is not None else ""
            finish = getattr(choices[0], "finish_reason", None)
        record = CallRecord(
            tag=tag,
            model=self.cfg.model,
            prompt_tokens=p_in,
            completion_tokens=p_out,
            latency_s=time.perf_counter() - start,
            attempts=attempts,
            outcome="ok",
            finish_reason=finish,
            cost_usd=self._price(p_in, p_out),
        )
        self._finish(record)
        return Completion(text=text, finish_reason=finish, record=record)

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

        (arr, p_in), attempts, start = await self._with_retries(request, "embed", name)
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
