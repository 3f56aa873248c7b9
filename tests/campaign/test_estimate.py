"""The dry-run estimate (qdsearch.campaign.estimate): against real runs on the fake
endpoint, no request made, the seed-phase cap refusal, and the token counters' fallbacks."""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from qdsearch.api import prepare
from qdsearch.campaign.estimate import estimate, format_estimate, seed_phase_excess
from qdsearch.cli.app import main
from qdsearch.config import from_dict
from qdsearch.domains.grading import grade_schema, parse_grade
from qdsearch.judge import VERDICT_SCHEMA, parse_verdict
from qdsearch.llm import tokens
from qdsearch.llm.tokens import Filler, TokenCounter, chars_counter, token_counter
from qdsearch.operators import CHILD_SCHEMA, parse_json_object
from qdsearch.store import dumps_toml
from tests.fakes.world import world
from tests.helpers import config_dict, run_campaign

# The fake server counts a request's words as its prompt tokens and a reply's words
# as its completion tokens; the estimate is given that rule, so what is compared is
# the model of the campaign (which calls, on which rendered prompts, how long the
# replies are), not a tokenizer.
WORDS = TokenCounter("words", True, "the fake server's rule", lambda t: len(t.split()), per_message=0, per_reply=0)
# The scripted world's replies, measured on a 24-child run (completion words / max_tokens):
# operator 17 / 512, respond 22 / 512, verdicts 6 / 256; every child reaches its judge.
WORLD_FILL = {"operator": 0.034, "respond": 0.043, "judge": 0.023}


def _state(store: Any) -> dict[str, Any]:
    return json.loads((store.path / "state.json").read_text())


@pytest.mark.parametrize(
    "over",
    [
        {},
        {
            "judge": {"complexity": "separate"},
            "operators": {"names": ["add_constraints", "deepen", "in_breadth"], "weights": {"deepen": 3.0}},
            "budget": {"max_children": 30},
        },
        {"budget": {"max_children": 0, "max_calls": 90}},
    ],
    ids=["default", "separate-judge-weighted-ops", "max-calls"],
)
def test_estimate_within_25_percent_of_the_run(fake_openai: Any, tmp_path: Path, over: dict[str, Any]) -> None:
    srv = fake_openai(world)
    cfg = from_dict(config_dict(srv.base_url, tmp_path, **({"budget": {"max_children": 24}} | over)))
    est = estimate(prepare(cfg), counter=WORDS, fill=WORLD_FILL, reach=1.0)
    assert (srv.n_chat, srv.n_embed) == (0, 0)  # the estimate asked nothing
    _, store = run_campaign(cfg)
    store.close()
    state = _state(store)
    total = est.total()
    assert total.calls == pytest.approx(state["calls"], rel=0.25), (total, state["calls"])
    tokens_run = state["prompt_tokens"] + state["completion_tokens"]
    assert total.tokens == pytest.approx(tokens_run, rel=0.25), (total.tokens, tokens_run)
    assert est.n_seeds == state["seeds"]
    if cfg.budget.max_children:
        assert est.n_children == state["children"] and est.children_by == "budget.max_children"
    else:  # the calls cap decides how many children there are
        assert est.children_by == "budget.max_calls"
        assert est.n_children == pytest.approx(state["children"], rel=0.25)
    judge_calls = 2 if cfg.judge.complexity == "separate" else 1
    assert est.seeds["judge"].calls == judge_calls * state["seeds"]
    assert set(est.children) == {"operator", "respond", "judge"}


def test_dry_run_makes_no_request_and_writes_nothing(
    fake_openai: Any, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    srv = fake_openai(world)
    d = config_dict(srv.base_url, tmp_path, budget={"max_children": 20, "max_cost_usd": 0.1})
    d["endpoint"] |= {"price_in_per_mtok": 5.0, "price_out_per_mtok": 15.0}
    path = tmp_path / "c.toml"
    path.write_text(dumps_toml(d))
    assert main(["run", str(path), "--dry-run"]) == 0
    out = capsys.readouterr().out
    assert (srv.n_chat, srv.n_embed) == (0, 0)
    assert not (tmp_path / "archives").exists()
    assert "no request made" in out and "children: " in out
    for role in ("operator", "respond", "judge", "cost $", "wall time"):
        assert role in out, out
    # fake-model is unknown to tiktoken (or tiktoken, an optional extra, is not
    # installed): the documented estimate, and why
    assert "~4 chars per token" in out
    assert "'fake-model'" in out or "tiktoken is not installed" in out, out
    # 20 children would cost more than the cap: the warning says so and how many fit
    assert "past budget.max_cost_usd" in out, out


@pytest.mark.parametrize(
    ("budget", "key"),
    [({"max_children": 10, "max_calls": 5}, "budget.max_calls"), ({"max_tokens": 200}, "budget.max_tokens")],
)
def test_run_refuses_when_the_seed_phase_alone_passes_a_cap(
    fake_openai: Any, tmp_path: Path, capsys: pytest.CaptureFixture[str], budget: dict[str, Any], key: str
) -> None:
    srv = fake_openai(world)
    d = config_dict(srv.base_url, tmp_path, budget=budget)
    path = tmp_path / "c.toml"
    path.write_text(dumps_toml(d))
    assert main(["run", str(path), "--quiet"]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "seed phase alone" in err and key in err, err
    assert (srv.n_chat, srv.n_embed) == (0, 0)
    assert not (tmp_path / "archives" / "t").exists()


def test_seed_phase_within_caps_is_not_refused(fake_openai: Any, tmp_path: Path) -> None:
    srv = fake_openai(world)
    cfg = from_dict(config_dict(srv.base_url, tmp_path, budget={"max_children": 4, "max_calls": 40}))
    assert seed_phase_excess(prepare(cfg)) == ""
    assert srv.n_chat == 0


def test_offline_tiktoken_falls_back_and_says_so(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    pytest.importorskip("tiktoken")
    import tiktoken.load
    import tiktoken.registry

    def offline(*a: Any, **kw: Any) -> bytes:
        raise ConnectionError("network is unreachable")

    monkeypatch.setenv("TIKTOKEN_CACHE_DIR", str(tmp_path))  # nothing cached: it would download
    monkeypatch.setattr(tiktoken.load, "read_file", offline)
    monkeypatch.setattr(tiktoken.registry, "ENCODINGS", {})
    cfg = from_dict(config_dict("http://127.0.0.1:9/v1", tmp_path, budget={"max_children": 4}))
    ep = cfg.endpoint.__class__(base_url="http://127.0.0.1:9/v1", model="gpt-4o-mini")
    counter = token_counter(ep)
    assert not counter.exact and counter.name == "~4 chars per token"
    assert "gpt-4o-mini" in counter.note and "offline" in counter.note and "network is unreachable" in counter.note
    assert counter.count("x" * 40) == 10


def test_tiktoken_missing_falls_back_and_says_so(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "tiktoken", None)
    monkeypatch.setitem(sys.modules, "tiktoken.model", None)
    from qdsearch.config import EndpointConfig

    counter = token_counter(EndpointConfig(base_url="http://127.0.0.1:9/v1", model="gpt-4o-mini"))
    assert not counter.exact and "not installed" in counter.note and "qdsearch[tokens]" in counter.note


def test_tiktoken_encoding_is_used_when_it_loads(monkeypatch: pytest.MonkeyPatch) -> None:
    pytest.importorskip("tiktoken")
    from qdsearch.config import EndpointConfig

    class Enc:  # stands in for the downloaded encoding: one token per byte
        def encode(self, text: str, disallowed_special: Any = ()) -> list[int]:
            return list(text.encode())

    monkeypatch.setattr(tokens, "_load_tiktoken", lambda name: Enc())
    counter = token_counter(EndpointConfig(base_url="http://127.0.0.1:9/v1", model="gpt-4o-mini"))
    assert counter.exact and counter.name == "tiktoken o200k_base"
    assert counter.prompt([{"role": "user", "content": "abcd"}]) == 4 + tokens.PER_MESSAGE + tokens.PER_REPLY


def test_embedded_model_counts_with_its_own_tokenizer() -> None:
    pytest.importorskip("llama_cpp")
    from qdsearch.config import EndpointConfig

    counter = token_counter(EndpointConfig())  # no base_url: the embedded SmolLM2
    assert counter.exact and counter.name.startswith("GGUF vocabulary")
    one = counter.prompt([{"role": "user", "content": "Explain how tides are caused by the moon."}])
    # the chat template adds SmolLM2's default system turn and the role markers
    assert one > counter.count("Explain how tides are caused by the moon.") + 10


def test_bad_fill_ratio_is_refused(fake_openai: Any, tmp_path: Path) -> None:
    cfg = from_dict(config_dict("http://127.0.0.1:9/v1", tmp_path, budget={"max_children": 4}))
    with pytest.raises(ValueError, match="respond"):
        estimate(prepare(cfg), counter=WORDS, fill={"respond": 1.5})


def test_format_lists_every_phase_and_role(fake_openai: Any, tmp_path: Path) -> None:
    cfg = from_dict(config_dict("http://127.0.0.1:9/v1", tmp_path, budget={"max_children": 4}))
    text = format_estimate(estimate(prepare(cfg), counter=chars_counter("test")), "c.toml")
    lines = text.splitlines()
    assert lines[0].startswith("dry run: c.toml")
    assert any(ln.startswith("seeds") and "judge" in ln for ln in lines)
    assert any(ln.startswith("children") and "operator" in ln for ln in lines)
    assert any(ln.startswith("total") for ln in lines)


@settings(max_examples=60, deadline=None)
@given(n=st.floats(min_value=1, max_value=2000), aspect=st.sampled_from(["both", "quality", "complexity"]))
def test_synthetic_replies_parse_with_the_real_parsers(n: float, aspect: str) -> None:
    f = Filler(chars_counter("test"), 0)
    verdict = parse_verdict(f.json(VERDICT_SCHEMA[aspect], n), aspect)  # type: ignore[arg-type]
    assert len(verdict["reason"]) <= 160
    child = parse_json_object(f.json(CHILD_SCHEMA, n))
    assert child["instruction"] and isinstance(child["input"], str)
    axes = {"risk": ("a", "b"), "style": ("c", "d")}
    grade = parse_grade(f.json(grade_schema(axes, True), n), axes=axes, complexity=True)
    assert 1 <= grade["quality"] <= 10


def test_batch_lines_are_priced_at_the_discount(fake_openai: Any, tmp_path: Path) -> None:
    srv = fake_openai(world)
    prices = {"price_in_per_mtok": 1.0, "price_out_per_mtok": 4.0}
    runtime = {"schedule": "generational", "kind": "inprocess"}
    plain = from_dict(config_dict(srv.base_url, tmp_path, endpoint=prices, runtime=runtime))
    batch = from_dict(
        config_dict(srv.base_url, tmp_path, endpoint=prices | {"batch": True, "batch_discount": 0.4}, runtime=runtime)
    )
    a = estimate(prepare(plain), counter=WORDS, fill=WORLD_FILL, reach=1.0)
    b = estimate(prepare(batch), counter=WORDS, fill=WORLD_FILL, reach=1.0)
    assert a.total().cost_usd > 0
    assert b.total().cost_usd == pytest.approx(0.4 * a.total().cost_usd)
    assert b.total().calls == a.total().calls and b.total().tokens == a.total().tokens
    assert any("batch (endpoint)" in n for n in b.notes) and not any("batch (" in n for n in a.notes)
    assert (srv.n_chat, srv.n_embed) == (0, 0)
