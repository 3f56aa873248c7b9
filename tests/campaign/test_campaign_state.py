"""The campaign's pure state: ask and tell without a runtime (a real pyribs archive,
hashed embeddings, a fixed generator)."""

from __future__ import annotations

import hashlib
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from qdsearch.archive import archive_for, elites_frame
from qdsearch.campaign import CampaignState
from qdsearch.campaign.budget import budget_left, forecast
from qdsearch.campaign.novelty import NoveltyFilter
from qdsearch.config import CampaignConfig, from_dict
from qdsearch.descriptors.space import fit_topic_space
from qdsearch.events import Counters, replay
from qdsearch.operators import BUILTIN
from qdsearch.pipeline import Job
from qdsearch.types import Candidate, Judgement, Sample
from tests.helpers import SEEDS, HashEmbedder

EMBED = HashEmbedder()
CLAUSES = ("Use three bullet points.", "Cite one example.", "Keep it short.", "Show each step.", "End with a summary.")


def config(tmp_path: Path, **over: Any) -> CampaignConfig:
    d: dict[str, Any] = {
        "run": {"name": "s", "out_dir": str(tmp_path), "seed": 3},
        "endpoint": {"base_url": "http://127.0.0.1:1/v1", "model": "m"},
        "archive": {"topic": "pca", "complexity_bins": 5, "topic_dims": 2, "topic_bins": 3},
        "operators": {"names": ["add_constraints", "deepen", "in_breadth", "directional"]},
    }
    for section, values in over.items():
        d.setdefault(section, {}).update(values)
    return from_dict(d)


def seeds() -> list[Sample]:
    return [Sample(f"s{i:05d}", s["instruction"], response=s.get("output", "ok")) for i, s in enumerate(SEEDS)]


def vec(sample: Sample) -> np.ndarray:
    return np.asarray(EMBED.embed([sample.prompt_text()])[0])


def judged(sample: Sample) -> Candidate:
    """The sample judged: quality from a hash of its text, complexity from its clauses."""
    h = int(hashlib.sha256(sample.prompt_text().encode()).hexdigest()[:6], 16)
    cx = 1.0 + 2.0 * sum(c in sample.instruction for c in CLAUSES)
    calls = ({"outcome": "ok", "prompt_tokens": 40, "completion_tokens": 20, "cost_usd": 0.0},) * 3
    return Candidate(sample, Judgement(quality=1.0 + h % 9, complexity=min(10.0, cx)), calls=calls)


def child_of(job: Job) -> Candidate:
    """What a scripted pipeline makes of a job: the parent plus one clause."""
    p = job.parent
    clause = CLAUSES[int(hashlib.sha256(job.child_id.encode()).hexdigest(), 16) % len(CLAUSES)]
    s = Sample(job.child_id, f"{p.instruction} {clause}", "", "an answer", p.id, job.operator, p.generation + 1)
    return judged(s)


def seeded_state(cfg: CampaignConfig) -> tuple[CampaignState, list[dict[str, Any]]]:
    """A state whose seed phase ran: topic space fitted on the seeds, seeds told."""
    state = CampaignState.from_config(cfg)
    ss = seeds()
    space = fit_topic_space(cfg.archive, EMBED.embed([s.prompt_text() for s in ss]), cfg.run.seed)
    state.start(space)
    events = state.tell("seed", [judged(s) for s in ss], {s.id: vec(s) for s in ss})
    return state, events


def job_key(job: Job) -> tuple[Any, ...]:
    return job.child_id, job.operator, job.parent.id, tuple(o.id for o in job.others), job.seed, job.hint


def test_same_state_and_generator_give_the_same_asks(tmp_path: Path) -> None:
    cfg = config(tmp_path)
    a, _ = seeded_state(cfg)
    b, _ = seeded_state(cfg)
    ra, rb = np.random.default_rng(11), np.random.default_rng(11)
    asks_a = [job_key(a.ask(ra)) for _ in range(25)]
    asks_b = [job_key(b.ask(rb)) for _ in range(25)]
    assert asks_a == asks_b
    assert [k[0] for k in asks_a] == [f"c{i:07d}" for i in range(25)]  # fresh ids, in order
    assert a.counters.next_child == a.counters.submitted == 25
    assert len({k[1] for k in asks_a}) > 1 and len({k[2] for k in asks_a}) > 1
    c, _ = seeded_state(cfg)
    rc = np.random.default_rng(12)
    assert [job_key(c.ask(rc)) for _ in range(25)] != asks_a


def test_only_an_operator_that_needs_a_direction_gets_one(tmp_path: Path) -> None:
    assert BUILTIN["directional"].needs_direction
    assert not any(op.needs_direction for name, op in BUILTIN.items() if name != "directional")
    rng = np.random.default_rng(0)
    directed, _ = seeded_state(config(tmp_path, operators={"names": ["directional"]}))
    hints = {directed.ask(rng).hint for _ in range(12)}
    assert all(h.startswith(("make it", "move its subject", "shift it")) for h in hints), hints
    plain, _ = seeded_state(config(tmp_path, operators={"names": ["deepen"]}))
    assert {plain.ask(rng).hint for _ in range(12)} == {""}  # the instruction domain gives no hint


def test_tell_places_the_seeds_and_counts_them(tmp_path: Path) -> None:
    state, events = seeded_state(config(tmp_path))
    assert [e["type"] for e in events] == ["seed"] * len(SEEDS)
    assert all(e["status"] == "accepted" and len(e["measures"]) == 3 for e in events)
    new = sum(e["add_status"] == "new" for e in events)
    assert state.archive is not None and int(state.archive.stats.num_elites) == new == len(state.elites)
    assert state.counters.seeds == state.counters.seeds_accepted == len(SEEDS)
    assert state.counters.new_cells == new and state.counters.calls == 3 * len(SEEDS)
    # the complexity measure is the judged one blended with the LLM-free one
    assert all(e["measures"][0] == e["complexity"] != e["judged_complexity"] for e in events)


def test_a_duplicate_child_is_rejected_with_its_reason_and_counted(tmp_path: Path) -> None:
    state, _ = seeded_state(config(tmp_path))
    rng = np.random.default_rng(5)
    job = state.ask(rng)
    p = job.parent
    copy = judged(Sample(job.child_id, p.instruction, p.input, "another answer", p.id, job.operator, 1))
    elites_before = elites_frame(state.archive)
    emitted: list[dict[str, Any]] = []
    (ev,) = state.tell("child", [copy], {copy.sample.id: vec(p)}, emit=emitted.append)
    assert emitted == [ev]
    assert ev["status"] == "rejected" and ev["reject"] == "near_duplicate_parent"
    assert ev["add_status"] == "" and ev["cell"] == -1 and ev["measures"] is not None
    assert ev["selection"].startswith("fixed p=")  # why its operator was chosen, from ask
    assert state.counters.rejects == {"near_duplicate_parent": 1} and state.counters.children == 1
    assert state.counters.rejected == 1 and state.counters.accepted == 0
    assert elites_frame(state.archive).equals(elites_before)
    # the same text under another parent is a near duplicate of an elite
    job2 = state.ask(rng)
    other = next(s for s in state.elites.values() if s.id != job2.parent.id)
    dup = judged(Sample(job2.child_id, other.instruction, "", "x", job2.parent.id, job2.operator, 1))
    (ev2,) = state.tell("child", [dup], {dup.sample.id: vec(other)})
    assert ev2["reject"] == "near_duplicate_elite"
    assert state.counters.rejects == {"near_duplicate_parent": 1, "near_duplicate_elite": 1}


def test_a_judged_child_without_an_embedding_is_rejected_not_placed(tmp_path: Path) -> None:
    state, _ = seeded_state(config(tmp_path))
    cand = child_of(state.ask(np.random.default_rng(1)))
    (ev,) = state.tell("child", [cand], {}, failures={cand.sample.id: "http_503 after 3 tries"})
    assert ev["reject"] == "embed_failed" and ev["detail"] == "http_503 after 3 tries"
    assert ev["quality"] == cand.judgement.quality  # type: ignore[union-attr]
    assert ev["measures"] is None and state.counters.rejects == {"embed_failed": 1}


def test_replay_of_a_told_log_equals_the_live_state(tmp_path: Path) -> None:
    cfg = config(tmp_path, operators={"selection": "ucb"})
    state, log = seeded_state(cfg)
    rng = np.random.default_rng(2)
    for _ in range(10):  # batches of 4 in flight, told in id order
        jobs = [state.ask(rng) for _ in range(4)]
        cands = [child_of(j) for j in jobs]
        failed = cands[0].sample.id if len(log) % 3 == 0 else ""
        vectors = {c.sample.id: vec(c.sample) for c in cands if c.sample.id != failed}
        log += state.tell("child", cands, vectors, failures={failed: "down"} if failed else None)
    live = state.counters
    assert live.children == 40 and live.accepted + live.rejected + live.failed == 40
    assert live.accepted > 10 and live.improvements + live.new_cells > len(state.elites) - 1
    fresh = archive_for(cfg, None)
    counters, mismatches = replay(log, fresh)
    assert mismatches == []
    assert counters.to_dict() == live.to_dict()
    assert list(counters.recent) == list(live.recent)
    assert elites_frame(fresh).equals(elites_frame(state.archive))
    # the selector saw every child's reward: nothing of it is still pending
    assert float(np.sum(state.selector.pending)) == 0.0  # type: ignore[attr-defined]


def test_restore_rebuilds_the_state_from_the_log(tmp_path: Path) -> None:
    cfg = config(tmp_path)
    state, log = seeded_state(cfg)
    rng = np.random.default_rng(4)
    for _ in range(3):
        cands = [child_of(state.ask(rng)) for _ in range(4)]
        log += state.tell("child", cands, {c.sample.id: vec(c.sample) for c in cands})
    assert state.projection is not None
    again = CampaignState.from_config(cfg)
    again.restore(log, (state.projection, None))
    assert again.elites == state.elites
    assert {k: v.tolist() for k, v in again.measures.items()} == {k: v.tolist() for k, v in state.measures.items()}
    assert again.counters.to_dict() == state.counters.to_dict()
    assert again.ask(np.random.default_rng(9)).child_id == "c0000012"  # no id given out twice


def test_the_novelty_filter_is_off_at_similarity_one() -> None:
    s = Sample("c0000001", "same", parent_id="s00000", operator="deepen")
    v = np.ones(4) / 2.0
    f = NoveltyFilter(1.0)
    f.replace(None, "s00000", v)
    assert not f.active and f.reason(Candidate(s, Judgement(5.0, 5.0)), v, v, BUILTIN) == ""
    on = NoveltyFilter(0.97)
    on.replace(None, "s00000", v)
    assert on.reason(Candidate(s, Judgement(5.0, 5.0)), v, None, BUILTIN) == "near_duplicate_elite"
    # a new response to the same task is no duplicate, by design
    r = Sample("c0000002", "same", parent_id="s00000", operator="answer_augmentation")
    assert on.reason(Candidate(r, Judgement(5.0, 5.0)), v, v, BUILTIN) == ""


@pytest.mark.parametrize(
    ("budget", "children", "in_flight", "expected"),
    [({"max_children": 10}, 9, 0, ""), ({"max_children": 10}, 9, 1, "max_children"), ({"max_calls": 30}, 0, 0, "")],
)
def test_budget_admission_is_a_function_of_the_counters(
    tmp_path: Path, budget: dict[str, Any], children: int, in_flight: int, expected: str
) -> None:
    cfg = config(tmp_path, budget=budget)
    c = Counters(children=children)
    assert budget_left(cfg, c, in_flight=in_flight) == expected
    assert budget_left(cfg, c, in_flight=in_flight, stop_requested=True) == "stopped by user"
    assert budget_left(cfg, c, in_flight=in_flight, halt_reason="embedding_failed: x") == "embedding_failed: x"
    assert forecast(cfg, c, 2)[0] == 2 * 3.0  # operator, respond, judge (complexity in the same call)


def test_budget_caps_count_the_calls_already_spent(tmp_path: Path) -> None:
    cfg = config(tmp_path, budget={"max_calls": 30})
    assert budget_left(cfg, Counters(calls=28), in_flight=0) == "max_calls"  # 28 spent + 3 forecast > 30
    assert budget_left(cfg, Counters(calls=27), in_flight=0) == ""
    assert budget_left(cfg, Counters(calls=24), in_flight=2) == "max_calls"  # two running, one more
