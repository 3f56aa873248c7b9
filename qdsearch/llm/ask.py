"""One way to ask a model: a task renders messages and parses the reply; :func:`ask` calls.

A :class:`Task` never calls a model itself. ``render`` gives the chat messages,
``schema`` the JSON schema the reply must follow (sent as the endpoint's response
format), and ``parse`` turns the reply's text into a value or raises
:class:`Reject`. :func:`ask` is the only loop around a task in qdsearch (judges,
rubric graders, operators, dataset tagging): it makes the call through
:class:`~qdsearch.llm.client.LLMClient`, appends each call's accounting record to
``calls`` (what a child's event carries), asks again while the reply does not parse
(each attempt freshly rendered, so a judge's delimiter nonce changes), and raises
the last failure's reason, with the task's prefix (``judge_not_json``), when no
attempt parsed. Each attempt is its own request for the request cache
(:mod:`qdsearch.llm.cache`: the attempt index is part of its key), so a retry is never
served the reply it just rejected, and a re-run replays the same attempts at no cost.
A free-text call with nothing to parse (a respond step, a target's reply) is
:func:`chat`: the same recorded call, once.

Endpoint failures are not parse failures: an :class:`~qdsearch.llm.client.LLMError`
(retries of 429/5xx/timeouts are the client's business) ends the ask at once and is
raised as is. Its ``record`` is the failed call's accounting, which whoever catches
the error records (as :func:`qdsearch.pipeline.run_job` does), so a failed call is
counted once.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Generic, TypeVar

if TYPE_CHECKING:  # the reject type is imported by pure code (operators, judges): no HTTP stack
    from qdsearch.llm.client import Completion, LLMClient

__all__ = ["Reject", "Task", "ask", "chat"]

T = TypeVar("T")
Messages = Sequence[Mapping[str, str]]


class Reject(ValueError):
    """A reply (or the solution made from it) that cannot be used.

    The one reject type of qdsearch: operators (``OperatorReject``), judges and graders
    (``JudgeReject``) and dataset tagging (``TagReject``) raise it under those names.

    Attributes:
        reason: a short slug; events and counters group rejects by it.
        detail: what was wrong, for people (may be empty).
    """

    def __init__(self, reason: str, detail: str = "") -> None:
        super().__init__(f"{reason}: {detail}" if detail else reason)
        self.reason = reason
        self.detail = detail


@dataclass(frozen=True)
class Task(Generic[T]):
    """One question to a model: how to render it and how to read the answer.

    Attributes:
        tag: what the call is for (an operator name, ``"judge"``); carried into the
            call's record.
        render: the chat messages; called once per attempt.
        parse: ``(text, finish_reason) -> value``; raises :class:`Reject` for a reply
            that cannot be used (a truncated one included, if the task cares).
        schema: the JSON schema of the reply (None: free text).
        temperature, max_tokens: override the endpoint's defaults (None: keep them).
    """

    tag: str
    render: Callable[[], Messages]
    parse: Callable[[str, str | None], T]
    schema: dict[str, Any] | None = None
    temperature: float | None = None
    max_tokens: int | None = None


async def chat(
    client: LLMClient, messages: Messages, calls: list[dict[str, Any]] | None = None, **kw: Any
) -> Completion:
    """``client.chat(messages, **kw)``, its record appended to ``calls`` (when given).

    Raises:
        LLMError: the endpoint failed; its ``record`` is not appended (the catcher's).
    """
    comp = await client.chat(messages, **kw)  # type: ignore[arg-type]
    if calls is not None:
        calls.append(comp.record.to_dict())
    return comp


async def ask(
    client: LLMClient,
    task: Task[T],
    *,
    attempts: int = 1,
    calls: list[dict[str, Any]] | None = None,
    prefix: str = "",
) -> T:
    """Asks ``client`` until ``task``'s reply parses, at most ``attempts`` calls.

    Args:
        client: the endpoint to ask.
        task: what to ask and how to read the answer.
        attempts: calls before giving up, >= 1.
        calls: every call's record is appended here, in order (None: not recorded).
        prefix: put before the last reject's reason when giving up (``"judge_"``).

    Returns:
        The first reply's parsed value.

    Raises:
        Reject: no reply parsed; ``reason`` is ``prefix`` + the last failure's reason,
            ``detail`` the last failure's detail.
        LLMError: the endpoint failed (not retried here; see the module docstring).
        ValueError: ``attempts < 1``.
    """
    if attempts < 1:
        raise ValueError(f"attempts must be >= 1, got {attempts}")
    last: Reject | None = None
    for attempt in range(attempts):
        comp = await chat(
            client,
            task.render(),
            calls,
            tag=task.tag,
            json_schema=task.schema,
            temperature=task.temperature,
            max_tokens=task.max_tokens,
            attempt=attempt,
        )
        try:
            return task.parse(comp.text, comp.finish_reason)
        except Reject as e:
            last = e
    assert last is not None
    raise Reject(prefix + last.reason, last.detail)
