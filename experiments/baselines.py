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
import os
import platform
import sys
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

import qdsearch
from qdsearch.api import MemorySink, prepare
from qdsearch.archive import add_sample, make_archive
from qdsearch.campaign import sample_of
from qdsearch.config import CampaignConfig, from_dict
from qdsearch.descriptors.embedding import Embedder, make_embedder
from qdsearch.descriptors.topic import TopicProjection
from qdsearch.llm import open_endpoint
from qdsearch.operators import EVOL_OPERATORS
from qdsearch.pipeline import Job, Worker
from qdsearch.seeds import load_seeds
from qdsearch.types import Candidate, Sample

ROOT = Path(__file__).resolve().parents[1]
EVOL = [op.name for op in EVOL_OPERATORS]
ALL_OPS = [*EVOL, "answer_augmentation", "question_rephrase", "new_question", "crossover", "directional"]
# MAP-Elites variants: method -> operator selection.
MAP_ELITES = {"qdsearch": "ucb", "uniform": "fixed"}
METHODS = ("qdsearch", "uniform", "evol_instruct", "new_question", "novelty")
DEFAULT_METHODS = ("qdsearch", "evol_instruct", "new_question")


def _counted(calls: Sequence[dict[str, Any]], judge_counts: bool) -> int:
    return sum(1 for c in calls if judge_counts or not str(c.get("tag", "")).startswith("judge"))


async def seed_phase(cfg: CampaignConfig, seeds: list[Sample], embedder: Embedder, endpoint: Any) -> MemorySink:
    """Judges the seeds once and freezes the topic projection (shared by all methods)."""
    sink = MemorySink()
    await qdsearch.arun(
        cfg, sink=sink, seed_phase_only=True, seed_samples=seeds, ready_endpoint=endpoint, embedder=embedder
    )
    return sink


@dataclass
class Item:
    """One child of a method, in completion order.

    Attributes:
        calls: the LLM calls it counts against the budget.
        sample: the child.
        quality, complexity: the judge's verdict (None: not judged).
        measures: its archive measures when known (None: computed when scored).
        kept: part of the method's output dataset.
    """

    calls: int
    sample: Sample
    quality: float | None
    complexity: float | None
    measures: np.ndarray | None
    kept: bool


async def run_map_elites(
    cfg: CampaignConfig, shared: MemorySink, embedder: Embedder, endpoint: Any, budget: int, selection: str
) -> list[Item]:
    """A MAP-Elites campaign resumed from the shared seed phase (every call of a child counts)."""
    seed_calls = sum(len(e["calls"]) for e in shared.events_list if e.get("type") == "seed")
    sink = MemorySink()
    over = {"budget.max_calls": seed_calls + budget + 6, "budget.max_children": 0, "operators.selection": selection}
    await qdsearch.arun(cfg, over, sink=sink, start=shared, ready_endpoint=endpoint, embedder=embedder)
    return [
        Item(len(e["calls"]), sample_of(e), e["quality"], e["complexity"],
             None if e["measures"] is None else np.asarray(e["measures"]), e["status"] == "accepted")
        for e in sink.events_list
        if e.get("type") == "child"
    ]  # fmt: skip


async def run_pool(
    cfg: CampaignConfig,
    seeds: list[Sample],
    endpoint: Any,
    budget: int,
    mode: str,
    rng: np.random.Generator,
    embedder: Embedder | None = None,
    novelty_threshold: float = 0.9,
) -> list[Item]:
    """An archive-free baseline (``evol_instruct``, ``new_question`` or ``novelty``).

    Only generation calls (operator + respond) count; judging is evaluation.
    ``novelty`` keeps a child in its pool when its embedding's cosine similarity to
    every pool member is below ``novelty_threshold`` (quality is ignored).
    """
    plan = prepare(qdsearch.load_config(cfg, operators={"names": ALL_OPS}), seeds=False)
    worker = Worker(plan.cfg, endpoint, plan.operators, plan.domain)
    pool = list(seeds)
    pool_vecs = await asyncio.to_thread(embedder.embed, [s.prompt_text() for s in seeds]) if embedder else None
    out: list[Item] = []
    spent = 0
    n = 0
    pending: set[asyncio.Task[Candidate]] = set()
    per_child = 2.0
    try:
        while True:
            while len(pending) < cfg.runtime.in_flight and spent + (len(pending) + 1) * per_child <= budget + per_child:
                others: tuple[Sample, ...] = ()
                if mode == "new_question":
                    picks = rng.choice(len(seeds), size=min(5, len(seeds)), replace=False)
                    parent, others, op = seeds[int(picks[0])], tuple(seeds[int(i)] for i in picks[1:]), "new_question"
                else:
                    parent = pool[int(rng.integers(len(pool)))]
                    names = EVOL if mode == "evol_instruct" else [o for o in ALL_OPS if o != "directional"]
                    op = names[int(rng.integers(len(names)))]
                    if op in ("new_question", "crossover"):
                        picks = rng.choice(len(pool), size=min(4, len(pool)), replace=False)
                        others = tuple(pool[int(i)] for i in picks if pool[int(i)] is not parent)
                job = Job(f"c{n:07d}", op, parent, others, seed=int(rng.integers(2**31)))
                n += 1
                pending.add(asyncio.ensure_future(worker.run(job)))
            if not pending:
                break
            done, pending = await asyncio.wait(pending, return_when=asyncio.FIRST_COMPLETED)
            cands = sorted((t.result() for t in done), key=lambda c: c.sample.id)
            vecs = None
            if mode == "novelty" and embedder is not None:
                vecs = await asyncio.to_thread(embedder.embed, [c.sample.prompt_text() for c in cands])
            for i, cand in enumerate(cands):
                calls = _counted(cand.calls, judge_counts=False)
                spent += calls
                kept = _kept(cand)
                if kept and mode == "evol_instruct":
                    pool.append(cand.sample)
                elif kept and mode == "novelty" and vecs is not None and pool_vecs is not None:
                    kept = float(np.max(pool_vecs @ vecs[i])) < novelty_threshold
                    if kept:
                        pool.append(cand.sample)
                        pool_vecs = np.vstack([pool_vecs, vecs[i][None, :]])
                j = cand.judgement
                out.append(Item(calls, cand.sample, j.quality if j else None, j.complexity if j else None, None, kept))
            per_child = max(1.0, spent / len(out))
    finally:
        for t in pending:
            t.cancel()
        await worker.aclose()
    return out


def _kept(cand: Candidate) -> bool:
    """Passed elimination: judged, or rejected only by the judge (evaluation, not generation)."""
    return cand.judgement is not None or cand.reject.startswith("judge_")


def cut(items: list[Item], budget: int) -> list[Item]:
    """The prefix of ``items`` whose counted calls fit in ``budget``."""
    kept, spent = [], 0
    for it in items:
        if spent + it.calls > budget:
            break
        spent += it.calls
        kept.append(it)
    return kept


def curve(
    cfg: CampaignConfig,
    frozen: tuple[TopicProjection, np.ndarray | None],
    embedder: Embedder,
    seeds: list[Item],
    items: list[Item],
    checkpoints: Sequence[int],
) -> pd.DataFrame:
    """QD-score, coverage and elites on the shared grid after ``c`` counted calls, for each checkpoint.

    Every judged sample of the method (seeds included) is inserted, in completion order.
    """
    proj, centroids = frozen
    todo = [i for i, it in enumerate(items) if it.quality is not None and it.measures is None]
    if todo:
        coords = proj.transform(embedder.embed([items[i].sample.prompt_text() for i in todo]))
        for k, i in enumerate(todo):
            cx = items[i].complexity
            items[i] = dataclasses.replace(items[i], measures=np.concatenate([[cx], coords[k]]))
    archive = make_archive(cfg.archive, centroids)
    for it in seeds:
        assert it.quality is not None and it.complexity is not None and it.measures is not None
        add_sample(archive, it.sample, it.quality, it.measures, it.complexity)
    rows, spent, k = [], 0, 0
    for c in sorted(checkpoints):
        while k < len(items) and spent + items[k].calls <= c:
            it = items[k]
            spent += it.calls
            if it.quality is not None and it.complexity is not None and it.measures is not None:
                add_sample(archive, it.sample, it.quality, it.measures, it.complexity)
            k += 1
        st = archive.stats
        rows.append({"calls": c, "qd_score": float(st.qd_score), "coverage": float(st.coverage),
                     "elites": int(st.num_elites)})  # fmt: skip
    return pd.DataFrame(rows)


def dataset_of(
    method: str, cfg: CampaignConfig, frozen: Any, seeds: list[Item], items: list[Item]
) -> list[dict[str, Any]]:
    """A method's output: MAP-Elites methods export their elites; the others their kept children."""
    if method not in MAP_ELITES:
        return [_record(it.sample, it.quality, it.complexity) for it in items if it.kept]
    archive = make_archive(cfg.archive, frozen[1])
    for it in seeds + [it for it in items if it.kept]:
        assert it.quality is not None and it.complexity is not None and it.measures is not None
        add_sample(archive, it.sample, it.quality, it.measures, it.complexity)
    d = archive.data()
    return [
        {"instruction": d["solution"][i], "input": d["input"][i], "response": d["response"][i],
         "quality": float(d["objective"][i]), "complexity": float(d["complexity"][i])}
        for i in range(len(d["index"]))
    ]  # fmt: skip


async def run_method(
    method: str,
    cfg: CampaignConfig,
    shared: MemorySink,
    embedder: Embedder,
    endpoint: Any,
    budget: int,
    rng: np.random.Generator,
) -> list[Item]:
    """Runs one method from the shared seed phase; its items cut at ``budget`` counted calls."""
    if method in MAP_ELITES:
        items = await run_map_elites(cfg, shared, embedder, endpoint, budget, MAP_ELITES[method])
    else:
        seeds = [sample_of(e) for e in shared.events_list if e.get("type") == "seed" and e["status"] == "accepted"]
        items = await run_pool(cfg, seeds, endpoint, budget, method, rng, embedder if method == "novelty" else None)
    return cut(items, budget)


def seed_items(shared: MemorySink) -> list[Item]:
    return [
        Item(0, sample_of(e), e["quality"], e["complexity"], np.asarray(e["measures"]), True)
        for e in shared.events_list
        if e.get("type") == "seed" and e["status"] == "accepted"
    ]


def _record(s: Sample, q: float | None, cx: float | None) -> dict[str, Any]:
    return {"instruction": s.instruction, "input": s.input, "response": s.response, "quality": q, "complexity": cx}


async def main_async(args: argparse.Namespace) -> pd.DataFrame:
    base = {
        "run": {"name": "baselines", "seed": args.seed},
        "endpoint": {"base_url": args.base_url, "model": args.model, "concurrency": args.concurrency,
                     "max_tokens": args.max_tokens, "timeout_s": 180},
        "seeds": {"path": args.seeds, "limit": args.seed_limit},
        "judge": {"complexity_blend": 0.0}, "archive": {"kind": "grid", "topic": "pca", "complexity_bins": 5, "topic_dims": 2, "topic_bins": 4},
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
        seeds_done = seed_items(shared)
        print(
            f"seed phase: {len(seeds_done)}/{len(seeds)} seeds judged in {time.monotonic() - t0:.0f}s", file=sys.stderr
        )
        from qdsearch.measure import measure_dataset

        for method in args.methods:
            t = time.monotonic()
            rng = np.random.default_rng([args.seed, METHODS.index(method)])
            items = await run_method(method, cfg, shared, embedder, endpoint, args.budget, rng)
            grid = await asyncio.to_thread(curve, cfg, shared.frozen, embedder, seeds_done, items, [args.budget])
            dataset = dataset_of(method, cfg, shared.frozen, seeds_done, items)
            qdc = await asyncio.to_thread(measure_dataset, dataset, embedder) if dataset else {}
            last = grid.iloc[-1]
            row = {"method": method, "budget_calls": args.budget, "counted_calls": sum(it.calls for it in items),
                   "children": len(items), "dataset_size": len(dataset), "qd_score": float(last["qd_score"]),
                   "coverage": float(last["coverage"]), "elites": int(last["elites"]),
                   **{f"qdc_{k}": v for k, v in qdc.items()}, "wall_s": round(time.monotonic() - t, 1)}  # fmt: skip
            rows.append(row)
            print(f"{method}: calls={row['counted_calls']} children={len(items)} qd={row['qd_score']:.1f} "
                  f"cov={row['coverage']:.3f}", file=sys.stderr)  # fmt: skip
    return pd.DataFrame(rows)


def main(argv: Sequence[str] | None = None) -> int:
    os.environ.setdefault("QDSEARCH_NO_CACHE", "1")  # measured calls and spend: no reply from the request cache
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--budget", type=int, default=90, help="counted LLM calls per method")
    p.add_argument("--seeds", default=str(ROOT / "experiments/seeds/example_seeds.jsonl"))
    p.add_argument("--seed-limit", type=int, default=0)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--methods", default=",".join(DEFAULT_METHODS), help=f"comma list of {list(METHODS)}")
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
