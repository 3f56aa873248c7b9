"""Task prompts on train / val / test splits (issue 21): the splits and their checks, the
minibatch gate, metric calls and their budget, the held-out test pass in state.json and
the export, a scorer that raises, seeds.split/fields, kill -9 and resume (real HTTP fake
server, pyribs, CLI)."""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from qdsearch.cli import main
from qdsearch.config import ConfigError, from_dict
from qdsearch.domains import make_domain
from qdsearch.seeds import SeedError
from qdsearch.selection import pareto_parent
from qdsearch.store import RunStore, dumps_toml
from tests.domains import task_world as tw
from tests.helpers import check_state, child_lines

ROOT = Path(__file__).resolve().parents[2]


def _write(tmp: Path, d: dict[str, Any], name: str = "tp.toml") -> Path:
    p = tmp / name
    p.write_text(dumps_toml(d))
    return p


def _events(run: Path) -> list[dict[str, Any]]:
    return list(RunStore.open(run, write=False).events())


# ------------------------------------------------------------------ the splits
def test_splits_load_and_dev_path_is_the_old_name_of_val(tmp_path: Path) -> None:
    d = tw.config(tmp_path, "http://127.0.0.1:9/v1")
    dom: Any = make_domain(from_dict(d))
    assert (len(dom.train), len(dom.val), len(dom.test)) == (12, 10, 16)
    assert dom.pool == dom.train and dom.dev == dom.val and dom.has_holdout
    assert {ex.split for ex in dom.test} == {"test"}
    old = dict(d["domain"])
    old["dev_path"] = old.pop("val_path")
    for k in ("train_path", "test_path"):
        old.pop(k)
    dom = make_domain(from_dict(d | {"domain": old | {"fewshot": 2}}))
    assert [ex.input for ex in dom.pool] == ["item 101", "item 102"] and len(dom.val) == 8 and not dom.has_holdout
    with pytest.raises(ConfigError, match=r"domain\.dev_path: is the old name of domain\.val_path"):
        from_dict(d | {"domain": d["domain"] | {"dev_path": d["domain"]["val_path"]}}).validate()
    with pytest.raises(ConfigError, match=r"domain\.minibatch_gate: needs domain\.train_path"):
        from_dict(d | {"domain": {"kind": "task_prompt", "val_path": "v.jsonl", "minibatch_gate": True}}).validate()
    with pytest.raises(ConfigError, match=r"operators\.names: 'reflect' shows training examples"):
        make_domain(from_dict(d | {"domain": old, "operators": {"names": ["reflect"]}}))


@pytest.mark.parametrize(("a", "b"), [("train", "test"), ("val", "test"), ("train", "val")])
def test_overlapping_splits_are_an_error_naming_both_files_and_lines(tmp_path: Path, a: str, b: str) -> None:
    d = tw.config(tmp_path, "http://127.0.0.1:9/v1")
    first = Path(d["domain"][f"{a}_path"])
    second = Path(d["domain"][f"{b}_path"])
    lines = second.read_text().splitlines()
    shared = json.loads(first.read_text().splitlines()[4])  # line 5 of the first file
    shared["input"] = "  " + shared["input"].upper() + " "  # case and spacing do not hide it
    lines.insert(2, json.dumps(shared))  # becomes line 3 of the second file
    second.write_text("\n".join(lines) + "\n")
    with pytest.raises(SeedError) as e:
        make_domain(from_dict(d))
    msg = str(e.value)
    assert msg.startswith(f"{second}:3: the same example as {first}:5"), msg
    assert f"the {a} and {b} splits must not share examples" in msg
    # the CLI says it in one line and exits 2
    assert main(["run", str(_write(tmp_path, d)), "--quiet"]) == 2


def test_task_prompt_seeds_honour_split_and_fields(tmp_path: Path) -> None:
    d = tw.config(tmp_path, "http://127.0.0.1:9/v1")
    p = tmp_path / "named.jsonl"
    p.write_text(json.dumps({"prompt": "Is the item even or odd?", "note": "x"}) + "\n")
    cfg = from_dict(d | {"seeds": {"path": str(p), "fields": {"instruction": "prompt"}}})
    seeds = make_domain(cfg).load_seeds(cfg.seeds.path)
    assert [s.instruction for s in seeds] == ["Is the item even or odd?"]


# ------------------------------------------------------------------ campaigns
def _gated(tmp_path: Path, base_url: str, **domain: Any) -> dict[str, Any]:
    dom = {"minibatch": 3, "minibatch_gate": True} | domain
    d = tw.config(
        tmp_path,
        base_url,
        domain=dom,
        budget={"max_children": 24},
        operators={"names": ["rewrite", "terse", "reflect"]},
    )
    d["runtime"]["in_flight"] = 1  # one child at a time: the same run every time
    return d


def test_gated_campaign_scores_test_once_at_the_end_and_counts_metric_calls(
    fake_openai: Any, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("QDSEARCH_NO_CACHE", "1")  # every target request is a metric call
    fake = fake_openai(tw.world)
    assert main(["run", str(_write(tmp_path, _gated(tmp_path, fake.base_url))), "--quiet"]) == 0
    run = tmp_path / "archives" / "tp"
    events = _events(run)
    state = json.loads((run / "state.json").read_text())
    check_state(state)
    # every target request but the test pass's is a metric call of a seed or a child
    target_reqs = [tw.target_inputs(r) for r in fake.requests if tw.target_inputs(r)]
    test_inputs = {f"item {n}" for n in range(201, 217)}
    searched = [t for t in target_reqs if t not in test_inputs]
    assert state["metric_calls"] == len(searched) > 0
    logged = sum(c["tag"] == "target" for e in events if e.get("type") in ("seed", "child") for c in e["calls"])
    assert logged == len(searched)
    # the test split is scored only after the last child: one request per (elite, example)
    first_test = next(i for i, t in enumerate(target_reqs) if t in test_inputs)
    assert all(t in test_inputs for t in target_reqs[first_test:])
    hold = state["holdout"]
    elites = {r["id"]: r for r in map(json.loads, _export(run))}
    assert set(hold["scores"]) == set(elites) and hold["n"] == 16 and hold["best"] in elites
    assert len(target_reqs) - first_test == 16 * len(elites) == hold["calls"]
    best = elites[hold["best"]]
    assert best["quality"] == max(r["quality"] for r in elites.values())
    for i, r in elites.items():  # the world: RULE is right everywhere, GUESS on half the items
        want = 1.0 if tw.RULE in r["instruction"] else 0.5 if tw.GUESS in r["instruction"] else 0.0
        assert hold["scores"][i]["score"] == r["test_score"] == pytest.approx(want)
    assert best["test_score"] == 1.0  # the reflective operator found the rule
    # the report shows the held-out scores: a column of the elites table and the best prompt's
    from qdsearch.report import build_report, embedded_data

    page = embedded_data(Path(build_report(run, tmp_path / "rep")).read_text())
    assert page["summary"]["holdout"]["best_test"] == 1.0 and page["summary"]["holdout"]["n"] == 16
    assert {e["id"]: e["test_score"] for e in page["elites"]} == {i: r["test_score"] for i, r in elites.items()}
    # test results are never in a report (the response the operators show)
    reports = [e.get("response", "") for e in events if e.get("type") in ("seed", "child")]
    assert not any(re.search(r"item 2\d\d", r) for r in reports) and any("item 1" in r for r in reports)
    # the gate: children worse than their parent on its minibatch got no val pass
    gated = [e for e in events if e.get("reject") == "minibatch_gate"]
    assert gated, "the world makes children that lose on the minibatch"
    for e in gated:
        assert sum(c["tag"] == "target" for c in e["calls"]) <= 3  # the minibatch only (some cached)
        assert e["response"].count("\ntrace: ") == 3
        assert "train minibatch:" in e["response"] and "val_scores" not in e["response"]
    passed = [e for e in events if e.get("type") == "child" and e["status"] == "accepted"]
    assert all("passed the gate" in e["judge_reason"] for e in passed)
    # resume does not score the same elites again
    before = len(fake.requests)
    assert main(["resume", str(run), "--quiet"]) == 0
    assert len(fake.requests) == before
    assert json.loads((run / "state.json").read_text())["holdout"] == hold


def _export(run: Path) -> list[str]:
    assert main(["export", str(run)]) == 0
    return (run / "export" / "elites.jsonl").read_text().splitlines()


def test_metric_call_budget_stops_the_campaign(
    fake_openai: Any, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("QDSEARCH_NO_CACHE", "1")
    fake = fake_openai(tw.world)
    d = _gated(tmp_path, fake.base_url, test_elites="best")
    d["budget"] = {"max_metric_calls": 60}
    d["runtime"]["in_flight"] = 1
    assert main(["run", str(_write(tmp_path, d)), "--quiet"]) == 0
    state = json.loads((tmp_path / "archives" / "tp" / "state.json").read_text())
    assert state["stop_reason"] == "max_metric_calls"
    # seeds: 2 x (10 val + 3 train); a child: 3, or 3 + 10 + 3 when it passes the gate
    assert 60 - 16 <= state["metric_calls"] <= 60 + 16
    assert list(state["holdout"]["scores"]) == [state["holdout"]["best"]]  # test_elites = "best"


def test_a_scorer_that_raises_counts_the_example_wrong_and_the_campaign_goes_on(
    fake_openai: Any, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from qdsearch.domains.task_prompt import domain as tp

    real = tp.score_reply

    def flaky(output: str, expected: str, *a: Any, **k: Any) -> Any:
        if output == "odd":  # every right answer on an odd item
            raise RuntimeError("the scorer broke")
        return real(output, expected, *a, **k)

    monkeypatch.setattr(tp, "score_reply", flaky)
    fake = fake_openai(tw.world)
    d = tw.config(tmp_path, fake.base_url, budget={"max_children": 6})
    d["seeds"]["path"] = str(tmp_path / "rule.jsonl")
    rule = [{"instruction": f"Classify. {tw.RULE}"}, {"instruction": f"Which is it? {tw.RULE}"}]
    Path(d["seeds"]["path"]).write_text("".join(json.dumps(r) + "\n" for r in rule))
    assert main(["run", str(_write(tmp_path, d)), "--quiet"]) == 0
    run = tmp_path / "archives" / "tp"
    seed = next(e for e in _events(run) if e.get("type") == "seed")
    assert seed["quality"] == pytest.approx(1.0 + 9.0 * 0.5)  # the odd half counted wrong
    assert "scorer failed on val:" in seed["detail"] and "the scorer broke" in seed["detail"]
    assert "could not be scored, so counted as wrong (RuntimeError: the scorer broke)" in seed["response"]
    state = json.loads((run / "state.json").read_text())
    assert state["children"] == 6 and state["holdout"]["scores"][seed["id"]]["score"] == 0.5


def test_a_grader_that_never_answers_counts_the_example_wrong(fake_openai: Any, tmp_path: Path) -> None:
    def world(req: dict[str, Any]) -> str:
        return "no verdict" if "impartial grader" in req["messages"][0]["content"] else tw.world(req)

    fake = fake_openai(world)
    d = tw.config(tmp_path, fake.base_url, domain={"scoring": "judge", "test_path": ""}, budget={"max_children": 2})
    d["judge"] = {"max_attempts": 1}
    assert main(["run", str(_write(tmp_path, d)), "--quiet"]) == 0
    seeds = [e for e in _events(tmp_path / "archives" / "tp") if e.get("type") == "seed"]
    assert all(e["quality"] == pytest.approx(1.0) for e in seeds)
    assert all("scorer failed on val:" in e["detail"] and "not_json" in e["detail"] for e in seeds)


@pytest.mark.slow  # about 10-20 s: a real `qdsearch run` killed with -9, then resumed
def test_kill_9_then_resume_a_task_prompt_run(fake_openai: Any, tmp_path: Path) -> None:
    fake = fake_openai(tw.world, latency_s=0.03)
    d = _gated(tmp_path, fake.base_url)
    d["budget"] = {"max_children": 30}
    d["runtime"] |= {"in_flight": 3, "snapshot_every": 4, "snapshot_min_s": 0}
    cfg = _write(tmp_path, d)
    run = tmp_path / "archives" / "tp"
    env = dict(os.environ, QDSEARCH_NO_CACHE="1")
    cli = [sys.executable, "-m", "qdsearch.cli"]
    proc = subprocess.Popen([*cli, "run", str(cfg), "--quiet"], env=env, cwd=ROOT, stderr=subprocess.PIPE)
    deadline = time.monotonic() + 90
    while child_lines(run / "events.jsonl") < 8 and time.monotonic() < deadline and proc.poll() is None:
        time.sleep(0.02)
    assert proc.poll() is None, proc.stderr.read().decode()[-2000:] if proc.stderr else ""
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait()
    if proc.stderr:
        proc.stderr.close()
    killed = _events(run)
    assert not any(e.get("type") == "holdout" for e in killed)  # the session never ended
    assert main(["resume", str(run), "--quiet"]) == 0
    after = _events(run)
    assert after[: len(killed)] == killed
    state = json.loads((run / "state.json").read_text())
    check_state(state)
    assert state["children"] == 30 and state["lost"] <= 3 + 1  # in flight, or waiting for their embedding batch
    ids = [e["id"] for e in after if e.get("type") == "child"]
    assert len(ids) == len(set(ids))
    elites = {json.loads(x)["id"] for x in _export(run)}
    assert set(state["holdout"]["scores"]) == elites


# ------------------------------------------------------------------ Pareto parent selection
def test_pareto_parent_keeps_a_prompt_that_alone_solves_an_example() -> None:
    scores = [[1, 1, 1, 0], [1, 1, 0, 0], [0, 0, 0, 1], None]  # #1 is dominated by #0; #3 has no scores
    rng = np.random.default_rng(0)
    picks = [pareto_parent(scores, rng) for _ in range(400)]
    assert set(picks) == {0, 2}
    assert 0.6 < picks.count(0) / 400 < 0.9  # best on 3 examples against 1
    assert pareto_parent([None, None], rng) in (0, 1)
    assert pareto_parent([[0, 0], [0, 0]], rng) in (0, 1)  # nothing solved: uniform


@settings(max_examples=60, deadline=None)
@given(st.lists(st.lists(st.sampled_from([0.0, 0.5, 1.0]), min_size=4, max_size=4), min_size=1, max_size=6))
def test_property_a_pareto_parent_is_best_somewhere_and_never_dominated(rows: list[list[float]]) -> None:
    m = np.asarray(rows)
    i = pareto_parent(rows, np.random.default_rng(len(rows)))
    if not (m.max(axis=0) > 0).any():
        return
    assert ((m[i] >= m.max(axis=0)) & (m.max(axis=0) > 0)).any()
    assert not any((m[j] >= m[i]).all() and (m[j] > m[i]).any() for j in range(len(rows)))


def test_the_generational_schedule_gives_the_same_task_prompt_run_twice(
    fake_openai: Any, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("QDSEARCH_NO_CACHE", "1")
    runs = []
    for k, latency in enumerate((0.0, 0.02)):  # different latencies: a different finishing order
        fake = fake_openai(tw.world, latency_s=latency)
        (tmp_path / str(k)).mkdir()
        d = _gated(tmp_path / str(k), fake.base_url, parent_selection="pareto")
        d["runtime"] |= {"schedule": "generational", "generation_size": 4, "in_flight": 4}
        assert main(["run", str(_write(tmp_path / str(k), d)), "--quiet"]) == 0
        run = tmp_path / str(k) / "archives" / "tp"
        keys = ("id", "parent_id", "operator", "instruction", "status", "reject", "quality", "cell")
        runs.append(
            (
                [tuple(e.get(x) for x in keys) for e in _events(run) if e.get("type") in ("seed", "child")],
                json.loads((run / "state.json").read_text())["holdout"]["scores"],
            )
        )
    assert runs[0] == runs[1]
