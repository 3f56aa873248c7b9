"""Soak, CI-sized (issue 6 item 8): memory stays flat over a campaign of 1,500 children.

The full run (10,000 children, fake server in its own process) is
``experiments/soak.py``; its numbers are in ``experiments/results/soak.md``. Here the
fake runs in this process with request recording off. Between a third of the run
(after warm-up: archive filled, pools and caches allocated) and the end, both the
resident set size and the number of live Python objects must stay nearly flat: a
per-child leak (an event, a dict entry per child kept in the campaign) shows up
in the object count long before it shows in RSS.
"""

from __future__ import annotations

import gc
import importlib.util
from pathlib import Path
from typing import Any

import pytest

from tests.fakes.world import world

pytestmark = pytest.mark.slow  # a 1,500-child soak

CHILDREN = 1500


def _soak_module() -> Any:
    path = Path(__file__).resolve().parents[2] / "experiments" / "soak.py"
    spec = importlib.util.spec_from_file_location("qdsearch_soak", path)
    assert spec is not None and spec.loader is not None
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


def test_memory_is_flat_over_1500_children(fake_openai: Any, tmp_path: Path) -> None:
    soak = _soak_module()
    fake = fake_openai(world, record=False)
    probes: dict[str, tuple[int, float, int]] = {}

    def on_sample(n: int, rss: float) -> None:
        for name, mark in (("third", CHILDREN / 3), ("end", CHILDREN)):
            if n >= mark and name not in probes:
                gc.collect()
                probes[name] = (n, soak.rss_mib(), len(gc.get_objects()))

    # Snapshots every 100 children, so the warm-up third includes the first ones.
    samples, counters = soak.run_soak(fake.base_url, CHILDREN, tmp_path, on_sample, snapshot_every=100)
    assert counters.children == CHILDREN == counters.submitted and counters.lost == 0
    assert fake.n_chat >= 2 * CHILDREN and not fake.requests
    (n0, rss0, obj0), (n1, rss1, obj1) = probes["third"], probes["end"]
    per_child_obj = (obj1 - obj0) / (n1 - n0)
    print(f"RSS {rss0:.1f} -> {rss1:.1f} MiB, live objects {obj0} -> {obj1} over {n1 - n0} children")
    # A leak of one event dict per child is ~20 objects and ~2 KiB per child.
    assert per_child_obj < 2.0, (obj0, obj1)
    assert rss1 - rss0 < 16.0, (rss0, rss1)
    assert max(r for _, r in samples) - samples[0][1] < 150.0
