"""QD per dollar with a provider batch API (issue 18 item 3, the batch target): the same
campaign at equal LLM calls, steady state with single calls vs the generational schedule
with single calls vs the generational schedule with ``endpoint.batch = true``.

The endpoint is the synthetic benchmark world (:mod:`qdsearch.world`: replies, verdicts and
embeddings with a known ground truth) served by the fake Files and Batches server of the
tests (``tests/fakes/batch_server.py``, on 127.0.0.1), which answers single chat calls and
the lines of batch jobs with the same world, so the three arms see one model. Prices are
set on the endpoint (``--price-in``/``--price-out``, USD per 1M tokens; the world counts
words as tokens); batch lines pay ``batch_discount`` (0.5) of them, as OpenAI's Batch API
does. Each arm runs ``--calls`` LLM calls (``budget.max_calls``) for each of ``--seeds``
run seeds; a run's QD per dollar is its final QD score over its cost. The table gives the
mean and the range over seeds, and the ratio of the batch arm's QD per dollar to steady
state's (target: >= 1.8x, which the discount alone gives if the QD score holds).

    .venv/bin/python experiments/batch_bench.py --out experiments/results/batch.md
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import platform
import random
import sys
import tempfile
import time
from collections import Counter
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))
os.environ.setdefault("QDSEARCH_NO_CACHE", "1")  # every arm pays for its calls

from aiohttp import web  # noqa: E402

from qdsearch.config import from_dict, load_config  # noqa: E402
from qdsearch.config.load import to_dict  # noqa: E402
from qdsearch.world import World, WorldConfig  # noqa: E402
from tests.fakes.batch_server import FakeBatches  # noqa: E402
from tests.helpers import run_campaign  # noqa: E402

ARMS = {
    "steady": {"schedule": "steady", "batch": False},
    "generational": {"schedule": "generational", "batch": False},
    "generational + batch": {"schedule": "generational", "batch": True},
}


class WorldBatches(FakeBatches):
    """The fake batch server answering with the world (chat and embeddings)."""

    def __init__(self, world: World, **kw: Any) -> None:
        self.world = world
        self._seen: Counter[bytes] = Counter()
        super().__init__(self._answer, **kw)

    def _answer(self, body: dict[str, Any]) -> str:
        digest = hashlib.sha256(json.dumps(body.get("messages"), sort_keys=True, default=str).encode()).digest()[:16]
        with self._lock:
            occurrence = self._seen[digest]
            self._seen[digest] += 1
        return self.world.chat(body, occurrence=occurrence).content

    async def _embeddings(self, request: web.Request) -> web.StreamResponse:
        body = await request.json()
        inputs = body["input"] if isinstance(body["input"], list) else [body["input"]]
        data = [{"object": "embedding", "index": i, "embedding": [float(x) for x in self.world.embed(str(t))]}
                for i, t in enumerate(inputs)]  # fmt: skip
        n = sum(len(str(t).split()) for t in inputs)
        return web.json_response({"object": "list", "data": data, "model": "qdsearch-world",
                                  "usage": {"prompt_tokens": n, "total_tokens": n}})  # fmt: skip


def arm_config(url: str, folder: Path, name: str, arm: dict[str, Any], args: argparse.Namespace, seed: int) -> Any:
    d = to_dict(load_config(ROOT / "experiments" / "world.toml"))
    d["run"].update(name=name, out_dir=str(folder / "archives"), seed=seed)
    d["endpoint"].update(base_url=url, batch=arm["batch"], batch_poll_s=0.01, price_in_per_mtok=args.price_in,
                         price_out_per_mtok=args.price_out, concurrency=16)  # fmt: skip
    d["embedding"].update(base_url=url)
    d["seeds"]["path"] = str(ROOT / "experiments" / "seeds" / "example_seeds.jsonl")
    d["budget"] = {"max_calls": args.calls}
    d["runtime"].update(kind="inprocess", schedule=arm["schedule"], in_flight=args.in_flight,
                        generation_size=args.generation_size, snapshot_every=10_000)  # fmt: skip
    return from_dict(d)


def one_run(args: argparse.Namespace, folder: Path, arm_name: str, seed: int) -> dict[str, Any]:
    srv = WorldBatches(World(WorldConfig(seed=0)), delay_s=0.01).start()
    try:
        cfg = arm_config(srv.base_url, folder, f"{arm_name.replace(' + ', '-')}-{seed}", ARMS[arm_name], args, seed)
        t0 = time.monotonic()
        campaign, store = run_campaign(cfg)
        store.close()
        st, c = campaign.stats(), campaign.counters
        return {"arm": arm_name, "seed": seed, "qd": st.qd_score, "coverage": st.coverage, "calls": c.calls,
                "children": c.children, "cost": c.cost_usd, "qd_per_usd": st.qd_score / c.cost_usd if c.cost_usd else 0.0,
                "jobs": srv.created, "single_calls": srv.single_calls, "wall_s": time.monotonic() - t0}  # fmt: skip
    finally:
        srv.stop()


def _mean(xs: list[float]) -> float:
    return sum(xs) / len(xs)


def _bootstrap(steady: list[dict[str, Any]], batch: list[dict[str, Any]], n: int = 4000) -> tuple[float, float]:
    """A 95% percentile interval of the ratio of mean QD per USD, resampling seeds (paired)."""
    rng = random.Random(0)
    k = len(steady)
    ratios = []
    for _ in range(n):
        idx = [rng.randrange(k) for _ in range(k)]
        ratios.append(_mean([batch[i]["qd_per_usd"] for i in idx]) / _mean([steady[i]["qd_per_usd"] for i in idx]))
    ratios.sort()
    return ratios[int(0.025 * n)], ratios[int(0.975 * n) - 1]


def table(rows: list[dict[str, Any]]) -> str:
    out = [
        "| arm | QD score | coverage | calls | children | cost (USD) | QD per USD | batch jobs | single calls |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    by: dict[str, list[dict[str, Any]]] = {}
    for r in rows:
        by.setdefault(r["arm"], []).append(r)
    for arm, rs in by.items():

        def cell(k: str, fmt: str, rs: list[dict[str, Any]] = rs) -> str:
            xs = [float(r[k]) for r in rs]
            return f"{_mean(xs):{fmt}} ({min(xs):{fmt}}-{max(xs):{fmt}})"

        out.append(f"| {arm} | {cell('qd', '.1f')} | {cell('coverage', '.3f')} | {cell('calls', '.0f')} | "
                   f"{cell('children', '.0f')} | {cell('cost', '.5f')} | {cell('qd_per_usd', '.0f')} | "
                   f"{cell('jobs', '.0f')} | {cell('single_calls', '.0f')} |")  # fmt: skip
    steady = by.get("steady", [])
    batch = by.get("generational + batch", [])
    if steady and batch:
        ratio = _mean([r["qd_per_usd"] for r in batch]) / _mean([r["qd_per_usd"] for r in steady])
        per_seed = [b["qd_per_usd"] / s["qd_per_usd"] for s, b in zip(steady, batch, strict=True)]
        qd = _mean([r["qd"] for r in batch]) / _mean([r["qd"] for r in steady])
        lo, hi = _bootstrap(steady, batch)
        out.append("")
        out.append(f"QD per USD, batch / steady: **{ratio:.2f}x** (95% bootstrap interval over seeds {lo:.2f}-{hi:.2f}; "
                   f"per seed: {', '.join(f'{x:.2f}' for x in per_seed)}); "
                   f"QD score, batch / steady: {qd:.3f}; cost per QD point, batch / steady: "
                   f"{1 / ratio:.3f}.")  # fmt: skip
    return "\n".join(out)


def _commit() -> str:
    """The commit the run's code is at, and whether qdsearch/ differed from it."""
    import subprocess

    def git(*a: str) -> str:
        return subprocess.run(["git", *a], cwd=ROOT, capture_output=True, text=True).stdout.strip()

    dirty = " (qdsearch/ modified)" if git("status", "--porcelain", "--", "qdsearch") else ""
    return f"commit {git('rev-parse', '--short', 'HEAD') or 'unknown'}{dirty}"


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--calls", type=int, default=400)
    p.add_argument("--seeds", type=int, default=3)
    p.add_argument("--generation-size", type=int, default=32)
    p.add_argument("--in-flight", type=int, default=8)
    p.add_argument("--price-in", type=float, default=0.15)  # gpt-4o-mini's list prices per 1M tokens
    p.add_argument("--price-out", type=float, default=0.60)
    p.add_argument("--out", type=Path, default=None)
    args = p.parse_args()
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        for seed in range(args.seeds):
            for arm in ARMS:
                r = one_run(args, Path(tmp), arm, seed)
                print(json.dumps(r), flush=True)
                rows.append(r)
    text = table(rows)
    print(text)
    if args.out is not None:
        head = (f"Command: `.venv/bin/python experiments/batch_bench.py --calls {args.calls} --seeds {args.seeds} "
                f"--generation-size {args.generation_size} --in-flight {args.in_flight} --price-in {args.price_in} "
                f"--price-out {args.price_out}` on {platform.machine()} ({os.cpu_count()} CPUs, Python "
                f"{platform.python_version()}), code at {_commit()}.")  # fmt: skip
        args.out.write_text(head + "\n\n" + text + "\n\n```\n" + "\n".join(json.dumps(r) for r in rows) + "\n```\n")


if __name__ == "__main__":
    main()
