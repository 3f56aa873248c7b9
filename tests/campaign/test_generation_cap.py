"""How a generation is sized and its parents dealt (``runtime.children_per_elite``,
:func:`qdsearch.campaign.schedule.generation_cap` and :func:`~qdsearch.campaign.schedule.draw`)."""

from __future__ import annotations

import math
from collections import Counter
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from qdsearch.campaign.schedule import draw, generation_cap
from qdsearch.config import ConfigError
from tests.campaign.test_campaign_state import config, seeded_state


@settings(max_examples=200, deadline=None)
@given(
    size=st.integers(1, 512),
    per=st.sampled_from([0.0, 0.25, 0.5, 1.0, 1.5, 2.0, 8.0]),
    elites=st.integers(0, 2000),
    in_flight=st.integers(1, 128),
)
def test_the_cap_is_the_generation_size_or_children_per_elite(
    tmp_path_factory: pytest.TempPathFactory, size: int, per: float, elites: int, in_flight: int
) -> None:
    cfg = config(
        tmp_path_factory.getbasetemp(),
        runtime={
            "schedule": "generational",
            "generation_size": size,
            "children_per_elite": per,
            "in_flight": in_flight,
        },
    )
    cap = generation_cap(cfg, elites)
    assert 1 <= cap <= size
    if per == 0:
        assert cap == size  # no cap
    else:
        assert cap == max(1, min(size, math.ceil(per * elites)))
    # in_flight (and so the workers) never change the cap: runs stay reproducible
    other = config(
        tmp_path_factory.getbasetemp(),
        runtime={"schedule": "generational", "generation_size": size, "children_per_elite": per, "in_flight": 1},
    )
    assert generation_cap(other, elites) == cap


def test_parents_are_dealt_in_rounds_of_the_elites(tmp_path: Path) -> None:
    cfg = config(tmp_path, runtime={"schedule": "generational", "generation_size": 64})
    state, _ = seeded_state(cfg)
    cells = sorted(state.elites)
    assert len(cells) >= 3
    size = 2 * len(cells) + 1
    jobs = draw(state, cfg, 0, size)
    per_parent = Counter(j.parent.id for j in jobs)
    # every elite is a parent twice, one of them three times; uniform over elites per child
    assert sorted(per_parent.values()) == [2] * (len(cells) - 1) + [3]
    assert set(per_parent) == {state.elites[c].id for c in cells}
    # the first round holds each elite once
    assert len({j.parent.id for j in jobs[: len(cells)]}) == len(cells)
    # equal state and generation index give equal jobs; another index another order
    again, _ = seeded_state(cfg)
    assert [(j.child_id, j.parent.id, j.operator) for j in draw(again, cfg, 0, size)] == [
        (j.child_id, j.parent.id, j.operator) for j in jobs
    ]
    third, _ = seeded_state(cfg)
    assert [j.parent.id for j in draw(third, cfg, 1, size)] != [j.parent.id for j in jobs]


def test_ask_refuses_a_cell_without_an_elite(tmp_path: Path) -> None:
    import numpy as np

    cfg = config(tmp_path)
    state, _ = seeded_state(cfg)
    empty = next(c for c in range(10_000) if c not in state.elites)
    with pytest.raises(KeyError, match=f"cell {empty}"):
        state.ask(np.random.default_rng(0), parent_cell=empty)


@pytest.mark.parametrize("bad", [-1, "two", True, float("inf")])
def test_children_per_elite_must_be_a_number_at_least_zero(tmp_path: Path, bad: object) -> None:
    with pytest.raises(ConfigError, match=r"runtime\.children_per_elite"):
        config(tmp_path, runtime={"children_per_elite": bad})
