"""A campaign's results: :class:`Run` (a run folder, or a :class:`MemorySink` kept in memory)."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any

from qdsearch.config import CampaignConfig

if TYPE_CHECKING:
    import numpy as np
    import pandas as pd

    from qdsearch.campaign import StepStats
    from qdsearch.descriptors.space import TopicSpace

__all__ = ["MemorySink", "Run", "open_run"]


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
