"""Task-prompt scoring that hedging cannot satisfy (issue 23): the label matcher, the
verdicts' reasons, the gaming guards, and campaigns on a scripted target that rewards
listing every label (real HTTP fake server, pyribs, CLI)."""

from __future__ import annotations

import hashlib
import json
import re
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from qdsearch.cli import main
from qdsearch.config import ConfigError, from_dict
from qdsearch.domains import make_domain
from qdsearch.domains.scoring import (
    CLASSIFY_MAX_TOKENS,
    FREE_MAX_TOKENS,
    Guards,
    LabelSet,
    contains_anywhere,
    parse_guards,
    score_reply,
    summarize,
)
from qdsearch.domains.task_prompt import score_output
from qdsearch.seeds import SeedError
from qdsearch.store import dumps_toml

LABELS = ("billing", "technical", "shipping", "account")
TICKETS = LabelSet(LABELS)


# ------------------------------------------------------------------ the label-set scorer
def test_a_reply_listing_every_label_scores_0_strict_and_1_under_the_old_contains() -> None:
    reply = "Billing, technical, shipping, account"
    for expected in LABELS:
        assert score_output(reply, expected, "contains", labels=TICKETS) == 0.0
        assert score_reply(reply, expected, "contains", TICKETS).reason == "several_labels"
        assert contains_anywhere(reply, expected) == 1.0  # what `contains` scored before
        # without the candidate answers `contains` cannot see the hedge (the old behaviour)
        assert score_output(reply, expected, "contains") == 1.0


@pytest.mark.parametrize(
    ("reply", "expected", "labels", "score", "reason"),
    [
        ("Billing.", "billing", LABELS, 1.0, "correct"),
        ("Category: BILLING (billing)", "billing", LABELS, 1.0, "correct"),
        ("Billing-related ticket,", "billing", LABELS, 1.0, "correct"),
        ("Billing, shipping, accounting: 6.0/16", "billing", LABELS, 0.0, "several_labels"),
        ("billing or technical", "shipping", LABELS, 0.0, "several_labels"),
        ("Thank you for your message.", "billing", LABELS, 0.0, "no_label"),
        ("accounting", "account", LABELS, 0.0, "no_label"),  # whole words only
        ("shipping", "billing", LABELS, 0.0, "wrong_label"),
        ("not spam", "not spam", ("spam", "not spam"), 1.0, "correct"),  # the longest label wins
        ("not spam", "spam", ("spam", "not spam"), 0.0, "wrong_label"),
        ("spam, not spam", "spam", ("spam", "not spam"), 0.0, "several_labels"),
        ("tech support", "Tech_Support", ("Tech_Support", "sales"), 1.0, "correct"),
        ("tech, support", "tech support", ("tech support", "sales"), 0.0, "no_label"),  # not across commas
    ],
)
def test_label_set_verdicts_and_reasons(
    reply: str, expected: str, labels: tuple[str, ...], score: float, reason: str
) -> None:
    v = score_reply(reply, expected, "contains", LabelSet(labels))
    assert (v.score, v.reason) == (score, reason)
    assert v.feedback(expected)  # a sentence for the mutation model


def test_free_text_contains_rejects_other_candidate_answers_and_exact_regex_are_unchanged() -> None:
    answers = [str(n) for n in range(10, 30)]
    cands = LabelSet.detect(answers)
    assert cands.free_text
    assert score_reply("It is 12.", "12", "contains", cands).reason == "correct"
    v = score_reply("12 or maybe 13", "12", "contains", cands)
    assert (v.score, v.reason) == (0.0, "other_answers")
    assert score_reply("about 13", "12", "contains", cands).reason == "wrong_answer"
    assert score_reply("no idea", "12", "contains", cands).reason == "missing"
    # exact and regex: the extracted answer equals the expected one, as before
    assert score_reply("Billing.", "billing", "exact", TICKETS).score == 1.0
    assert score_reply("billing, shipping", "billing", "exact", TICKETS).reason == "mismatch"
    assert score_reply("Answer: 12", "12", "regex", cands, r"answer:\s*(\d+)").score == 1.0
    assert score_reply("twelve", "12", "regex", cands, r"answer:\s*(\d+)").reason == "no_answer"


def test_label_sets_are_detected_from_the_dev_answers_or_given() -> None:
    detected = LabelSet.detect(["billing", "Billing", "shipping", "technical", "shipping", "billing"])
    assert not detected.free_text and detected.labels == ("billing", "shipping", "technical")
    assert LabelSet.detect(["a b c d e f", "x", "a b c d e f", "x"]).free_text  # a 6-word answer is no label
    assert LabelSet.detect(["yes", "no"]).free_text  # one example per answer: not a label set
    assert LabelSet.detect(["yes", "no", "yes", "no"]).labels == ("yes", "no")
    given_ = LabelSet.detect(["billing"] * 4, given=LABELS)
    assert given_.labels == LABELS and not given_.free_text
    with pytest.raises(ValueError, match="differ"):
        LabelSet(("Billing", "billing!"))


# Labels and filler drawn from disjoint word pools (z never occurs in a label word).
_LABEL_WORDS = st.sampled_from(["bill", "billing", "tech", "ship", "account", "spam", "not", "late", "refund"])
_LABEL = st.lists(_LABEL_WORDS, min_size=1, max_size=3).map(" ".join)
_FILLER = st.lists(st.sampled_from(["the", "ticket", "is", "about", "zoo", "answer", "clearly"]), max_size=4).map(
    " ".join
)
_LABEL_SETS = st.lists(_LABEL, min_size=2, max_size=6, unique_by=lambda s: tuple(s.split())).map(tuple)


@settings(max_examples=150, deadline=None)
@given(labels=_LABEL_SETS, data=st.data())
def test_property_one_label_between_filler_is_named_alone(labels: tuple[str, ...], data: Any) -> None:
    ls = LabelSet(labels)
    lab = data.draw(st.sampled_from(labels))
    before, after = data.draw(_FILLER), data.draw(_FILLER)
    text = f"{before}: {lab}. {after}"
    assert ls.named(text) == (lab,)
    # case, extra blanks and repeating the label change nothing
    assert ls.named(text.upper()) == (lab,)
    assert ls.named(f"  {text}   {lab.title()}!") == (lab,)
    for expected in labels:
        v = score_reply(text, expected, "contains", ls)
        assert v.correct == (expected == lab)
        assert v.reason == ("correct" if expected == lab else "wrong_label")


@settings(max_examples=150, deadline=None)
@given(labels=_LABEL_SETS, data=st.data())
def test_property_a_reply_naming_several_labels_is_never_correct(labels: tuple[str, ...], data: Any) -> None:
    ls = LabelSet(labels)
    chosen = data.draw(st.lists(st.sampled_from(labels), min_size=2, max_size=5, unique=True))
    sep = data.draw(st.sampled_from([", ", "; ", ". ", " | ", ": ", "! "]))
    text = sep.join(chosen)
    assert ls.named(text) == tuple(chosen)
    for expected in labels:
        assert score_reply(text, expected, "contains", ls).score == 0.0
    for expected in chosen:
        assert contains_anywhere(text, expected) == 1.0  # the lenient rule is fooled


@settings(max_examples=150, deadline=None)
@given(labels=_LABEL_SETS, data=st.data())
def test_property_a_label_is_never_named_inside_a_longer_word(labels: tuple[str, ...], data: Any) -> None:
    ls = LabelSet(labels)
    lab = data.draw(st.sampled_from(labels))
    glued = lab + data.draw(st.sampled_from(["z", "zz", "zed"]))  # extends its last word
    assert lab not in ls.named(glued)
    assert lab not in ls.named("zz" + lab)  # and its first word


# ------------------------------------------------------------------ guards and summary
def test_guard_lines_round_trip_and_the_summary_warns_when_the_best_elites_hedge() -> None:
    g = Guards(n=8, hedged=6, cut=2, reply_tokens=11.5, max_tokens=16, short_score=1.0, lenient_score=7.0)
    assert parse_guards("dev-set score: 7.0/8\n" + g.line()) == g
    hedging = [(10.0, "dev-set score: 8.0/8\n" + g.line())]
    s = summarize([*hedging, (1.0, "dev-set score: 0.0/8\n" + Guards(8, 0, 0, 1.0, 16, 0.0, 0.0).line())])
    assert s["elites"] == 2
    top = s["top"]
    assert isinstance(top, dict) and top["hedged_share"] == pytest.approx(6 / 16)
    warnings = s["warnings"]
    assert isinstance(warnings, list) and any("several labels" in w for w in warnings)
    assert any("first 8 words" in w for w in warnings)  # dev 0.5 vs short 1/16 over the best two
    honest = Guards(8, 0, 0, 2.0, 16, 8.0, 8.0).line()
    assert summarize([(10.0, "dev-set score: 8.0/8\n" + honest)])["warnings"] == []
    assert summarize([(5.0, "no guard line")]) == {}


# ------------------------------------------------------------------ config and dev set
def test_label_and_max_tokens_config_errors_name_the_key(tmp_path: Path) -> None:
    base = {"kind": "task_prompt", "dev_path": "x.jsonl"}
    with pytest.raises(ConfigError, match=r"domain\.labels\[1\]: 'Billing!' is the same label as 'billing'"):
        from_dict({"domain": base | {"labels": ["billing", "Billing!"]}}).validate()
    with pytest.raises(ConfigError, match=r"domain\.labels: needs at least 2"):
        from_dict({"domain": base | {"labels": ["billing"]}}).validate()
    with pytest.raises(ConfigError, match=r"domain\.labels\[0\]: has no letters"):
        from_dict({"domain": base | {"labels": ["--", "x"]}}).validate()
    with pytest.raises(ConfigError, match=r"domain\.labels: only used with kind = 'task_prompt'"):
        from_dict({"domain": {"labels": ["a", "b"]}}).validate()
    with pytest.raises(ConfigError, match=r"domain\.target_max_tokens: must be >= 0"):
        from_dict({"domain": base | {"target_max_tokens": -1}}).validate()
    with pytest.raises(ConfigError, match=r"domain\.labels\[0\]: expected a string"):
        from_dict({"domain": base | {"labels": [3, "x"]}}).validate()

    dev = tmp_path / "dev.jsonl"
    dev.write_text("".join(json.dumps({"input": f"t{i}", "output": lab}) + "\n" for i, lab in enumerate(DEV_LABELS)))
    cfg = from_dict({"domain": base | {"dev_path": str(dev), "labels": ["billing", "technical"]}})
    with pytest.raises(SeedError, match=r"dev\.jsonl:5: expected answer 'shipping' is not one of domain\.labels"):
        make_domain(cfg)
    dom: Any = make_domain(from_dict({"domain": base | {"dev_path": str(dev)}}))
    assert dom.labels.labels == ("billing", "technical", "shipping") and dom.max_tokens == CLASSIFY_MAX_TOKENS
    dom = make_domain(from_dict({"domain": base | {"dev_path": str(dev), "answer_pattern": "Answer: (\\w+)"}}))
    assert dom.max_tokens == FREE_MAX_TOKENS
    dom = make_domain(from_dict({"domain": base | {"dev_path": str(dev), "target_max_tokens": 40}}))
    assert dom.max_tokens == 40


DEV_LABELS = ["billing", "technical", "billing", "technical", "shipping", "billing", "technical", "shipping"]


# ------------------------------------------------------------------ campaigns on a scripted target
DEV = [
    ("The invoice total is wrong.", "billing"),
    ("The app will not start.", "technical"),
    ("I was charged twice.", "billing"),
    ("The page shows error 500.", "technical"),
    ("My parcel is late.", "shipping"),
    ("Please refund my order.", "billing"),
    ("Login fails with a blank screen.", "technical"),
    ("The courier lost my box.", "shipping"),
    ("My card was declined.", "billing"),
    ("Exports come out empty.", "technical"),
]
ANSWER = dict(DEV)
HEDGE = "Mention every category that could possibly apply."
HONEST = "Reply with the single most likely category."
MARKERS = (HEDGE, HONEST, "Be polite.")
SEEDS = [
    "Classify the support ticket as billing, technical or shipping.",
    "Which team should handle this ticket: billing, technical or shipping?",
    "Sort the ticket into one of three queues: billing, technical, shipping.",
]


def _h(text: str) -> int:
    return int(hashlib.sha256(text.encode()).hexdigest()[:8], 16)


def hedging_world(req: dict[str, Any]) -> str:
    """Mutator: appends a marker. Target: lists every label under HEDGE (all of them
    'contain' the answer), is right on about half the tickets under HONEST, else
    rambles. Grader: 10 whenever the reference appears in the answer (gameable)."""
    msgs = req["messages"]
    sys = msgs[0]["content"] if msgs[0]["role"] == "system" else ""
    user = msgs[-1]["content"]
    if sys.startswith("You improve prompts"):
        parent = user.split("Prompt:\n", 1)[1].split("\n\nAnswer with JSON only", 1)[0]
        unused = [m for m in MARKERS if m not in parent]
        marker = unused[_h(parent) % len(unused)] if unused else f"Note {_h(parent) % 1000}."
        return json.dumps({"instruction": f"{parent} {marker}", "input": ""})
    if "impartial grader" in sys:
        ref = re.search(r"## Reference answer\n(.*?)\n## Answer to grade\n(.*?)\n</material", user, re.S)
        assert ref is not None
        return json.dumps({"quality": 10 if ref.group(1) in ref.group(2).lower() else 1, "reason": "scripted"})
    if HEDGE in sys:
        return "Billing, technical or shipping: one of these teams."
    if HONEST in sys:
        return ANSWER[user] if _h(user) % 2 == 0 else "It is hard to say."
    return "Thank you for your message, we will look into it."


def _write_dev(tmp_path: Path) -> Path:
    dev = tmp_path / "dev.jsonl"
    dev.write_text("".join(json.dumps({"input": t, "output": lab}) + "\n" for t, lab in DEV))
    return dev


def _config(tmp_path: Path, base_url: str, **domain: Any) -> Path:
    dev = _write_dev(tmp_path)
    seeds = tmp_path / "prompts.jsonl"
    seeds.write_text("".join(json.dumps({"instruction": p}) + "\n" for p in SEEDS))
    d: dict[str, Any] = {
        "run": {"name": "tp", "out_dir": str(tmp_path / "archives"), "seed": 1},
        "domain": {"kind": "task_prompt", "dev_path": str(dev), "scoring": "contains", "fewshot": 2} | domain,
        "endpoint": {"base_url": base_url, "model": "fake", "json_mode": "json_object", "backoff_s": 0.01},
        "embedding": {"backend": "endpoint", "base_url": base_url, "model": "fake-embed"},
        "seeds": {"path": str(seeds)},
        "archive": {"topic": "pca", "complexity_bins": 4, "topic_dims": 1, "topic_bins": 3},
        "operators": {"names": ["rewrite", "terse"], "selection": "fixed"},
        "novelty": {"max_similarity": 1.0},
        "budget": {"max_children": 18},
        "runtime": {"kind": "inprocess", "in_flight": 3, "embed_batch": 3},
    }
    path = tmp_path / "tp.toml"
    path.write_text(dumps_toml(d))
    return path


def _elites(run: Path) -> list[dict[str, Any]]:
    assert main(["export", str(run)]) == 0
    return [json.loads(x) for x in (run / "export" / "elites.jsonl").read_text().splitlines()]


def test_campaign_on_a_target_that_rewards_hedging_does_not_end_with_a_hedging_elite(
    fake_openai: Any, tmp_path: Path, capsys: Any
) -> None:
    fake = fake_openai(hedging_world)
    assert main(["run", str(_config(tmp_path, fake.base_url)), "--quiet"]) == 0
    run = tmp_path / "archives" / "tp"
    events = [json.loads(x) for x in (run / "events.jsonl").read_text().splitlines() if x.strip()]
    hedgers = [e for e in events if e.get("quality") is not None and HEDGE in e["instruction"]]
    assert hedgers, "the search made hedging prompts"  # so the test shows they lose
    for e in hedgers:  # each scored 0: every reply names three labels
        assert e["quality"] == pytest.approx(1.0)
        g = parse_guards(e["response"])
        assert g is not None and g.hedged == g.n == 8 and g.lenient_score == 8.0
        assert "why: named several labels (billing, technical, shipping)" in e["response"]
    recs = _elites(run)
    assert all(parse_guards(r["output"]).hedged == 0 for r in recs if r["quality"] > 1.0)  # type: ignore[union-attr]
    best = max(recs, key=lambda r: r["quality"])
    assert HEDGE not in best["instruction"] and HONEST in best["instruction"]
    assert parse_guards(best["output"]).hedged == 0  # type: ignore[union-attr]
    # the target got the task's fixed max_tokens, the mutation model its own
    for r in fake.requests:
        if "messages" in r and not r["messages"][0]["content"].startswith("You improve prompts"):
            assert r["max_tokens"] == CLASSIFY_MAX_TOKENS
    state = json.loads((run / "state.json").read_text())
    summary = state["domain_summary"]
    assert summary["labels"] == ["billing", "technical", "shipping"]
    assert summary["top"]["hedged_share"] == 0.0 and summary["warnings"] == []
    assert "warning:" not in capsys.readouterr().err


def test_a_gameable_grader_lets_hedging_win_and_the_campaign_warns(
    fake_openai: Any, tmp_path: Path, capsys: Any
) -> None:
    fake = fake_openai(hedging_world)
    assert main(["run", str(_config(tmp_path, fake.base_url, scoring="judge")), "--quiet"]) == 0
    run = tmp_path / "archives" / "tp"
    best = max(_elites(run), key=lambda r: r["quality"])
    assert HEDGE in best["instruction"] and best["quality"] == pytest.approx(10.0)
    summary = json.loads((run / "state.json").read_text())["domain_summary"]
    assert summary["top"]["hedged_share"] >= 0.25
    assert any("several labels" in w for w in summary["warnings"])
    err = capsys.readouterr().err
    assert "warning: the best" in err and "hedging" in err


def test_per_example_feedback_is_kept_for_operators(fake_openai: Any, tmp_path: Path) -> None:
    import asyncio

    import numpy as np

    from qdsearch.domains.base import EvalContext
    from qdsearch.llm.client import LLMClient
    from qdsearch.types import Sample

    fake = fake_openai(hedging_world)
    cfg = from_dict(
        {
            "domain": {"kind": "task_prompt", "dev_path": str(_write_dev(tmp_path))},
            "endpoint": {"base_url": fake.base_url, "model": "fake"},
        }
    )
    dom: Any = make_domain(cfg)
    prompt = f"{SEEDS[0]} {HONEST}"

    async def go() -> Any:
        client = LLMClient(cfg.endpoint)
        try:
            ctx = EvalContext(cfg, client, client, client, np.random.default_rng(0), [])
            sample, _ = await dom.evaluate(Sample("p", prompt), ctx)
            return sample, dom.feedback(prompt, client)
        finally:
            await client.aclose()

    sample, results = asyncio.run(go())
    assert [r.example.id for r in results] == [ex.id for ex in dom.dev]  # dev order, all of them
    reasons = {r.verdict.reason for r in results}
    assert reasons <= {"correct", "no_label"} and reasons == {"correct", "no_label"}
    wrong = next(r for r in results if not r.verdict.correct)
    assert wrong.feedback == f"named none of the labels; expected {wrong.example.expected}"
    assert f"why: {wrong.feedback}" in sample.response
    assert dom.feedback("another prompt", cfg.endpoint.base_url) == []
