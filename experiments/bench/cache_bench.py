"""What the request cache costs per call, side by side with an uncached call.

    python -m experiments.bench.cache_bench [--calls 400] [--rounds 5]

One process, one loop, one call at a time (so a call's wall time is its overhead),
against the benchmark's fake endpoint (:mod:`experiments.bench.server`, its own
process, latency 0) with messages rendered by the real operator and judge (about
2 KB each). In every round, in this order, on fresh request texts:

- **uncached**: ``LLMClient.chat`` with no cache (the floor: HTTP to the endpoint);
- **miss**: the same calls through a client with a cache that does not hold them
  (key, lookup, the request, the store);
- **hit**: the same calls again, answered from the cache (no request).

and, without HTTP, the cache's own parts on the same requests: the key
(:func:`qdsearch.llm.cache.request_key`), a lookup that hits, a lookup that misses,
and a store. Each figure is the median over the rounds of the mean per call, in
microseconds, as wall time and as this process's CPU time (user + system; on a busy
machine wall time is inflated by other processes, CPU time much less). The target
(at most 200 us) is checked on CPU time: key + lookup for every cached call, plus the
store for a miss. ``hit`` is the whole cost of a call the cache answers.
Prints a table and, last, one JSON line.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np

ROOT = Path(__file__).resolve().parents[2]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from experiments.bench.run import Endpoint  # noqa: E402
from qdsearch.config import EndpointConfig  # noqa: E402
from qdsearch.judge import VERDICT_SCHEMA, render_judge  # noqa: E402
from qdsearch.llm.cache import (  # noqa: E402
    CachedReply,
    CallSite,
    RequestCache,
    call_site,
    endpoint_identity,
    request_key,
)
from qdsearch.llm.client import LLMClient  # noqa: E402
from qdsearch.operators import BUILTIN, CHILD_SCHEMA  # noqa: E402
from qdsearch.types import Sample  # noqa: E402

TARGET_US = 200.0


def _requests(n: int, tag: str) -> list[tuple[list[dict[str, str]], dict[str, Any], str]]:
    """``n`` distinct (messages, schema, tag) triples: operator and judge prompts alternately."""
    rng = np.random.default_rng(0)
    out = []
    for i in range(n):
        s = Sample(id=f"s{i}", instruction=f"Explain how tides work, variant {tag}-{i}.", response="The moon pulls.")
        if i % 2:
            out.append((list(render_judge(s, "both", rng)), VERDICT_SCHEMA["both"], "judge"))
        else:
            msgs = BUILTIN["deepen"].render(s, (), rng, "")
            out.append(([dict(m) for m in msgs], CHILD_SCHEMA, "deepen"))
    return out


class _Clock:
    """Wall and CPU seconds (this process, user + system) per item of a timed block."""

    def __init__(self, n: int) -> None:
        self.n, self.wall, self.cpu = n, 0.0, 0.0

    def __enter__(self) -> _Clock:
        self._w, self._c = time.perf_counter(), time.process_time()
        return self

    def __exit__(self, *exc: object) -> None:
        self.wall = (time.perf_counter() - self._w) / self.n
        self.cpu = (time.process_time() - self._c) / self.n


async def _chat_all(client: LLMClient, reqs: list[Any], seed: int) -> _Clock:
    """Per call, one call at a time (sampled ones under call sites)."""
    with _Clock(len(reqs)) as clock:
        for i, (msgs, schema, tag) in enumerate(reqs):
            with call_site(seed, f"c{i:07d}"):
                await client.chat(msgs, tag=tag, json_schema=schema, max_tokens=256)
    return clock


def _parts(cache: RequestCache, reqs: list[Any], model: str, identity: str) -> dict[str, _Clock]:
    """The cache's parts per call, on ``reqs``'s request bodies."""
    bodies = [
        {"model": model, "messages": m, "temperature": 0.7, "max_tokens": 256, "response_format": {"schema": s}}
        for m, s, _ in reqs
    ]
    n = len(bodies)
    sites = [CallSite(99, f"c{i}") for i in range(n)]
    with _Clock(n) as key:
        keys = [request_key(identity, b, tag, site) for b, (_, _, tag), site in zip(bodies, reqs, sites, strict=True)]
    found = [k for k in keys if k is not None]
    with _Clock(n) as miss:
        assert not any(cache.get(k.key) for k in found)
    reply = CachedReply('{"quality": 7, "complexity": 3, "reason": "fine"}', "stop", 900, 40, 0.0)
    with _Clock(n) as store:
        for k, (_, _, tag) in zip(found, reqs, strict=True):
            cache.put(k.key, reply, model=model, role=tag, place=k.place, sampled=k.sampled)
    with _Clock(n) as hit:
        assert all(cache.get(k.key) for k in found)
    return {"key": key, "lookup_miss": miss, "lookup_hit": hit, "store": store}


async def _round(base_url: str, folder: Path, calls: int, r: int) -> dict[str, _Clock]:
    ep = EndpointConfig(base_url=base_url, model="bench-model", temperature=0.7, timeout_s=30.0)
    cache = RequestCache(folder)
    out: dict[str, _Clock] = {}
    plain = LLMClient(ep)
    cached = LLMClient(ep, cache=cache)
    try:
        out["uncached"] = await _chat_all(plain, _requests(calls, f"u{r}"), r)
        reqs = _requests(calls, f"c{r}")
        out["miss"] = await _chat_all(cached, reqs, r)
        out["hit"] = await _chat_all(cached, reqs, r)
        assert cached.usage.calls == 2 * calls and cached.usage.tokens > 0
    finally:
        await plain.aclose()
        await cached.aclose()
    out |= _parts(cache, _requests(calls, f"p{r}"), ep.model, endpoint_identity(base_url))
    cache.close()
    return out


def main(argv: list[str] | None = None) -> dict[str, Any]:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--calls", type=int, default=400, help="calls per kind and round")
    p.add_argument("--rounds", type=int, default=5)
    args = p.parse_args(argv)
    endpoint = Endpoint().start()
    rounds: list[dict[str, _Clock]] = []
    try:
        with tempfile.TemporaryDirectory(prefix="qd-cache-bench-") as tmp:
            asyncio.run(_round(endpoint.base_url, Path(tmp) / "warm", 20, -1))  # imports, connections
            for r in range(args.rounds):
                rounds.append(asyncio.run(_round(endpoint.base_url, Path(tmp) / f"r{r}", args.calls, r)))
    finally:
        endpoint.stop()
    us = {k: 1e6 * statistics.median(x[k].wall for x in rounds) for k in rounds[0]}
    cpu = {k: 1e6 * statistics.median(x[k].cpu for x in rounds) for k in rounds[0]}
    us["miss_overhead"] = us["miss"] - us["uncached"]
    cpu["miss_overhead"] = cpu["miss"] - cpu["uncached"]
    rows = [
        ("uncached call (HTTP, no cache)", "uncached"),
        ("call, cache miss (key + lookup + HTTP + store)", "miss"),
        ("call, cache hit (no request)", "hit"),
        ("what a miss adds (miss - uncached)", "miss_overhead"),
        ("  request key (canonical JSON + SHA-256)", "key"),
        ("  lookup that misses", "lookup_miss"),
        ("  lookup that hits", "lookup_hit"),
        ("  store (one WAL transaction)", "store"),
    ]
    print(f"{args.rounds} rounds x {args.calls} calls of each kind; median of the per-round means")
    print(f"{'':50s} {'wall us':>9s} {'CPU us':>9s}")
    for label, k in rows:
        print(f"{label:50s} {us[k]:9.1f} {cpu[k]:9.1f}")
    # CPU time of this process: what the cache costs the client, not inflated by other
    # processes' load (wall time is, on a busy machine)
    lookup = cpu["key"] + max(cpu["lookup_hit"], cpu["lookup_miss"])
    missed = lookup + cpu["store"]
    print(
        f"cache overhead per call (CPU): lookup {lookup:.1f} us (key + lookup), a miss {missed:.1f} us "
        f"(key + lookup + store); target <= {TARGET_US:.0f} us: "
        f"lookup {'met' if lookup <= TARGET_US else 'NOT met'}, miss {'met' if missed <= TARGET_US else 'NOT met'}; "
        f"a hit takes {us['hit'] / us['uncached']:.3f}x the wall time of an uncached call at zero latency"
    )
    result = {
        "rounds": args.rounds,
        "calls": args.calls,
        "wall_us": {k: round(v, 1) for k, v in us.items()},
        "cpu_us": {k: round(v, 1) for k, v in cpu.items()},
    }
    print(json.dumps(result))
    return result


if __name__ == "__main__":
    main()
