"""Micro figures: embedding throughput, archive insertion, snapshot of 10k elites.

Each function returns a dict of figures; :mod:`experiments.bench.run` prints them.
"""

from __future__ import annotations

import os
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np

from qdsearch.archive import add_sample, elites_frame, make_archive, make_centroids, measure_ranges
from qdsearch.config import ArchiveConfig, from_dict
from qdsearch.types import Sample

__all__ = ["embedding_throughput", "insertion_cost", "snapshot_time", "texts"]

_WORDS = [
    "explain",
    "describe",
    "compare",
    "the",
    "moon",
    "tides",
    "gravity",
    "recipe",
    "tomato",
    "soup",
    "volleyball",
    "rules",
    "french",
    "revolution",
    "causes",
    "interview",
    "advice",
    "prime",
    "number",
    "child",
    "water",
    "home",
    "violin",
    "cello",
    "beginner",
    "history",
    "example",
    "steps",
    "summary",
    "audience",
    "numeric",
    "jargon",
    "bullet",
    "points",
    "words",
    "careful",
    "answer",
    "useful",
    "distinct",
    "several",
]


def texts(n: int, seed: int = 0, words: tuple[int, int] = (12, 60)) -> list[str]:
    """``n`` instruction-like texts of ``words`` words (uniform), from a seeded generator."""
    rng = np.random.default_rng(seed)
    return [" ".join(rng.choice(_WORDS, size=int(rng.integers(*words)))) + "." for _ in range(n)]


def _samples(n: int, seed: int = 0) -> list[Sample]:
    rng = np.random.default_rng(seed)
    instr = texts(n, seed, (15, 60))
    resp = texts(n, seed + 1, (80, 250))
    return [
        Sample(
            id=f"c{i:07d}",
            instruction=instr[i],
            input="",
            response=resp[i],
            parent_id=f"c{max(0, i - 1):07d}",
            operator="add_constraints",
            generation=int(rng.integers(1, 12)),
        )
        for i in range(n)
    ]


def embedding_throughput(n: int, threads: int = 2, batch_size: int = 64) -> dict[str, Any]:
    """texts/s of the default sentence-transformers model (all-MiniLM-L6-v2), batched, on
    ``threads`` CPU threads; one warm-up batch first, then the best of two passes over ``n`` texts."""
    import torch

    from qdsearch.descriptors.embedding import SentenceTransformerEmbedder

    torch.set_num_threads(threads)
    t0 = time.perf_counter()
    emb = SentenceTransformerEmbedder(batch_size=batch_size)
    load_s = time.perf_counter() - t0
    data = texts(n, seed=1)
    emb.embed(data[:batch_size])
    best = float("inf")
    for _ in range(2):
        t = time.perf_counter()
        out = emb.embed(data)
        best = min(best, time.perf_counter() - t)
    assert out.shape == (n, emb.dim)
    mean_words = float(np.mean([len(t.split()) for t in data]))
    return {
        "texts": n,
        "threads": threads,
        "batch_size": batch_size,
        "mean_words": mean_words,
        "load_s": load_s,
        "texts_per_s": n / best,
        "torch_threads": torch.get_num_threads(),
    }


def insertion_cost(n: int, repeats: int = 5) -> dict[str, Any]:
    """µs per :func:`qdsearch.archive.add_sample` (the whole per-child archive cost: add and
    cell index) on the default grid (5 complexity bins x 16 topic regions), the old PCA
    grid (5 x 6 x 6 cells) and a 1000-cell CVT archive,
    each filled first; the best of ``repeats`` passes of ``n`` adds (least disturbed by
    other processes)."""
    rng = np.random.default_rng(0)
    samples = _samples(n)
    out: dict[str, Any] = {"adds": n}
    configs = (
        ("grid", ArchiveConfig()),
        ("pca_grid", ArchiveConfig(topic="pca")),
        ("cvt1000", ArchiveConfig(kind="cvt", cvt_cells=1000)),
    )
    for name, cfg in configs:
        centroids = make_centroids(cfg, 0) if cfg.kind == "cvt" else None
        best = float("inf")
        for r in range(repeats):
            archive = make_archive(cfg, centroids)
            q = rng.integers(1, 11, size=2 * n).astype(float)
            m = np.column_stack([rng.uniform(lo, hi, 2 * n) for lo, hi in measure_ranges(cfg)])
            for i in range(n):  # fill first: a realistic, mostly occupied archive
                add_sample(archive, samples[i], q[n + i], m[n + i], 3.0)
            t = time.perf_counter()
            for i in range(n):
                add_sample(archive, samples[i], q[i], m[i], float(m[i, 0]))
            best = min(best, (time.perf_counter() - t) / n)
            if r == 0:
                out[f"{name}_elites"] = int(archive.stats.num_elites)
        out[f"{name}_us"] = best * 1e6
    return out


def snapshot_time(elites: int) -> dict[str, Any]:
    """Seconds to snapshot ``elites`` elites: :func:`qdsearch.archive.elites_frame`, then
    :meth:`qdsearch.store.RunStore.snapshot` (parquet + state JSON, atomic writes, fsync)."""
    from qdsearch.store import RunStore

    side = int(np.ceil(np.sqrt(elites / 10)))
    cfg = ArchiveConfig(topic="pca", complexity_bins=10, topic_dims=2, topic_bins=side)
    archive = make_archive(cfg)
    samples = _samples(elites)
    cells = np.arange(10 * side * side)[:elites]
    lo, hi = -cfg.topic_range, cfg.topic_range
    step = (hi - lo) / side
    for s, cell in zip(samples, cells, strict=True):
        c, rest = divmod(int(cell), side * side)
        a, b = divmod(rest, side)
        meas = np.array([1.0 + (c + 0.5) * 0.9, lo + (a + 0.5) * step, lo + (b + 0.5) * step])
        add_sample(archive, s, 5.0, meas, float(meas[0]))
    n = int(archive.stats.num_elites)
    with tempfile.TemporaryDirectory(prefix="qds-bench-snap-") as tmp:
        run_cfg = from_dict(
            {"run": {"name": "snap", "out_dir": tmp}, "archive": {"topic": "pca", "complexity_bins": 10}}
        )
        store = RunStore.create(run_cfg)
        state = {"children": elites, "wall_s": 1.0}
        best_frame, best_total = float("inf"), float("inf")
        for _ in range(3):
            t0 = time.perf_counter()
            frame = elites_frame(archive)
            t1 = time.perf_counter()
            store.snapshot(frame, state)
            t2 = time.perf_counter()
            best_frame, best_total = min(best_frame, t1 - t0), min(best_total, t2 - t0)
        size = os.path.getsize(Path(store.path) / "elites.parquet")
        store.close()
    return {"elites": n, "frame_s": best_frame, "snapshot_s": best_total, "parquet_mb": size / 2**20}
