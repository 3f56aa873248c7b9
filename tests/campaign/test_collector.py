"""The collector during a campaign (qdsearch.collector): the long-lived heap
frozen and a larger young threshold while it runs, everything put back after it,
nested campaigns tuned once, and garbage still collected."""

from __future__ import annotations

import gc
import weakref
from pathlib import Path
from typing import Any

import pytest

from qdsearch.collector import YOUNG_THRESHOLD, campaign_gc, freeze_now
from qdsearch.config import from_dict
from tests.fakes.world import world
from tests.helpers import config_dict, run_campaign


class _Node:
    def __init__(self) -> None:
        self.other: Any = self  # a reference cycle: only the cyclic collector frees it


def _cycle() -> weakref.ref[_Node]:
    return weakref.ref(_Node())


@pytest.fixture
def clean_gc() -> Any:
    before = gc.get_threshold(), gc.get_freeze_count()
    assert before[1] == 0, "an earlier test left objects frozen"
    yield before
    gc.unfreeze()
    gc.set_threshold(*before[0])


def test_frozen_inside_and_put_back_after(clean_gc: Any) -> None:
    thresholds, _ = clean_gc
    with campaign_gc():
        assert gc.get_freeze_count() > 0
        assert gc.get_threshold()[0] == max(thresholds[0], YOUNG_THRESHOLD)
        assert gc.get_threshold()[1:] == thresholds[1:]
    assert gc.get_threshold() == thresholds and gc.get_freeze_count() == 0


def test_nested_campaigns_restore_once_the_last_is_out(clean_gc: Any) -> None:
    thresholds, _ = clean_gc
    with campaign_gc():
        with campaign_gc():
            pass
        assert gc.get_freeze_count() > 0 and gc.get_threshold()[0] >= YOUNG_THRESHOLD  # the outer one still runs
    assert gc.get_threshold() == thresholds and gc.get_freeze_count() == 0


def test_off_leaves_the_collector_alone(clean_gc: Any) -> None:
    thresholds, _ = clean_gc
    with campaign_gc(enabled=False):
        assert gc.get_threshold() == thresholds and gc.get_freeze_count() == 0
        freeze_now()  # no campaign_gc active: nothing frozen
        assert gc.get_freeze_count() == 0


def test_garbage_is_still_collected(clean_gc: Any) -> None:
    before = _cycle()  # garbage already there when the campaign starts: frozen with the heap
    with campaign_gc():
        during = _cycle()  # garbage the campaign makes: collected as usual
        gc.collect()
        assert during() is None
        assert before() is not None
    gc.collect()
    assert before() is None  # unfrozen at the end, then collected


def test_an_error_inside_still_puts_it_back(clean_gc: Any) -> None:
    thresholds, _ = clean_gc
    with pytest.raises(RuntimeError), campaign_gc():
        raise RuntimeError("boom")
    assert gc.get_threshold() == thresholds and gc.get_freeze_count() == 0


@pytest.mark.parametrize("freeze", [True, False])
def test_a_campaign_tunes_it_while_it_runs_only(
    fake_openai: Any, tmp_path: Path, clean_gc: Any, freeze: bool, monkeypatch: pytest.MonkeyPatch
) -> None:
    thresholds, _ = clean_gc
    seen: list[tuple[int, tuple[int, int, int]]] = []
    d = config_dict(fake_openai(world).base_url, tmp_path, budget={"max_children": 6}, runtime={"gc_freeze": freeze})
    import qdsearch.campaign.loop as loop

    real = loop.Campaign.step

    def step(self: Any) -> None:
        seen.append((gc.get_freeze_count(), gc.get_threshold()))
        real(self)

    monkeypatch.setattr(loop.Campaign, "step", step)
    _, store = run_campaign(from_dict(d))
    store.close()
    assert seen
    if freeze:
        assert all(n > 0 and t[0] >= YOUNG_THRESHOLD for n, t in seen)
    else:
        assert all(n == 0 and t == thresholds for n, t in seen)
    assert gc.get_threshold() == thresholds and gc.get_freeze_count() == 0


def test_a_worker_process_freezes_once_set_up() -> None:
    """A Ray worker's process lives for one campaign: frozen for good (in a process of its own here)."""
    import subprocess
    import sys

    code = (
        "import gc; from qdsearch.collector import freeze_worker, YOUNG_THRESHOLD\n"
        "t = gc.get_threshold(); freeze_worker(False); assert gc.get_freeze_count() == 0 and gc.get_threshold() == t\n"
        "freeze_worker(); assert gc.get_freeze_count() > 0 and gc.get_threshold()[0] >= YOUNG_THRESHOLD\n"
        "print('ok')\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert out.returncode == 0 and out.stdout.strip() == "ok", out.stderr
