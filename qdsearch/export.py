"""Export a campaign's elites as a training dataset, with a dataset card.

Formats (every record carries cell, measures, quality, complexity, operator,
parent_id, generation and id besides the text):

- ``jsonl``: ``instruction``, ``input``, ``output`` + metadata;
- ``parquet``: the same columns;
- ``alpaca``: a JSON array of ``instruction``/``input``/``output`` + metadata;
- ``sharegpt``: JSONL of ``conversations`` (human/gpt turns) + metadata.

All load with Hugging Face ``datasets`` (``load_dataset("json"|"parquet", ...)``).
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any, Literal

import pandas as pd

from qdsearch.archive import archive_for, elites_frame
from qdsearch.campaign import replay
from qdsearch.store import RunStore, StoreError, atomic_write

__all__ = ["FORMATS", "export_run", "load_elites"]

Format = Literal["jsonl", "parquet", "alpaca", "sharegpt"]
FORMATS: tuple[str, ...] = ("jsonl", "parquet", "alpaca", "sharegpt")
_SUFFIX = {"jsonl": ".jsonl", "parquet": ".parquet", "alpaca": ".json", "sharegpt": ".jsonl"}
# The record fields, in order (an empty parquet export keeps them as its columns).
_FIELDS = (
    "id",
    "instruction",
    "input",
    "output",
    "quality",
    "complexity",
    "measures",
    "cell",
    "operator",
    "parent_id",
    "generation",
)


def load_elites(store: RunStore) -> tuple[pd.DataFrame, dict[str, Any]]:
    """The elites rebuilt by replaying the event log, and the counters.

    Raises:
        StoreError: the run has no frozen projection yet (its seed phase never ended).
    """
    frozen = store.load_projection()
    if frozen is None:
        raise StoreError(f"{store.path}: the campaign has no archive yet (its seed phase did not finish)")
    archive = archive_for(store.cfg, frozen[1])
    counters, _ = replay(store.events(), archive)
    st = archive.stats
    info = counters.to_dict() | {
        "elites": int(st.num_elites),
        "cells": int(archive.cells),  # type: ignore[attr-defined]
        "coverage": float(st.coverage),
        "qd_score": float(st.qd_score),
    }
    return elites_frame(archive), info


def _records(df: pd.DataFrame, axes: dict[str, tuple[str, ...]] | None = None) -> list[dict[str, Any]]:
    """Export records; with categorical ``axes`` each also gets ``labels`` (axis -> label)."""
    out = []
    for r in df.itertuples(index=False):
        labels = {}
        if axes:
            labels = {"labels": {name: lab[int(m)] for (name, lab), m in zip(axes.items(), r.measures, strict=True)}}
        out.append(
            {
                "id": r.id,
                "instruction": r.instruction,
                "input": r.input,
                "output": r.response,
                "quality": float(r.quality),
                "complexity": float(r.complexity),
                "measures": [float(x) for x in r.measures],
                "cell": int(r.cell),
                "operator": r.operator,
                "parent_id": r.parent_id,
                "generation": int(r.generation),
                **labels,
            }
        )
    return out


_DOMAIN_TEXT = {
    "instruct": "over instruction/response samples",
    "custom": "over user-defined instruction/response samples",
    "task_prompt": "over task prompts; 'output' holds each prompt's dev-set report",
    "probe": "over red-teaming probes; 'output' holds the target's reply",
}
_QUALITY_TEXT = {
    "instruct": "LLM judge",
    "custom": "LLM grader with the campaign's rubric",
    "task_prompt": "1 + 9 x dev-set score",
    "probe": "grader's rating of the target's reply against the rubric",
}


def _axes_text(cfg: Any) -> str:
    if cfg.domain.categorical:
        return " x ".join(f"{k} ({', '.join(v)})" for k, v in cfg.domain.axis_labels().items())
    return "complexity and a topic projection of sentence embeddings"


def _card(store: RunStore, info: dict[str, Any], n: int, fmt: str, min_quality: float | None) -> str:
    cfg = store.cfg
    ops = ", ".join(cfg.operators.names)
    return f"""# Dataset card: {cfg.run.name}

Made by qdsearch, a MAP-Elites search ({_DOMAIN_TEXT[cfg.domain.kind]}): each
record is the best sample (highest fitness) found in one cell of the archive,
whose axes are {_axes_text(cfg)}.

- Records: {n} ({fmt}){f", quality >= {min_quality}" if min_quality is not None else ""}
- Archive: {cfg.archive.kind}, {info["cells"]} cells, {info["elites"]} elites, coverage {info["coverage"]:.3f}, QD-score {info["qd_score"]:.1f}
- Seeds: {info["seeds"]} ({info["seeds_accepted"]} judged); children evaluated: {info["children"]}, judged: {info["accepted"]}
- Operators: {ops}
- LLM calls: {info["calls"]}, tokens: {info["prompt_tokens"] + info["completion_tokens"]}, cost: ${info["cost_usd"]:.4f}
- Model: {cfg.endpoint.model or "embedded SmolLM2-135M-Instruct (offline demo model)"}

Fields: instruction, input, output, quality (1-10: {_QUALITY_TEXT[cfg.domain.kind]}), complexity (1-10),
measures, cell, operator, parent_id, generation, id{", labels (axis -> label)" if cfg.domain.categorical else ""}.

Quality and complexity are one LLM judge's opinion; check samples before training.
"""


def export_run(
    run_dir: str | Path,
    fmt: Format = "jsonl",
    out: str | Path | None = None,
    min_quality: float | None = None,
) -> Path:
    """Writes the run's elites as a dataset file plus ``<file>.README.md`` (the card).

    Args:
        run_dir: the campaign folder.
        fmt: one of :data:`FORMATS`.
        out: output file; default ``<run_dir>/export/elites.<ext>``.
        min_quality: keep only elites with quality >= this.

    Returns:
        The dataset file's path.

    Raises:
        ValueError: unknown format.
        StoreError: not a run folder / no archive yet.
    """
    if fmt not in FORMATS:
        raise ValueError(f"--format must be one of {list(FORMATS)}, got {fmt!r}")
    store = RunStore.open(run_dir, write=False)
    df, info = load_elites(store)
    if min_quality is not None:
        df = df[df["quality"] >= min_quality]
    path = Path(out) if out else store.path / "export" / f"elites{_SUFFIX[fmt]}"
    path.parent.mkdir(parents=True, exist_ok=True)
    recs = _records(df, store.cfg.domain.axis_labels() if store.cfg.domain.categorical else None)
    if fmt == "parquet":
        data = pd.DataFrame.from_records(recs, columns=list(_FIELDS)).to_parquet(index=False)
    elif fmt == "alpaca":
        data = json.dumps(recs, ensure_ascii=False, indent=1).encode()
    else:
        if fmt == "sharegpt":
            recs = [
                {
                    "conversations": [
                        {
                            "from": "human",
                            "value": f"{r['instruction']}\n\n{r['input']}" if r["input"] else r["instruction"],
                        },
                        {"from": "gpt", "value": r["output"]},
                    ],
                    **{k: v for k, v in r.items() if k not in ("instruction", "input", "output")},
                }
                for r in recs
            ]
        data = "".join(json.dumps(r, ensure_ascii=False) + "\n" for r in recs).encode()
    atomic_write(path, data)
    atomic_write(path.with_name(path.name + ".README.md"), _card(store, info, len(recs), fmt, min_quality).encode())
    return path
