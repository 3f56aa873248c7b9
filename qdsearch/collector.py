"""The garbage collector during a campaign: long-lived objects out of its sight.

CPython's cyclic collector walks every tracked object of a generation when it
collects it. A campaign's process holds a large, long-lived heap (the modules of
numpy, pandas, pyribs, numba and the openai SDK, a sentence-transformer's torch
modules, the seeds and the config: 400 000 objects and more), while each child makes
and drops a few hundred short-lived ones. With the default thresholds the oldest
generation is collected every few hundred children and each of those passes walks
the whole heap: at zero latency the collector took 0.6 ms per child (1.2 s of a
2000-child run, 0.76 s of it in three full passes; ``experiments/results/bench.md``).

:func:`campaign_gc` moves what is alive when a campaign starts and again when its
seed phase ends into the permanent generation (``gc.freeze``), so later passes walk
only what the campaign made since, and collects the youngest generation every 5000
net allocations instead of 700. Garbage is still collected: the objects made during
the campaign as before, the frozen ones when the campaign ends (``gc.unfreeze``), and
the thresholds are put back. Nested or concurrent campaigns in one process tune it
once, and the last one out restores it. A Ray worker, a process that lives for one
campaign, freezes its heap once it is set up (:func:`freeze_worker`).
``runtime.gc_freeze = false`` leaves the collector alone (a process whose other work
needs frozen garbage reclaimed sooner).
"""

from __future__ import annotations

import gc
from collections.abc import Iterator
from contextlib import contextmanager

__all__ = ["YOUNG_THRESHOLD", "campaign_gc", "freeze_now", "freeze_worker"]

YOUNG_THRESHOLD = 5000  # net allocations between two collections of the youngest generation

_depth = [0]  # campaigns inside campaign_gc in this process
_saved = [gc.get_threshold()]  # the thresholds before the outermost one


def _freeze_and_raise() -> tuple[int, int, int]:
    """Freezes what is alive now and raises the young threshold; returns the thresholds before."""
    before = gc.get_threshold()
    gc.freeze()
    gc.set_threshold(max(before[0], YOUNG_THRESHOLD), *before[1:])
    return before


def freeze_now() -> None:
    """Moves every object alive now into the permanent generation, if a
    :func:`campaign_gc` is active (for objects made while the campaign set up, such as
    a model loaded at the first embedding)."""
    if _depth[0] and gc.isenabled():
        gc.freeze()


def freeze_worker(enabled: bool = True) -> None:
    """For a process that lives for one campaign (a Ray worker actor), once it is set up:
    what is alive now is frozen for good, and the young threshold raised (module doc)."""
    if enabled and gc.isenabled():
        _freeze_and_raise()


@contextmanager
def campaign_gc(enabled: bool = True) -> Iterator[None]:
    """Runs its body with the long-lived heap frozen and a larger young-generation
    threshold (module doc); a no-op when ``enabled`` is False or the collector is off."""
    if not enabled or not gc.isenabled():
        yield
        return
    if _depth[0] == 0:
        _saved[0] = _freeze_and_raise()
    else:
        gc.freeze()
    _depth[0] += 1
    try:
        yield
    finally:
        _depth[0] -= 1
        if _depth[0] == 0:
            gc.unfreeze()
            gc.set_threshold(*_saved[0])
