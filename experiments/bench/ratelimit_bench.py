"""Benchmark: a client against an endpoint with an RPM limit (issue 17, item 3).

The fake endpoint (``tests/fakes/openai_server.py``) allows ``--rpm`` requests per
minute as a token bucket of one second's worth (OpenAI's quantized enforcement),
answers 429 with ``Retry-After`` above it at once, and takes ``--latency`` seconds
for each admitted request. Every client is configured with a concurrency ceiling
``--ceiling-x`` times what the limit needs (rpm / 60 * latency) and always has twice
its ceiling of calls waiting, for ``--seconds``. The clients, side by side in one run
(each in its own process with its own fake endpoint, all at the same time):

- ``fixed (before)``: ``adaptive_concurrency = false`` and no ``rpm``: the client of
  before this change (a fixed number in flight, backoff on 429);
- ``adaptive + rpm``: ``rpm`` set to the endpoint's limit;
- ``adaptive, headers``: no ``rpm``; the endpoint's ``x-ratelimit-*`` headers are
  all it has (it learns the limit from ``x-ratelimit-limit-requests``);
- ``adaptive, no headers``: no ``rpm``, and the endpoint sends only ``Retry-After``:
  the AIMD window alone.

Prints per client: throughput (calls answered per second over the whole run, the
start included, the calls still in flight at the end not) / the limit (target
>= 0.95), the same from a fifth of the run on, the share of HTTP answers that were
429 (target <= 1%), failed calls (retries exhausted), the final window and its cuts,
and the CPU seconds of the process (client and its fake endpoint).

    .venv/bin/python experiments/bench/ratelimit_bench.py [--rpm 600 --latency 1 --seconds 90]
"""

from __future__ import annotations

import argparse
import asyncio
import multiprocessing as mp
import os
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[2]

CLIENTS: dict[str, dict[str, Any]] = {
    "fixed (before)": {"endpoint": {"adaptive_concurrency": False}, "headers": True},
    "adaptive + rpm": {"endpoint": {"rpm": "LIMIT"}, "headers": True},
    "adaptive, headers": {"endpoint": {}, "headers": True},
    "adaptive, no headers": {"endpoint": {}, "headers": False},
}


def one(name: str, args: argparse.Namespace, out: Any) -> None:
    """Runs one client against its own limited fake endpoint; puts its numbers on ``out``."""
    sys.path.insert(0, str(ROOT))
    from qdsearch.config import EndpointConfig
    from qdsearch.llm import LLMClient, LLMError
    from tests.fakes.openai_server import FakeOpenAI, RateLimit

    spec = CLIENTS[name]
    needed = args.rpm / 60 * args.latency
    ceiling = max(1, round(needed * args.ceiling_x))
    fake = FakeOpenAI(latency_s=args.latency, record=False).start()
    fake.rate_limit = RateLimit(rpm=args.rpm, burst_s=1.0, headers=spec["headers"])
    over = {k: (args.rpm if v == "LIMIT" else v) for k, v in spec["endpoint"].items()}
    cfg = EndpointConfig(base_url=fake.base_url, model="fake-model", concurrency=ceiling, timeout_s=30.0, **over)
    client = LLMClient(cfg)
    msg = [{"role": "user", "content": "say hello"}]
    ok = failed = 0
    done: list[float] = []

    async def worker(deadline: float) -> None:
        nonlocal ok, failed
        while time.perf_counter() < deadline:
            try:
                await client.chat(msg, max_tokens=16)
            except LLMError:
                failed += 1
                continue
            if (t := time.perf_counter()) <= deadline:
                ok += 1
                done.append(t)

    t0 = time.perf_counter()

    async def go() -> None:
        deadline = t0 + args.seconds
        tasks = [asyncio.ensure_future(worker(deadline)) for _ in range(2 * ceiling)]
        await asyncio.sleep(args.seconds)
        for t in tasks:
            t.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        await client.aclose()

    cpu0 = time.process_time()
    asyncio.run(go())
    cpu = time.process_time() - cpu0
    stats = dict(fake.stats)
    fake.stop()
    answers = stats.get("ok", 0) + stats.get("429", 0)
    out.put(
        {
            "name": name,
            "ceiling": ceiling,
            "throughput": ok / args.seconds / (args.rpm / 60),
            # from a fifth of the run on: after the start, and still cut at the end
            "steady": sum(t >= t0 + args.seconds / 5 for t in done) / (0.8 * args.seconds) / (args.rpm / 60),
            "share_429": stats.get("429", 0) / max(1, answers),
            "n_429": stats.get("429", 0),
            "answers": answers,
            "ok": ok,
            "failed": failed,
            "window": client.limits.state()["window"],
            "cuts": client.limits.window.cuts,
            "cpu_s": cpu,
        }
    )


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--rpm", type=float, default=600.0)
    ap.add_argument("--latency", type=float, default=1.0)
    ap.add_argument("--seconds", type=float, default=90.0)
    ap.add_argument("--ceiling-x", type=float, default=4.0)
    ap.add_argument("--only", nargs="*", default=list(CLIENTS), choices=list(CLIENTS))
    args = ap.parse_args(argv)
    os.environ.setdefault("PYTHONHASHSEED", "0")
    ctx = mp.get_context("spawn")
    out = ctx.Queue()
    procs = [ctx.Process(target=one, args=(n, args, out)) for n in args.only]
    for p in procs:
        p.start()
    rows = {r["name"]: r for r in (out.get(timeout=args.seconds + 120) for _ in procs)}
    for p in procs:
        p.join(timeout=30)
    load = subprocess.run(["uptime"], capture_output=True, text=True).stdout.strip()
    print(f"rpm {args.rpm:g}, latency {args.latency:g} s, {args.seconds:g} s per client, all at once; {load}")
    print()
    print(
        "| client | ceiling | throughput / limit | after the first fifth | 429 share | 429s / answers "
        "| failed calls | final window | cuts | CPU s |"
    )
    print("|---|---|---|---|---|---|---|---|---|---|")
    for n in args.only:
        r = rows[n]
        print(
            f"| {n} | {r['ceiling']} | {r['throughput']:.3f} | {r['steady']:.3f} | {100 * r['share_429']:.2f}% | "
            f"{r['n_429']} / {r['answers']} | {r['failed']} | {r['window']:g} | {r['cuts']} | {r['cpu_s']:.1f} |"
        )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
