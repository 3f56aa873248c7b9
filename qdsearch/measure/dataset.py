"""One dataset's QDC figures: :func:`measure_dataset` turns records into one flat dict of
metrics (:data:`METRICS`), and :func:`format_table` lays several side by side."""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping, Sequence
from typing import TYPE_CHECKING, Any

import numpy as np

from qdsearch.measure.metrics import (
    cluster_entropy,
    distinct_n,
    heuristic_constraints,
    mean_pairwise_cosine_distance,
    near_duplicate_rate,
    self_similarity,
    summarize,
    tokenize,
    vendi_score,
)
from qdsearch.measure.records import prompt_text

if TYPE_CHECKING:
    from qdsearch.descriptors.embedding import Embedder

__all__ = ["METRICS", "JudgeFn", "format_cell", "format_table", "measure_dataset"]

JudgeFn = Callable[[Sequence[Mapping[str, Any]]], list[dict[str, Any]]]
"""Judges records: one dict per record with ``quality`` and ``complexity`` (floats in
[1, 10], or None where that judgement failed or does not apply), optionally
``tags`` (the tag count, or None where tagging failed) and ``failed`` (a list of
failure reasons)."""

# (key, label, format) by group, in table order. Formats: "d" count, "f" number, "%" share.
METRICS: dict[str, tuple[tuple[str, str, str], ...]] = {
    "": (("n", "records", "d"),),
    "quality": (
        ("quality_source", "source", "s"),
        ("quality_n", "scored", "d"),
        ("quality_mean", "mean", "f"),
        ("quality_p10", "p10", "f"),
        ("quality_p50", "p50", "f"),
        ("quality_p90", "p90", "f"),
        ("quality_below", "share < threshold", "%"),
        ("judge_failures", "judge failures", "d"),
    ),
    "diversity": (
        ("vendi", "Vendi score", "f"),
        ("vendi_ratio", "Vendi / n", "%"),
        ("distinct_1", "distinct-1", "f"),
        ("distinct_2", "distinct-2", "f"),
        ("self_similarity", "self-similarity (n-gram Jaccard)", "f"),
        ("cosine_distance", "mean pairwise cosine distance", "f"),
        ("cluster_entropy", "topic-cluster entropy", "f"),
        ("near_duplicates", "near-duplicate rate", "%"),
    ),
    "complexity": (
        ("complexity_source", "source", "s"),
        ("complexity_mean", "judged mean", "f"),
        ("complexity_p10", "judged p10", "f"),
        ("complexity_p50", "judged p50", "f"),
        ("complexity_p90", "judged p90", "f"),
        ("instruction_words_mean", "instruction+input words, mean", "f"),
        ("instruction_words_p50", "instruction+input words, p50", "f"),
        ("instruction_words_p90", "instruction+input words, p90", "f"),
        ("response_words_mean", "response words, mean", "f"),
        ("response_words_p50", "response words, p50", "f"),
        ("response_words_p90", "response words, p90", "f"),
        ("constraints_mean", "constraints/steps (heuristic), mean", "f"),
        ("tags_mean", "intention tags (LLM), mean", "f"),
        ("tags_p50", "intention tags (LLM), p50", "f"),
        ("tag_failures", "tagging failures", "d"),
    ),
}


def measure_dataset(
    records: Sequence[Mapping[str, Any]],
    embedder: Embedder,
    *,
    judge_fn: JudgeFn | None = None,
    threshold: float = 5.0,
    near_duplicate: float = 0.95,
    clusters: int = 10,
    ngram: int = 4,
    max_pairs_items: int = 200,
    rng_seed: int = 0,
) -> dict[str, Any]:
    """Quality, diversity and complexity metrics of one dataset (see :data:`METRICS`).

    Quality and judged complexity come from ``judge_fn`` when it gives verdicts
    (results with ``quality``/``complexity`` keys; a tags-only judge gives none), else
    from the records' own ``quality`` / ``complexity`` fields when every record has one,
    else they are None ("n/a"). ``quality_source`` / ``complexity_source`` say which
    (``"judge"``, ``"field"`` or ``"none"``).

    Args:
        records: (n,) dicts with ``instruction``, ``input``, ``response`` and
            optional ``quality`` / ``complexity`` (as :func:`load_records` gives).
        embedder: maps texts to (n, d) unit vectors (the prompt texts are embedded).
        judge_fn: judges the records (see :data:`JudgeFn`); None: no judging.
        threshold: ``quality_below`` is the share of scored records with quality
            below this.
        near_duplicate: cosine similarity that makes a near-duplicate.
        clusters: k of the topic clustering.
        ngram: largest n-gram order of the self-similarity.
        max_pairs_items: subsample size of the self-similarity.
        rng_seed: seeds the subsample and the clustering.

    Returns:
        A flat dict: metric key -> float, int, str, or None for n/a (pairwise
        metrics of a single record are None), plus ``failure_reasons``: judge and
        tagging failure reason -> count (empty without judging; not in the table).

    Raises:
        ValueError: no records, or an embedder answer of the wrong shape.
    """
    n = len(records)
    if n == 0:
        raise ValueError("no records to measure")
    texts = [prompt_text(r) for r in records]
    emb = np.asarray(embedder.embed(texts), dtype=np.float64)
    if emb.ndim != 2 or emb.shape[0] != n:
        raise ValueError(f"the embedder returned shape {emb.shape} for {n} texts")
    rng = np.random.default_rng(rng_seed)

    out: dict[str, Any] = {"n": n}
    quality: list[float] = []
    complexity: list[float] = []
    tags: list[float] = []
    judge_failures = tag_failures = 0
    reasons: dict[str, int] = {}
    tagged = False
    results = judge_fn(records) if judge_fn is not None else None
    if results is not None and len(results) != n:
        raise ValueError(f"the judge returned {len(results)} results for {n} records")
    if results is not None:
        for res in results:
            if "tags" in res:
                tagged = True
                if res["tags"] is not None:
                    tags.append(float(res["tags"]))
            fails = [str(f) for f in res.get("failed") or []]
            tag_failures += sum(1 for f in fails if f.startswith("tags"))
            for f in fails:
                if f.startswith("tags"):
                    reasons[f] = reasons.get(f, 0) + 1
    judged = results is not None and any("quality" in r or "complexity" in r for r in results)
    if judged and results is not None:
        for res in results:
            fails = [str(f) for f in res.get("failed") or [] if not str(f).startswith("tags")]
            for f in fails:
                reasons[f] = reasons.get(f, 0) + 1
            judge_failures += len(fails)
            if res.get("quality") is not None:
                quality.append(float(res["quality"]))
            if res.get("complexity") is not None:
                complexity.append(float(res["complexity"]))
        q_src = c_src = "judge"
    else:
        q_src = "field" if all(r.get("quality") is not None for r in records) else "none"
        c_src = "field" if all(r.get("complexity") is not None for r in records) else "none"
        if q_src == "field":
            quality = [float(r["quality"]) for r in records]
        if c_src == "field":
            complexity = [float(r["complexity"]) for r in records]

    out["quality_source"] = q_src
    out["quality_n"] = len(quality) if q_src != "none" else None
    out |= summarize(quality, "quality")
    out["quality_below"] = float(np.mean(np.asarray(quality) < threshold)) if quality else None
    out["judge_failures"] = judge_failures if judged else None

    def nan_none(v: float) -> float | None:
        return None if math.isnan(v) else v

    vendi = vendi_score(emb)
    out["vendi"] = nan_none(vendi)
    out["vendi_ratio"] = nan_none(vendi / n)
    out["distinct_1"] = distinct_n(texts, 1)
    out["distinct_2"] = distinct_n(texts, 2)
    out["self_similarity"] = nan_none(self_similarity(texts, ngram, rng, max_pairs_items))
    out["cosine_distance"] = nan_none(mean_pairwise_cosine_distance(emb))
    out["cluster_entropy"] = nan_none(cluster_entropy(emb, clusters, rng_seed))
    out["near_duplicates"] = nan_none(near_duplicate_rate(emb, near_duplicate))

    out["complexity_source"] = c_src
    out |= summarize(complexity, "complexity")
    for key, lengths in (
        ("instruction_words", [len(tokenize(t)) for t in texts]),
        ("response_words", [len(tokenize(str(r.get("response") or ""))) for r in records]),
    ):
        out |= {k: v for k, v in summarize(lengths, key).items() if not k.endswith("_p10")}
    out["constraints_mean"] = float(np.mean([heuristic_constraints(t) for t in texts]))
    tag_summary = summarize(tags, "tags")
    out["tags_mean"] = tag_summary["tags_mean"]
    out["tags_p50"] = tag_summary["tags_p50"]
    out["tag_failures"] = tag_failures if tagged else None
    out["failure_reasons"] = dict(sorted(reasons.items(), key=lambda kv: (-kv[1], kv[0])))
    return out


def format_cell(v: Any, fmt: str) -> str:
    """One metric value as shown in tables (``n/a`` for missing)."""
    if v is None or (isinstance(v, float) and math.isnan(v)):
        return "n/a"
    if fmt == "s":
        return str(v)
    if fmt == "d":
        return str(int(v))
    if fmt == "%":
        return f"{100 * float(v):.1f}%"
    return f"{float(v):.3f}"


def format_table(results: Mapping[str, Mapping[str, Any]]) -> str:
    """A side-by-side text table: one column per dataset, one row per metric.

    Args:
        results: dataset name -> the dict :func:`measure_dataset` returned. Keys a
            dict lacks show as ``n/a``; keys outside :data:`METRICS` are not shown.

    Returns:
        The table, lines joined by ``\\n`` (no trailing newline).
    """
    names = list(results)
    rows: list[tuple[str, ...]] = [("metric", *names)]
    for group, items in METRICS.items():
        if group:
            rows.append((f"[{group}]", *([""] * len(names))))
        for key, label, fmt in items:
            rows.append((f"  {label}" if group else label, *(format_cell(results[nm].get(key), fmt) for nm in names)))
    widths = [max(len(r[i]) for r in rows) for i in range(len(rows[0]))]
    lines = []
    for i, r in enumerate(rows):
        cells = [r[0].ljust(widths[0])] + [c.rjust(w) for c, w in zip(r[1:], widths[1:], strict=True)]
        lines.append("  ".join(cells).rstrip())
        if i == 0:
            lines.append("  ".join("-" * w for w in widths))
    return "\n".join(lines)
