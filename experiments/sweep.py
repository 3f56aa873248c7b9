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

In the synthetic benchmark world (issue 9), which starts one
:class:`~qdsearch.world.WorldServer` per campaign (world seed = ``--world-seed`` +
repeat, chat and embeddings from it):

    .venv/bin/python experiments/sweep.py --world --seed-sizes 4,16 --budgets 150,600 --repeats 5

Writes ``<out>/results.csv`` and ``<out>/results.md``; each campaign's run folder
is kept under ``<out>/runs/`` (event log, operators.csv). For adaptive runs the
results also carry, per strategy family, the share of children it made
(``pulls_<family>``) and the share of the QD gain it brought (``gain_<family>``),
read from the run's operators.csv, and ``results.md`` compares the family adaptive
selection favoured with the best fixed strategy of each sweep cell.
"""

from __future__ import annotations

import argparse
import contextlib
import itertools
import os
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pandas as pd

import qdsearch
from qdsearch.config import CampaignConfig, from_dict
from qdsearch.descriptors.embedding import make_embedder
from qdsearch.llm import open_endpoint
from qdsearch.operators import EVOL_OPERATORS
from qdsearch.world import WorldConfig, WorldServer, write_seed_tasks

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
# The fixed strategies' operators, as families of the adaptive strategy's operators.
FAMILY: dict[str, str] = {op: s for s, v in STRATEGIES.items() if s != "adaptive" for op in v["names"]}
FAMILIES = [*(s for s in STRATEGIES if s != "adaptive"), "other"]


def family_shares(operators_csv: Path) -> dict[str, float]:
    """Per strategy family: share of children made (``pulls_<f>``) and of QD gain (``gain_<f>``)."""
    if not operators_csv.is_file():
        return {}
    ops = pd.read_csv(operators_csv)
    ops["family"] = [FAMILY.get(o, "other") for o in ops["operator"]]
    g = ops.groupby("family")[["children", "qd_gain"]].sum().reindex(FAMILIES, fill_value=0)
    n, gain = max(1, int(g["children"].sum())), float(g["qd_gain"].clip(lower=0).sum()) or 1.0
    out = {f"pulls_{f}": round(float(g.loc[f, "children"]) / n, 3) for f in FAMILIES}
    out |= {f"gain_{f}": round(float(max(0.0, g.loc[f, "qd_gain"])) / gain, 3) for f in FAMILIES}
    return out


def diversity(embedder: Any, texts: list[str]) -> float:
    """Mean pairwise cosine distance of the texts' embeddings (0 for < 2 texts)."""
    if len(texts) < 2:
        return 0.0
    v = embedder.embed(texts)
    sims = v @ v.T
    n = len(texts)
    return float(1.0 - (sims.sum() - n) / (n * (n - 1)))


def run_one(cfg: CampaignConfig, endpoint: Any, embedder: Any) -> dict[str, Any]:
    """Runs one campaign to its budget; its scores, elites' make-up and costs."""
    t = time.monotonic()
    run = qdsearch.run(cfg, ready_endpoint=endpoint, embedder=embedder)
    st = run.state
    elites = run.elites
    return {
        "qd_score": round(st["qd_score"], 2),
        "coverage": round(st["coverage"], 4),
        "elites": st["elites"],
        "quality_mean": round(float(elites["quality"].mean()), 3),
        "complexity_mean": round(float(elites["complexity"].mean()), 3),
        "diversity": round(
            diversity(
                embedder,
                [f"{a}\n\n{b}" if b else a for a, b in zip(elites["instruction"], elites["input"], strict=True)],
            ),
            4,
        ),
        "children": st["children"],
        "calls": st["calls"],
        "tokens": st["tokens"],
        "wall_s": round(time.monotonic() - t, 1),
        "run_dir": str(run.path),
    }


@contextlib.contextmanager
def world_endpoint(base: CampaignConfig, seed: int, **world: Any) -> Iterator[CampaignConfig]:
    """A fresh synthetic world ``WorldConfig(seed=seed, **world)``; yields ``base`` pointed at it (chat and
    embeddings)."""
    srv = WorldServer(WorldConfig(seed=seed, **world)).start()
    try:
        url = srv.base_url
        yield qdsearch.load_config(
            base,
            endpoint={"base_url": url, "model": "qdsearch-world", "json_mode": "json_object"},
            embedding={"backend": "endpoint", "base_url": url, "model": "qdsearch-world"},
        )
    finally:
        srv.stop()


def main(argv: list[str] | None = None) -> int:
    os.environ.setdefault("QDSEARCH_NO_CACHE", "1")  # measured calls and spend: no reply from the request cache
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--seeds", default=str(ROOT / "experiments/seeds/example_seeds.jsonl"))
    p.add_argument("--seed-sizes", default="4,8")
    p.add_argument("--budgets", default="30,60", help="LLM calls per campaign (seed phase included)")
    p.add_argument("--strategies", default=",".join(STRATEGIES))
    p.add_argument("--schedules", default="steady",
                   help="comma list: steady, generational_<n> (runtime.schedule = generational, generation_size n)")  # fmt: skip
    p.add_argument("--repeats", type=int, default=1, help="campaign seeds per cell (and world seeds with --world)")
    p.add_argument("--base-url", default="", help="OpenAI-compatible endpoint (default: embedded model)")
    p.add_argument("--model", default="")
    p.add_argument("--api-key-env", default="OPENAI_API_KEY")
    p.add_argument("--json-mode", default="auto")
    p.add_argument("--embed-base-url", default="", help="embeddings from this endpoint (default: MiniLM offline)")
    p.add_argument("--embed-model", default="embed")
    p.add_argument("--world", action="store_true", help="run against synthetic worlds started here (issue 9)")
    p.add_argument("--world-seed", type=int, default=0, help="world seed of repeat 0 (repeat r: world_seed + r)")
    p.add_argument("--world-native-seeds", action="store_true",
                   help="with --world: seeds written by the world (spread over topics and complexity, weak "
                        "answers; qdsearch.world.seed_tasks) instead of --seeds")  # fmt: skip
    p.add_argument("--world-seed-level", type=int, default=1, help="answer level of the world-native seeds (1-6)")
    p.add_argument("--world-respond-base", type=float, default=WorldConfig().respond_base,
                   help="the world's mean answer level for a fresh answer to the easiest task")  # fmt: skip
    p.add_argument("--concurrency", type=int, default=4)
    p.add_argument("--out", default="")
    args = p.parse_args(argv)
    unknown = sorted(set(args.strategies.split(",")) - set(STRATEGIES))
    if unknown:
        p.error(f"--strategies: unknown {unknown}; choose from {list(STRATEGIES)}")
    schedules = [x.strip() for x in args.schedules.split(",") if x.strip()]
    if bad := [x for x in schedules if schedule_runtime(x) is None]:
        p.error(f"--schedules: unknown {bad}; steady or generational_<n>")

    t0 = time.monotonic()
    out = Path(args.out or ROOT / "archives" / f"sweep-{time.strftime('%Y%m%d-%H%M%S')}")
    world_kw = {"respond_base": args.world_respond_base}
    if args.world_native_seeds:
        sizes = [int(x) for x in args.seed_sizes.split(",")]
        args.seeds = str(write_seed_tasks(out / "world-seeds.jsonl", max(sizes), 0, args.world_seed_level))
    spec: dict[str, Any] = {
        "endpoint": {
            "base_url": args.base_url,
            "model": args.model,
            "api_key_env": args.api_key_env,
            "concurrency": args.concurrency,
            "max_tokens": 256,
            "timeout_s": 180.0,
        },
        "seeds": {"path": str(Path(args.seeds).resolve())},
        "judge": {"complexity_blend": 0.0},
        "archive": {"topic": "pca", "complexity_bins": 5, "topic_dims": 2, "topic_bins": 4},
        "budget": {"max_calls": 1},
        "runtime": {"kind": "inprocess", "in_flight": args.concurrency, "embed_batch": 4, "snapshot_every": 20},
    }
    if args.base_url:
        spec["endpoint"]["json_mode"] = args.json_mode
    if args.embed_base_url:
        spec["embedding"] = {"backend": "endpoint", "base_url": args.embed_base_url, "model": args.embed_model}
    base = from_dict(spec)
    rows = []
    with contextlib.ExitStack() as stack:
        embedder = None if args.world else make_embedder(base.embedding)
        endpoint = None if args.world else stack.enter_context(open_endpoint(base.endpoint, base.local))
        for size in map(int, args.seed_sizes.split(",")):
            for budget in map(int, args.budgets.split(",")):
                for strategy, schedule in itertools.product(args.strategies.split(","), schedules):
                    for rep in range(args.repeats):
                        tag = "" if schedule == "steady" else f"-{schedule}"
                        name = f"n{size}-b{budget}-{strategy}{tag}-r{rep}"
                        cfg = qdsearch.load_config(
                            base,
                            run={"name": name, "out_dir": str(out / "runs"), "seed": rep},
                            seeds={"limit": size},
                            operators=STRATEGIES[strategy],
                            budget={"max_calls": budget},
                            runtime=schedule_runtime(schedule),
                        )
                        world = args.world_seed + rep if args.world else None
                        if world is not None:
                            with world_endpoint(cfg, world, **world_kw) as wcfg:
                                res = run_one(wcfg, wcfg.endpoint, make_embedder(wcfg.embedding))
                        else:
                            res = run_one(cfg, endpoint, embedder)
                        shares = (
                            family_shares(Path(res.pop("run_dir")) / "operators.csv") if strategy == "adaptive" else {}
                        )
                        rows.append({"seeds": size, "budget_calls": budget, "strategy": strategy,
                                     "schedule": schedule, "repeat": rep, "world_seed": world, **res,
                                     **shares})  # fmt: skip
                        print(name, res, file=sys.stderr, flush=True)
    df = pd.DataFrame(rows)
    out.mkdir(parents=True, exist_ok=True)
    df.to_csv(out / "results.csv", index=False)
    cols = ["seeds", "budget_calls", "strategy", "schedule", "qd_score", "coverage", "elites", "quality_mean",
            "diversity", "complexity_mean", "calls", "tokens", "wall_s"]  # fmt: skip
    agg = df.groupby(cols[:4], sort=False)[cols[4:]].mean().round(3).reset_index()
    if len(schedules) == 1:  # the table of a sweep without schedules, as before
        agg = agg.drop(columns="schedule")
    cmd = "python experiments/sweep.py " + " ".join(sys.argv[1:] if argv is None else argv)
    head = f"- command: `{cmd}`\n- total wall time {time.monotonic() - t0:.0f} s; {args.repeats} repeat(s) per cell"
    head += f", world seeds {args.world_seed}..{args.world_seed + args.repeats - 1}\n\n" if args.world else "\n\n"
    text = head + markdown_table(agg)
    if "adaptive" in set(df["strategy"]) and any(c.startswith("pulls_") for c in df.columns):
        first = df[df["schedule"] == schedules[0]]
        text += "\n## Does adaptive selection favour the best fixed strategy?\n\n" + markdown_table(
            adaptive_check(first)
        )
    if len(schedules) > 1:
        text += "\n## Each schedule's QD-score over the first one's, paired by repeat\n\n" + markdown_table(
            schedule_ratios(df, schedules)
        )
    (out / "results.md").write_text(text)
    print(out / "results.md")
    return 0


def schedule_runtime(name: str) -> dict[str, Any] | None:
    """The ``[runtime]`` keys of a schedule name (``steady``, ``generational_<n>``); None if unknown."""
    if name == "steady":
        return {}
    size = name.removeprefix("generational_")
    if name.startswith("generational_") and size.isdigit() and int(size) > 0:
        return {"schedule": "generational", "generation_size": int(size)}
    return None


def schedule_ratios(df: pd.DataFrame, schedules: list[str]) -> pd.DataFrame:
    """Per sweep cell and strategy: each schedule's mean QD-score ratio to the first
    schedule's, over repeats paired by run seed (and world), with how many it led."""
    rows = []
    key = ["seeds", "budget_calls", "strategy"]
    for cell, g in df.groupby(key, sort=False):
        ref = g[g["schedule"] == schedules[0]].set_index("repeat")["qd_score"]
        row = dict(zip(key, cell, strict=True))
        for other in schedules[1:]:
            qd = g[g["schedule"] == other].set_index("repeat")["qd_score"].reindex(ref.index)
            ok = ref > 0
            ratio = (qd[ok] / ref[ok]).mean() if ok.any() else float("nan")
            row[f"{other} / {schedules[0]}"] = f"{ratio:.3f} ({int((qd > ref).sum())}/{len(ref)} ahead)"
        rows.append(row)
    return pd.DataFrame(rows)


def adaptive_check(df: pd.DataFrame) -> pd.DataFrame:
    """Per sweep cell: the best fixed strategy (mean QD-score over repeats, and the runner-up), and the strategy
    family adaptive selection favoured (its share of children over the share uniform choice would give it) and
    got most QD gain from (means over repeats)."""
    rows = []
    for (size, budget), g in df.groupby(["seeds", "budget_calls"], sort=False):
        qd = g.groupby("strategy")["qd_score"].mean()
        fixed = qd.drop("adaptive", errors="ignore").sort_values(ascending=False)
        ad = g[g["strategy"] == "adaptive"]
        pulls = ad[[f"pulls_{f}" for f in FAMILIES]].mean().rename(lambda c: c.removeprefix("pulls_"))
        gains = ad[[f"gain_{f}" for f in FAMILIES]].mean().rename(lambda c: c.removeprefix("gain_"))
        # pulls relative to uniform choice over the adaptive strategy's operators (1: no preference)
        lift = pulls / pd.Series({f: sum(FAMILY.get(o, "other") == f for o in ALL) / len(ALL) for f in FAMILIES})
        rows.append(
            {
                "seeds": size,
                "budget_calls": budget,
                "best_fixed": fixed.index[0] if len(fixed) else "",
                "best_fixed_qd": round(float(fixed.iloc[0]), 1) if len(fixed) else None,
                "runner_up": f"{fixed.index[1]} ({fixed.iloc[1]:.1f})" if len(fixed) > 1 else "",
                "adaptive_qd": round(float(qd.get("adaptive", float("nan"))), 1),
                "most_favoured": f"{lift.idxmax()} (x{lift.max():.2f})",
                "most_gain": f"{gains.idxmax()} ({gains.max():.2f})",
                "pulls_vs_uniform": " ".join(f"{k}:x{v:.2f}" for k, v in lift.items()),
                "gain_share": " ".join(f"{k}:{v:.2f}" for k, v in gains.items()),
            }
        )
    return pd.DataFrame(rows)


def markdown_table(df: pd.DataFrame) -> str:
    """A GitHub-flavoured Markdown table of ``df``."""
    head = "| " + " | ".join(map(str, df.columns)) + " |"
    rule = "|" + "|".join("---:" if pd.api.types.is_numeric_dtype(df[c]) else "---" for c in df.columns) + "|"
    body = ["| " + " | ".join(str(v) for v in row) + " |" for row in df.itertuples(index=False)]
    return "\n".join([head, rule, *body]) + "\n"


if __name__ == "__main__":
    sys.exit(main())
