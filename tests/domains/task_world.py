"""A scripted task world for the task_prompt tests (imported by them; not a test file).

The task: is the number in ``item N`` even or odd. The target answers by the prompt
it was given: a prompt with ``RULE`` (the parity rule) answers every example right;
one with ``GUESS`` answers ``even`` always (right half the time); any other prompt
answers ``unsure`` (no label: wrong). The mutation model appends the first of
MARKERS its parent lacks (chosen by a hash, so a campaign explores several), and the
reflective operator's request, which shows training examples, gets RULE appended;
``terse`` answers a prompt with no rule at all.
The grader (``judge`` scoring) gives 10 when the reference is the answer's first word,
with a reason naming the reference.
"""

from __future__ import annotations

import hashlib
import json
import re
from pathlib import Path
from typing import Any

RULE = "Answer even when the number is divisible by 2, else odd."
GUESS = "When unsure, say even."
MARKERS = (GUESS, "Be brief.", "Answer with one word.", RULE)
SEED_PROMPTS = ["Say whether the item's number is even or odd.", "Parity of the item: even or odd?"]


def h(text: str) -> int:
    return int(hashlib.sha256(text.encode()).hexdigest()[:8], 16)


def label(n: int) -> str:
    return "even" if n % 2 == 0 else "odd"


def write_split(path: Path, numbers: range | list[int]) -> Path:
    path.write_text("".join(json.dumps({"input": f"item {n}", "output": label(n)}) + "\n" for n in numbers))
    return path


def splits(tmp: Path) -> dict[str, str]:
    """train (items 1-12), val (101-110), test (201-216): disjoint."""
    return {
        "train_path": str(write_split(tmp / "train.jsonl", range(1, 13))),
        "val_path": str(write_split(tmp / "val.jsonl", range(101, 111))),
        "test_path": str(write_split(tmp / "test.jsonl", range(201, 217))),
    }


def is_mutation(req: dict[str, Any]) -> bool:
    msgs = req.get("messages") or []
    return bool(msgs) and msgs[0]["role"] == "system" and msgs[0]["content"].startswith("You improve prompts")


def world(req: dict[str, Any]) -> str:
    msgs = req["messages"]
    sys = msgs[0]["content"] if msgs[0]["role"] == "system" else ""
    user = msgs[-1]["content"]
    if is_mutation(req):
        if "## Current prompt\n" in user:  # the reflective operator
            parent = user.split("## Current prompt\n", 1)[1].split("\n\n", 1)[0]
            return json.dumps(
                {
                    "instruction": f"{parent} {RULE}"
                    if RULE not in parent
                    else f"{parent} Look at the last digit ({h(parent) % 97})."
                }
            )
        parent = user.split("Prompt:\n", 1)[1].split("\n\nAnswer with JSON only", 1)[0]
        if "terse instruction" in user:  # terse drops every rule: worse than a parent that had one
            return json.dumps({"instruction": f"Even or odd? ({h(parent) % 1000})", "input": ""})
        unused = [m for m in MARKERS if m not in parent]
        marker = unused[h(parent) % len(unused)] if unused else f"Note {h(parent) % 1000}."
        return json.dumps({"instruction": f"{parent} {marker}", "input": ""})
    if "impartial grader" in sys:
        m = re.search(r"## Reference answer\n(.*?)\n## Answer to grade\n(.*?)\n</material", user, re.S)
        assert m is not None
        ref, ans = m.group(1).strip(), m.group(2).strip()
        ok = ans.split()[0].strip(".").lower() == ref if ans.split() else False
        return json.dumps({"quality": 10 if ok else 1, "reason": f"the reference is {ref}"})
    m = re.search(r"item (\d+)", user)
    if m is None:
        return "unsure"
    if RULE in sys:
        return label(int(m.group(1)))
    if GUESS in sys:
        return "even"
    return "unsure"


def target_inputs(req: dict[str, Any]) -> str:
    """The input a target request is about ("" for mutation or grading requests)."""
    if is_mutation(req) or "impartial grader" in str(req["messages"][0]["content"]):
        return ""
    return str(req["messages"][-1]["content"])


def config(tmp: Path, base_url: str, *, domain: dict[str, Any] | None = None, **over: Any) -> dict[str, Any]:
    seeds = tmp / "prompts.jsonl"
    seeds.write_text("".join(json.dumps({"instruction": p}) + "\n" for p in SEED_PROMPTS))
    d: dict[str, Any] = {
        "run": {"name": "tp", "out_dir": str(tmp / "archives"), "seed": 2},
        "domain": {"kind": "task_prompt", "scoring": "contains", "labels": ["even", "odd"], **splits(tmp)}
        | (domain or {}),
        "endpoint": {"base_url": base_url, "model": "fake", "json_mode": "json_object", "backoff_s": 0.01},
        "embedding": {"backend": "endpoint", "base_url": base_url, "model": "fake-embed"},
        "seeds": {"path": str(seeds)},
        "archive": {"topic": "pca", "complexity_bins": 4, "topic_dims": 1, "topic_bins": 3},
        "operators": {"names": ["rewrite", "terse"], "selection": "fixed"},
        "novelty": {"max_similarity": 1.0},
        "budget": {"max_children": 10},
        "runtime": {"kind": "inprocess", "in_flight": 2, "embed_batch": 2},
    }
    for k, v in over.items():
        d.setdefault(k, {}).update(v)
    return d
