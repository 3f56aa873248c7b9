"""The accounting records of LLM calls, and the scrubbing of credentials from text.

:class:`CallRecord` (one logical call, all its attempts), :class:`Usage` (their sum),
:class:`Completion` (a reply with its record) and :class:`LLMError` (a call that
failed, with its record) are what :class:`qdsearch.llm.client.LLMClient` hands back;
they live here so that code which only reads records (events, reports, budgets) does
not import the HTTP stack. :func:`scrub` removes credentials from any text that may
reach a log, an event or an exception.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass, field, fields

__all__ = ["REDACTED", "CallRecord", "Completion", "LLMError", "Usage", "scrub"]

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
        cache: ``"hit"``: answered from the request cache (no request: tokens, cost
            and attempts are 0, and what the reply cost when it was paid for is in the
            ``saved_*`` fields); ``"miss"``: looked up, then asked; ``""``: not looked
            up (cache off, or a sampled call outside a campaign's call site).
        saved_prompt_tokens, saved_completion_tokens, saved_cost_usd: a hit's usage
            (priced at today's prices), 0 otherwise.
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
    cache: str = ""
    saved_prompt_tokens: int = 0
    saved_completion_tokens: int = 0
    saved_cost_usd: float = 0.0

    def to_dict(self) -> dict[str, object]:
        """``dataclasses.asdict(self)``, without its deep copy of every field: the
        fields are all immutable scalars, so the dict is the same (a few us less per
        call record; every LLM call's record is kept as a dict)."""
        return {name: getattr(self, name) for name in _RECORD_FIELDS}

    @property
    def cached(self) -> bool:
        """Whether the reply came from the request cache (nothing was spent)."""
        return self.cache == "hit"

    @property
    def reply_tokens(self) -> int:
        """Completion tokens of the reply, paid now or when it was cached."""
        return self.completion_tokens + self.saved_completion_tokens

    @property
    def ok(self) -> bool:
        return self.outcome == "ok"

    @property
    def tokens(self) -> int:
        return self.prompt_tokens + self.completion_tokens


_RECORD_FIELDS = tuple(f.name for f in fields(CallRecord))


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
    cache_key: str = ""  # its request-cache key ("" when not cached): LLMClient.forget drops it


class LLMError(RuntimeError):
    """A call failed for good (retries exhausted or a non-retryable error).

    Attributes:
        record: the accounting record of the failed call.
    """

    def __init__(self, message: str, record: CallRecord) -> None:
        super().__init__(message)
        self.record = record
