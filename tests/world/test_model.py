"""The latent model: text <-> state round trip, ground-truth functions, robustness."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from qdsearch.operators import check_instruction, check_response
from qdsearch.world import World, WorldConfig
from qdsearch.world.model import (
    CLAUSES,
    DECEPTIVE_TOPIC,
    DETAILS,
    MAX_DATA,
    MAX_STEPS,
    OPENERS,
    POINTS,
    R_MAX,
    STEPS,
    TOPICS,
    WORD_TOPIC,
    Latent,
    parse_latent,
    render,
    render_response,
    response_level,
    text_of,
    topic_of,
    true_complexity,
    true_quality,
)

FAST = settings(derandomize=True, max_examples=150, deadline=None)

LATENTS = st.builds(
    Latent,
    st.lists(st.sampled_from(sorted(WORD_TOPIC)), min_size=1, max_size=4, unique=True).map(tuple),
    st.sets(st.integers(0, len(CLAUSES) - 1)).map(lambda s: tuple(sorted(s))),
    st.integers(0, MAX_STEPS),
    st.sets(st.integers(0, len(DETAILS) - 1)).map(lambda s: tuple(sorted(s))),
    st.integers(0, MAX_DATA),
    st.integers(0, len(OPENERS) - 1),
)


@FAST
@given(LATENTS, st.integers(0, 3))
def test_text_latent_round_trip(latent: Latent, seed: int) -> None:
    instr, inp = render(latent)
    assert parse_latent(text_of(latent), seed) == latent
    # The instruction alone carries everything but the input records.
    assert parse_latent(instr, seed) == latent.with_(data=0)
    # What the world writes passes the engine's elimination rules on its own.
    assert check_instruction(f"{instr}\n{inp}", "") == ""


@FAST
@given(LATENTS, st.integers(1, R_MAX), st.integers(0, 2**32 - 1))
def test_response_level_round_trip(latent: Latent, level: int, seed: int) -> None:
    text = render_response(latent, level, np.random.default_rng(seed))
    assert response_level(text) == level
    assert check_response(text, "stop") == ""


def test_vocabulary_does_not_collide() -> None:
    """No marker phrase contains a topic word, so markers never change the topic."""
    vocab = set(WORD_TOPIC)
    phrases = [*CLAUSES, *DETAILS, *STEPS, *POINTS, *OPENERS]
    for p in phrases:
        assert not vocab & {w.strip(".,:").lower() for w in p.split()}, p
    assert sum(len(ws) for ws in TOPICS.values()) == len(vocab)


@FAST
@given(st.text(max_size=300), st.integers(0, 5))
def test_parse_never_raises(text: str, seed: int) -> None:
    latent = parse_latent(text, seed)
    assert parse_latent(text, seed) == latent  # deterministic
    assert 0 <= response_level(text, seed) <= R_MAX
    v = World(WorldConfig(seed=seed, dim=8)).embed(text)
    assert v.shape == (8,) and abs(float(np.linalg.norm(v)) - 1.0) < 1e-9


def test_foreign_text_gets_a_stable_hashed_topic() -> None:
    a = parse_latent("Explain how tides are caused by the moon.")
    assert a == parse_latent("Explain how tides are caused by the moon.\n\nSome input text.")
    assert len(a.words) == 2 and topic_of(a) != DECEPTIVE_TOPIC
    assert not a.clauses and a.steps == 0
    topics = {topic_of(parse_latent(f"Question number {i} about nothing in particular")) for i in range(60)}
    assert len(topics) >= 6  # foreign texts spread over the plain topics


def test_ground_truth_functions() -> None:
    cfg = WorldConfig()
    easy = Latent(("comet", "orbit"))
    hard = easy.with_(clauses=(0, 5, 6, 8), steps=2, data=2)
    assert true_complexity(easy, cfg) == 1.0
    assert true_complexity(hard, cfg) == pytest.approx(1 + 0.9 * (4 + 3 + 1))
    assert true_complexity(hard.with_(clauses=tuple(range(12))), cfg) == 10.0
    # Quality rises with the answer level; contradictions and mixed topics lower it.
    assert true_quality(easy, R_MAX, cfg) == pytest.approx(10.0)
    assert true_quality(easy, 3, cfg) < true_quality(easy, 4, cfg)
    assert true_quality(easy.with_(clauses=(1, 2)), 3, cfg) < true_quality(easy, 3, cfg)
    assert true_quality(Latent(("comet", "recipe")), 3, cfg) < true_quality(easy, 3, cfg)


def test_deceptive_region() -> None:
    on, off = WorldConfig(), WorldConfig(deceptive=False)
    poem = Latent(("sonnet", "rhyme"), clauses=(0, 5, 6, 8, 9), steps=3)
    plain = poem.with_(words=("comet", "orbit"))
    assert true_quality(poem, 3, on) == pytest.approx(true_quality(plain, 3, on) + on.deceptive_bonus)
    assert true_complexity(poem, on) == on.deceptive_max_complexity < true_complexity(plain, on)
    assert true_quality(poem, 3, off) == true_quality(plain, 3, off)
    assert true_complexity(poem, off) == true_complexity(plain, off)
    # Its embeddings are tight: every poetry word points the same way.
    w = World(WorldConfig(embed_noise=0.0))
    assert float(w.embed("Explain the sonnet.") @ w.embed("Explain the haiku and the stanza.")) == pytest.approx(1.0)
    assert float(w.embed("Explain the comet.") @ w.embed("Explain the orbit.")) < 0.99


def test_embeddings_follow_topic_words() -> None:
    w = World(WorldConfig(seed=3))
    a = w.embed("Explain the comet and the orbit.")
    same = w.embed("Describe the telescope and the planet. Add a comparison table.")
    other = w.embed("Explain the recipe and the oven.")
    assert float(a @ same) > float(a @ other) + 0.3
    # Different texts about the same words differ enough to pass a 0.97 novelty filter.
    assert float(a @ w.embed("Discuss the comet and the orbit.")) < 0.97
    assert np.array_equal(a, World(WorldConfig(seed=3)).embed("Explain the comet and the orbit."))
    assert not np.allclose(a, World(WorldConfig(seed=4)).embed("Explain the comet and the orbit."))


def test_config_errors_name_the_field() -> None:
    with pytest.raises(ValueError, match=r"world\.malformed_rate: expected a probability"):
        WorldConfig(malformed_rate=1.5)
    with pytest.raises(ValueError, match=r"world\.dim"):
        WorldConfig(dim=1)
    with pytest.raises(ValueError, match=r"Latent\.words"):
        Latent(("nonsense",))
    with pytest.raises(ValueError, match=r"Latent\.clauses"):
        Latent(("comet",), clauses=(3, 1))
