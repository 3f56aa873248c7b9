"""Reliability of whole campaigns (issue 6): endpoint faults, malformed model output, budgets.

Every test runs a real campaign (in-process runtime, real pyribs, HTTP to the fake
endpoint on 127.0.0.1) with seeded fault injection.
"""

from __future__ import annotations

import hashlib
import json
import time
from collections import Counter
from pathlib import Path
from typing import Any

import pytest

from qdsearch.archive import elites_frame, make_archive
from qdsearch.campaign import Campaign, CampaignError
from qdsearch.config import ConfigError, from_dict
from qdsearch.descriptors.embedding import EndpointEmbedder
from qdsearch.events import replay
from qdsearch.pipeline import Job
from qdsearch.runtime import make_runtime
from qdsearch.seeds import load_seeds
from qdsearch.store import RunStore
from qdsearch.types import Candidate
from tests.fakes.openai_server import Faults, Reply
from tests.fakes.world import judge, mutate, respond, world, world_quality
from tests.helpers import SEEDS, check_state, config_dict, drive, run_campaign


def _items(events: list[dict[str, Any]]) -> list[dict[str, Any]]:
    return [e for e in events if e.get("type") in ("seed", "child")]


def _children(events: list[dict[str, Any]]) -> list[dict[str, Any]]:
    return [e for e in events if e.get("type") == "child"]


def _check_replay(cfg: Any, campaign: Campaign, events: list[dict[str, Any]]) -> None:
    fresh = make_archive(cfg.archive)
    counters, mismatches = replay(events, fresh)
    assert mismatches == []
    assert campaign.archive is not None
    assert elites_frame(fresh).equals(elites_frame(campaign.archive))
    for key in ("children", "accepted", "submitted", "lost", "calls", "failed", "rejected"):
        assert getattr(counters, key) == getattr(campaign.counters, key), key
    check_state(counters.to_dict())


# ----------------------------------------------------------------------------- 1. endpoint faults


def test_429_and_500_on_30_percent_of_requests_every_child_accounted(fake_openai: Any, tmp_path: Path) -> None:
    fake = fake_openai(world, faults=Faults(p_429=0.15, p_500=0.15, retry_after="0.001"), seed=11)
    # One retry only, so some calls fail for good and their children are "failed".
    d = config_dict(fake.base_url, tmp_path, budget={"max_children": 60})
    d["endpoint"].update(max_retries=1, backoff_s=0.001, max_backoff_s=0.01)
    cfg = from_dict(d)
    campaign, store = run_campaign(cfg)
    events = list(store.events())
    state = json.loads((store.path / "state.json").read_text())
    store.close()

    n_faults = fake.stats.get("429", 0) + fake.stats.get("500", 0)
    assert 0.2 < n_faults / fake.n_chat < 0.4, fake.stats
    children = _children(events)
    c = campaign.counters
    assert campaign.stop_reason == "max_children"
    # Every submitted child is logged exactly once, ids 0..59 with no gap.
    assert sorted(e["id"] for e in children) == [f"c{i:07d}" for i in range(60)]
    assert c.submitted == c.children == 60 and c.lost == 0
    # submitted = accepted + rejected + failed, and each by reason agrees with the log.
    accepted = [e for e in children if e["status"] == "accepted"]
    failed = [e for e in children if e["status"] == "rejected" and e["reject"].startswith("llm_")]
    rejected = [e for e in children if e["status"] == "rejected" and not e["reject"].startswith("llm_")]
    assert (len(accepted), len(rejected), len(failed)) == (c.accepted, c.rejected, c.failed)
    assert c.submitted == c.accepted + c.rejected + c.failed
    assert failed, "one retry at 30% faults must exhaust some calls"
    by_reason = Counter(e["reject"] for e in children if e["status"] == "rejected")
    assert by_reason == Counter(c.rejects)  # the children's; seeds' are in seed_rejects
    seed_reasons = Counter(e["reject"] for e in _items(events) if e["type"] == "seed" and e["status"] == "rejected")
    assert seed_reasons == Counter(c.seed_rejects)
    # A failed child's reason is its failing call's outcome; it has no score.
    for e in failed:
        last = e["calls"][-1]
        assert e["reject"] == f"llm_{last['outcome']}" and last["outcome"] in ("http_429", "http_500")
        assert last["attempts"] == 2 and e["quality"] is None and e["measures"] is None
    # The other children's work is kept: retried-then-successful calls are in accepted children.
    assert any(call["attempts"] > 1 for e in accepted for call in e["calls"])
    assert all(call["outcome"] == "ok" for e in accepted for call in e["calls"])
    assert len(accepted) >= 20
    # state.json carries the same bookkeeping.
    for key in ("submitted", "children", "accepted", "rejected", "failed", "lost"):
        assert state[key] == getattr(c, key), key
    check_state(state)
    _check_replay(cfg, campaign, events)


class _FlakyRuntime:
    """Delegates to a real runtime; the job of one child raises (a worker bug, a dead actor)."""

    def __init__(self, inner: Any, bad: str) -> None:
        self.inner, self.bad = inner, bad

    async def submit(self, job: Job) -> Candidate:
        cand: Candidate = await self.inner.submit(job)
        if job.child_id == self.bad:
            raise RuntimeError("worker died")
        return cand

    async def close(self) -> None:
        await self.inner.close()


def test_a_job_that_raises_loses_no_other_child(fake_openai: Any, tmp_path: Path) -> None:

    fake = fake_openai(world)
    cfg = from_dict(config_dict(fake.base_url, tmp_path, budget={"max_children": 20}))
    store = RunStore.create(cfg)
    runtime = _FlakyRuntime(make_runtime(cfg, cfg.endpoint), "c0000004")
    campaign = Campaign(cfg, load_seeds(cfg.seeds.path), runtime, EndpointEmbedder(cfg.embedding), store)  # type: ignore[arg-type]

    drive(campaign, runtime)
    events = list(store.events())
    store.close()
    children = sorted(_children(events), key=lambda e: e["id"])
    assert [e["id"] for e in children] == [f"c{i:07d}" for i in range(20)]
    bad = children[4]
    assert bad["status"] == "rejected" and bad["reject"] == "runtime_error" and "worker died" in bad["detail"]
    assert campaign.counters.rejects["runtime_error"] == 1 and campaign.counters.submitted == 20


def test_retry_after_is_honoured_in_a_campaign(fake_openai: Any, tmp_path: Path) -> None:
    # Only 429s, each advertising 0.15 s: every retry of a call waited at least that.
    fake = fake_openai(world, faults=Faults(p_429=0.3, retry_after="0.15"), seed=5)
    d = config_dict(fake.base_url, tmp_path, budget={"max_children": 12})
    d["endpoint"].update(backoff_s=0.0, max_retries=6)
    campaign, store = run_campaign(from_dict(d))
    events = list(store.events())
    store.close()
    retried = [call for e in _items(events) for call in e["calls"] if call["attempts"] > 1]
    assert retried and fake.stats.get("429", 0) >= len(retried)
    for call in retried:
        assert call["latency_s"] >= 0.15 * (call["attempts"] - 1) - 0.01, call
    assert campaign.counters.failed == 0


def _timed_run(fake: Any, tmp_path: Path, name: str) -> tuple[float, Campaign, list[dict[str, Any]]]:
    d = config_dict(fake.base_url, tmp_path, budget={"max_children": 96}, runtime={"in_flight": 8, "embed_batch": 8})
    d["run"]["name"] = name
    # The per-request timeout is sized from the latency (0.1 s): 2.5x, with fast retries.
    d["endpoint"].update(timeout_s=0.25, backoff_s=0.001, max_retries=3, concurrency=16)
    cfg = from_dict(d)
    t = time.perf_counter()
    campaign, store = run_campaign(cfg)
    wall = time.perf_counter() - t
    events = list(store.events())
    store.close()
    return wall, campaign, events


def test_hanging_requests_time_out_and_wall_time_stays_within_1_2x(fake_openai: Any, tmp_path: Path) -> None:
    ratios = []
    for attempt in range(2):  # one re-measurement absorbs a noisy machine
        clean = fake_openai(world, latency_s=0.1, seed=1)
        hang = fake_openai(world, latency_s=0.1, faults=Faults(p_hang=0.05, hang_s=5.0), seed=1)
        t_clean, _, _ = _timed_run(clean, tmp_path, f"clean{attempt}")
        t_hang, campaign, events = _timed_run(hang, tmp_path, f"hang{attempt}")
        # Nothing stays stuck: every child submitted is logged, none in flight.
        c = campaign.counters
        assert c.children == c.submitted == 96 and c.lost == 0 and campaign.stats().in_flight == 0
        assert hang.stats.get("hang", 0) >= 5
        timed_out = [call for e in _items(events) for call in e["calls"] if call["attempts"] > 1]
        assert timed_out and all(call["latency_s"] >= 0.25 for call in timed_out)  # waited out, then retried
        ratios.append(t_hang / t_clean)
        print(f"fault-free {t_clean:.2f}s, 5% hangs {t_hang:.2f}s, ratio {t_hang / t_clean:.3f}")
        if ratios[-1] <= 1.2:
            break
    assert min(ratios) <= 1.2, ratios


# ----------------------------------------------------------------------------- 2. malformed model output

_SEED_TEXTS = {s["instruction"] for s in SEEDS}
_VERDICT_OK = '{"quality": 7, "complexity": 3, "reason": "fine"}'
# kind -> (reply, the reject reason it must end in)
_JUDGE_BAD: dict[str, tuple[Reply, str]] = {
    "truncated_json": (Reply('{"quality": 9, "complex'), "judge_not_json"),
    "invalid_json": (Reply("quality: 9, complexity: 3"), "judge_not_json"),
    "length": (Reply(_VERDICT_OK, finish_reason="length"), "judge_truncated"),
    "refusal": (Reply("I'm sorry, but I can't grade this."), "judge_refusal"),
    "empty": (Reply(""), "judge_not_json"),
    "out_of_range": (Reply('{"quality": 11, "complexity": 3, "reason": "x"}'), "judge_score_out_of_range"),
    "nan_score": (Reply('{"quality": NaN, "complexity": 3, "reason": "x"}'), "judge_score_out_of_range"),
    "zero_score": (Reply('{"quality": 0, "complexity": 3, "reason": "x"}'), "judge_score_out_of_range"),
}
_RESPOND_BAD: dict[str, tuple[Reply, str]] = {
    "empty": (Reply(""), "empty_response"),
    "refusal": (Reply("I'm sorry, but I can't help with that."), "refusal_response"),
    "refusal_typographic": (Reply("I\u2019m sorry, but I can\u2019t assist with that request."), "refusal_response"),
    "length": (Reply("A careful answer that was cut off in the mid", finish_reason="length"), "truncated_response"),
}
_OPERATOR_BAD: dict[str, tuple[Reply, str]] = {
    "truncated_json": (Reply('{"instruction": "Explain the'), "not_json"),
    "length": (
        Reply('{"instruction": "Explain tides in depth for a class.", "input": ""}', finish_reason="length"),
        "truncated_mutation",
    ),
    "refusal_text": (Reply("I'm sorry, but I can't help with rewriting this task."), "not_json"),
    "refusal_json": (
        Reply('{"instruction": "I\u2019m sorry, but I can\u2019t rewrite this task.", "input": ""}'),
        "refusal",
    ),
    "empty": (Reply(""), "not_json"),
    "empty_instruction": (Reply('{"instruction": "", "input": ""}'), "empty"),
}


def _h(text: str) -> int:
    return int(hashlib.sha256(text.encode()).hexdigest()[:8], 16)


class _Corrupting:
    """The world's model, with malformed replies injected by request content.

    Each mutation gets a unique suffix, so every child's text is its own. A judged
    or answered text is corrupted for every request about it (so judge retries see
    the same fault), kinds taken in turn so each kind occurs; a "transient" text
    gets one bad verdict, then good ones.
    """

    def __init__(self) -> None:
        self.n = 0
        self.judge: dict[str, str] = {}
        self.transient: dict[str, int] = {}
        self.respond: dict[str, str] = {}
        self.operator: Counter[str] = Counter()

    def _pick(self, table: dict[str, Any], seen: int) -> str:
        return list(table)[seen % len(table)]

    def __call__(self, req: dict[str, Any]) -> str | Reply:
        system = req["messages"][0]["content"] if req["messages"][0]["role"] == "system" else ""
        user = str(req["messages"][-1]["content"])
        if system.startswith("You rewrite tasks"):
            if _h(user) % 4 == 0:
                kind = self._pick(_OPERATOR_BAD, sum(self.operator.values()))
                self.operator[kind] += 1
                return _OPERATOR_BAD[kind][0]
            child = json.loads(mutate(req))
            self.n += 1
            child["instruction"] += f" Variant {self.n}."
            return json.dumps(child)
        if system.startswith("You are a strict, impartial grader"):
            instr = user.split("## Instruction\n", 1)[1].split("\n## ", 1)[0]
            if instr in _SEED_TEXTS:
                return judge(req)
            r = _h(instr) % 6
            if instr not in self.judge and instr not in self.transient and r < 4:
                if r == 3:
                    self.transient[instr] = 0
                else:
                    self.judge[instr] = self._pick(_JUDGE_BAD, len(self.judge))
            if instr in self.judge:
                return _JUDGE_BAD[self.judge[instr]][0]
            if instr in self.transient:
                self.transient[instr] += 1
                if self.transient[instr] == 1:
                    return _JUDGE_BAD["out_of_range"][0]
            return judge(req)
        if user not in _SEED_TEXTS and (user in self.respond or _h(user) % 5 == 0):
            kind = self.respond.setdefault(user, self._pick(_RESPOND_BAD, len(self.respond)))
            return _RESPOND_BAD[kind][0]
        return respond(req)


def test_malformed_model_output_is_retried_or_rejected_never_scored(fake_openai: Any, tmp_path: Path) -> None:
    model = _Corrupting()
    fake = fake_openai(model)
    cfg = from_dict(config_dict(fake.base_url, tmp_path, budget={"max_children": 120}, novelty={"max_similarity": 1.0}))
    campaign, store = run_campaign(cfg)
    events = list(store.events())
    store.close()
    children = _children(events)
    assert len(children) == 120
    # Every kind was injected at least once.
    assert set(model.operator) == set(_OPERATOR_BAD)
    assert set(model.judge.values()) == set(_JUDGE_BAD)
    assert set(model.respond.values()) == set(_RESPOND_BAD)
    assert model.transient
    for e in _items(events):
        if e["status"] == "rejected":
            assert e["reject"] and e["quality"] is None and e["measures"] is None and e["add_status"] == ""
            continue
        # Nothing malformed was ever scored.
        assert e["instruction"] not in model.judge and e["instruction"] not in model.respond
        assert e["quality"] == world_quality(e["instruction"])
    for e in children:
        text = e["instruction"]
        if text in model.respond:
            assert e["reject"] == _RESPOND_BAD[model.respond[text]][1], e
        elif text in model.judge:
            assert e["reject"] == _JUDGE_BAD[model.judge[text]][1], e
            judge_calls = [c for c in e["calls"] if c["tag"] == "judge"]
            assert len(judge_calls) == cfg.judge.max_attempts  # retried, then rejected
    # Operator-level faults leave no instruction; each ends in its own reason.
    op_rejects = Counter(e["reject"] for e in children if not e["instruction"])
    expected = Counter()
    for kind, n in model.operator.items():
        expected[_OPERATOR_BAD[kind][1]] += n
    assert op_rejects - Counter({"no_information_gain": op_rejects["no_information_gain"]}) == expected
    # A transiently bad verdict is retried and the child scored from the good one.
    assert any(
        e["instruction"] in model.transient and sum(c["tag"] == "judge" for c in e["calls"]) == 2
        for e in children
        if e["status"] == "accepted"
    )
    _check_replay(cfg, campaign, events)


# ----------------------------------------------------------------------------- 4. budgets


def _flaky_judge(req: dict[str, Any]) -> str | Reply:
    """The world, with one verdict in four malformed, so judge retries vary a child's cost."""
    out = world(req)
    if req["messages"][0]["content"].startswith("You are a strict") and _h(json.dumps(req["messages"])) % 4 == 0:
        return Reply("not a verdict")
    return out


@pytest.mark.parametrize(
    ("cap", "value", "field"),
    [("max_calls", 90, "calls"), ("max_tokens", 9000, "tokens"), ("max_cost_usd", 0.02, "cost_usd")],
)
def test_budget_caps_stop_cleanly_with_overshoot_at_most_the_children_in_flight(
    fake_openai: Any, tmp_path: Path, cap: str, value: float, field: str
) -> None:
    fake = fake_openai(_flaky_judge)
    d = config_dict(fake.base_url, tmp_path, budget={"max_children": 0, cap: value})
    d["endpoint"].update(price_in_per_mtok=1.0, price_out_per_mtok=4.0)
    cfg = from_dict(d)
    campaign, store = run_campaign(cfg)
    events = list(store.events())
    state = json.loads((store.path / "state.json").read_text())
    store.close()
    assert campaign.stop_reason == cap == state["stop_reason"]
    items = _items(events)
    spent = {
        "calls": sum(len(e["calls"]) for e in items),
        "tokens": sum(e["tokens"] for e in items),
        "cost_usd": sum(e["cost_usd"] for e in items),
    }
    assert spent[field] == pytest.approx(getattr(campaign.counters, field))
    by_id = {e["id"]: e for e in items}
    assert campaign.stop_in_flight, "the stop came with children in flight"
    in_flight = [by_id[i] for i in campaign.stop_in_flight]
    allowance = {
        "calls": sum(len(e["calls"]) for e in in_flight),
        "tokens": sum(e["tokens"] for e in in_flight),
        "cost_usd": sum(e["cost_usd"] for e in in_flight),
    }
    overshoot = spent[field] - value
    print(
        f"{cap}={value}: spent {spent[field]:.4g}, overshoot {overshoot:.4g}, in-flight allowance {allowance[field]:.4g}"
    )
    assert spent[field] <= value + allowance[field] + 1e-9
    # The estimate keeps the overshoot well under one full batch of in-flight children.
    assert overshoot <= 0.5 * allowance[field] + 1e-9
    assert campaign.counters.lost == 0 and campaign.counters.submitted == campaign.counters.children
    check_state(state)
    assert any(len(e["calls"]) > 3 for e in items), "judge retries made some children dearer"


def test_max_cost_usd_needs_prices(fake_openai: Any, tmp_path: Path) -> None:
    fake = fake_openai(world)
    cfg = from_dict(config_dict(fake.base_url, tmp_path, budget={"max_children": 0, "max_cost_usd": 1.0}))
    with pytest.raises(CampaignError, match="max_cost_usd"):
        Campaign(cfg, load_seeds(cfg.seeds.path), None, None, None)  # type: ignore[arg-type]


@pytest.mark.parametrize("bad", [-1.0, float("inf"), float("nan")])
def test_max_cost_usd_is_validated(tmp_path: Path, bad: float) -> None:
    with pytest.raises(ConfigError, match=r"budget\.max_cost_usd"):
        from_dict(config_dict("http://127.0.0.1:9/v1", tmp_path, budget={"max_cost_usd": bad}))
