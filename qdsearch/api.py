"""The Python API: load a config, run a campaign, read a run.

    import qdsearch

    cfg = qdsearch.load_config("experiments/quickstart.toml", {"budget.max_children": 8})
    run = qdsearch.run(cfg)                       # or: await qdsearch.arun(cfg)
    run.elites                                    # a DataFrame, the export's field names
    run.export("jsonl")                           # RUN/export/elites.jsonl

The command line (:mod:`qdsearch.cli`) builds its campaigns with the same pieces:
:func:`prepare` resolves what a config names once per process (the domain, the
operators, the seeds), and :class:`Session` opens the endpoint and the embedder
and makes the runtime and the :class:`~qdsearch.campaign.Campaign` from them.

This module imports only the config at load time; the rest is imported when used.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import shutil
import threading
from collections.abc import Callable, Coroutine, Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypeVar

from qdsearch.config import CampaignConfig, ConfigError, from_dict, to_dict
from qdsearch.config import load_config as _load_file

if TYPE_CHECKING:
    import numpy as np
    import pandas as pd

    from qdsearch.campaign import Campaign, StepStats
    from qdsearch.descriptors.embedding import Embedder
    from qdsearch.descriptors.space import TopicSpace
    from qdsearch.domains import Domain
    from qdsearch.operators import PromptOperator
    from qdsearch.runtime import Runtime
    from qdsearch.types import Sample

__all__ = [
    "MemorySink",
    "Plan",
    "Run",
    "Session",
    "UserError",
    "apply_overrides",
    "arun",
    "load_config",
    "open_run",
    "prepare",
    "resolve_paths",
    "run",
]

T = TypeVar("T")


class UserError(Exception):
    """A problem with what was asked (an input, the environment), told in one line;
    the command line prints it and exits 2."""


# --------------------------------------------------------------------------- config


def apply_overrides(
    cfg: CampaignConfig, overrides: Mapping[str, Any], names: Mapping[str, str] | None = None
) -> CampaignConfig:
    """``cfg`` with ``overrides`` (dotted key -> value; None: not given), validated
    exactly as a config file is (the same conversions and checks).

    Args:
        cfg: the config to start from.
        overrides: ``{"budget.max_children": 8, "domain.axes.topic": [...]}``; a key
            names a section and a field, deeper keys name keys of a table field.
        names: how to show a key in an error (the command line's option names).

    Raises:
        ConfigError: naming the override and the key, e.g. ``budget.max_children 0:
            budget: set at least one of ...``.
    """
    given = {k: v for k, v in overrides.items() if v is not None}
    if not given:
        return cfg
    data = to_dict(cfg)
    shown = " ".join(f"{(names or {}).get(k, k)} {v!r}" if isinstance(v, str) else f"{(names or {}).get(k, k)} {v}"
                     for k, v in given.items())  # fmt: skip
    for key, value in given.items():
        *path, name = key.split(".")
        if not path:
            raise ConfigError(f"{shown}: {key}: expected a dotted key section.field, such as budget.max_children")
        table = data
        for part in path:
            table = table.setdefault(part, {})
            if not isinstance(table, dict):
                raise ConfigError(f"{shown}: {key}: {part} is not a table")
        table[name] = value
    try:
        return from_dict(data)
    except ConfigError as e:
        raise ConfigError(f"{shown}: {e}") from None


def _flatten(sections: Mapping[str, Any]) -> dict[str, Any]:
    """``{"budget": {"max_children": 8}}`` -> ``{"budget.max_children": 8}``."""
    out: dict[str, Any] = {}
    for section, values in sections.items():
        if not isinstance(values, Mapping):
            raise ConfigError(f"{section}: expected a table of keys (such as {section}={{...}}), got {values!r}")
        for name, value in values.items():
            out[f"{section}.{name}"] = value
    return out


def resolve_paths(cfg: CampaignConfig, config_dir: str | Path | None = None) -> CampaignConfig:
    """Makes file paths in the config absolute: relative to the working directory,
    else (when no such file is there) to ``config_dir``, the config file's folder; so
    the run's saved config works from anywhere. ``hf:NAME`` seeds stay as they are."""
    from qdsearch.sources import is_hf

    base = Path(config_dir) if config_dir is not None else None

    def resolve(path: str) -> str:
        p = Path(path)
        if base is not None and not p.is_absolute() and not p.exists() and (base / p).exists():
            p = base / p
        return str(p.resolve())

    ops = cfg.operators
    custom = tuple(dataclasses.replace(c, template=resolve(c.template)) for c in ops.custom)
    archive = cfg.archive
    if archive.reference_path:
        archive = dataclasses.replace(archive, reference_path=resolve(archive.reference_path))
    domain = cfg.domain
    if domain.dev_path:
        domain = dataclasses.replace(domain, dev_path=resolve(domain.dev_path))
    seeds = cfg.seeds
    if seeds.path and not is_hf(seeds.path):  # hf:NAME is a Hugging Face dataset, not a path
        seeds = dataclasses.replace(seeds, path=resolve(seeds.path))
    return dataclasses.replace(cfg, seeds=seeds, operators=dataclasses.replace(ops, custom=custom),
                               archive=archive, domain=domain)  # fmt: skip


def load_config(
    source: str | Path | CampaignConfig | Mapping[str, Any],
    overrides: Mapping[str, Any] | None = None,
    **sections: Mapping[str, Any],
) -> CampaignConfig:
    """A campaign config from a TOML file, a dict or a config, with overrides.

    Overrides go through the same conversions and checks as a config file's values,
    so no ``dataclasses.replace`` chains are needed::

        load_config("campaign.toml", {"budget.max_children": 8})
        load_config("campaign.toml", budget={"max_children": 8}, run={"name": "try-2"})

    File paths in the config (seeds, dev set, templates, reference texts) are made
    absolute: relative to the working directory, else to the config file's folder.

    Args:
        source: a TOML file, a dict shaped like one, or a :class:`CampaignConfig`.
        overrides: dotted key -> value (None: not given).
        **sections: section name -> a table of its keys to override.

    Raises:
        ConfigError: the file cannot be read or a value is invalid; the message names
            the file or the override, and the key.
    """
    config_dir: Path | None = None
    if isinstance(source, CampaignConfig):
        cfg = source
    elif isinstance(source, Mapping):
        cfg = from_dict(dict(source))
    else:
        cfg = _load_file(source)
        config_dir = Path(source).parent
    cfg = apply_overrides(cfg, {**dict(overrides or {}), **_flatten(sections)})
    return resolve_paths(cfg, config_dir)


# --------------------------------------------------------------------------- built once


@dataclass(frozen=True)
class Plan:
    """What a config names, resolved once per process and passed down: the driver,
    the campaign and every runtime worker use these objects, none builds its own.

    Attributes:
        cfg: the campaign config (paths resolved).
        domain: the domain ``domain.kind`` names (a task-prompt domain's dev set read).
        operators: operator name -> operator, for ``operators.names`` (templates read).
        seeds: the seed samples ([] when the run is past its seed phase).
    """

    cfg: CampaignConfig
    domain: Domain
    operators: Mapping[str, PromptOperator]
    seeds: list[Sample] = field(default_factory=list)


def prepare(cfg: CampaignConfig, *, seeds: bool = True, where: str = "") -> Plan:
    """Builds the domain and the operators once and loads the seeds, checking them
    before anything is written.

    Args:
        cfg: the campaign config (paths resolved: :func:`resolve_paths`).
        seeds: load the seeds (a resumed run past its seed phase needs none).
        where: what to name in errors (the config file).

    Raises:
        ConfigError: an operator ``operators.names`` names does not exist in the domain.
        SeedError: the seed file or a dev set is unusable.
        UserError: no seed file, or too few seeds for the topic space.
    """
    from qdsearch.domains import domain_operators, make_domain
    from qdsearch.operators import resolve

    prefix = f"{where}: " if where else ""
    try:
        operators = resolve(cfg.operators.names, domain_operators(cfg))
    except ValueError as e:
        raise ConfigError(f"{prefix}{e} in domain {cfg.domain.kind!r}") from None
    domain = make_domain(cfg)  # reads and checks a dev set
    loaded: list[Sample] = []
    if seeds:
        if not cfg.seeds.path:
            raise UserError(f"{prefix}seeds.path: no seed file given")
        loaded = domain.load_seeds(cfg.seeds.path, cfg.seeds.limit)
        need = cfg.archive.topic_dims + 1
        if len(loaded) < need:
            raise UserError(
                f"{cfg.seeds.path}: {len(loaded)} seeds; archive.topic_dims = {cfg.archive.topic_dims} needs at least {need}"
            )
    return Plan(cfg, domain, operators, loaded)


class Session:
    """The endpoint, embedder, runtime and :class:`~qdsearch.campaign.Campaign` of one
    campaign session, made from a :class:`Plan` (the one code path of the command
    line's ``run``/``resume`` and of :func:`run`/:func:`arun`).

    Use as a context manager, ``with`` or ``async with`` (it makes the embedder and
    opens the endpoint, starting the embedded model server when the config names
    none, and stops it on exit); :meth:`start` makes the
    runtime and the campaign, :meth:`aclose` closes the runtime::

        with Session(plan, sink) as s:
            campaign = s.start()
            try:
                asyncio.run(campaign.run())
            finally:
                asyncio.run(s.aclose())

    Args:
        plan: the resolved config.
        sink: where the campaign's events go (a :class:`~qdsearch.store.RunStore`
            or a :class:`MemorySink`).
        endpoint: an endpoint that is already open (None: open ``cfg.endpoint``).
        embedder: an embedder already made (None: make ``cfg.embedding``'s).
        events: the event log to continue (empty: a new campaign).
        frozen: the frozen (topic space, centroids) of the run continued.
        ray_address: a Ray cluster for this session only (None: ``runtime.ray_address``).
        on_step: called with the step statistics after every step.
    """

    def __init__(
        self,
        plan: Plan,
        sink: Any,
        *,
        endpoint: Any = None,
        embedder: Embedder | None = None,
        events: Iterable[dict[str, Any]] = (),
        frozen: tuple[TopicSpace, np.ndarray | None] | None = None,
        ray_address: str | None = None,
        on_step: Callable[[StepStats], None] | None = None,
    ) -> None:
        self.plan = plan
        self.sink = sink
        self.endpoint = endpoint
        self.embedder = embedder
        self.events = list(events)
        self.frozen = frozen
        self.ray_address = ray_address
        self.on_step = on_step
        self.reference: list[str] = []
        self.runtime: Runtime | None = None
        self.campaign: Campaign | None = None
        self._stack = contextlib.ExitStack()

    def __enter__(self) -> Session:
        cfg = self.plan.cfg
        try:
            if self.embedder is None:
                from qdsearch.descriptors.embedding import make_embedder

                self.embedder = make_embedder(cfg.embedding)
            if cfg.archive.reference_path:
                from qdsearch.seeds import load_seeds

                self.reference = [s.prompt_text() for s in load_seeds(cfg.archive.reference_path)]
            if self.endpoint is None:
                from qdsearch.llm import open_endpoint

                self.endpoint = self._stack.enter_context(open_endpoint(cfg.endpoint, cfg.local))
        except BaseException:
            self._stack.close()
            raise
        return self

    def __exit__(self, *exc: object) -> None:
        self._stack.close()

    async def __aenter__(self) -> Session:
        # Off the event loop: an embedding model loads, an endpoint embedder probes its
        # dimension on a loop of its own, the embedded model server starts.
        return await asyncio.to_thread(self.__enter__)

    async def __aexit__(self, *exc: object) -> None:
        await asyncio.to_thread(self._stack.close)

    def start(self) -> Campaign:
        """Makes the runtime (workers get the plan's domain and operators) and the campaign.

        Raises:
            CampaignError: the campaign cannot start from these events.
        """
        from qdsearch.campaign import Campaign
        from qdsearch.runtime import make_runtime

        plan, cfg = self.plan, self.plan.cfg
        self.runtime = make_runtime(cfg, self.endpoint, plan.operators, ray_address=self.ray_address,
                                    domain=plan.domain)  # fmt: skip
        self.campaign = Campaign(
            cfg, plan.seeds, self.runtime, self.embedder, self.sink,  # type: ignore[arg-type]
            events=self.events, frozen=self.frozen, reference=self.reference, on_step=self.on_step, domain=plan.domain,
        )  # fmt: skip
        return self.campaign

    async def aclose(self) -> None:
        """Closes the runtime (stops its workers); safe to call when none was made."""
        runtime, self.runtime = self.runtime, None
        if runtime is not None:
            await runtime.close()


# --------------------------------------------------------------------------- sinks


class MemorySink:
    """Keeps a campaign's outcomes in memory (experiments, tests): every event, the
    frozen topic space, the last snapshot's state and the step statistics.

    It reads like a run folder where :class:`Run` needs one (``cfg``, ``events()``,
    ``load_projection()``), so ``Run(sink).elites`` works without a folder.

    Attributes:
        events_list: every event this sink received, in order.
        base: the sink of the run this one continues (``run(..., start=...)``); its
            events come first in :meth:`events`, and its frozen spaces are this one's.
        frozen: the frozen (topic space, centroids), once the seed phase saved them.
        state: the counters of the last snapshot.
        stats: one row of step statistics per step.
    """

    path: Path | None = None

    def __init__(self, cfg: CampaignConfig | None = None) -> None:
        self.cfg = cfg
        self.base: MemorySink | None = None
        self.events_list: list[dict[str, Any]] = []
        self.frozen: tuple[TopicSpace, np.ndarray | None] | None = None
        self.state: dict[str, Any] = {}
        self.stats: list[dict[str, Any]] = []

    def append(self, event: dict[str, Any]) -> None:
        self.events_list.append(event)

    def save_projection(self, proj: TopicSpace, centroids: np.ndarray | None = None) -> None:
        self.frozen = (proj, centroids)

    def snapshot(self, elites: pd.DataFrame, state: dict[str, Any]) -> None:
        self.state = dict(state)

    def append_stats(self, row: dict[str, Any]) -> None:
        self.stats.append(row)

    def continues(self, base: MemorySink) -> None:
        """Makes this sink the continuation of ``base`` (same frozen spaces, its events first)."""
        self.base = base
        if self.frozen is None:
            self.frozen = base.frozen

    def events(self, *, repair: bool = False) -> Iterator[dict[str, Any]]:
        """Every event of the run: those of the run continued, then this sink's."""
        if self.base is not None:
            yield from self.base.events()
        yield from self.events_list

    def load_projection(self) -> tuple[TopicSpace, np.ndarray | None] | None:
        return self.frozen

    def close(self) -> None:
        return None


# --------------------------------------------------------------------------- runs


class Run:
    """One campaign's results: a run folder, or a :class:`MemorySink`.

    Everything is read when first asked for (the event log is the source of truth:
    the elites and counters are rebuilt by replaying it).

    Attributes:
        path: the run folder (None for a run kept in memory).
        sink: the :class:`MemorySink` of a run kept in memory (else None).
        last_step: the step statistics at the end of the session that made it here
            (None for a folder opened with :func:`open_run`, or an abandoned session).
        stop_reason: why that session stopped (``""`` when unknown).
        warnings: what that session's domain warned of (e.g. task prompts that win by hedging).
    """

    def __init__(
        self, source: str | Path | MemorySink, *, last_step: StepStats | None = None, stop_reason: str = ""
    ) -> None:
        self.sink = source if isinstance(source, MemorySink) else None
        self.path = None if isinstance(source, MemorySink) else Path(source)
        self.last_step = last_step
        self.stop_reason = stop_reason
        self.warnings: list[str] = []
        self._read: tuple[list[dict[str, Any]], dict[str, Any]] | None = None
        self._store: Any = None

    def __repr__(self) -> str:
        return f"Run({str(self.path) if self.path is not None else '<memory>'!r})"

    def _source(self) -> Any:
        if self.sink is not None:
            return self.sink
        if self._store is None:
            from qdsearch.store import RunStore

            self._store = RunStore.open(self.path, write=False)  # type: ignore[arg-type]
        return self._store

    @property
    def config(self) -> CampaignConfig:
        """The run's config (as saved in its folder)."""
        cfg: CampaignConfig | None = self._source().cfg
        if cfg is None:
            raise ValueError("this in-memory run has no config yet (it never ran)")
        return cfg

    def _records(self) -> tuple[list[dict[str, Any]], dict[str, Any]]:
        if self._read is None:
            from qdsearch.export import export_records

            records, info, _ = export_records(self._source())
            self._read = (records, info)
        return self._read

    @property
    def elites(self) -> pd.DataFrame:
        """The elites, one row per archive cell, with the field names of the exports:
        ``id, instruction, input, output, quality, complexity, measures, cell,
        operator, parent_id, generation``, the domain's extra fields, ``elite``.

        Raises:
            StoreError: the run has no archive yet (its seed phase never finished).
        """
        import pandas as pd

        records, _ = self._records()
        return pd.DataFrame.from_records(records)

    @property
    def state(self) -> dict[str, Any]:
        """The run's figures: the counters replayed from the event log (``children``,
        ``accepted``, ``rejects``, ``calls``, ``tokens``, ``cost_usd``, ``ops``...), the
        archive's (``elites``, ``cells``, ``coverage``, ``qd_score``) and what the last
        snapshot adds (``stop_reason``, ``domain_summary``...)."""
        _, info = self._records()
        saved = self._saved_state()
        out = {**saved, **info}
        out["tokens"] = int(out.get("prompt_tokens", 0)) + int(out.get("completion_tokens", 0))
        return out

    def _saved_state(self) -> dict[str, Any]:
        if self.sink is not None:
            return dict(self.sink.state)
        saved: dict[str, Any] = self._source().read_state()
        return saved

    @property
    def stats(self) -> pd.DataFrame:
        """The step statistics (``stats.csv``), one row per step."""
        import pandas as pd

        if self.sink is not None:
            return pd.DataFrame(self.sink.stats)
        return self._source().read_stats()  # type: ignore[no-any-return]

    def _folder(self, what: str) -> Path:
        if self.path is None:
            raise ValueError(f"{what} needs a run folder; this run was kept in memory (MemorySink)")
        return self.path

    def _embedder(self) -> Any:
        from qdsearch.descriptors.embedding import make_embedder

        return make_embedder(self.config.embedding)

    def export(
        self,
        fmt: str = "jsonl",
        out: str | Path | None = None,
        *,
        min_quality: float | None = None,
        selection: str = "elites",
        overwrite: bool = False,
        qdc: bool = False,
    ) -> Path:
        """Writes the run as a dataset (as ``qdsearch export`` does) with its card.

        Args:
            fmt: one of :data:`qdsearch.export.FORMATS` (``jsonl``, ``sharegpt``,
                ``messages``, ``alpaca``, ``parquet``, ``arrow``).
            out: the file to write (default ``RUN/export/elites.<suffix>``).
            min_quality: keep only records with at least this quality.
            selection: ``elites``, ``lineage`` or ``all``.
            overwrite: replace a file at ``out`` that another export wrote.
            qdc: add the card's quality/diversity/complexity table (embeds the texts).

        Returns:
            The path of the file (a folder for ``arrow``).

        Raises:
            ExportError: unknown format or selection, or a file it must not replace.
            ValueError: the run was kept in memory.
        """
        from qdsearch.export import export_run

        folder = self._folder("export")
        return export_run(folder, fmt, out, min_quality, selection=selection, overwrite=overwrite,  # type: ignore[arg-type]
                          embedder=self._embedder() if qdc else None)  # fmt: skip

    def report(self, out: str | Path | None = None, *, qdc: bool = False) -> Path:
        """Writes the HTML report (heatmaps, curves, operators); returns ``index.html``'s path.

        Args:
            out: the folder (default ``RUN/report``).
            qdc: add the quality/diversity/complexity table (embeds the texts).
        """
        from qdsearch.report import build_report

        return build_report(self._folder("report"), out, embedder_factory=self._embedder if qdc else None)


def open_run(path: str | Path) -> Run:
    """The :class:`Run` of an existing run folder (read only; nothing is locked).

    Raises:
        StoreError: not a qdsearch run folder.
    """
    from qdsearch.store import RunStore

    RunStore.open(path, write=False)  # fails now, naming the folder, if it is not one
    return Run(path)


# --------------------------------------------------------------------------- running


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


def check_ray_address(address: str, where: str, timeout_s: float = 3.0) -> None:
    """Fails fast when a Ray cluster address cannot be reached (``ray.init`` would
    retry for about 30 s, then raise); ``auto`` and ``local`` are left to Ray. The
    address's form was checked with the config (``runtime.ray_address``).

    Raises:
        UserError: nothing answers at the address.
    """
    import socket

    if address in ("", "auto", "local"):
        return
    host, _, port = address.removeprefix("ray://").rpartition(":")
    try:
        with socket.create_connection((host.strip("[]"), int(port)), timeout=timeout_s):
            pass
    except (OSError, ValueError) as e:
        reason = "timed out" if isinstance(e, TimeoutError) else (getattr(e, "strerror", None) or str(e))
        raise UserError(f"{where}: cannot reach a Ray cluster at {address} ({reason})") from None


async def arun(
    config: str | Path | CampaignConfig | Mapping[str, Any],
    overrides: Mapping[str, Any] | None = None,
    *,
    sink: MemorySink | None = None,
    start: Run | MemorySink | None = None,
    seed_phase_only: bool = False,
    seeds: Sequence[Sample] | None = None,
    endpoint: Any = None,
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
    plan = prepare(cfg, seeds=base is None and seeds is None)
    if seeds is not None and base is None:
        plan = dataclasses.replace(plan, seeds=list(seeds))
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
    session = Session(plan, store, endpoint=endpoint, embedder=embedder, on_step=on_step,
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
    seeds: Sequence[Sample] | None = None,
    endpoint: Any = None,
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
        seeds: the seed samples (None: loaded from ``seeds.path`` by the domain).
        endpoint: an endpoint that is already open (an :class:`EndpointConfig` with
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
    coro = arun(config, overrides, sink=sink, start=start, seed_phase_only=seed_phase_only, seeds=seeds,
                endpoint=endpoint, embedder=embedder, on_step=on_step, **sections)  # fmt: skip
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
