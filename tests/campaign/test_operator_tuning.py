"""Operator tuning against the scripted endpoint: novelty filter, bandit, operator table."""

from __future__ import annotations

import itertools
import json
import re
import subprocess
import sys
import zlib
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from qdsearch.config import from_dict
from qdsearch.events import Counters
from qdsearch.stats import operator_table
from tests.fakes.world import CLAUSES, TOPICS, world
from tests.helpers import config_dict, run_campaign


class BagOfWords:
    """A real, deterministic embedder whose similarity tracks shared words."""

    dim = 256

    def embed(self, texts: list[str]) -> np.ndarray:
        out = np.zeros((len(texts), self.dim), dtype=np.float32)
        for i, t in enumerate(texts):
            for w in re.findall(r"[a-z]+", t.lower()):
                out[i, zlib.crc32(w.encode()) % self.dim] += 1.0
        return out / np.maximum(np.linalg.norm(out, axis=1, keepdims=True), 1e-9)


_calls = itertools.count()


def planted_world(req: dict[str, Any]) -> str:
    """Like the world, but question_rephrase returns a near-copy of its parent,
    concretize returns the parent unchanged (no information gain), and
    add_constraints adds a varying clause and topic word (so it keeps paying)."""
    user = str(req["messages"][-1]["content"])
    if "Make the task harder by adding" in user:
        parent = json.loads(next(ln for ln in user.splitlines() if ln.startswith("{")))
        n = next(_calls)
        clause = CLAUSES[n % len(CLAUSES)]
        topic = TOPICS[(n // len(CLAUSES)) % len(TOPICS)]
        return json.dumps({"instruction": f"{parent['instruction']} {clause} Relate it to {topic}.", "input": ""})
    if req["messages"][0]["role"] == "system" and "different words" in user:
        parent = json.loads(next(ln for ln in user.splitlines() if ln.startswith("{")))
        return json.dumps({"instruction": parent["instruction"] + " Please.", "input": parent["input"]})
    if "Replace general concepts" in user:
        parent = json.loads(next(ln for ln in user.splitlines() if ln.startswith("{")))
        return json.dumps(parent)
    return world(req)


def run_with(fake: Any, tmp_path: Path, embedder: Any = None, **over: Any) -> list[dict[str, Any]]:
    tmp_path.mkdir(parents=True, exist_ok=True)
    cfg = from_dict(config_dict(fake.base_url, tmp_path, **over))
    if embedder is not None:  # swap the embedder the test helper builds
        orig = run_campaign.__globals__["EndpointEmbedder"]
        run_campaign.__globals__["EndpointEmbedder"] = lambda _cfg: embedder
        try:
            _, store = run_campaign(cfg)
        finally:
            run_campaign.__globals__["EndpointEmbedder"] = orig
    else:
        _, store = run_campaign(cfg)
    events = list(store.events())
    store.close()
    return events


def test_novelty_filter_rejects_planted_duplicates(fake_openai: Any, tmp_path: Path) -> None:
    fake = fake_openai(planted_world)
    events = run_with(
        fake,
        tmp_path,
        embedder=BagOfWords(),
        operators={"names": ["question_rephrase", "add_constraints"]},
        novelty={"max_similarity": 0.9},
        budget={"max_children": 30},
    )
    children = [e for e in events if e.get("type") == "child"]
    planted = [e for e in children if e["operator"] == "question_rephrase" and e["quality"] is not None]
    assert planted, "no planted duplicate reached the filter"
    assert all(e["reject"] == "near_duplicate_parent" for e in planted)
    assert all(e["status"] == "rejected" and e["add_status"] == "" for e in planted)
    # add_constraints children pass unless they nearly copy an earlier accepted sample.
    bow = BagOfWords()
    seen: list[str] = []
    accepted = 0
    for e in events:
        if e.get("type") == "child" and e["operator"] == "add_constraints" and e["quality"] is not None:
            if e["reject"] == "near_duplicate_elite":
                sims = bow.embed(seen) @ bow.embed([e["instruction"]])[0]
                assert sims.max() >= 0.9
            accepted += e["status"] == "accepted"
        if e.get("status") == "accepted":
            seen.append(e["instruction"] + (f"\n\n{e['input']}" if e["input"] else ""))
    assert accepted >= 3
    # The same run without the filter accepts them.
    events = run_with(
        fake,
        tmp_path / "off",
        embedder=BagOfWords(),
        operators={"names": ["question_rephrase", "add_constraints"]},
        novelty={"max_similarity": 1.0},
        budget={"max_children": 30},
    )
    assert not any(e.get("reject", "").startswith("near_duplicate") for e in events)


def test_bandit_shifts_toward_the_productive_operator(fake_openai: Any, tmp_path: Path) -> None:
    fake = fake_openai(planted_world)
    shares: dict[str, list[float]] = {"ucb": [], "fixed": []}
    for seed in (1, 2, 3):
        for selection in ("ucb", "fixed"):
            events = run_with(
                fake,
                tmp_path / f"{selection}{seed}",
                run={"seed": seed},
                operators={"names": ["add_constraints", "concretize"], "selection": selection},
                budget={"max_children": 60},
                runtime={"in_flight": 4, "embed_batch": 2},
            )
            children = [e for e in events if e.get("type") == "child"]
            assert all(e["selection"].startswith(selection) for e in children)
            late = children[20:]
            shares[selection].append(sum(e["operator"] == "add_constraints" for e in late) / len(late))
    # concretize never gains anything here: the bandit moves most choices to
    # add_constraints, while fixed uniform weights stay near one half.
    ucb, fixed = np.mean(shares["ucb"]), np.mean(shares["fixed"])
    assert ucb >= 0.65 and min(shares["ucb"]) > 0.55, shares
    assert ucb - fixed >= 0.15, shares


@pytest.mark.slow  # about 20 s
def test_operator_table_and_cli(fake_openai: Any, tmp_path: Path) -> None:
    fake = fake_openai(planted_world)
    events = run_with(fake, tmp_path, budget={"max_children": 24})
    children = [e for e in events if e.get("type") == "child"]
    counters = Counters()
    for ev in events:
        counters.update(ev)
    table = operator_table(counters.ops).set_index("operator")
    assert table["children"].sum() == 24
    for op, group in table.iterrows():
        mine = [e for e in children if e["operator"] == op]
        assert group["tokens"] == sum(e["tokens"] for e in mine)
        assert group["new_cells"] == sum(e["add_status"] == "new" for e in mine)
        gain = sum(e["gain"] for e in mine)
        assert abs(group["qd_gain"] - round(gain, 3)) < 1e-6
    concretize = table.loc["concretize"]
    assert concretize["accept_rate"] == 0 and "no_information_gain" in concretize["top_rejects"]
    run_dir = tmp_path / "archives" / "t"
    assert (run_dir / "operators.csv").is_file()
    res = subprocess.run(
        [sys.executable, "-m", "qdsearch.cli", "operators", str(run_dir), "--json"], capture_output=True, text=True
    )
    assert res.returncode == 0, res.stderr
    rows = json.loads(res.stdout)
    assert {r["operator"] for r in rows} == set(table.index)


def riddle_world(req: dict[str, Any]) -> str:
    user = str(req["messages"][-1]["content"])
    if user.startswith("RIDDLE"):
        task = user.split("TASK: ", 1)[1].split("\n", 1)[0]
        return json.dumps({"instruction": f"Solve this riddle first, then: {task}", "input": ""})
    return world(req)


@pytest.mark.slow  # about 30 s
def test_user_defined_operator_from_config_via_cli(fake_openai: Any, tmp_path: Path) -> None:
    from qdsearch.store import dumps_toml
    from tests.helpers import config_dict

    fake = fake_openai(riddle_world)
    conf_dir = tmp_path / "conf"
    (conf_dir / "templates").mkdir(parents=True)
    (conf_dir / "templates" / "riddle.txt").write_text('RIDDLE\nTASK: {instruction}\nAnswer JSON {"instruction": ...}')
    d = config_dict(fake.base_url, tmp_path, budget={"max_children": 6})
    d["operators"] = {"names": ["riddle"], "custom": [{"name": "riddle", "template": "templates/riddle.txt"}]}
    (conf_dir / "c.toml").write_text(dumps_toml(d))
    cli = [sys.executable, "-m", "qdsearch.cli"]
    res = subprocess.run([*cli, "run", str(conf_dir / "c.toml"), "--quiet"], capture_output=True, text=True)
    assert res.returncode == 0, res.stderr[-2000:]
    run_dir = tmp_path / "archives" / "t"
    events = [json.loads(x) for x in (run_dir / "events.jsonl").read_text().splitlines()]
    riddles = [e for e in events if e.get("operator") == "riddle"]
    assert len(riddles) == 6 and sum(e["status"] == "accepted" for e in riddles) >= 3
    assert all(e["instruction"].startswith("Solve this riddle first") for e in riddles if e["status"] == "accepted")
    saved = (run_dir / "config.toml").read_text()
    assert str((conf_dir / "templates" / "riddle.txt").resolve()) in saved  # works from any folder later
    res = subprocess.run([*cli, "operators", str(run_dir)], capture_output=True, text=True, cwd="/")
    assert res.returncode == 0 and "riddle" in res.stdout
