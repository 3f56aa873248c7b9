"""operators.answer_retry_max_tokens: a child's answer cut off at endpoint.max_tokens is
asked for once more with the larger limit, as a seed's is; cut off again, the child is
rejected as ``truncated_response``. Real campaign, real HTTP against the scripted fake
endpoint (tests/fakes/world.py)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from qdsearch.config import ConfigError, from_dict
from tests.fakes import world as fake_world
from tests.fakes.openai_server import Reply
from tests.helpers import config_dict, run_campaign

SHORT = 64  # endpoint.max_tokens in these tests
LONG = 200  # operators.answer_retry_max_tokens where it is set


def is_child_answer(req: dict[str, Any]) -> bool:
    """A respond call for a child: no system prompt, no schema, and (with the
    add_constraints operator of the fake world) a constraint clause in the task."""
    return (
        len(req["messages"]) == 1
        and "response_format" not in req
        and any(c in fake_world._user(req) for c in fake_world.CLAUSES)
    )


def long_child_answers(req: dict[str, Any]) -> str | Reply:
    """The scripted world, except that a child's answer needs more than ``SHORT`` tokens."""
    if is_child_answer(req) and req.get("max_tokens", 0) <= SHORT:
        return Reply(content="The first part of a long and careful answer that", finish_reason="length")
    return fake_world.world(req)


def endless_child_answers(req: dict[str, Any]) -> str | Reply:
    """A child's answer is cut off at any limit."""
    if is_child_answer(req):
        return Reply(content="An answer that goes on and on and never", finish_reason="length")
    return fake_world.world(req)


def campaign_children(fake: Any, tmp_path: Path, **operators: Any) -> list[dict[str, Any]]:
    over = {
        "endpoint": {"max_tokens": SHORT},
        "budget": {"max_children": 6},
        "operators": {"names": ["add_constraints"], **operators},
    }
    _, store = run_campaign(from_dict(config_dict(fake.base_url, tmp_path, **over)))
    try:
        return [e for e in store.events() if e.get("type") == "child"]
    finally:
        store.close()


def respond_calls(child: dict[str, Any]) -> list[dict[str, Any]]:
    return [c for c in child["calls"] if c["tag"] == "respond"]


def test_a_truncated_child_answer_is_asked_for_again_with_the_larger_limit(fake_openai: Any, tmp_path: Path) -> None:
    fake = fake_openai(long_child_answers)
    kids = campaign_children(fake, tmp_path, answer_retry_max_tokens=LONG)
    answered = [k for k in kids if respond_calls(k)]
    assert len(answered) >= 4, [k["reject"] for k in kids]
    for k in answered:
        assert k["quality"] is not None and k["reject"] != "truncated_response"  # judged (novelty may still reject it)
        assert [c["finish_reason"] for c in respond_calls(k)] == ["length", "stop"]
        assert k["response"].startswith("Here is a careful answer")  # the second answer, not the cut one
    limits = [r["max_tokens"] for r in fake.requests if is_child_answer(r)]
    assert limits.count(SHORT) == limits.count(LONG) == len(answered)


def test_without_the_setting_a_truncated_child_answer_is_a_reject_after_one_call(
    fake_openai: Any, tmp_path: Path
) -> None:
    fake = fake_openai(long_child_answers)
    kids = campaign_children(fake, tmp_path)
    answered = [k for k in kids if respond_calls(k)]
    assert answered
    assert all(k["reject"] == "truncated_response" and len(respond_calls(k)) == 1 for k in answered)
    assert all(r["max_tokens"] == SHORT for r in fake.requests if is_child_answer(r))


def test_an_answer_cut_off_at_the_larger_limit_too_is_still_rejected(fake_openai: Any, tmp_path: Path) -> None:
    fake = fake_openai(endless_child_answers)
    kids = campaign_children(fake, tmp_path, answer_retry_max_tokens=LONG)
    answered = [k for k in kids if respond_calls(k)]
    assert answered
    for k in answered:
        assert k["reject"] == "truncated_response" and k["quality"] is None
        assert [c["finish_reason"] for c in respond_calls(k)] == ["length", "length"]
        assert not any(c["tag"].startswith("judge") for c in k["calls"])  # never judged


@pytest.mark.parametrize("bad", [-1, 1.5, "512"])
def test_answer_retry_max_tokens_is_checked(tmp_path: Path, bad: Any) -> None:
    d = config_dict("http://127.0.0.1:9/v1", tmp_path, operators={"answer_retry_max_tokens": bad})
    with pytest.raises(ConfigError, match=r"operators\.answer_retry_max_tokens"):
        from_dict(d)
