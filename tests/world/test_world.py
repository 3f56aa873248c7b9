"""The world answering qdsearch's own requests: operators, respond, judge, traps.

Requests are rendered by the real operators and judge, and replies parsed by their
real parsers, so a change of prompts or parsers that the world no longer follows
fails here.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from typing import Any

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from qdsearch.judge import VERDICT_SCHEMA, parse_verdict, render_judge
from qdsearch.llm.client import response_format
from qdsearch.operators import BUILTIN, CHILD_SCHEMA, OperatorReject, PromptOperator
from qdsearch.types import Sample
from qdsearch.world import World, WorldConfig
from qdsearch.world.model import (
    DECEPTIVE_TOPIC,
    MAX_STEPS,
    R_MAX,
    Latent,
    render,
    render_response,
    topic_of,
    true_complexity,
    true_quality,
)

N = 40  # draws per operator
PARENT = Latent(("comet", "orbit"), clauses=(0, 5), steps=1, details=(2,), data=1, opener=1)


def sample(latent: Latent, sid: str = "p", level: int = 3) -> Sample:
    instr, inp = render(latent)
    resp = render_response(latent, level, np.random.default_rng(0))
    return Sample(id=sid, instruction=instr, input=inp, response=resp)


def body_for(op: PromptOperator, parent: Sample, others: Sequence[Sample], hint: str, seed: int) -> dict[str, Any]:
    body: dict[str, Any] = {
        "messages": op.render(parent, others, np.random.default_rng(seed), hint),
        "temperature": 0.8,
    }
    if op.target == "instruction":
        body["response_format"] = response_format("json_object", CHILD_SCHEMA)
    return body


def evolve(
    world: World,
    name: str,
    parent: Latent = PARENT,
    others: Sequence[Latent] = (),
    hint: str = "",
    n: int = N,
    index: int = 0,
) -> list[tuple[Latent, int]]:
    """``n`` children of ``parent`` by operator ``name``: (child state, answer level)."""
    op = BUILTIN[name]
    p = sample(parent)
    others_s = [sample(o, f"o{i}") for i, o in enumerate(others)]
    out = []
    for k in range(n):
        reply = world.chat(body_for(op, p, others_s, hint, k), occurrence=k, operator_index=index)
        assert reply.kind == "operator" and reply.operator == name
        instr, inp, resp = op.parse(reply.content, p)  # the engine's own parser accepts it
        text = f"{instr}\n\n{inp}" if inp else instr
        out.append((world.latent_of(text), world.response_level(resp) if resp else -1))
    return out


@pytest.fixture(scope="module")
def world() -> World:
    return World(WorldConfig(seed=11))


def test_every_builtin_operator_is_recognised_and_parsed(world: World) -> None:
    others = [Latent(("recipe", "oven")), Latent(("loan", "budget"), clauses=(3,))]
    for name in BUILTIN:
        kids = evolve(world, name, others=others, n=5, hint="make it noticeably simpler")
        assert len(kids) == 5


def test_add_constraints_adds_clauses_only(world: World) -> None:
    kids = evolve(world, "add_constraints")
    gains = [len(c.clauses) - len(PARENT.clauses) for c, _ in kids]
    assert set(gains) == {1, 2}
    assert all(set(PARENT.clauses) <= set(c.clauses) for c, _ in kids)
    assert all((c.words, c.steps, c.details, c.data) == (PARENT.words, 1, (2,), 1) for c, _ in kids)


def test_reasoning_operators_add_steps(world: World) -> None:
    for name in ("increase_reasoning", "deepen"):
        kids = evolve(world, name)
        assert all(world.true_complexity(c) > world.true_complexity(PARENT) for c, _ in kids)
        steps = [c.steps - PARENT.steps for c, _ in kids]
        assert all(s >= 0 for s in steps) and np.mean(steps) >= 0.6
    assert all(c.steps > PARENT.steps for c, _ in evolve(world, "increase_reasoning"))
    # At the cap nothing changes, and the engine's elimination rule rejects the copy.
    with pytest.raises(OperatorReject, match="no_information_gain"):
        evolve(world, "increase_reasoning", PARENT.with_(steps=MAX_STEPS), n=1)


def test_concretize_and_complicate_input_are_modest(world: World) -> None:
    for c, _ in evolve(world, "concretize"):
        assert len(c.details) == 2 and c.clauses == PARENT.clauses and topic_of(c) == "astronomy"
    for c, _ in evolve(world, "complicate_input"):
        assert c.data in (2, 3) and c.clauses == PARENT.clauses and c.words == PARENT.words


def test_in_breadth_and_new_question_jump_topic(world: World) -> None:
    examples = [Latent(("recipe", "oven")), Latent(("loan", "budget")), Latent(("soil", "compost"))]
    seen = set()
    for name in ("in_breadth", "new_question"):
        for c, _ in evolve(world, name, others=examples):
            assert topic_of(c) not in {"astronomy", "cooking", "finance", "gardening"}
            seen.add(topic_of(c))
    assert len(seen) >= 4
    # in_breadth keeps the difficulty (clause count, steps); new_question starts simple.
    assert all(len(c.clauses) == 2 and c.steps == 1 for c, _ in evolve(world, "in_breadth", others=examples))
    assert all(len(c.clauses) <= 1 and c.steps == 0 for c, _ in evolve(world, "new_question", others=examples))


def test_question_rephrase_drifts_a_little(world: World) -> None:
    kids = evolve(world, "question_rephrase")
    assert all(c.opener != PARENT.opener for c, _ in kids)
    assert all((c.clauses, c.steps, c.details, c.data) == (PARENT.clauses, 1, (2,), 1) for c, _ in kids)
    changed = [sum(a != b for a, b in zip(c.words, PARENT.words, strict=True)) for c, _ in kids]
    assert max(changed) == 1 and 0.4 < np.mean(changed) < 0.95
    assert any(len({topic_of(c)} | {"astronomy"}) == 1 and c.words != PARENT.words for c, _ in kids)


def test_crossover_mixes_two_parents(world: World) -> None:
    other = Latent(("recipe", "oven"), clauses=(7,), steps=3)
    for c, _ in evolve(world, "crossover", others=[other]):
        assert set(c.words) & set(PARENT.words) and set(c.words) & set(other.words)
        assert set(c.clauses) <= {0, 5, 7} and len(c.clauses) == 2
        assert c.steps == 3


def test_directional_follows_its_hint(world: World) -> None:
    def hint(text: str) -> list[Latent]:
        return [c for c, _ in evolve(world, "directional", hint=text, n=15)]

    base = world.true_complexity(PARENT)
    harder = hint("make it noticeably more demanding (more constraints, steps or depth).")
    assert all(world.true_complexity(c) > base for c in harder)
    simpler = hint("make it noticeably simpler and more accessible, with fewer requirements.")
    assert all(world.true_complexity(c) < base for c in simpler)
    target = render(Latent(("melody", "chord")))[0]
    toward = hint(f"move its subject toward the subject of this other task: {target!r}.")
    assert all("music" in {topic_of(Latent((w,))) for w in c.words} for c in toward)
    away = hint("shift it to a neighbouring but different subject area.")
    assert all(c.words != PARENT.words and c.clauses == PARENT.clauses for c in away)


def test_answer_augmentation_raises_answer_level_only(world: World) -> None:
    op = BUILTIN["answer_augmentation"]
    p = sample(PARENT, level=2)
    for k in range(N):
        reply = world.chat(body_for(op, p, [], "", k), occurrence=k)
        instr, inp, resp = op.parse(reply.content, p)
        assert (instr, inp) == (p.instruction, p.input)
        assert world.response_level(resp) in (3, 4)
    top = sample(PARENT, level=R_MAX)
    reply = world.chat(body_for(op, top, [], "", 0))
    assert world.response_level(reply.content) == R_MAX


def test_unknown_operators_get_a_generic_move(world: World) -> None:
    op = PromptOperator("riddle", template="Turn this into a riddle: {instruction}\nReply in JSON.")
    parent = sample(PARENT)
    reply = world.chat(body_for(op, parent, [], "", 0))
    assert reply.kind == "operator" and reply.operator == "?"
    op.parse(reply.content, parent)
    resp_op = PromptOperator("polish", template="Polish this answer: {response}", target="response")
    reply = world.chat(body_for(resp_op, parent, [], "", 0))
    assert resp_op.parse(reply.content, parent)[2]


def test_respond_level_falls_with_complexity(world: World) -> None:
    def levels(latent: Latent) -> float:
        text = world.text_of(latent)
        replies = [world.chat({"messages": [{"role": "user", "content": text}]}, occurrence=k) for k in range(30)]
        assert all(r.kind == "respond" for r in replies)
        return float(np.mean([world.response_level(r.content) for r in replies]))

    easy, hard = Latent(("comet",)), Latent(("comet",), clauses=tuple(range(8)), steps=3)
    assert levels(easy) > levels(hard) + 2


@pytest.mark.parametrize("aspect", ["both", "quality", "complexity"])
def test_judge_answers_the_keys_asked(aspect: str) -> None:
    world = World(WorldConfig(judge_noise=0.0, complexity_noise=0.0, integer_scores=False))
    latent = PARENT.with_(clauses=(0, 5, 9))
    s = sample(latent, level=4)
    msgs = render_judge(s, aspect, np.random.default_rng(5))  # type: ignore[arg-type]
    body = {
        "messages": msgs,
        "temperature": 0.0,
        "response_format": response_format("json_object", VERDICT_SCHEMA[aspect]),
    }
    reply = world.chat(body)
    assert reply.kind == "judge"
    verdict = parse_verdict(reply.content, aspect, reply.finish_reason)  # type: ignore[arg-type]
    expected = {"quality": true_quality(latent, 4, world.cfg), "complexity": true_complexity(latent, world.cfg)}
    wanted = {"both": {"quality", "complexity"}, "quality": {"quality"}, "complexity": {"complexity"}}[aspect]
    assert set(json.loads(reply.content)) == wanted | {"reason"}
    for key in wanted:
        assert verdict[key] == pytest.approx(expected[key], abs=0.01)


def test_judge_noise_is_seeded_by_the_sample_not_the_nonce() -> None:
    world = World(WorldConfig(seed=2))
    scores = []
    for i in range(30):
        latent = PARENT.with_(opener=i % 6, steps=i % 4)
        s = sample(latent, level=3)
        a = world.chat({"messages": render_judge(s, "both", np.random.default_rng(1))})
        b = world.chat({"messages": render_judge(s, "both", np.random.default_rng(2))})
        va, vb = json.loads(a.content), json.loads(b.content)
        assert va == vb and isinstance(va["quality"], int)
        scores.append(va["quality"] - true_quality(latent, 3, world.cfg))
    assert 0.2 < float(np.std(scores)) < 1.0  # judge_noise 0.5 plus rounding


def test_same_seed_same_replies_and_seed_matters() -> None:
    op = BUILTIN["in_breadth"]
    bodies = [body_for(op, sample(PARENT), [sample(Latent(("oven",)))], "", k) for k in range(10)]
    bodies += [{"messages": render_judge(sample(PARENT), "both", np.random.default_rng(k))} for k in range(5)]
    bodies += [{"messages": [{"role": "user", "content": "Explain the comet."}]}]

    def run(seed: int) -> list[str]:
        w = World(WorldConfig(seed=seed))
        return [w.chat(b, occurrence=k % 3).content for k, b in enumerate(bodies)]

    assert run(4) == run(4)
    assert run(4) != run(5)
    w = World()
    again = [w.chat(bodies[0], occurrence=k).content for k in range(6)]
    assert len(set(again)) > 1  # a repeated request is a new draw at temperature > 0
    greedy = {**bodies[0], "temperature": 0.0}
    assert len({w.chat(greedy, occurrence=k).content for k in range(6)}) == 1


@settings(derandomize=True, max_examples=200, deadline=None)
@given(
    st.one_of(st.none(), st.text(max_size=120), st.sampled_from(["You are a strict, impartial grader", "You rewrite"])),
    st.one_of(
        st.text(max_size=400),
        st.sampled_from([op.directive for op in BUILTIN.values()]).flatmap(
            lambda d: st.text(max_size=200).map(lambda t: d + "\n" + t)
        ),
        st.text(max_size=100).map(lambda t: f"<sample-ab12>\n## Instruction\n{t}\n</sample-ab12>"),
    ),
    st.one_of(st.none(), st.integers(-5, 50), st.text(max_size=3)),
)
def test_world_never_raises(system: str | None, user: str, max_tokens: Any) -> None:
    msgs: list[dict[str, Any]] = [{"role": "user", "content": user}]
    if system is not None:
        msgs.insert(0, {"role": "system", "content": system})
    for body in ({"messages": msgs, "max_tokens": max_tokens}, {"messages": user}, {}, {"messages": [1, None]}):
        reply = World(WorldConfig(malformed_rate=0.1, truncated_rate=0.1)).chat(body)  # type: ignore[arg-type]
        assert isinstance(reply.content, str) and reply.finish_reason in ("stop", "length")


# --------------------------------------------------------------------- traps
def test_payoff_switch_fades_and_raises_operators() -> None:
    world = World(WorldConfig(switch_after=50, fade_operators=("add_constraints",), rise_operators=("deepen",)))
    before = evolve(world, "add_constraints", n=10, index=49)
    after = evolve(world, "add_constraints", n=10, index=50)
    assert all(len(c.clauses) > len(PARENT.clauses) for c, _ in before)
    assert all(c.with_(opener=PARENT.opener) == PARENT for c, _ in after)  # no gain, just new words
    early = evolve(world, "deepen", n=10, index=0)
    late = evolve(world, "deepen", n=10, index=500)
    assert all(c.with_(opener=PARENT.opener) == PARENT for c, _ in early)
    assert all(world.true_complexity(c) > world.true_complexity(PARENT) for c, _ in late)


def test_malformed_and_truncated_replies() -> None:
    world = World(WorldConfig(seed=1, malformed_rate=0.2, truncated_rate=0.1))
    op = BUILTIN["add_constraints"]
    p = sample(PARENT)
    outcomes = {"ok": 0, "not_json": 0, "length": 0}
    for k in range(300):
        reply = world.chat(body_for(op, p, [], "", 0), occurrence=k)
        if reply.finish_reason == "length":
            assert reply.fault == "truncated"
            outcomes["length"] += 1
            continue
        try:
            op.parse(reply.content, p)
            outcomes["ok"] += 1
        except OperatorReject as e:
            assert e.reason == "not_json" and reply.fault == "malformed"
            outcomes["not_json"] += 1
    assert 40 <= outcomes["not_json"] <= 85 and 15 <= outcomes["length"] <= 50
    # Faults are a function of (seed, request, occurrence): replaying gives the same ones.
    again = World(WorldConfig(seed=1, malformed_rate=0.2, truncated_rate=0.1))
    assert [again.chat(body_for(op, p, [], "", 0), occurrence=k).fault for k in range(50)] == [
        world.chat(body_for(op, p, [], "", 0), occurrence=k).fault for k in range(50)
    ]


def test_deceptive_topic_attracts_topic_jumps() -> None:
    pulls = {}
    for cfg in (WorldConfig(deceptive_pull=0.5), WorldConfig(deceptive=False)):
        world = World(cfg)
        kids = evolve(world, "new_question", n=60)
        pulls[cfg.deceptive] = np.mean([topic_of(c) == DECEPTIVE_TOPIC for c, _ in kids])
    assert pulls[True] > 0.35 and pulls[False] < 0.2
