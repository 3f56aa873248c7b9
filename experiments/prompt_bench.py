"""qdsearch's task_prompt campaign against GEPA at equal metric calls (issue 21).

For every task and seed, both methods start from the same seed prompt (the first of
the task's ``seeds.jsonl``), run the same target model at temperature 0 with the
same ``max_tokens``, use the same model as mutation / reflection model, on the same
OpenAI-compatible endpoint, with the same train / val / test files, and stop at the
same budget of **metric calls** (one metric call = one prompt run on one example).
Both are scored by the same code (:meth:`TaskPromptDomain.score_examples`: the same
messages, scorer and feedback sentences), GEPA through a small adapter.

- qdsearch: ``experiments/task_prompt_<task>.toml`` (reflect + other operators,
  minibatch gate, per-example Pareto parents), ``budget.max_metric_calls``; its best
  prompt (highest val score) and every elite are scored on the test split by the
  campaign itself (``state.json`` ``holdout``).
- GEPA: ``gepa.optimize`` (``pip install gepa``; the ``bench`` extra) with
  ``max_metric_calls``, reflection minibatch 3, Pareto candidate selection; its best
  candidate is scored on the test split here.

Reported per run: val and test accuracy of the best prompt, metric calls spent,
wall time, tokens (target + mutation/reflection; the test pass apart), and for
qdsearch every elite's length, style and test score. The table gives means over
seeds with 95% intervals (t-interval over seeds; with one seed, the Wilson interval
of the test accuracy over its examples).

    .venv/bin/python experiments/prompt_bench.py                         # embedded model (starts it)
    .venv/bin/python experiments/prompt_bench.py --base-url http://127.0.0.1:8000/v1 --model Qwen/Qwen3-8B \\
        --tasks shipping weekday order_id --seeds 0 1 2 --metric-calls 100 300 1000
    OPENAI_API_KEY=... .venv/bin/python experiments/prompt_bench.py --base-url https://api.openai.com/v1 \\
        --model gpt-4o-mini --api-key-env OPENAI_API_KEY

Each finished run is appended to ``--jsonl`` at once (so a long grid cut short keeps
what it did) and the Markdown table is rewritten from that file (``--out``).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import math
import os
import statistics
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
os.environ.setdefault("QDSEARCH_NO_CACHE", "1")  # every metric call is a real request, for both methods

import numpy as np  # noqa: E402

import qdsearch  # noqa: E402
from qdsearch.config import CampaignConfig, EndpointConfig  # noqa: E402
from qdsearch.domains import make_domain  # noqa: E402
from qdsearch.domains.base import EvalContext  # noqa: E402
from qdsearch.domains.task_prompt import DevExample, TaskPromptDomain  # noqa: E402
from qdsearch.llm.client import LLMClient  # noqa: E402

TASKS = ("shipping", "weekday", "order_id")


# ------------------------------------------------------------------ the shared scorer
@dataclass
class Meter:
    """Calls and tokens of one method's run."""

    calls: int = 0
    tokens: int = 0
    log: list[dict[str, Any]] = field(default_factory=list)

    def add(self, calls: list[dict[str, Any]]) -> None:
        self.calls += len(calls)
        self.tokens += sum(int(c["prompt_tokens"]) + int(c["completion_tokens"]) for c in calls)


def score(
    dom: TaskPromptDomain, ep: EndpointConfig, prompt: str, examples: list[DevExample], meter: Meter
) -> list[Any]:
    """Runs ``prompt`` on ``examples`` through the task_prompt domain's own scorer."""

    async def go() -> list[Any]:
        client = LLMClient(ep)
        calls: list[dict[str, Any]] = []
        try:
            ctx = EvalContext(dom.cfg, client, client, client, np.random.default_rng(0), calls)
            results, _ = await dom.score_examples(prompt, examples, ctx)
            return results
        finally:
            meter.add(calls)
            await client.aclose()

    return asyncio.run(go())


def chat(ep: EndpointConfig, messages: list[dict[str, str]], meter: Meter) -> str:
    async def go() -> str:
        client = LLMClient(ep)
        try:
            comp = await client.chat(messages, tag="reflect", max_tokens=ep.max_tokens)
            meter.add(
                [{"prompt_tokens": comp.record.prompt_tokens, "completion_tokens": comp.record.completion_tokens}]
            )
            return comp.text
        finally:
            await client.aclose()

    return asyncio.run(go())


# ------------------------------------------------------------------ GEPA
def run_gepa(cfg: CampaignConfig, seed_prompt: str, budget: int, seed: int) -> dict[str, Any]:
    import gepa
    from gepa.core.adapter import EvaluationBatch

    dom: Any = make_domain(cfg)
    meter, test_meter = Meter(), Meter()
    target = cfg.target if cfg.target.base_url else cfg.endpoint  # empty [target]: the endpoint, as in qdsearch

    class Adapter:
        """GEPA's adapter: a candidate's one component is the prompt; data are the task's examples."""

        propose_new_texts = None  # GEPA's own reflective proposal

        def evaluate(self, batch: list[DevExample], candidate: dict[str, str], capture_traces: bool = False) -> Any:
            res = score(dom, target, candidate["prompt"], batch, meter)
            traj = [{"ex": r.example, "out": r.output, "fb": r.feedback} for r in res] if capture_traces else None
            return EvaluationBatch(outputs=[r.output for r in res], scores=[r.verdict.score for r in res],
                                   trajectories=traj)  # fmt: skip

        def make_reflective_dataset(self, candidate: dict[str, str], eval_batch: Any, components: list[str]) -> Any:
            rows = [{"Inputs": t["ex"].input, "Generated Outputs": t["out"], "Feedback": t["fb"]}
                    for t in eval_batch.trajectories]  # fmt: skip
            return {c: rows for c in components}

    def reflection_lm(prompt: str | list[dict[str, Any]]) -> str:
        msgs = [{"role": "user", "content": prompt}] if isinstance(prompt, str) else prompt
        return chat(cfg.endpoint, msgs, meter)

    t0 = time.monotonic()
    result = gepa.optimize(
        seed_candidate={"prompt": seed_prompt},
        trainset=list(dom.train),
        valset=list(dom.val),
        adapter=Adapter(),  # type: ignore[arg-type]
        reflection_lm=reflection_lm,
        candidate_selection_strategy="pareto",
        reflection_minibatch_size=cfg.domain.minibatch,
        max_metric_calls=budget,
        seed=seed,
        raise_on_exception=False,
        display_progress_bar=False,
    )
    wall = time.monotonic() - t0
    best = result.best_candidate["prompt"]  # type: ignore[index]
    test = score(dom, target, best, list(dom.test), test_meter)
    return {
        "method": "gepa",
        "best_prompt": best,
        "val": float(result.val_aggregate_scores[result.best_idx]),
        "test": sum(r.verdict.score for r in test) / len(test),
        "n_test": len(test),
        "metric_calls": int(result.total_metric_calls or 0),
        "candidates": result.num_candidates,
        "wall_s": wall,
        "tokens": meter.tokens,
        "calls": meter.calls,
        "test_tokens": test_meter.tokens,
    }


# ------------------------------------------------------------------ qdsearch
def _style(prompt: str) -> str:
    p = prompt.lower()
    kinds = {"persona": ("you are",), "steps": ("step", "think"), "examples": ("example", "e.g."),
             "rules": ("rule", " if ", "when ")}  # fmt: skip
    tags = [t for t, keys in kinds.items() if any(k in p for k in keys)]
    return "+".join(tags) or "plain"


def run_qdsearch(cfg: CampaignConfig, budget: int, work: Path) -> dict[str, Any]:
    t0 = time.monotonic()
    run = qdsearch.run(cfg, budget={"max_metric_calls": budget})
    wall = time.monotonic() - t0
    st = run.state
    hold = st.get("holdout", {})
    el = run.elites
    q = dict(zip(el["id"], el["quality"], strict=True))
    best = hold.get("best") or max(q, key=lambda i: q[i])
    elites = []
    for _, r in el.iterrows():
        prompt = r["instruction"]
        sc = hold.get("scores", {}).get(r["id"], {}).get("score")
        elites.append({"id": r["id"], "val": (r["quality"] - 1) / 9, "test": sc, "words": len(prompt.split()),
                       "style": _style(prompt), "operator": r["operator"], "prompt": prompt})  # fmt: skip
    return {
        "method": "qdsearch",
        "best_prompt": next(e["prompt"] for e in elites if e["id"] == best),
        "val": (q[best] - 1) / 9,
        "test": hold.get("scores", {}).get(best, {}).get("score"),
        "n_test": hold.get("n", 0),
        "metric_calls": int(st.get("metric_calls", 0)),
        "candidates": int(st.get("children", 0)) + int(st.get("seeds", 0)),
        "wall_s": wall,
        "tokens": int(st.get("prompt_tokens", 0)) + int(st.get("completion_tokens", 0)),
        "calls": int(st.get("calls", 0)),
        "test_tokens": int(hold.get("tokens", 0)),
        "elites": elites,
        "run_dir": str(run.path),
    }


# ------------------------------------------------------------------ the grid
def task_config(
    task: str, seed: int, ep: EndpointConfig, work: Path, val_limit: int, test_limit: int
) -> CampaignConfig:
    """The task's config with the bench's endpoint, seed, one seed prompt and split sizes."""
    base = ROOT / f"experiments/task_prompt_{task}.toml"
    folder = ROOT / "experiments" / "tasks" / task
    split_dir = work / task
    split_dir.mkdir(parents=True, exist_ok=True)
    paths = {}
    for split, limit in (("train", 0), ("val", val_limit), ("test", test_limit)):
        lines = (folder / f"{split}.jsonl").read_text().splitlines()
        (split_dir / f"{split}.jsonl").write_text("\n".join(lines[:limit] if limit else lines) + "\n")
        paths[f"{split}_path"] = str(split_dir / f"{split}.jsonl")
    seed_prompt = json.loads((folder / "seeds.jsonl").read_text().splitlines()[0])["instruction"]
    (split_dir / "seed.jsonl").write_text(json.dumps({"instruction": seed_prompt}) + "\n")
    eps = {"base_url": ep.base_url, "model": ep.model, "json_mode": ep.json_mode, "timeout_s": ep.timeout_s}
    if ep.api_key_env:
        eps["api_key_env"] = ep.api_key_env
    return qdsearch.load_config(
        base,
        run={"seed": seed, "name": f"bench-{task}-s{seed}-{int(time.time())}", "out_dir": str(work / "archives")},
        endpoint=eps,
        domain=paths,
        seeds={"path": str(split_dir / "seed.jsonl")},
        archive={"topic": "regions"},
        runtime={"in_flight": 1},  # one child at a time, as GEPA proposes: the budget is then met within one child
    )


def _ci(xs: list[float], n_test: int) -> str:
    """Mean and 95% interval: with ``n_test`` examples per seed, the Wilson interval of the
    pooled accuracy over every test example of every seed (a t-interval over two seeds that
    agree would claim a width of 0); else a t-interval over seeds."""
    m = statistics.fmean(xs)
    if n_test > 0:
        n_test *= len(xs)
    elif len(xs) > 1:
        t = {2: 12.71, 3: 4.30, 4: 3.18, 5: 2.78}.get(len(xs), 2.26)
        return f"{m:.3f} ± {t * statistics.stdev(xs) / math.sqrt(len(xs)):.3f}"
    if n_test <= 0:
        return f"{m:.3f}"
    z = 1.96
    c = (m + z * z / (2 * n_test)) / (1 + z * z / n_test)
    h = z * math.sqrt(m * (1 - m) / n_test + z * z / (4 * n_test * n_test)) / (1 + z * z / n_test)
    return f"{m:.3f} [{max(0.0, c - h):.3f}, {min(1.0, c + h):.3f}]"


def table(rows: list[dict[str, Any]], header: str) -> str:
    out = [header, "", "## Best prompt per method (means over seeds; val: (each seed's); test: [Wilson 95% interval "
           "over all test examples of all seeds])", "",
           "| task | metric calls (budget) | method | seeds | val acc | test acc | metric calls used | wall s | tokens "
           "(search) | tokens (test pass) |", "|---|---|---|---|---|---|---|---|---|---|"]  # fmt: skip
    keys = sorted({(r["task"], r["budget"], r["method"]) for r in rows})
    for task, budget, method in keys:
        rs = [r for r in rows if (r["task"], r["budget"], r["method"]) == (task, budget, method)]
        n_test = rs[0]["n_test"]
        tests = [r["test"] for r in rs if r["test"] is not None]
        vals = ", ".join(f"{r['val']:.2f}" for r in rs)
        out.append(
            f"| {task} | {budget} | {method} | {len(rs)} | {statistics.fmean(r['val'] for r in rs):.3f} ({vals}) | "
            + (_ci(tests, n_test) if tests else "n/a")
            + f" | {statistics.fmean(r['metric_calls'] for r in rs):.0f} | "
            f"{statistics.fmean(r['wall_s'] for r in rs):.0f} | {statistics.fmean(r['tokens'] for r in rs):.0f} | "
            f"{statistics.fmean(r['test_tokens'] for r in rs):.0f} |"
        )
    out += ["", "## What only qdsearch gives: the archive's elites at their test scores", "",
            "| task | seed | id | operator | words | style | val acc | test acc | prompt (start) |",
            "|---|---|---|---|---|---|---|---|---|"]  # fmt: skip
    for r in rows:
        if r["method"] != "qdsearch":
            continue
        for e in sorted(r["elites"], key=lambda e: -e["val"]):
            start = " ".join(e["prompt"].split())[:90].replace("|", "/")
            test = "n/a" if e["test"] is None else f"{e['test']:.3f}"
            out.append(f"| {r['task']} | {r['seed']} | {e['id']} | {e['operator']} | {e['words']} | {e['style']} | "
                       f"{e['val']:.3f} | {test} | {start} |")  # fmt: skip
    out += ["", "## Best prompts", ""]
    for r in rows:
        out.append(f"- {r['task']} seed {r['seed']} {r['method']} (test {r['test']}): "
                   f"`{' '.join(r['best_prompt'].split())[:300]}`")  # fmt: skip
    return "\n".join(out) + "\n"


NOTES = "<!-- notes: kept when the table is rewritten -->"


def write_table(out: Path, rows: list[dict[str, Any]], header: str) -> None:
    """Writes the tables to ``out``, keeping whatever follows the :data:`NOTES` marker there."""
    old = out.read_text() if out.is_file() else ""
    notes = old[old.index(NOTES) :] if NOTES in old else ""
    out.write_text(table(rows, header) + ("\n" + notes if notes else ""))


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description="qdsearch vs GEPA at equal metric calls")
    ap.add_argument("--base-url", default="", help="OpenAI-compatible endpoint (empty: start the embedded model)")
    ap.add_argument("--model", default="")
    ap.add_argument("--api-key-env", default="")
    ap.add_argument("--json-mode", default="auto", help="json_object for a llama.cpp server")
    ap.add_argument("--timeout-s", type=float, default=600.0, help="per request (a busy CPU server is slow)")
    ap.add_argument("--tasks", nargs="*", default=list(TASKS), choices=list(TASKS))
    ap.add_argument("--seeds", nargs="*", type=int, default=[0, 1])
    ap.add_argument("--metric-calls", nargs="*", type=int, default=[100])
    ap.add_argument("--methods", nargs="*", default=["qdsearch", "gepa"], choices=["qdsearch", "gepa"])
    ap.add_argument("--val-limit", type=int, default=0, help="first N val examples (0: all)")
    ap.add_argument("--test-limit", type=int, default=0, help="first N test examples (0: all)")
    ap.add_argument("--jsonl", type=Path, default=ROOT / "experiments/results/prompt-bench.jsonl")
    ap.add_argument("--out", type=Path, default=ROOT / "experiments/results/prompt-bench.md")
    ap.add_argument("--header", default="# Prompt evolution: qdsearch vs GEPA at equal metric calls")
    ap.add_argument("--table-only", action="store_true", help="rewrite the table from --jsonl and stop")
    args = ap.parse_args(argv)
    if not args.table_only:
        server = None
        if not args.base_url:
            from qdsearch.config import LocalModelConfig
            from qdsearch.llm import LocalModelServer

            server = LocalModelServer(LocalModelConfig()).__enter__()
            base_url, model, json_mode = server.base_url, server.model, "json_object"
        else:
            base_url, model, json_mode = args.base_url, args.model, args.json_mode
        key = {"api_key_env": args.api_key_env} if args.api_key_env else {}
        ep = EndpointConfig(base_url=base_url, model=model, json_mode=json_mode, timeout_s=args.timeout_s, **key)
        work = Path(tempfile.mkdtemp(prefix="prompt-bench-"))
        try:
            for budget in args.metric_calls:
                for task in args.tasks:
                    for seed in args.seeds:
                        cfg = task_config(task, seed, ep, work, args.val_limit, args.test_limit)
                        seed_prompt = json.loads(Path(cfg.seeds.path).read_text())["instruction"]
                        for method in args.methods:
                            r = (
                                run_qdsearch(cfg, budget, work)
                                if method == "qdsearch"
                                else run_gepa(cfg, seed_prompt, budget, seed)
                            )
                            r |= {"task": task, "seed": seed, "budget": budget, "model": model,
                                  "load": os.getloadavg()[0], "time": time.time()}  # fmt: skip
                            with open(args.jsonl, "a") as f:
                                f.write(json.dumps(r) + "\n")
                            print(f"{task} seed={seed} {method}: val {r['val']:.3f} test {r['test']} "
                                  f"calls {r['metric_calls']} wall {r['wall_s']:.0f}s", flush=True)  # fmt: skip
                            rows = [json.loads(x) for x in args.jsonl.read_text().splitlines() if x.strip()]
                            write_table(args.out, rows, args.header)
        finally:
            if server is not None:
                server.__exit__(None, None, None)
    rows = [json.loads(x) for x in args.jsonl.read_text().splitlines() if x.strip()]
    write_table(args.out, rows, args.header)


if __name__ == "__main__":
    main()
