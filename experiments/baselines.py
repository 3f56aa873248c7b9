"""Baselines at equal LLM-call budget: qdsearch MAP-Elites vs. archive-free generation.

Three methods start from the same seeds, judged once by the same judge (a shared
seed phase, excluded from every budget), on the same endpoint:

- ``qdsearch``: the MAP-Elites campaign as configured (operators, selection,
  novelty filter). Every call of a child counts: operator, respond and judge.
- ``evol_instruct``: Evol-Instruct without an archive. A pool starts as the seeds;
  each step evolves a random pool member with a random Evol operator (the five
  in-depth ones and in-breadth), answers it, and keeps it in the pool if it passes
  the elimination rules. Only generation calls (operator + respond) count: the
  method needs no judge, so its judge calls are evaluation, not budget.
- ``new_question``: independent New Question sampling. Each step shows random
  seeds as examples and asks for a new task, then answers it; all generation
  calls count, judging is evaluation.

Each method runs until its counted calls reach the budget ``B``; its output is then
cut at exactly ``B`` counted calls (in completion order), so the comparison is at
equal budget. Scores: every judged sample of a method (seeds included) goes into a
fresh archive on the same grid and the same frozen topic projection, giving
QD-score and coverage; the quality/diversity/complexity (QDC) table measures each
method's dataset: qdsearch's export (its elites) and the baselines' kept children.

    .venv/bin/python experiments/baselines.py --budget 90 --seeds experiments/seeds/example_seeds.jsonl

With no ``--base-url`` the embedded offline model is used (slow, judge near noise).
Writes ``<out>/baselines.csv`` and ``<out>/baselines.md``.
"""

from __future__ import annotations

import argparse
import asyncio
import dataclasses
import platform
import sys
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from qdsearch.archive import add_sample, make_archive
from qdsearch.campaign import Campaign, sample_of
from qdsearch.config import CampaignConfig, from_dict
from qdsearch.descriptors.embedding import Embedder, make_embedder
from qdsearch.descriptors.topic import TopicProjection
from qdsearch.llm import open_endpoint
from qdsearch.operators import EVOL_OPERATORS
from qdsearch.pipeline import Job, Worker
from qdsearch.runtime import InProcessRuntime
from qdsearch.seeds import load_seeds
from qdsearch.types import Candidate, Sample

ROOT = Path(__file__).resolve().parents[1]
EVOL = [op.name for op in EVOL_OPERATORS]
ALL_OPS = [*EVOL, "answer_augmentation", "question_rephrase", "new_question", "crossover", "directional"]
METHODS = ("qdsearch", "evol_instruct", "new_question")


class ListSink:
    """Keeps a campaign's outcomes in memory."""

    def __init__(self) -> None:
        self.events: list[dict[str, Any]] = []
        self.frozen: tuple[TopicProjection, np.ndarray | None] | None = None

    def append(self, event: dict[str, Any]) -> None:
        self.events.append(event)

    def save_projection(self, proj: TopicProjection, centroids: np.ndarray | None = None) -> None:
        self.frozen = (proj, centroids)

    def snapshot(self, elites: pd.DataFrame, state: dict[str, Any]) -> None:
        return None

    def append_stats(self, row: dict[str, Any]) -> None:
        return None


def _counted(calls: Sequence[dict[str, Any]], judge_counts: bool) -> int:
    return sum(1 for c in calls if judge_counts or not str(c.get("tag", "")).startswith("judge"))


async def seed_phase(cfg: CampaignConfig, seeds: list[Sample], embedder: Embedder, endpoint: Any) -> ListSink:
    """Judges the seeds once and freezes the topic projection (shared by all methods)."""
    sink = ListSink()
    runtime = InProcessRuntime(cfg, endpoint)
    campaign = Campaign(cfg, seeds, runtime, embedder, sink)
    campaign.stop_requested = True  # seed phase only
    try:
        await campaign.run()
    finally:
        await runtime.close()
    return sink


async def run_qdsearch(
    cfg: CampaignConfig, shared: ListSink, embedder: Embedder, endpoint: Any, budget: int
) -> list[dict[str, Any]]:
    """Child events of a MAP-Elites campaign resumed from the shared seed phase."""
    seed_calls = sum(len(e["calls"]) for e in shared.events if e.get("type") == "seed")
    b = dataclasses.replace(cfg.budget, max_calls=seed_calls + budget + 6, max_children=0)
    sink = ListSink()
    runtime = InProcessRuntime(cfg, endpoint)
    campaign = Campaign(
        dataclasses.replace(cfg, budget=b), [], runtime, embedder, sink, events=shared.events, frozen=shared.frozen
    )
    try:
        await campaign.run()
    finally:
        await runtime.close()
    return [e for e in sink.events if e.get("type") == "child"]


async def run_pool(
    cfg: CampaignConfig, seeds: list[Sample], endpoint: Any, budget: int, mode: str, rng: np.random.Generator
) -> list[Candidate]:
    """An archive-free baseline; returns its candidates in completion order."""
    worker = Worker(
        dataclasses.replace(cfg, operators=dataclasses.replace(cfg.operators, names=tuple(ALL_OPS))), endpoint
    )
    pool = list(seeds)
    out: list[Candidate] = []
    spent = 0
    n = 0
    pending: set[asyncio.Task[Candidate]] = set()
    per_child = 2.0
    try:
        while True:
            while len(pending) < cfg.runtime.in_flight and spent + (len(pending) + 1) * per_child <= budget + per_child:
                if mode == "evol_instruct":
                    parent = pool[int(rng.integers(len(pool)))]
                    op = EVOL[int(rng.integers(len(EVOL)))]
                    others: tuple[Sample, ...] = ()
                else:
                    picks = rng.choice(len(seeds), size=min(5, len(seeds)), replace=False)
                    parent, others, op = seeds[int(picks[0])], tuple(seeds[int(i)] for i in picks[1:]), "new_question"
                job = Job(f"c{n:07d}", op, parent, others, seed=int(rng.integers(2**31)))
                n += 1
                pending.add(asyncio.ensure_future(worker.run(job)))
            if not pending:
                break
            done, pending = await asyncio.wait(pending, return_when=asyncio.FIRST_COMPLETED)
            for t in sorted(done, key=lambda t: t.result().sample.id):
                cand = t.result()
                out.append(cand)
                spent += _counted(cand.calls, judge_counts=False)
                if mode == "evol_instruct" and _kept(cand):
                    pool.append(cand.sample)
            per_child = max(1.0, spent / len(out))
    finally:
        for t in pending:
            t.cancel()
        await worker.aclose()
    return out


def _kept(cand: Candidate) -> bool:
    """Passed elimination: judged, or rejected only by the judge (evaluation, not generation)."""
    return cand.judgement is not None or cand.reject.startswith("judge_")


def _cut(items: list[Any], calls_of: Any, budget: int) -> list[Any]:
    kept, spent = [], 0
    for it in items:
        c = calls_of(it)
        if spent + c > budget:
            break
        spent += c
        kept.append(it)
    return kept


def score(
    cfg: CampaignConfig,
    frozen: tuple[TopicProjection, np.ndarray | None],
    embedder: Embedder,
    judged: list[tuple[Sample, float, float, np.ndarray | None]],
) -> dict[str, float]:
    """QD-score and coverage of (sample, quality, complexity, measures|None) on the shared grid."""
    proj, centroids = frozen
    archive = make_archive(cfg.archive, centroids)
    todo = [i for i, j in enumerate(judged) if j[3] is None]
    if todo:
        coords = proj.transform(embedder.embed([judged[i][0].prompt_text() for i in todo]))
        for k, i in enumerate(todo):
            s, q, cx, _ = judged[i]
            judged[i] = (s, q, cx, np.concatenate([[cx], coords[k]]))
    for s, q, cx, m in judged:
        assert m is not None
        add_sample(archive, s, q, m, cx)
    st = archive.stats
    return {"qd_score": float(st.qd_score), "coverage": float(st.coverage), "elites": int(st.num_elites)}


def _record(s: Sample, q: float | None, cx: float | None) -> dict[str, Any]:
    return {"instruction": s.instruction, "input": s.input, "response": s.response, "quality": q, "complexity": cx}


async def main_async(args: argparse.Namespace) -> pd.DataFrame:
    base = {
        "run": {"name": "baselines", "seed": args.seed},
        "endpoint": {"base_url": args.base_url, "model": args.model, "concurrency": args.concurrency,
                     "max_tokens": args.max_tokens, "timeout_s": 180},
        "seeds": {"path": args.seeds, "limit": args.seed_limit},
        "archive": {"kind": "grid", "complexity_bins": 5, "topic_dims": 2, "topic_bins": 4},
        "operators": {"names": ALL_OPS, "selection": "ucb"},
        "runtime": {"kind": "inprocess", "in_flight": args.concurrency, "embed_batch": 4},
    }  # fmt: skip
    if args.base_url:
        base["endpoint"]["json_mode"] = args.json_mode
    if args.embed_base_url:
        base["embedding"] = {"backend": "endpoint", "base_url": args.embed_base_url, "model": args.embed_model}
    cfg = from_dict(base)
    cfg.validate()
    seeds = load_seeds(cfg.seeds.path, cfg.seeds.limit)
    embedder = await asyncio.to_thread(make_embedder, cfg.embedding)
    rows = []
    with open_endpoint(cfg.endpoint, cfg.local) as endpoint:
        t0 = time.monotonic()
        shared = await seed_phase(cfg, seeds, embedder, endpoint)
        assert shared.frozen is not None
        seed_ev = [e for e in shared.events if e.get("type") == "seed" and e["status"] == "accepted"]
        seed_judged = [(sample_of(e), e["quality"], e["complexity"], np.asarray(e["measures"])) for e in seed_ev]
        seed_samples = [sample_of(e) for e in seed_ev]
        print(f"seed phase: {len(seed_ev)}/{len(seeds)} seeds judged in {time.monotonic() - t0:.0f}s", file=sys.stderr)
        from qdsearch.measure import measure_dataset

        for method in args.methods:
            t = time.monotonic()
            rng = np.random.default_rng([args.seed, METHODS.index(method)])
            if method == "qdsearch":
                evs = await run_qdsearch(cfg, shared, embedder, endpoint, args.budget)
                evs = _cut(evs, lambda e: len(e["calls"]), args.budget)
                spent = sum(len(e["calls"]) for e in evs)
                judged = list(seed_judged) + [
                    (sample_of(e), e["quality"], e["complexity"], np.asarray(e["measures"]))
                    for e in evs
                    if e["quality"] is not None
                ]
                children = len(evs)
            else:
                cands = await run_pool(cfg, seed_samples, endpoint, args.budget, method, rng)
                cands = _cut(cands, lambda c: _counted(c.calls, judge_counts=False), args.budget)
                spent = sum(_counted(c.calls, judge_counts=False) for c in cands)
                judged = list(seed_judged) + [
                    (c.sample, c.judgement.quality, c.judgement.complexity, None) for c in cands if c.judgement
                ]
                children = len(cands)
            grid = await asyncio.to_thread(score, cfg, shared.frozen, embedder, judged)
            if method == "qdsearch":
                centroids = shared.frozen[1]
                archive = make_archive(cfg.archive, centroids)
                for e in seed_ev + [e for e in evs if e["status"] == "accepted"]:
                    add_sample(archive, sample_of(e), e["quality"], np.asarray(e["measures"]), e["complexity"])
                d = archive.data()
                dataset = [
                    {"instruction": d["solution"][i], "input": d["input"][i], "response": d["response"][i],
                     "quality": float(d["objective"][i]), "complexity": float(d["complexity"][i])}
                    for i in range(len(d["index"]))
                ]  # fmt: skip
            else:
                dataset = [
                    _record(c.sample, c.judgement.quality if c.judgement else None,
                            c.judgement.complexity if c.judgement else None)
                    for c in cands if _kept(c)
                ]  # fmt: skip
            qdc = await asyncio.to_thread(measure_dataset, dataset, embedder) if dataset else {}
            row = {"method": method, "budget_calls": args.budget, "counted_calls": spent, "children": children,
                   "dataset_size": len(dataset), **grid, **{f"qdc_{k}": v for k, v in qdc.items()},
                   "wall_s": round(time.monotonic() - t, 1)}  # fmt: skip
            rows.append(row)
            print(
                f"{method}: calls={spent} children={children} qd={grid['qd_score']:.1f} cov={grid['coverage']:.3f}",
                file=sys.stderr,
            )
    return pd.DataFrame(rows)


def main(argv: Sequence[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--budget", type=int, default=90, help="counted LLM calls per method")
    p.add_argument("--seeds", default=str(ROOT / "experiments/seeds/example_seeds.jsonl"))
    p.add_argument("--seed-limit", type=int, default=0)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--methods", default=",".join(METHODS))
    p.add_argument("--base-url", default="", help="OpenAI-compatible endpoint (default: embedded model)")
    p.add_argument("--model", default="")
    p.add_argument("--json-mode", default="auto")
    p.add_argument("--embed-base-url", default="", help="embeddings from this endpoint (default: MiniLM offline)")
    p.add_argument("--embed-model", default="embed")
    p.add_argument("--concurrency", type=int, default=4)
    p.add_argument("--max-tokens", type=int, default=256)
    p.add_argument("--out", default=str(ROOT / "experiments/results"))
    p.add_argument("--tag", default="embedded", help="suffix of the result files")
    args = p.parse_args(argv)
    args.methods = [m.strip() for m in args.methods.split(",") if m.strip()]
    unknown = sorted(set(args.methods) - set(METHODS))
    if unknown:
        p.error(f"--methods: unknown {unknown}; choose from {list(METHODS)}")
    t0 = time.monotonic()
    df = asyncio.run(main_async(args))
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    df.to_csv(out / f"baselines-{args.tag}.csv", index=False)
    cmd = "python experiments/baselines.py " + " ".join(sys.argv[1:] if argv is None else argv)
    head = (
        f"# Baselines at equal LLM-call budget ({args.tag})\n\n"
        f"- command: `{cmd}`\n- date: {time.strftime('%Y-%m-%d')}; machine: {platform.machine()}, "
        f"{_cores()} cores; total wall time {time.monotonic() - t0:.0f} s\n"
        f"- budget: {args.budget} counted calls per method (qdsearch: all calls of a child; baselines: operator + "
        "respond calls, their judging is evaluation); seed phase shared and not counted\n\n"
    )
    (out / f"baselines-{args.tag}.md").write_text(head + _markdown(df) + "\n")
    print(_markdown(df))
    return 0


def _cores() -> int:
    import os

    return len(os.sched_getaffinity(0))


# The columns of the Markdown table (the CSV has every metric).
SHOWN = ["method", "counted_calls", "children", "dataset_size", "qd_score", "coverage", "elites", "qdc_quality_mean",
         "qdc_quality_below", "qdc_vendi", "qdc_distinct_2", "qdc_self_similarity", "qdc_cosine_distance",
         "qdc_cluster_entropy", "qdc_near_duplicates", "qdc_complexity_mean", "qdc_instruction_words_mean",
         "qdc_constraints_mean", "wall_s"]  # fmt: skip


def _markdown(df: pd.DataFrame) -> str:
    df = df[[c for c in SHOWN if c in df.columns]].rename(columns=lambda c: c.removeprefix("qdc_"))
    cols = list(df.columns)
    lines = ["| " + " | ".join(cols) + " |", "|" + "---|" * len(cols)]
    for _, r in df.iterrows():
        lines.append("| " + " | ".join(f"{v:.4g}" if isinstance(v, float) else str(v) for v in r) + " |")
    return "\n".join(lines)


if __name__ == "__main__":
    sys.exit(main())
