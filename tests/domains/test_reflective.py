"""The reflective operator (issue 21): training traces in a prompt's report, what the
mutation model is shown, the grader's reason as feedback, and that no test-split text
ever reaches a mutation prompt (every request the fake server receives is checked)."""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from qdsearch.cli import main
from qdsearch.domains import TaskPromptDomain
from qdsearch.operators.reflective import REFLECT, Trace, parse_traces, trace_line
from qdsearch.store import dumps_toml
from qdsearch.types import Sample
from tests.domains import task_world as tw

TEST_ITEM = re.compile(r"item 2\d\d\b")


@settings(max_examples=80, deadline=None)
@given(
    st.text(min_size=1, max_size=60),
    st.text(max_size=60),
    st.text(min_size=1, max_size=20),
    st.text(max_size=60),
    st.sampled_from([0.0, 0.25, 1.0]),
)
def test_property_a_trace_survives_its_report_line(inp: str, out: str, exp: str, fb: str, score: float) -> None:
    t = Trace("train:3", inp, out, exp, fb, score)
    line = trace_line(t)
    assert "\n" not in line
    report = f"dev-set score: 1.0/2\n- input: x | expected: y | got: z | why: w\n{line}\nguards: n/a"
    assert parse_traces(report) == [t]


def test_reflect_shows_the_parent_and_its_training_traces_and_nothing_else_of_the_report() -> None:
    traces = [
        Trace("train:1", "item 1", "unsure", "odd", "named none of the labels; expected odd", 0.0),
        Trace("train:2", "item 2", "even", "even", "correct", 1.0),
    ]
    report = "\n".join(
        ["dev-set score: 0.0/2", "mistakes:", "- input: item 105 | expected: odd | got: unsure | why: VALSECRET",
         "val_scores: 0 0", "train minibatch: 1.0/2", *map(trace_line, traces), "guards: hedged=0/2"]
    )  # fmt: skip
    parent = Sample("p", "Say even or odd.", response=report)
    msgs = REFLECT.render(parent, (), np.random.default_rng(0))
    user = msgs[1]["content"]
    assert msgs[0]["content"].startswith("You improve prompts")
    assert "## Current prompt\nSay even or odd." in user
    assert "How the model did on 2 training examples (1 correct)" in user
    for t in traces:
        assert (
            f"Input: {t.input}\nModel output: {t.output}\nExpected answer: {t.expected}\nFeedback: {t.feedback}" in user
        )
    assert "VALSECRET" not in user and "item 105" not in user and "val_scores" not in user
    child = REFLECT.parse(json.dumps({"instruction": "Say even or odd by the last digit.", "input": ""}), parent)
    assert child[0] == "Say even or odd by the last digit."
    assert "reflect" in TaskPromptDomain.operators()  # registered for the domain through the registry


def _campaign(tmp: Path, base_url: str, **domain: Any) -> Path:
    names = ["reflect", "error_hint", "add_example", "crossover", "rewrite", "terse"]
    d = tw.config(
        tmp,
        base_url,
        domain={"minibatch": 4, "minibatch_gate": True, "parent_selection": "pareto", **domain},
        operators={"names": names},
        budget={"max_children": 24},
    )
    d["runtime"]["in_flight"] = 1
    p = tmp / "tp.toml"
    p.write_text(dumps_toml(d))
    assert main(["run", str(p), "--quiet"]) == 0
    return tmp / "archives" / "tp"


@pytest.mark.parametrize("scoring", ["contains", "judge"])
def test_no_test_split_text_ever_reaches_a_mutation_prompt(
    fake_openai: Any, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, scoring: str
) -> None:
    monkeypatch.setenv("QDSEARCH_NO_CACHE", "1")
    fake = fake_openai(tw.world)
    run = _campaign(tmp_path, fake.base_url, scoring=scoring)
    mutation = [r for r in fake.requests if tw.is_mutation(r)]
    ops = {r["messages"][1]["content"].split("\n", 1)[0] for r in mutation}
    assert len(mutation) >= 20 and len(ops) >= 4  # several operators asked
    reflect = [r for r in mutation if "## Current prompt\n" in r["messages"][1]["content"]]
    assert reflect, "the reflective operator was used"
    test_inputs = {f"item {n}" for n in range(201, 217)}
    for r in mutation:
        text = json.dumps(r["messages"], ensure_ascii=False)
        assert not TEST_ITEM.search(text), text[:400]
    # ...while the test split did reach the target (the held-out pass), and training
    # examples did reach the reflective prompts (so the check above could fail)
    assert test_inputs <= {tw.target_inputs(r) for r in fake.requests}
    shown = " ".join(r["messages"][1]["content"] for r in reflect)
    assert re.search(r"Input: item \d\b|Input: item 1[0-2]\b", shown)
    if scoring == "judge":  # judge feedback is the grader's reason
        assert re.search(r"Feedback: graded [0-9.]+ against the reference (even|odd): the reference is", shown)
    state = json.loads((run / "state.json").read_text())
    assert state["holdout"]["scores"] and state["metric_calls"] > 0
