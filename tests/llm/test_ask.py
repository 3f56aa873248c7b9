"""The one ask helper (qdsearch.llm.ask) against the fake OpenAI server over real HTTP."""

from __future__ import annotations

import json
import re
from collections.abc import Callable, Iterator
from typing import Any, TypeVar

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from qdsearch.config import EndpointConfig
from qdsearch.judge import JudgeReject, verdict_task
from qdsearch.llm import LLMClient, LLMError, response_format
from qdsearch.llm.ask import Reject, Task, ask
from qdsearch.measure import TagReject
from qdsearch.operators import OperatorReject
from qdsearch.types import Sample
from tests.fakes.openai_server import FakeOpenAI, Reply
from tests.helpers import endpoint as cfg
from tests.helpers import run_client as run

T = TypeVar("T")
Make = Callable[..., FakeOpenAI]
MSG = [{"role": "user", "content": "answer with a number"}]


def client_for(fake: FakeOpenAI, **kw: Any) -> LLMClient:
    return LLMClient(cfg(fake.base_url, **kw))


def number(text: str, finish_reason: str | None) -> int:
    """A toy parser: the reply must be a decimal integer; a truncated one is rejected."""
    if finish_reason == "length":
        raise Reject("truncated")
    if not text.strip().isdigit():
        raise Reject(f"bad_{text.strip()[:10] or 'empty'}", f"got {text!r}")
    return int(text)


class Counting:
    """A render function that counts its calls (each attempt renders afresh)."""

    def __init__(self) -> None:
        self.n = 0

    def __call__(self) -> list[dict[str, str]]:
        self.n += 1
        return [{"role": "user", "content": f"attempt {self.n}: answer with a number"}]


def test_one_reject_class() -> None:
    assert OperatorReject is Reject and JudgeReject is Reject and TagReject is Reject
    e = Reject("not_json", "got prose")
    assert (e.reason, e.detail, str(e)) == ("not_json", "got prose", "not_json: got prose")
    assert str(Reject("no_tags")) == "no_tags" and isinstance(e, ValueError)


def test_first_parse_returns_and_is_accounted(fake_openai: Make) -> None:
    fake = fake_openai()
    fake.script([Reply("42", prompt_tokens=7, completion_tokens=1)])
    calls: list[dict[str, Any]] = []
    client = client_for(fake)
    got = run(client, ask(client, Task("count", lambda: MSG, number), attempts=3, calls=calls))
    assert got == 42 and fake.n_chat == 1
    assert [(c["tag"], c["outcome"], c["prompt_tokens"], c["completion_tokens"]) for c in calls] == [
        ("count", "ok", 7, 1)
    ]


def test_retries_on_parse_failure_up_to_the_limit(fake_openai: Make) -> None:
    fake = fake_openai()
    fake.script(["nope", "still no", "no", "7"])  # the fourth would parse, but there are three attempts
    calls: list[dict[str, Any]] = []
    render = Counting()
    client = client_for(fake)
    with pytest.raises(Reject) as info:
        run(client, ask(client, Task("count", render, number), attempts=3, calls=calls, prefix="judge_"))
    # the reason and detail are the last failure's, with the prefix
    assert (info.value.reason, info.value.detail) == ("judge_bad_no", "got 'no'")
    assert fake.n_chat == 3 and render.n == 3 and len(calls) == 3
    assert all(c["tag"] == "count" and c["outcome"] == "ok" for c in calls)
    # every attempt was rendered afresh and sent
    assert [r["messages"][0]["content"][:9] for r in fake.requests] == ["attempt 1", "attempt 2", "attempt 3"]


def test_a_later_attempt_that_parses_wins(fake_openai: Make) -> None:
    fake = fake_openai()
    fake.script([Reply("12", finish_reason="length"), "x", "12"])
    calls: list[dict[str, Any]] = []
    client = client_for(fake)
    assert run(client, ask(client, Task("count", lambda: MSG, number), attempts=5, calls=calls)) == 12
    assert fake.n_chat == 3 and [c["finish_reason"] for c in calls] == ["length", "stop", "stop"]


def test_one_attempt_keeps_the_reason_as_is(fake_openai: Make) -> None:
    fake = fake_openai()
    fake.script([Reply("3", finish_reason="length")])
    client = client_for(fake)
    with pytest.raises(Reject) as info:
        run(client, ask(client, Task("count", lambda: MSG, number)))
    assert (info.value.reason, info.value.detail) == ("truncated", "")


def test_an_endpoint_error_is_not_retried_as_a_parse_failure(fake_openai: Make) -> None:
    fake = fake_openai()
    fake.script([Reply(status=400, content="bad request"), "5"])
    calls: list[dict[str, Any]] = []
    client = client_for(fake)
    with pytest.raises(LLMError) as info:
        run(client, ask(client, Task("count", lambda: MSG, number), attempts=3, calls=calls))
    assert fake.n_chat == 1  # a 400 is final for the client, and ask does not ask again
    assert calls == []  # the failed call's accounting travels with the error, for its catcher
    assert info.value.record.tag == "count" and info.value.record.outcome == "http_400"


def test_a_parser_bug_is_not_a_parse_failure(fake_openai: Make) -> None:
    fake = fake_openai()
    fake.script(["1", "2"])

    def broken(text: str, finish_reason: str | None) -> int:
        raise KeyError("bug")

    client = client_for(fake)
    with pytest.raises(KeyError):
        run(client, ask(client, Task("count", lambda: MSG, broken), attempts=3))
    assert fake.n_chat == 1


def test_schema_and_options_are_sent(fake_openai: Make) -> None:
    fake = fake_openai()
    fake.script(["1", "2"])
    schema = {"type": "object", "properties": {"n": {"type": "integer"}}, "required": ["n"]}
    client = client_for(fake, temperature=0.7, max_tokens=99)

    async def both() -> None:
        await ask(client, Task("count", lambda: MSG, number, schema, temperature=0.0, max_tokens=12))
        await ask(client, Task("count", lambda: MSG, number))  # endpoint defaults, free text

    run(client, both())
    first, second = fake.requests
    assert first["response_format"] == response_format("json_schema", schema)
    assert (first["temperature"], first["max_tokens"]) == (0.0, 12)
    assert "response_format" not in second and (second["temperature"], second["max_tokens"]) == (0.7, 99)


def test_attempts_must_be_positive() -> None:
    client = LLMClient(EndpointConfig(base_url="http://127.0.0.1:9/v1", model="m"))
    with pytest.raises(ValueError, match="attempts must be >= 1"):
        run(client, ask(client, Task("count", lambda: MSG, number), attempts=0))


def test_a_domain_grader_asks_through_ask(fake_openai: Make) -> None:
    """The probe domain's grader: judge.max_attempts grading calls, each recorded and sent
    with the grade schema; the last reject's reason (judge_...) with the sample attached."""
    from qdsearch.config import from_dict
    from qdsearch.domains import EvalContext, make_domain
    from qdsearch.domains.grading import grade_schema

    cfg = from_dict({"domain": {"kind": "probe"}, "judge": {"max_attempts": 3}})
    domain = make_domain(cfg)
    fake = fake_openai()
    fake.script(["Sorry, I only help with bicycles.", "not json", '{"quality": 5}', '{"quality": 5, "risk": "x"}'])
    client = client_for(fake)
    ctx = EvalContext(cfg, client, client, client, np.random.default_rng(0), [])
    with pytest.raises(JudgeReject) as info:
        run(client, domain.evaluate(Sample("p1", "Tell me about the weather."), ctx))
    assert (info.value.reason, info.value.detail) == (
        "judge_bad_label",
        "risk='x' not in " + str(list(domain.axes["risk"])),
    )
    assert info.value.sample.response == "Sorry, I only help with bicycles."  # type: ignore[attr-defined]
    assert [c["tag"] for c in ctx.calls] == ["target", "judge", "judge", "judge"] and fake.n_chat == 4
    want = response_format("json_schema", grade_schema(domain.axes, False))
    assert all(r["response_format"] == want and r["temperature"] == 0.0 for r in fake.requests[1:])
    # each attempt is rendered afresh: a new delimiter nonce every time
    tags = {re.search(r"<(material-[0-9a-f]{12})>", r["messages"][1]["content"])[1] for r in fake.requests[1:]}  # type: ignore[index]
    assert len(tags) == 3


# ------------------------------------------------------------------ property: the judge's verdict task


@pytest.fixture(scope="module")
def shared_fake() -> Iterator[FakeOpenAI]:
    srv = FakeOpenAI().start()
    yield srv
    srv.stop()


GOOD = st.builds(
    lambda q, c: json.dumps({"complexity": c, "quality": q, "reason": "fine"}),
    st.integers(1, 10),
    st.integers(1, 10),
)
BAD = st.one_of(
    st.text(max_size=30).filter(lambda s: not s.strip().startswith("{")),
    st.builds(lambda q: json.dumps({"complexity": 5, "quality": q, "reason": "x"}), st.integers(11, 10**6)),
    st.just('{"quality": 5}'),
)


@settings(max_examples=25, deadline=None, derandomize=True, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(replies=st.lists(st.one_of(GOOD, BAD), min_size=1, max_size=5), attempts=st.integers(1, 4))
def test_property_ask_returns_the_first_verdict_or_the_last_reject(
    shared_fake: FakeOpenAI, replies: list[str], attempts: int
) -> None:
    """Whatever the replies: the ask makes min(first parsing reply + 1, attempts) calls,
    each recorded; it returns that reply's verdict, or rejects with the reason of the
    last reply it read (as ``judge_<reason>``)."""
    from qdsearch.judge import parse_verdict

    replies = replies + ["no verdict here"] * (attempts - len(replies))  # at least one reply per attempt
    outcomes: list[dict[str, Any] | Reject] = []
    for text in replies:
        try:
            outcomes.append(parse_verdict(text, "both"))
        except Reject as e:
            outcomes.append(e)
    first_good = next((i for i, o in enumerate(outcomes) if not isinstance(o, Reject)), attempts)
    n_calls = min(attempts, first_good + 1)
    scripted: list[str | Reply] = [*replies[:n_calls]]
    shared_fake.script(scripted)  # exactly what the ask should read
    before = shared_fake.n_chat
    calls: list[dict[str, Any]] = []
    client = client_for(shared_fake)
    task = verdict_task(Sample("s", "Name a prime.", response="7"), "both", np.random.default_rng(0), max_tokens=64)
    try:
        got: dict[str, Any] | Reject = run(client, ask(client, task, attempts=attempts, calls=calls, prefix="judge_"))
    except Reject as e:
        got = e
    assert shared_fake.n_chat - before == n_calls == len(calls)
    assert all(c["tag"] == "judge" for c in calls)
    last = outcomes[n_calls - 1]
    if isinstance(last, Reject):
        assert isinstance(got, Reject) and (got.reason, got.detail) == (f"judge_{last.reason}", last.detail)
    else:
        assert got == last
