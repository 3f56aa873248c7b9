"""operators.max_attempts: a child whose operator reply is unusable is asked again."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from qdsearch.config import ConfigError, from_dict
from tests.fakes import world as fake_world
from tests.helpers import config_dict, run_campaign


def lazy_mutator(req: dict[str, Any]) -> str:
    """The scripted world, except that the first operator call of each request text
    returns the parent unchanged (what a tiny model often does: a no_information_gain
    reject); asked the same again, it answers properly."""
    if fake_world._system(req).startswith("You rewrite tasks"):
        user = fake_world._user(req)
        if user not in lazy_mutator.seen:  # type: ignore[attr-defined]
            lazy_mutator.seen.add(user)  # type: ignore[attr-defined]
            line = next(ln for ln in user.splitlines() if ln.startswith("{"))
            return json.dumps(json.loads(line))
    return fake_world.world(req)


def children(store: Any) -> list[dict[str, Any]]:
    return [e for e in store.events() if e.get("type") == "child"]


@pytest.mark.parametrize("attempts", [1, 2])
def test_an_unchanged_child_is_asked_again_up_to_max_attempts(fake_openai: Any, tmp_path: Path, attempts: int) -> None:
    lazy_mutator.seen = set()  # type: ignore[attr-defined]
    fake = fake_openai(lazy_mutator)
    over = {"budget": {"max_children": 8}, "operators": {"names": ["add_constraints"], "max_attempts": attempts}}
    cfg = from_dict(config_dict(fake.base_url, tmp_path, **over))
    _, store = run_campaign(cfg)
    kids = children(store)
    store.close()
    assert len(kids) == 8
    lost = [k for k in kids if k["reject"] == "no_information_gain"]
    op_calls = [sum(1 for c in k["calls"] if c["tag"] == "add_constraints") for k in kids]
    if attempts == 1:
        assert lost and all(n == 1 for n in op_calls)
    else:
        # each lazy reply is followed by a fresh one: no child is lost to it, and the
        # second call is on the child's record (counted, paid)
        assert not lost, [k["reject"] for k in kids]
        assert all(n in (1, 2) for n in op_calls) and 2 in op_calls
    assert lazy_mutator.seen  # type: ignore[attr-defined]


@pytest.mark.parametrize("bad", [0, 11, "2", 1.5])
def test_max_attempts_is_checked(tmp_path: Path, bad: Any) -> None:
    d = config_dict("http://127.0.0.1:9/v1", tmp_path, operators={"max_attempts": bad})
    with pytest.raises(ConfigError, match=r"operators\.max_attempts"):
        from_dict(d)
