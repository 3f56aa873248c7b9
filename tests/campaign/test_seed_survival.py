"""A user's seeds are never silently dropped (issue 24).

A seed whose generated answer hits the token limit is answered once more with a
larger limit; the seed phase logs which seeds are not in the archive and why (the
``seed_report`` event, kept in ``state.json``); too few surviving seeds stop the run
with one line. Real campaign, real HTTP against the scripted fake endpoint.
"""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any

import pytest

from qdsearch.campaign import Campaign, CampaignError
from qdsearch.cli import main
from qdsearch.config import CampaignConfig, ConfigError, from_dict
from qdsearch.descriptors.embedding import EndpointEmbedder
from qdsearch.events import Counters
from qdsearch.runtime import make_runtime
from qdsearch.seed_survival import OUTRANKED, report_lines, seed_report, survival_error
from qdsearch.seeds import load_seeds
from qdsearch.store import RunStore, dumps_toml
from qdsearch.types import Candidate, Judgement, Sample
from tests.fakes.openai_server import Reply
from tests.fakes.world import world
from tests.helpers import SEEDS, drive

SHORT = 64  # endpoint.max_tokens in these tests


def config(base_url: str, tmp_path: Path, **over: dict[str, Any]) -> CampaignConfig:
    return from_dict(config_dict(base_url, tmp_path, **over))


def config_dict(base_url: str, tmp_path: Path, **over: dict[str, Any]) -> dict[str, Any]:
    seeds = tmp_path / "seeds.jsonl"
    seeds.write_text("".join(json.dumps(s) + "\n" for s in SEEDS))
    d: dict[str, Any] = {
        "run": {"name": "t", "out_dir": str(tmp_path / "archives"), "seed": 1},
        "endpoint": {
            "base_url": base_url,
            "model": "fake-model",
            "json_mode": "json_object",
            "backoff_s": 0.01,
            "timeout_s": 10.0,
            "max_tokens": SHORT,
        },
        "embedding": {"backend": "endpoint", "base_url": base_url, "model": "fake-embed"},
        "seeds": {"path": str(seeds)},
        "archive": {"complexity_bins": 5, "topic_dims": 2, "topic_bins": 3},
        "budget": {"max_children": 6},
        "runtime": {"kind": "inprocess", "in_flight": 3, "embed_batch": 3, "snapshot_every": 10, "snapshot_min_s": 0},
    }
    for section, values in over.items():
        d.setdefault(section, {}).update(values)
    return d


def run(cfg: CampaignConfig) -> tuple[Campaign, RunStore]:
    store = RunStore.create(cfg)
    runtime = make_runtime(cfg, cfg.endpoint)
    campaign = Campaign(cfg, load_seeds(cfg.seeds.path), runtime, EndpointEmbedder(cfg.embedding), store)
    try:
        drive(campaign, runtime)
    finally:
        store.close()
    return campaign, store


def is_respond(req: dict[str, Any]) -> bool:
    return len(req["messages"]) == 1 and "response_format" not in req


def long_answers(req: dict[str, Any]) -> str | Reply:
    """The scripted world, except that an answer needs more than ``SHORT`` tokens."""
    if is_respond(req) and req.get("max_tokens", 0) <= SHORT:
        return Reply(content="The first part of a long and careful answer that", finish_reason="length")
    return world(req)


def test_a_truncated_seed_answer_is_asked_for_again_with_a_larger_limit(fake_openai: Any, tmp_path: Path) -> None:
    fake = fake_openai(long_answers)
    campaign, store = run(config(fake.base_url, tmp_path))
    events = list(RunStore.open(store.path, write=False).events())
    seeds = [e for e in events if e.get("type") == "seed"]
    assert [e["status"] for e in seeds] == ["accepted"] * len(SEEDS)
    answered = [e for e in seeds if not any(s["instruction"] == e["instruction"] and "output" in s for s in SEEDS)]
    assert len(answered) == 3
    for e in answered:
        assert [c["tag"] for c in e["calls"]] == ["respond", "respond", "judge"]
        assert e["calls"][0]["finish_reason"] == "length" and e["calls"][1]["finish_reason"] == "stop"
        assert e["response"].startswith("Here is a careful answer")
    limits = sorted(r["max_tokens"] for r in fake.requests if is_respond(r))
    assert limits.count(4 * SHORT) == 3  # one retry per answered seed, at 4 x endpoint.max_tokens
    # Children are not re-answered: a truncated child's answer is a reject, one call.
    children = [e for e in events if e.get("type") == "child" and e["reject"] == "truncated_response"]
    assert children and all([c["tag"] for c in e["calls"]].count("respond") == 1 for e in children)
    report = json.loads((store.path / "state.json").read_text())["seed_report"]
    assert report["seeds"] == report["judged"] == 6
    assert campaign.counters.seed_report == report


def test_retry_max_tokens_sets_the_seed_retry_limit(fake_openai: Any, tmp_path: Path) -> None:
    fake = fake_openai(long_answers)
    run(config(fake.base_url, tmp_path, seeds={"retry_max_tokens": 300}, budget={"max_children": 1}))
    assert sorted(r["max_tokens"] for r in fake.requests if is_respond(r) and r["max_tokens"] > SHORT)[:3] == [300] * 3


def only_tides_judged(req: dict[str, Any]) -> str:
    """Judge replies are not JSON except for the tides seed (and its children)."""
    out = world(req)
    system = req["messages"][0]["content"]
    if system.startswith("You are a strict, impartial grader") and "tides" not in req["messages"][-1]["content"]:
        return "The quality is about seven, I think."
    return out


def test_too_few_surviving_seeds_stop_the_run_with_one_line(fake_openai: Any, tmp_path: Path) -> None:
    fake = fake_openai(only_tides_judged)
    cfg = config(fake.base_url, tmp_path, judge={"max_attempts": 1})
    store = RunStore.create(cfg)
    runtime = make_runtime(cfg, cfg.endpoint)
    campaign = Campaign(cfg, load_seeds(cfg.seeds.path), runtime, EndpointEmbedder(cfg.embedding), store)
    with pytest.raises(CampaignError) as ei:
        drive(campaign, runtime)
    store.close()
    msg = str(ei.value)
    assert "\n" not in msg
    assert msg.startswith("only 1 of 6 seeds survived responding and judging (seeds.min_survival = 0.5): ")
    assert "judge_not_json x5" in msg
    assert campaign.counters.children == 0  # no child was made from the one survivor
    report = json.loads((store.path / "state.json").read_text())["seed_report"]
    assert (report["seeds"], report["judged"], report["in_archive"]) == (6, 1, 1)
    assert [d["reason"] for d in report["dropped"]] == ["judge_not_json"] * 5
    assert {d["instruction"] for d in report["dropped"]} == {s["instruction"] for s in SEEDS[1:]}


def test_the_terminal_shows_the_missing_seeds_then_the_stop_line(
    fake_openai: Any, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    fake = fake_openai(only_tides_judged)
    cfg = tmp_path / "cfg.toml"
    cfg.write_text(dumps_toml(config_dict(fake.base_url, tmp_path, judge={"max_attempts": 1})))
    assert main(["run", str(cfg), "--quiet"]) == 2
    lines = [ln for ln in capsys.readouterr().err.splitlines() if ln.strip()]
    assert "seeds: 1 of 6 in the archive (1 judged); not in it:" in lines
    start = lines.index("seeds: 1 of 6 in the archive (1 judged); not in it:")
    assert all(" judge_not_json " in ln for ln in lines[start + 1 : start + 6])
    assert lines[-1].startswith("qdsearch: error: only 1 of 6 seeds survived responding and judging")
    assert sum(ln.startswith("qdsearch: error") for ln in lines) == 1


def test_min_survival_zero_runs_on_and_reports_the_dropped_seeds(fake_openai: Any, tmp_path: Path) -> None:
    fake = fake_openai(only_tides_judged)
    campaign, store = run(config(fake.base_url, tmp_path, judge={"max_attempts": 1}, seeds={"min_survival": 0.0}))
    assert campaign.counters.children == 6
    report = json.loads((store.path / "state.json").read_text())["seed_report"]
    assert len(report["dropped"]) == 5
    # The report survives a resume: the counters rebuild it from the event log.
    events = list(RunStore.open(store.path, write=False).events())
    c = Counters()
    for ev in events:
        c.update(ev)
    assert c.seed_report == report


def cand(i: int, quality: float | None, reject: str = "", detail: str = "") -> Candidate:
    j = Judgement(quality, 3.0, "") if quality is not None else None
    return Candidate(Sample(f"s{i}", f"task {i}"), judgement=j, reject=reject, detail=detail)


def test_seed_report_names_each_missing_seed_and_why() -> None:
    cands = [cand(0, 7.0), cand(1, 5.0), cand(2, None, "truncated_response"), cand(3, None, "judge_not_json", "x")]
    r = seed_report(cands, {"s0"})
    assert (r["type"], r["seeds"], r["judged"], r["in_archive"]) == ("seed_report", 4, 2, 1)
    assert [(d["id"], d["reason"]) for d in r["dropped"]] == [
        ("s1", OUTRANKED),
        ("s2", "truncated_response"),
        ("s3", "judge_not_json"),
    ]
    # An outranked seed was judged: it counts as a survivor.
    assert survival_error(r, 0.5) == ""
    assert survival_error(r, 0.75).startswith("only 2 of 4 seeds survived")
    assert survival_error(seed_report(cands[2:], set()), 0.0).startswith("no seed survived responding and judging: ")
    lines = report_lines(r)
    assert lines[0] == "seeds: 1 of 4 in the archive (2 judged); not in it:"
    assert lines[2].startswith("  s2 truncated_response: ") and len(lines) == 4
    assert report_lines(r, limit=1)[-1] == "  ... and 2 more (state.json, seed_report)"


@pytest.mark.parametrize(
    ("section", "values", "key"),
    [
        ("seeds", {"min_survival": 1.5}, "seeds.min_survival"),
        ("seeds", {"min_survival": -0.1}, "seeds.min_survival"),
        ("seeds", {"min_survival": math.nan}, "seeds.min_survival"),
        ("seeds", {"retry_max_tokens": -1}, "seeds.retry_max_tokens"),
        ("judge", {"max_tokens": 8}, "judge.max_tokens"),
    ],
)
def test_bad_survival_and_token_settings_name_the_key(
    tmp_path: Path, section: str, values: dict[str, Any], key: str
) -> None:
    with pytest.raises(ConfigError) as ei:
        config("http://127.0.0.1:9/v1", tmp_path, **{section: values}).validate()
    assert key in str(ei.value) and "\n" not in str(ei.value)


def test_the_judge_asks_for_judge_max_tokens(fake_openai: Any, tmp_path: Path) -> None:
    fake = fake_openai(world)
    run(config(fake.base_url, tmp_path, judge={"max_tokens": 96}, budget={"max_children": 1}))
    judge_calls = [r for r in fake.requests if "response_format" in r and "grader" in r["messages"][0]["content"]]
    assert judge_calls and {r["max_tokens"] for r in judge_calls} == {96}
