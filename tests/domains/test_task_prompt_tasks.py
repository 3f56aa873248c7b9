"""The generated tasks (issue 21): experiments/tasks/make_tasks.py is seeded, makes
disjoint splits of any size whose answers follow each task's rule, and the shipped
splits and configs load as task_prompt campaigns."""

from __future__ import annotations

import json
import re
import sys
from pathlib import Path

import pytest

import qdsearch
from qdsearch.domains import make_domain
from qdsearch.domains.scoring import score_reply

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT / "experiments" / "tasks"))
import make_tasks  # noqa: E402


def _rows(folder: Path, split: str) -> list[dict[str, str]]:
    return [json.loads(x) for x in (folder / f"{split}.jsonl").read_text().splitlines()]


def test_generation_is_seeded_disjoint_and_any_size(tmp_path: Path) -> None:
    make_tasks.main(["--out", str(tmp_path / "a"), "--sizes", "50", "40", "120", "--seed", "3"])
    make_tasks.main(["--out", str(tmp_path / "b"), "--sizes", "50", "40", "120", "--seed", "3"])
    make_tasks.main(["--out", str(tmp_path / "c"), "--sizes", "50", "40", "120", "--seed", "4"])
    for kind in make_tasks.KINDS:
        a, b, c = (tmp_path / x / kind for x in "abc")
        for split, n in (("train", 50), ("val", 40), ("test", 120)):
            assert (a / f"{split}.jsonl").read_text() == (b / f"{split}.jsonl").read_text()
            assert len(_rows(a, split)) == n
        assert (a / "test.jsonl").read_text() != (c / "test.jsonl").read_text()
        inputs = [" ".join(r["input"].casefold().split()) for s in ("train", "val", "test") for r in _rows(a, s)]
        assert len(inputs) == len(set(inputs))
    with pytest.raises(ValueError, match="distinct examples"):
        make_tasks.make("weekday", (200, 200, 200), 0)  # 7 days x 30 offsets x 2 directions < 600


def test_answers_follow_each_tasks_rule(tmp_path: Path) -> None:
    make_tasks.main(["--out", str(tmp_path), "--sizes", "100", "0", "0"])
    days = make_tasks.WEEKDAYS
    for r in _rows(tmp_path / "weekday", "train"):
        m = re.match(r"Today is (\w+)\. .* (in|was it) (\d+) days?", r["input"])
        assert m is not None, r
        step = int(m.group(3)) * (1 if m.group(2) == "in" else -1)
        assert r["output"] == days[(days.index(m.group(1)) + step) % 7]
    for r in _rows(tmp_path / "order_id", "train"):
        nums = re.findall(r"\b\d{5}\b", r["input"])
        assert r["output"] == f"ORD-{nums[0]}"  # the order number comes before any phone number
        assert score_reply(r["output"].lower(), r["output"], "exact").correct  # case is ignored
        assert not score_reply(nums[0], r["output"], "exact").correct  # the format is part of the answer
    labels = {r["output"] for r in _rows(tmp_path / "shipping", "train")}
    assert labels == {"express", "standard", "freight"}
    for r in _rows(tmp_path / "shipping", "train"):
        kg = float(re.search(r"([\d.]+) kg", r["input"]).group(1))  # type: ignore[union-attr]
        assert (r["output"] == "freight") == (kg >= 20)


@pytest.mark.parametrize("kind", list(make_tasks.KINDS))
def test_shipped_splits_and_configs_load(kind: str) -> None:
    cfg = qdsearch.load_config(ROOT / f"experiments/task_prompt_{kind}.toml")
    dom = make_domain(cfg)
    assert (len(dom.train), len(dom.val), len(dom.test)) == (30, 30, 60)  # type: ignore[attr-defined]
    assert "reflect" in cfg.operators.names and cfg.domain.minibatch_gate
    assert len(make_domain(cfg).load_seeds(cfg.seeds.path)) == 2
