"""Running a campaign from Python: :func:`run` and :func:`arun`."""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import shutil
import threading
from collections.abc import Callable, Coroutine, Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypeVar

from qdsearch.api.overrides import load_config
from qdsearch.api.results import MemorySink, Run
from qdsearch.api.session import Session, check_ray_address, prepare
from qdsearch.config import CampaignConfig

if TYPE_CHECKING:
    from qdsearch.campaign import StepStats
    from qdsearch.descriptors.embedding import Embedder
    from qdsearch.types import Sample

__all__ = ["arun", "run"]

T = TypeVar("T")


def _has_accepted(store: Any) -> bool:
    """Whether the run logged an accepted seed or child (then its folder is worth
    keeping); True when the log cannot be read, so nothing is removed by doubt."""
    try:
        return any(ev.get("status") == "accepted" for ev in store.events())
    except Exception:  # any unreadable log counts as worth keeping
        return True


def _drop_unwritten(store: Any) -> None:
    """Forgets event bytes a failed write left in the store's file buffer, so no later
    flush (close, interpreter exit) appends them after the log has been repaired."""
    f = getattr(store, "_events", None)
    if f is not None:
        store._events = None
        with contextlib.suppress(OSError, ValueError):
            f.raw.close()  # a buffered file whose raw file is closed never flushes again


def _discard(store: Any, folder: Path) -> None:
    """Removes a run folder that was just created and holds nothing of value."""
    if store is not None:
        _drop_unwritten(store)
        with contextlib.suppress(OSError, ValueError):
            store.close()
    shutil.rmtree(folder, ignore_errors=True)


async def arun(
    config: str | Path | CampaignConfig | Mapping[str, Any],
    overrides: Mapping[str, Any] | None = None,
    *,
    sink: MemorySink | None = None,
    start: Run | MemorySink | None = None,
    seed_phase_only: bool = False,
    seed_samples: Sequence[Sample] | None = None,
    ready_endpoint: Any = None,
    embedder: Embedder | None = None,
    on_step: Callable[[StepStats], None] | None = None,
    **sections: Mapping[str, Any],
) -> Run:
    """Runs a campaign on the running event loop until its budget is spent; see :func:`run`."""
    cfg = load_config(config, overrides, **sections)
    base: MemorySink | None = start.sink if isinstance(start, Run) else start
    if isinstance(start, Run) and base is None:
        raise ValueError("start: continue an in-memory run (a Run of a MemorySink); resume a folder instead")
    if base is not None and sink is None:
        raise ValueError("start: give a sink=MemorySink() for the continued run's events")
    plan = prepare(cfg, seeds=base is None and seed_samples is None)
    if seed_samples is not None and base is None:
        plan = dataclasses.replace(plan, seeds=list(seed_samples))
    if cfg.runtime.kind == "ray":
        check_ray_address(cfg.runtime.ray_address, "runtime.ray_address")
    store: Any = None
    folder: Path | None = None
    if sink is not None:
        sink.cfg = cfg
        store = sink
    else:
        from qdsearch.store import RunStore

        folder = Path(cfg.run.out_dir) / cfg.run.name
        fresh = not folder.exists() or not any(folder.iterdir())
        store = RunStore.create(cfg)
    if base is not None and sink is not None:
        sink.continues(base)
    session = Session(plan, store, endpoint=ready_endpoint, embedder=embedder, on_step=on_step,
                      events=base.events() if base is not None else (),
                      frozen=base.frozen if base is not None else None)  # fmt: skip
    try:
        async with session:
            campaign = session.start()
            if seed_phase_only:
                campaign.stop_requested = True
            try:
                st = await campaign.run()
            finally:
                await session.aclose()
    except BaseException:
        # A campaign that never got an elite leaves no half-made run folder behind.
        if folder is not None and fresh and not _has_accepted(store):
            _discard(store, folder)
        raise
    finally:
        if folder is not None:
            with contextlib.suppress(OSError, ValueError):
                store.close()
    source: str | Path | MemorySink = folder if folder is not None else store
    done = Run(source, last_step=st, stop_reason=campaign.stop_reason)
    done.warnings = list(campaign.domain_summary.get("warnings", []))
    return done


def run(
    config: str | Path | CampaignConfig | Mapping[str, Any],
    overrides: Mapping[str, Any] | None = None,
    *,
    sink: MemorySink | None = None,
    start: Run | MemorySink | None = None,
    seed_phase_only: bool = False,
    seed_samples: Sequence[Sample] | None = None,
    ready_endpoint: Any = None,
    embedder: Embedder | None = None,
    on_step: Callable[[StepStats], None] | None = None,
    **sections: Mapping[str, Any],
) -> Run:
    """Runs a campaign until its budget is spent; returns its :class:`Run`.

    Called inside a running event loop (a Jupyter cell), the campaign runs on its
    own loop in a worker thread and this call waits for it (``on_step`` is then
    called in that thread); ``await arun(...)`` runs it on the caller's loop instead.

    Args:
        config: a TOML file, a dict shaped like one, or a :class:`CampaignConfig`
            (see :func:`load_config`).
        overrides: dotted key -> value, e.g. ``{"budget.max_children": 8}``.
        sink: keep the outcomes in this :class:`MemorySink` instead of a run folder.
        start: continue from the events and frozen spaces of an in-memory run
            (its seed phase is not run again; the new events go to ``sink``).
        seed_phase_only: stop after the seed phase (the topic space is then frozen).
        seed_samples: the seed samples (None: loaded from ``seeds.path`` by the domain).
        ready_endpoint: an endpoint that is already open (an :class:`EndpointConfig` with
            its ``base_url``); None opens the config's (the embedded model server
            when it names none).
        embedder: an embedder already made (None: the config's).
        on_step: called with the step statistics after every step.
        **sections: section name -> a table of keys to override, e.g.
            ``budget={"max_children": 8}``.

    Raises:
        ConfigError: an invalid config or override, naming the key.
        UserError: no seed file, or too few seeds.
        StoreError: the run folder exists already (open it with :func:`open_run`).
        CampaignError: the campaign cannot go on (no seed survived judging...).
    """
    coro = arun(config, overrides, sink=sink, start=start, seed_phase_only=seed_phase_only, seed_samples=seed_samples,
                ready_endpoint=ready_endpoint, embedder=embedder, on_step=on_step, **sections)  # fmt: skip
    return _run_coroutine(coro)


def _run_coroutine(coro: Coroutine[Any, Any, T]) -> T:
    """``asyncio.run(coro)``; inside a running event loop, on a new loop in a worker thread."""
    try:
        asyncio.get_running_loop()
    except RuntimeError:
        return asyncio.run(coro)
    result: list[T] = []
    error: list[BaseException] = []

    def target() -> None:
        try:
            result.append(asyncio.run(coro))
        except BaseException as e:  # handed to the caller's thread
            error.append(e)

    worker = threading.Thread(target=target, name="qdsearch-run", daemon=True)
    worker.start()
    worker.join()
    if error:
        raise error[0]
    return result[0]
