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
retry settings) and parses the reply into the same ``ChatCompletion``. It takes the
SDK's own path whenever the body holds anything but plain values, asks to stream,
or this SDK version lacks what the short path needs, so nothing changes but the CPU.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from openai.types.chat import ChatCompletion

__all__ = ["create_chat", "plain"]

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


async def create_chat(client: Any, body: Mapping[str, Any]) -> Any:
    """``client.chat.completions.create(**body)``, without the request transform when
    ``body`` is plain (:func:`plain`) and does not stream.

    Args:
        client: an ``openai.AsyncOpenAI``.
        body: the request's parameters (``model``, ``messages``, ...).

    Returns:
        The ``ChatCompletion``.

    Raises:
        Whatever ``create`` raises (``openai.APIStatusError``, ``APIConnectionError``...).
    """
    if _OPTIONS is None or body.get("stream") or not plain(body):
        return await client.chat.completions.create(**body)
    return await client.post("/chat/completions", body=dict(body), cast_to=ChatCompletion, options={**_OPTIONS})
