"""Seed-set size x LLM-call budget sweep of generation strategies.

Compares, at equal LLM-call budgets on the same seeds and endpoint, each fixed
strategy (Answer Augmentation, Question Rephrase, New Question, Evol-Instruct's
six operators) with adaptive selection (discounted UCB over all operators). For
each cell of the sweep it reports QD-score and coverage on the same archive
(same seeds, so the same frozen topic projection), and the quality / diversity /
complexity make-up of the elites.

Small scale on the embedded offline model (slow, and its judge is near noise):

    .venv/bin/python experiments/sweep.py --seed-sizes 4,8 --budgets 30,60

Full scale on any endpoint:

    OPENAI_API_KEY=... .venv/bin/python experiments/sweep.py --base-url https://api.openai.com/v1 \\
        --model gpt-4o-mini --seeds ../shared/data/seed_tasks.jsonl --seed-sizes 25,100 --budgets 500,2000

Writes ``<out>/results.csv`` and ``<out>/results.md``; each campaign's run folder
is kept under ``<out>/runs/`` (event log, operators.csv).
"""

from __future__ import annotations

import argparse
import asyncio
import dataclasses
import sys
import time
from pathlib import Path
from typing import Any

import pandas as pd

from qdsearch.archive import elites_frame
from qdsearch.campaign import Campaign
from qdsearch.config import CampaignConfig, from_dict
from qdsearch.descriptors.embedding import make_embedder
from qdsearch.llm import open_endpoint
from qdsearch.operators import EVOL_OPERATORS
from qdsearch.runtime import make_runtime
from qdsearch.seeds import load_seeds
from qdsearch.store import RunStore

ROOT = Path(__file__).resolve().parents[1]
EVOL = [op.name for op in EVOL_OPERATORS]
ALL = [*EVOL, "answer_augmentation", "question_rephrase", "new_question", "crossover", "directional"]
STRATEGIES: dict[str, dict[str, Any]] = {
    "answer_augmentation": {"names": ["answer_augmentation"]},
    "question_rephrase": {"names": ["question_rephrase"]},
    "new_question": {"names": ["new_question"]},
    "evol_instruct": {"names": EVOL},
    "adaptive": {"names": ALL, "selection": "ucb"},
}


def diversity(embedder: Any, texts: list[str]) -> float:
    """Mean pairwise cosine distance of the texts' embeddings (0 for < 2 texts)."""
    if len(texts) < 2:
        return 0.0
    v = embedder.embed(texts)
    sims = v @ v.T
    n = len(texts)
    return float(1.0 - (sims.sum() - n) / (n * (n - 1)))


def run_one(cfg: CampaignConfig, endpoint: Any, embedder: Any) -> dict[str, Any]:
    seeds = load_seeds(cfg.seeds.path, cfg.seeds.limit)
    store = RunStore.create(cfg)
    runtime = make_runtime(cfg, endpoint)
    campaign = Campaign(cfg, seeds, runtime, embedder, store)

    async def go() -> None:
        try:
            await campaign.run()
        finally:
            await runtime.close()

    t = time.monotonic()
    try:
        asyncio.run(go())
    finally:
        store.close()
    assert campaign.archive is not None
    st = campaign.stats()
    elites = elites_frame(campaign.archive)
    return {
        "qd_score": round(st.qd_score, 2),
        "coverage": round(st.coverage, 4),
        "elites": st.elites,
        "quality_mean": round(float(elites["quality"].mean()), 3),
        "complexity_mean": round(float(elites["complexity"].mean()), 3),
        "diversity": round(
            diversity(
                embedder,
                [f"{a}\n\n{b}" if b else a for a, b in zip(elites["instruction"], elites["input"], strict=True)],
            ),
            4,
        ),
        "children": st.children,
        "calls": st.calls,
        "tokens": st.tokens,
        "wall_s": round(time.monotonic() - t, 1),
    }


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--seeds", default=str(ROOT / "experiments/seeds/example_seeds.jsonl"))
    p.add_argument("--seed-sizes", default="4,8")
    p.add_argument("--budgets", default="30,60", help="LLM calls per campaign (seed phase included)")
    p.add_argument("--strategies", default=",".join(STRATEGIES))
    p.add_argument("--repeats", type=int, default=1, help="campaign seeds per cell")
    p.add_argument("--base-url", default="", help="OpenAI-compatible endpoint (default: embedded model)")
    p.add_argument("--model", default="")
    p.add_argument("--api-key-env", default="OPENAI_API_KEY")
    p.add_argument("--concurrency", type=int, default=4)
    p.add_argument("--out", default="")
    args = p.parse_args(argv)

    out = Path(args.out or ROOT / "archives" / f"sweep-{time.strftime('%Y%m%d-%H%M%S')}")
    base = from_dict(
        {
            "endpoint": {
                "base_url": args.base_url,
                "model": args.model,
                "api_key_env": args.api_key_env,
                "concurrency": args.concurrency,
                "max_tokens": 256,
                "timeout_s": 180.0,
            },
            "seeds": {"path": str(Path(args.seeds).resolve())},
            "archive": {"complexity_bins": 5, "topic_dims": 2, "topic_bins": 4},
            "budget": {"max_calls": 1},
            "runtime": {"kind": "inprocess", "in_flight": args.concurrency, "embed_batch": 4, "snapshot_every": 20},
        }
    )
    embedder = make_embedder(base.embedding)
    rows = []
    with open_endpoint(base.endpoint, base.local) as endpoint:
        for size in map(int, args.seed_sizes.split(",")):
            for budget in map(int, args.budgets.split(",")):
                for strategy in args.strategies.split(","):
                    for rep in range(args.repeats):
                        name = f"n{size}-b{budget}-{strategy}-r{rep}"
                        cfg = dataclasses.replace(
                            base,
                            run=dataclasses.replace(base.run, name=name, out_dir=str(out / "runs"), seed=rep),
                            seeds=dataclasses.replace(base.seeds, limit=size),
                            operators=from_dict({"operators": STRATEGIES[strategy]}).operators,
                            budget=dataclasses.replace(base.budget, max_calls=budget),
                        )
                        res = run_one(cfg, endpoint, embedder)
                        rows.append({"seeds": size, "budget_calls": budget, "strategy": strategy, "repeat": rep, **res})
                        print(name, res, file=sys.stderr, flush=True)
    df = pd.DataFrame(rows)
    out.mkdir(parents=True, exist_ok=True)
    df.to_csv(out / "results.csv", index=False)
    cols = ["seeds", "budget_calls", "strategy", "qd_score", "coverage", "elites", "quality_mean", "diversity",
            "complexity_mean", "calls", "tokens", "wall_s"]  # fmt: skip
    agg = df.groupby(["seeds", "budget_calls", "strategy"], sort=False)[cols[3:]].mean().round(3).reset_index()
    (out / "results.md").write_text(markdown_table(agg))
    print(out / "results.md")
    return 0


def markdown_table(df: pd.DataFrame) -> str:
    """A GitHub-flavoured Markdown table of ``df``."""
    head = "| " + " | ".join(map(str, df.columns)) + " |"
    rule = "|" + "|".join("---:" if pd.api.types.is_numeric_dtype(df[c]) else "---" for c in df.columns) + "|"
    body = ["| " + " | ".join(str(v) for v in row) + " |" for row in df.itertuples(index=False)]
    return "\n".join([head, rule, *body]) + "\n"


if __name__ == "__main__":
    sys.exit(main())
