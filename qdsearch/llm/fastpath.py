"""A chat-completions request without the openai SDK's per-call request transform.

``AsyncOpenAI.chat.completions.create`` runs ``async_maybe_transform`` over its
TypedDict parameters on every call. The transform renames aliased keys and formats
dates and files; a body made only of plain JSON values (string messages, a
``response_format`` dict, numbers), which is what :class:`~qdsearch.llm.client.LLMClient`
sends, has none of those, so the transform returns it unchanged, after walking every
message and schema against the parameter types: about 0.4 ms of CPU per call, a
third of the SDK's client-side work per call (``experiments/results/bench.md``, P4).

:func:`create_chat` posts the same body through the same client with the options
``create`` itself passes (bearer authentication, the client's timeout, headers and
retry settings). It takes the SDK's own path whenever the body holds anything but
plain values, asks to stream, or this SDK version lacks what the short path needs.

The reply is read straight from the decoded JSON body (``cast_to=object``: the SDK still
raises its own errors for every HTTP status, bad JSON and transport failure) into a
:class:`ChatReply`, the few fields a caller uses, instead of being built into the
SDK's pydantic ``ChatCompletion`` first (``construct_type`` walks every field of every
choice: about 0.1 ms a call). :func:`read_reply` reads a ``ChatCompletion`` (the SDK
path, batch results) into the same :class:`ChatReply`, so both paths give one answer.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

__all__ = ["ChatReply", "create_chat", "plain", "read_reply"]

_PRIMITIVES = (str, int, float, bool, type(None))


def plain(value: Any, depth: int = 0) -> bool:
    """Whether ``value`` is plain JSON data: primitives, lists and tuples of plain
    values, and dicts with string keys and plain values (at most 64 levels deep)."""
    if isinstance(value, _PRIMITIVES):
        return True
    if depth > 64:
        return False
    if isinstance(value, dict):
        return all(type(k) is str and plain(v, depth + 1) for k, v in value.items())
    if isinstance(value, list | tuple):
        return all(plain(v, depth + 1) for v in value)
    return False


def _options() -> Any:
    """The request options ``chat.completions.create`` passes (None: not available)."""
    try:
        from openai._base_client import make_request_options
    except ImportError:
        return None
    try:
        return make_request_options(security={"bearer_auth": True})
    except TypeError:  # an SDK without per-request security options sends the key anyway
        return make_request_options()


_OPTIONS = _options()


@dataclass(frozen=True, slots=True)
class ChatReply:
    """What a chat completion's caller reads: the first choice's text and finish reason,
    and the usage. ``answered`` is False for a body without a choice (then ``text`` is
    empty and ``finish_reason`` None)."""

    text: str
    finish_reason: str | None
    prompt_tokens: int
    completion_tokens: int
    total_tokens: int | None
    answered: bool


def _count(value: Any) -> int:
    try:
        return int(value or 0)
    except (TypeError, ValueError, OverflowError):
        return 0


def _text(content: Any) -> str:
    """A message's content as text: a string, or the text parts of a list of content
    parts (``[{"type": "text", "text": ...}]``, as some servers answer); else empty."""
    if isinstance(content, str):
        return content
    if isinstance(content, list):
        return "".join(p["text"] for p in content if isinstance(p, dict) and isinstance(p.get("text"), str))
    return ""


def _get(obj: Any, name: str) -> Any:
    return obj.get(name) if isinstance(obj, dict) else getattr(obj, name, None)


def read_reply(resp: Any) -> ChatReply:
    """The :class:`ChatReply` of a chat completion: a decoded JSON body (a dict), an
    SDK ``ChatCompletion``, or a :class:`ChatReply` (returned as it is). Lenient, like
    the SDK's own parser: a missing or ill-typed field reads as absent, never raises."""
    if isinstance(resp, ChatReply):
        return resp
    if isinstance(resp, str):  # a JSON body under another content type: the SDK hands back its text
        try:
            resp = json.loads(resp)
        except ValueError:
            resp = None
    usage = _get(resp, "usage")
    total = _get(usage, "total_tokens")
    choices = _get(resp, "choices")
    first = choices[0] if isinstance(choices, list | tuple) and choices else None
    finish = _get(first, "finish_reason") if first is not None else None
    return ChatReply(
        text=_text(_get(_get(first, "message"), "content")) if first is not None else "",
        finish_reason=finish if isinstance(finish, str) else None,
        prompt_tokens=_count(_get(usage, "prompt_tokens")),
        completion_tokens=_count(_get(usage, "completion_tokens")),
        total_tokens=total if type(total) is int else None,
        answered=first is not None,
    )


async def create_chat(client: Any, body: Mapping[str, Any]) -> ChatReply:
    """``client.chat.completions.create(**body)``, read into a :class:`ChatReply`; without
    the request transform and the response model when ``body`` is plain (:func:`plain`)
    and does not stream.

    Args:
        client: an ``openai.AsyncOpenAI``.
        body: the request's parameters (``model``, ``messages``, ...).

    Returns:
        The reply's :class:`ChatReply`.

    Raises:
        Whatever ``create`` raises (``openai.APIStatusError``, ``APIConnectionError``,
        ``ValueError`` for a body that is not JSON...).
    """
    if _OPTIONS is None or body.get("stream") or not plain(body):
        return read_reply(await client.chat.completions.create(**body))
    data = await client.post("/chat/completions", body=dict(body), cast_to=object, options={**_OPTIONS})
    return read_reply(data)
